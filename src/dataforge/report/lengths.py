"""Token-length statistics of a render target: percentiles, histograms, overflow, a suggested max_length."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PERCENTILES = (50, 90, 99)
BINS = 40


def summary(values: np.ndarray) -> dict[str, int]:
    """p50/p90/p99/max (and count, mean) of a length array."""
    if len(values) == 0:
        return {"count": 0}
    out = {"count": int(len(values)), "mean": int(round(float(values.mean())))}
    for p in PERCENTILES:
        out[f"p{p}"] = int(np.percentile(values, p, method="higher"))
    out["max"] = int(values.max())
    return out


def axis_top(longest: int, max_length: int) -> int:
    """The histograms' right edge: up to max_length when the longest row comes within half of it, else just past
    the longest row (a multiple of BINS), so that data far below max_length (605 tokens against 8192) is not
    squeezed into the first bins; the plots then mark max_length at the edge instead of drawing its line."""
    if longest * 2 >= max_length:
        return max(longest, max_length, 1)
    return max(BINS, math.ceil(longest * 1.05 / BINS) * BINS)


def histogram(values: np.ndarray, top: int) -> dict[str, list[int]]:
    """Counts over BINS equal-width bins from 0 to `top` (see `axis_top`)."""
    counts, edges = np.histogram(values, bins=BINS, range=(0, max(top, 1)))
    return {"edges": [int(e) for e in edges], "counts": [int(c) for c in counts]}


def suggested_max_length(n_tokens: np.ndarray, keep_share: float) -> int | None:
    """The smallest multiple of 64 that keeps `keep_share` of rows whole."""
    if len(n_tokens) == 0:
        return None
    need = float(np.percentile(n_tokens, keep_share * 100, method="higher"))
    return int(math.ceil(need / 64) * 64)


def length_stats(
    n_tokens: np.ndarray,
    n_prompt: np.ndarray,
    n_trained: np.ndarray,
    sources: np.ndarray,
    names: list[str],
    max_length: int,
    dropped_tokens: np.ndarray | None = None,
    dropped_sources: np.ndarray | None = None,
) -> dict[str, Any]:
    """Summaries and histograms of total, prompt and trained tokens, overall and per source.

    `sources` (and `dropped_sources`) are integer codes into `names`: a build of millions of rows holds one small
    integer per row here, never its source's string. Rows the overflow policy dropped have a total length but no
    rendered prompt or labels: they count in the totals (that tail is what the histogram is for) and not in the
    prompt and trained figures.
    """
    sources = np.asarray(sources, dtype=np.int64)
    if dropped_tokens is not None and len(dropped_tokens):
        all_tokens = np.concatenate([n_tokens, dropped_tokens])
        all_sources = np.concatenate([sources, np.asarray(dropped_sources, dtype=np.int64)])
    else:
        all_tokens, all_sources = n_tokens, sources
    # One axis for the three histograms, scaled to the data (see `axis_top`).
    top = axis_top(int(all_tokens.max()) if len(all_tokens) else 0, max_length)
    stats: dict[str, Any] = {
        "total": summary(all_tokens),
        "prompt": summary(n_prompt),
        "trained": summary(n_trained),
        "histogram": {
            "total": histogram(all_tokens, top),
            "prompt": histogram(n_prompt, top),
            "trained": histogram(n_trained, top),
        },
        "per_source": {},
    }
    present = np.flatnonzero(np.bincount(all_sources, minlength=len(names))) if len(all_sources) else []
    for code in sorted(present, key=lambda c: names[c]):
        mask = sources == code
        stats["per_source"][names[code]] = {
            "total": summary(all_tokens[all_sources == code]),
            "prompt": summary(n_prompt[mask]),
            "trained": summary(n_trained[mask]),
        }
    return stats


class RowLengths:
    """The per-row token counts of a render target's rendered rows, gathered one table (part) at a time for
    `length_stats`: three int32 arrays and an int32 source code per row, plus the first ids of rows longer
    than `max_length`. What it holds is a few bytes a row, never a row's id or source string, so the statistics
    of ten million rendered rows take tens of MB."""

    def __init__(self, max_length: int, shown: int) -> None:
        self.max_length, self.shown = max_length, shown
        self.names: list[str] = []
        self._code: dict[str, int] = {}
        self._columns: dict[str, list[np.ndarray]] = {"n_tokens": [], "n_prompt": [], "n_trained": [], "source": []}
        self.over = 0  # rows longer than max_length (kept by the overflow policy)
        self.over_ids: list[str] = []  # the first `shown` of them, in row order

    def code(self, name: str) -> int:
        """`name`'s source code (a new one the first time it is seen)."""
        if name not in self._code:
            self._code[name] = len(self.names)
            self.names.append(name)
        return self._code[name]

    def add(self, table: pa.Table) -> None:
        """Append the rows of `table` (columns id, source, n_tokens, n_prompt, n_trained)."""
        for name in ("n_tokens", "n_prompt", "n_trained"):
            values = table[name].to_numpy()
            self._columns[name].append(values.astype(np.int32, copy=False))
        encoded = pc.dictionary_encode(table["source"].combine_chunks())
        mapping = np.array([self.code(n) for n in encoded.dictionary.to_pylist()] or [0], dtype=np.int32)
        self._columns["source"].append(mapping[encoded.indices.to_numpy(zero_copy_only=False)])
        over = np.flatnonzero(self._columns["n_tokens"][-1] > self.max_length)
        self.over += len(over)
        wanted = self.shown - len(self.over_ids)
        if wanted > 0 and len(over):
            self.over_ids += table["id"].take(pa.array(over[:wanted])).to_pylist()

    def column(self, name: str) -> np.ndarray:
        """One gathered column over every added row (`source`: codes into `names`)."""
        parts = self._columns[name]
        return np.concatenate(parts) if parts else np.zeros(0, np.int32)

    @classmethod
    def of(cls, table: pa.Table, max_length: int, shown: int) -> RowLengths:
        """The counts of one whole rendered table."""
        lengths = cls(max_length, shown)
        lengths.add(table)
        return lengths


def plot(stats: dict[str, Any], max_length: int, title: str, path: Path) -> None:
    """A PNG of the total/prompt/trained token histograms with the max_length line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
    for name, colour in (("total", "#4c72b0"), ("prompt", "#dd8452"), ("trained", "#55a868")):
        h = stats["histogram"][name]
        edges = np.array(h["edges"])
        ax.stairs(h["counts"], edges, label=name, color=colour, linewidth=1.5)
    mark_max_length(ax, max_length, stats["histogram"]["total"]["edges"][-1])
    ax.set_xlabel("tokens per row")
    ax.set_ylabel("rows")
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Fixed metadata so the same data gives the same bytes.
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)


def mark_max_length(ax, max_length: int, right_edge: int) -> bool:
    """Draw max_length on a length histogram: a dashed line when it lies on the axis, else a label at the right
    edge pointing past it (`max_length 8192 →`); whether the line was drawn."""
    if max_length <= right_edge:
        ax.axvline(max_length, color="#c44e52", linestyle="--", linewidth=1.2, label=f"max_length {max_length}")
        return True
    ax.set_xlim(0, right_edge)
    ax.annotate(
        f"max_length {max_length:,} →",
        (1, 0.5),
        xycoords="axes fraction",
        ha="right",
        va="center",
        color="#c44e52",
        fontsize=8,
    )
    return False
