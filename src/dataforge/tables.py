"""Row selection on Arrow tables without copying what can be shared."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

# Above this many runs of kept rows, a copying filter is cheaper than many tiny zero-copy chunks.
MAX_SLICES = 4096


def keep_rows(table: pa.Table, keep: np.ndarray) -> pa.Table:
    """The rows of `table` where `keep` holds, in order.

    When few rows are dropped, the result is built from zero-copy slices of `table` (one chunk per run of
    kept rows) instead of `Table.filter`, which copies every column: on large tables of conversations the
    copy, and the fresh memory it touches, costs more than the rest of a stage.
    """
    keep = np.asarray(keep, dtype=bool)
    if keep.all():
        return table
    if not keep.any():
        return table.slice(0, 0)
    edges = np.flatnonzero(np.diff(np.concatenate(([False], keep, [False])).astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2]
    if len(starts) > MAX_SLICES:
        return table.filter(pa.array(keep))
    return pa.concat_tables([table.slice(int(s), int(e - s)) for s, e in zip(starts, ends, strict=True)])
