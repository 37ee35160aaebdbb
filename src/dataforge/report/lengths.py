"""Token-length statistics of a render target: percentiles, histograms, overflow, a suggested max_length."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

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
    max_length: int,
    dropped_tokens: np.ndarray | None = None,
    dropped_sources: np.ndarray | None = None,
) -> dict[str, Any]:
    """Summaries and histograms of total, prompt and trained tokens, overall and per source.

    Rows the overflow policy dropped have a total length but no rendered prompt or labels: they count in the
    totals (that tail is what the histogram is for) and not in the prompt and trained figures.
    """
    if dropped_tokens is not None and len(dropped_tokens):
        all_tokens = np.concatenate([n_tokens, dropped_tokens])
        all_sources = np.concatenate([sources, dropped_sources])
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
    for s in sorted(set(all_sources.tolist())):
        mask = sources == s
        stats["per_source"][s] = {
            "total": summary(all_tokens[all_sources == s]),
            "prompt": summary(n_prompt[mask]),
            "trained": summary(n_trained[mask]),
        }
    return stats


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
