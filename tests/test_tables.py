import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from dataforge.tables import MAX_SLICES, keep_rows


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), max_size=60))
def test_keep_rows_equals_filter(mask):
    table = pa.table({"x": list(range(len(mask))), "s": [f"r{i}" for i in range(len(mask))]})
    keep = np.array(mask, dtype=bool)
    assert keep_rows(table, keep).to_pylist() == table.filter(pa.array(keep, pa.bool_())).to_pylist()


def test_sparse_drops_share_memory_and_dense_drops_copy():
    table = pa.table({"x": np.arange(100_000)})
    keep = np.ones(100_000, dtype=bool)
    keep[[10, 5000, 77_777]] = False
    kept = keep_rows(table, keep)
    assert kept.num_rows == 99_997 and kept["x"].num_chunks == 4
    alternating = np.arange(2 * MAX_SLICES + 10) % 2 == 0
    dense = keep_rows(pa.table({"x": np.arange(len(alternating))}), alternating)
    assert dense["x"].num_chunks == 1 and dense["x"].to_pylist() == list(range(0, len(alternating), 2))
