"""Render-target length statistics gathered part by part (`RowLengths`): the same figures as one whole table,
and per-source summaries equal to a direct computation over the rows' source strings."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from dataforge.report.lengths import RowLengths, length_stats, summary

ROWS = st.lists(
    st.tuples(st.sampled_from(["alpaca", "sharegpt", "zeta", "b"]), st.integers(1, 5000), st.integers(0, 5000)),
    max_size=60,
)


def table_of(rows: list[tuple[str, int, int]], offset: int = 0) -> pa.Table:
    return pa.table(
        {
            "id": [f"r{offset + i}" for i in range(len(rows))],
            "source": [s for s, _, _ in rows],
            "n_tokens": pa.array([n for _, n, _ in rows], pa.int32()),
            "n_prompt": pa.array([min(p, n) for _, n, p in rows], pa.int32()),
            "n_trained": pa.array([n - min(p, n) for _, n, p in rows], pa.int32()),
        }
    )


def stats_of(lengths: RowLengths, max_length: int) -> dict:
    return length_stats(
        lengths.column("n_tokens"),
        lengths.column("n_prompt"),
        lengths.column("n_trained"),
        lengths.column("source"),
        lengths.names,
        max_length,
    )


@settings(max_examples=80, deadline=None)
@given(ROWS, st.integers(0, 60), st.integers(1, 6000))
def test_parts_give_the_whole_tables_statistics_and_per_source_summaries(rows, cut, max_length):
    cut = min(cut, len(rows))
    whole = RowLengths.of(table_of(rows), max_length, shown=3)
    parts = RowLengths(max_length, shown=3)
    parts.add(table_of(rows[:cut]))
    parts.add(table_of(rows[cut:], offset=cut))
    assert stats_of(parts, max_length) == stats_of(whole, max_length)
    over = [f"r{i}" for i, (_, n, _) in enumerate(rows) if n > max_length]
    assert (parts.over, parts.over_ids) == (len(over), over[:3])
    per_source = stats_of(parts, max_length)["per_source"]
    assert list(per_source) == sorted({s for s, _, _ in rows})
    for name, cell in per_source.items():
        tokens = np.array([n for s, n, _ in rows if s == name])
        assert cell["total"] == summary(tokens)


def test_dropped_rows_count_in_the_totals_of_their_source_only():
    lengths = RowLengths.of(table_of([("a", 10, 4), ("b", 20, 5)]), 100, shown=5)
    dropped_code = lengths.code("c")  # a source whose every row was dropped
    stats = length_stats(
        lengths.column("n_tokens"),
        lengths.column("n_prompt"),
        lengths.column("n_trained"),
        lengths.column("source"),
        lengths.names,
        100,
        np.array([500, 700]),
        np.array([dropped_code, lengths.code("a")]),
    )
    assert stats["total"]["count"] == 4 and stats["total"]["max"] == 700
    assert stats["prompt"]["count"] == 2
    assert stats["per_source"]["c"] == {
        "total": summary(np.array([500])),
        "prompt": {"count": 0},
        "trained": {"count": 0},
    }
    assert stats["per_source"]["a"]["total"] == summary(np.array([10, 700]))
