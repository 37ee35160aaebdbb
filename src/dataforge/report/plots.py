"""The report's plots as inline SVG text, drawn by matplotlib from report.json numbers.

SVG keeps the HTML one self-contained file with text that stays sharp and searchable. The output is
deterministic: a fixed hash salt for element ids, no date or creator metadata, text kept as text.
"""

from __future__ import annotations

import hashlib
import io
import re
from typing import Any

COLOURS = {
    "train": "#4c72b0",
    "val": "#8172b3",
    "rejected": "#c44e52",
    "filtered": "#dd8452",
    "deduplicated": "#937860",
    "downsampled": "#8c8c8c",
    "total": "#4c72b0",
    "prompt": "#dd8452",
    "trained": "#55a868",
}
_ID_REFERENCE = re.compile(r'(\bid="|url\(#|href="#)')
# Labels come from the data (tool names, sources): `$` in them is text, not mathtext.
RC = {"svg.hashsalt": "dataforge", "svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
      "axes.spines.right": False, "text.parse_math": False}  # fmt: skip


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=100)


def _svg(fig) -> str:
    """The figure as an <svg> element (no XML prolog), closed afterwards."""
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    fig.tight_layout()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    # Every figure names its parts `figure_1`, `axes_1`, …: prefixed with a digest of the figure, the ids stay
    # unique in a page of several plots and still do not change between builds.
    prefix = "p" + hashlib.sha256(text.encode()).hexdigest()[:8] + "-"
    return _ID_REFERENCE.sub(lambda m: m.group(1) + prefix, text)


def _draw(draw, width: float, height: float) -> str:
    import matplotlib.pyplot as plt

    with plt.rc_context(RC):
        fig, ax = _figure(width, height)
        draw(ax)
        return _svg(fig)


def ledger_flow(sources: dict[str, dict[str, int]], total: dict[str, int]) -> str:
    """One horizontal bar per source (and the total): where its rows went, from train to downsampled."""
    outcomes = ["train", "val", "rejected", "filtered", "deduplicated", "downsampled"]
    names = [*sources, "total"]
    rows = [*sources.values(), total]

    def draw(ax) -> None:
        left = [0] * len(rows)
        for outcome in outcomes:
            values = [r[outcome] for r in rows]
            ax.barh(names, values, left=left, color=COLOURS[outcome], label=outcome)
            left = [a + b for a, b in zip(left, values, strict=True)]
        ax.invert_yaxis()
        ax.set_xlabel("rows read")
        ax.legend(ncols=len(outcomes), frameon=False, loc="lower center", bbox_to_anchor=(0.5, 1.0), fontsize=8)

    return _draw(draw, 8, 0.45 * len(names) + 1.2)


def bars(counts: dict[str, int], xlabel: str, ylabel: str = "rows", colour: str = "#4c72b0") -> str:
    """A bar chart of label → count, labels in the given order."""

    def draw(ax) -> None:
        labels = list(counts) or ["(none)"]
        values = list(counts.values()) or [0]
        ax.bar(labels, values, color=colour)
        for i, v in enumerate(values):
            ax.annotate(f"{v:,}", (i, v), ha="center", va="bottom", fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if len(labels) > 8:
            ax.tick_params(axis="x", labelrotation=45)

    return _draw(draw, min(8, 1.2 + 0.6 * max(len(counts), 1)), 2.8)


def length_histogram(stats: dict[str, Any], max_length: int, rows_over: int) -> str:
    """Total, prompt and trained token counts per row, with the max_length line and the rows beyond it."""
    import numpy as np

    from .lengths import mark_max_length

    def draw(ax) -> None:
        for name in ("total", "prompt", "trained"):
            h = stats["histogram"][name]
            ax.stairs(h["counts"], np.array(h["edges"]), label=name, color=COLOURS[name], linewidth=1.5)
        # Data far below max_length is drawn at its own scale, with max_length marked at the edge.
        if mark_max_length(ax, max_length, stats["histogram"]["total"]["edges"][-1]):
            ax.annotate(
                f"{rows_over:,} row(s) over",
                (max_length, 1),
                xycoords=("data", "axes fraction"),
                xytext=(4, -12),
                textcoords="offset points",
                color="#c44e52",
                fontsize=8,
            )
        ax.set_xlabel("tokens per row (train + val)")
        ax.set_ylabel("rows")
        ax.legend(frameon=False, fontsize=8)

    return _draw(draw, 8, 3.2)
