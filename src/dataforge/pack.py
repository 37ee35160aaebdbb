"""pack: rendered rows (input_ids, labels) → packed rows whose segments cannot see or train across each other.

A packed row concatenates whole rendered rows ("segments") up to `max_length` tokens. It carries:

* `input_ids`, `labels`: the segments' tokens and labels end to end, with `labels` set to -100 at the first
  token of every segment. Causal-LM losses shift labels inside the model (the logit at token i predicts
  label i+1), so a trained label at a segment start would teach the previous segment's last token to predict
  the next row's first token: masking it keeps every label inside its own segment. A row's own label 0 is
  never used by that shift either, so nothing a row trains on unpacked is lost by packing;
* every other per-token list column of the rows (`loss_weights`, float32, when a target trains `weighted`),
  end to end the same way; `loss_weights` is 0.0 at every segment start, for the same reason as the labels;
* `position_ids`: 0, 1, … restarting at every segment (trl, flash-attention varlen kernels and transformers'
  packed-sequence masks all find the segment boundaries from these resets);
* `seq_lengths`: the segment lengths (what trl's padding-free collator builds `position_ids` and
  `cu_seq_lens` from);
* `row_ids`: the `id` of the rendered row behind each segment, in order; `n_tokens`: the packed length.

Rows longer than `max_length` are never split: `overflow="drop"` leaves them out (their ids are returned, for
the rejects table), `"alone"` gives each its own bin, `"error"` raises. Empty rows are left out as `empty`.

Building is vectorised over the flat token buffers: the rows' values are gathered in bin order (an index that
is a cumulative sum of ones with a jump at each segment start), the segment starts' labels and weights are set
by index, `position_ids` restart by the same kind of cumulative sum, and the list offsets are the cumulative
segment lengths at the bin boundaries. The unpack check (`check_unpack`, run by every build) gathers each
segment from its row again, found by id, and compares the flat arrays. Both go a run of ~256k tokens at a time,
so their scratch arrays stay in cache instead of costing whole-split allocations.

Strategies: `bfd` (best-fit decreasing, as trl's `pack_dataset(strategy="bfd")` assigns bins, but computed per
group of equal lengths instead of per row, so its cost grows with the number of distinct lengths, not rows),
`greedy` (first-fit in row order: each row goes to the first bin it fits; a segment tree over bins),
`none` (one row per bin: padding-free batches without packing). The assignment depends only on the lengths
and their order; `seed` only shuffles the order the bins come out in.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

IGNORE = -100
Strategy = Literal["bfd", "greedy", "none"]
Overflow = Literal["drop", "alone", "error"]
STRATEGIES: tuple[str, ...] = ("bfd", "greedy", "none")
OVERFLOWS: tuple[str, ...] = ("drop", "alone", "error")
FILL_BINS = 10  # bin-fill histogram: ten buckets of 10% of max_length


class PackError(ValueError):
    """Rows that cannot be packed as asked (too long under overflow="error", labels not matching ids)."""


@dataclass(frozen=True)
class Assignment:
    """Which bin each row went to.

    `order`: the packed rows' indices, bin by bin (within a bin in the order the strategy placed them);
    `bin_offsets`: bin b holds `order[bin_offsets[b]:bin_offsets[b + 1]]`; `too_long` / `empty`: the indices
    of the rows left out (ascending)."""

    order: np.ndarray
    bin_offsets: np.ndarray
    too_long: np.ndarray
    empty: np.ndarray

    @property
    def n_bins(self) -> int:
        return len(self.bin_offsets) - 1


@dataclass
class Packed:
    """A packed split: the packed rows, the ids of the rows left out by reason, and the statistics."""

    table: pa.Table
    left_out: dict[str, list[str]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- bin assignment


def bfd_bins(lengths: np.ndarray, capacity: int) -> tuple[np.ndarray, np.ndarray]:
    """Best-fit decreasing over `lengths` (each in 1..capacity): (row indices in placement order, their bins).

    Rows are placed longest first (ties in row order), each into the open bin with the least room that still
    fits it, the oldest such bin first; a new bin when none fits. That is trl's `_pack_bfd` assignment, but a
    whole group of equal lengths l is placed at once: the tightest bins with room c ≥ l each take c // l rows
    in turn (a bin that took a row is then the tightest that still fits, until its room drops below l), so the
    Python work is per distinct length and per room value, and numpy does the per-row part.
    """
    n = len(lengths)
    placed = np.argsort(-lengths, kind="stable")
    ordered = lengths[placed]
    bins = np.empty(n, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if n else np.empty(0, dtype=np.int64)
    ends = np.r_[starts[1:], n] if n else starts
    rooms: list[int] = []  # sorted room values that have open bins (room > 0)
    queues: dict[int, list[np.ndarray]] = {}  # room → open bins with that room, oldest first, as chunks
    n_bins = 0
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        size = int(ordered[start])
        pos, left = start, end - start
        while left:
            i = bisect_left(rooms, size)
            if i < len(rooms):
                room = rooms.pop(i)
                chunks = queues.pop(room)
                candidates = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
            else:  # no open bin fits: new bins, each starting with the whole capacity
                room = capacity
                per_bin = room // size
                new = -(-left // per_bin)
                candidates = np.arange(n_bins, n_bins + new, dtype=np.int64)
                n_bins += new
            per_bin = room // size
            used = min(len(candidates), -(-left // per_bin))
            take = min(left, used * per_bin)
            bins[pos : pos + take] = np.repeat(candidates[:used], per_bin)[:take]
            pos += take
            left -= take
            full, partial = divmod(take, per_bin)
            if used < len(candidates):  # the bins not reached keep their room and their place in the queue
                _reopen(rooms, queues, room, candidates[used:], front=True)
            if room - per_bin * size > 0 and full:
                _reopen(rooms, queues, room - per_bin * size, candidates[:full])
            if partial:
                _reopen(rooms, queues, room - partial * size, candidates[full : full + 1])
    return placed, bins


def _reopen(rooms: list[int], queues: dict[int, list[np.ndarray]], room: int, ids: np.ndarray, front: bool = False):
    """Put open bins `ids` in the queue of bins with `room` left (at its front: they were there before)."""
    if room not in queues:
        queues[room] = []
        insort(rooms, room)
    if front:
        queues[room].insert(0, ids)
    else:
        queues[room].append(ids)


def first_fit_bins(lengths: np.ndarray, capacity: int) -> tuple[np.ndarray, np.ndarray]:
    """First-fit in row order: (row indices in placement order, their bins); each row goes to the lowest-numbered
    bin with room for it.

    A max-segment tree over bins (unopened bins count as empty, so the leftmost bin that fits is either an open
    one or the next new one) finds it in log(bins) steps."""
    n = len(lengths)
    if n == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    size = 1 << max(1, (n - 1).bit_length())
    tree = [capacity] * (2 * size)
    bins = np.empty(n, dtype=np.int64)
    for row, need in enumerate(lengths.tolist()):
        node = 1
        while node < size:
            node = 2 * node if tree[2 * node] >= need else 2 * node + 1
        bins[row] = node - size
        tree[node] -= need
        node //= 2
        while node:
            best = max(tree[2 * node], tree[2 * node + 1])
            if tree[node] == best:
                break
            tree[node] = best
            node //= 2
    return np.arange(n, dtype=np.int64), bins


def assign(
    lengths: np.ndarray,
    max_length: int,
    strategy: Strategy = "bfd",
    overflow: Overflow = "drop",
    seed: int | None = None,
) -> Assignment:
    """Bins for rows of `lengths` tokens: every row lands in exactly one bin, or in `too_long` / `empty`."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown packing strategy {strategy!r} (expected one of {', '.join(STRATEGIES)})")
    if overflow not in OVERFLOWS:
        raise ValueError(f"unknown overflow policy {overflow!r} (expected one of {', '.join(OVERFLOWS)})")
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    lengths = np.asarray(lengths, dtype=np.int64)
    empty = np.flatnonzero(lengths <= 0)
    long_mask = lengths > max_length
    too_long = np.flatnonzero(long_mask)
    if len(too_long) and overflow == "error":
        raise PackError(
            f"{len(too_long)} row(s) are longer than max_length {max_length} (the longest has "
            f"{int(lengths[too_long].max())} tokens); rows are never split"
        )
    fits = np.flatnonzero((lengths > 0) & ~long_mask)
    if strategy == "bfd":
        placed, bins = bfd_bins(lengths[fits], max_length)
    elif strategy == "greedy":
        placed, bins = first_fit_bins(lengths[fits], max_length)
    else:
        placed, bins = np.arange(len(fits), dtype=np.int64), np.arange(len(fits), dtype=np.int64)
    rows = fits[placed]
    n_bins = int(bins.max()) + 1 if len(bins) else 0
    if overflow == "alone" and len(too_long):  # each too-long row in a bin of its own, after the packed ones
        rows = np.concatenate([rows, too_long])
        bins = np.concatenate([bins, np.arange(n_bins, n_bins + len(too_long), dtype=np.int64)])
        n_bins += len(too_long)
        too_long = np.empty(0, dtype=np.int64)
    by_bin = np.argsort(bins, kind="stable")  # stable: rows keep their placement order inside a bin
    order, sorted_bins = rows[by_bin], bins[by_bin]
    counts = np.bincount(sorted_bins, minlength=n_bins)
    if seed is not None and n_bins:  # emit the bins in a seeded order; the assignment itself is unchanged
        permutation = np.random.default_rng(seed).permutation(n_bins)
        starts = np.r_[0, np.cumsum(counts)[:-1]]
        counts = counts[permutation]
        new_starts = np.r_[0, np.cumsum(counts)[:-1]]
        order = order[np.arange(len(order)) + np.repeat(starts[permutation] - new_starts, counts)]
    offsets = np.r_[0, np.cumsum(counts)].astype(np.int64)
    return Assignment(order=order, bin_offsets=offsets, too_long=too_long, empty=empty)


# ------------------------------------------------------------------------------------------------ packed rows

# What a segment's first token holds in the masked per-token columns: no label, and no loss weight, may cross
# a segment boundary (see the module doc). Other per-token columns are carried as they are.
BOUNDARY_VALUES: dict[str, int | float] = {"labels": IGNORE, "loss_weights": 0.0}
# Columns every packed row has; carried per-token columns (e.g. `loss_weights`) come right after `labels`.
PACKED_COLUMNS: tuple[str, ...] = ("input_ids", "labels", "position_ids", "seq_lengths", "row_ids", "n_tokens")
# Tokens per step of the gathers and comparisons: the index and scratch arrays of one step stay in cache and
# are reused, instead of whole-split temporaries (each a fresh allocation, paid for in page faults).
CHUNK_TOKENS = 1 << 18


def _single(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One array of `column` (combine_chunks copies even a single chunk, so that one is taken as is)."""
    if isinstance(column, pa.ChunkedArray):
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return column


def _lists(offsets: np.ndarray, values: pa.Array) -> pa.Array:
    """A list array over `values` split at `offsets` (large_list when the values outgrow int32 offsets)."""
    if offsets[-1] > np.iinfo(np.int32).max:
        return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), values)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)


def token_columns(rows: pa.Table) -> list[str]:
    """The per-token columns packing carries: `input_ids`, `labels`, then every other list column of `rows` that
    some row has a value in (`loss_weights`, when the target trains `weighted`; not a column no row has, such as
    a preference pair's rejected side on SFT rows, or `loss_weights` outside `weighted`)."""
    extra = [
        name
        for name in rows.column_names
        if name not in ("id", "input_ids", "labels")
        and (pa.types.is_list(rows.schema.field(name).type) or pa.types.is_large_list(rows.schema.field(name).type))
        and rows[name].null_count < rows.num_rows
    ]
    clash = [name for name in extra if name in PACKED_COLUMNS]
    if clash:
        raise PackError(f"rows to pack cannot have a column named {clash[0]!r}: packing writes that column itself")
    return ["input_ids", "labels", *extra]


@dataclass(frozen=True)
class _Tokens:
    """A per-token list column as numpy: its values buffer and where each row's tokens start in it."""

    name: str
    values: np.ndarray
    offsets: np.ndarray  # int64, rows + 1 (absolute into `values`: a sliced list array keeps its whole child)
    arrow_type: pa.DataType  # of the values


def _tokens(rows: pa.Table, name: str) -> _Tokens:
    """Column `name` of `rows` as `_Tokens`, refusing nulls and non-numeric values (they cannot be gathered)."""
    array = _single(rows[name])
    if array.null_count:
        first = int(np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False))[0])
        raise PackError(f"row {rows['id'][first].as_py()!r} has no {name} (null); a per-token column needs a list")
    child = array.values
    kind = child.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        raise PackError(f"column {name!r} holds {kind} values; per-token columns must be lists of numbers")
    if child.null_count:
        raise PackError(f"column {name!r} has a null inside a row's list; per-token values cannot be null")
    values = child.to_numpy(zero_copy_only=False)
    if name in ("input_ids", "labels") and values.dtype != np.int32:  # packed ids and labels are int32
        values = values.astype(np.int32)
    offsets = array.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    return _Tokens(name, values, offsets, pa.from_numpy_dtype(values.dtype))


def _steps(segment_offsets: np.ndarray) -> list[tuple[int, int]]:
    """Runs of whole segments [a, b) of at most `CHUNK_TOKENS` tokens each (a longer segment is a run of its own)."""
    n, chunk = len(segment_offsets) - 1, CHUNK_TOKENS
    runs, a = [], 0
    while a < n:
        b = int(np.searchsorted(segment_offsets, segment_offsets[a] + chunk, side="right")) - 1
        b = min(max(b, a + 1), n)
        runs.append((a, b))
        a = b
    return runs


class _Gather:
    """The index of every token of a list of segments into a values buffer, one run of segments at a time.

    Token t of segment k sits at `starts[k] + t`: the index is a cumulative sum of ones with a jump at every
    segment start (from the previous segment's last token to this one's first), computed per run in one
    reused buffer."""

    def __init__(self, starts: np.ndarray, lengths: np.ndarray, segment_offsets: np.ndarray, size: int):
        self.starts, self.segment_offsets = starts, segment_offsets
        self.jumps = starts - np.r_[0, starts[:-1] + lengths[:-1] - 1] if len(starts) else starts
        self.buffer = np.empty(size, dtype=np.int64)

    def index(self, a: int, b: int) -> np.ndarray:
        lo = self.segment_offsets[a]
        out = self.buffer[: self.segment_offsets[b] - lo]
        out.fill(1)
        out[self.segment_offsets[a:b] - lo] = self.jumps[a:b]
        out[0] = self.starts[a]
        return np.cumsum(out, out=out)


def _positions_into(out: np.ndarray, local_starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """0, 1, … restarting at every segment, written into `out` (the tokens of whole segments of `lengths`)."""
    out.fill(1)
    out[local_starts[1:]] = 1 - lengths[:-1]
    out[0] = 0
    return np.cumsum(out, out=out)


def _max_run(segment_offsets: np.ndarray, runs: list[tuple[int, int]]) -> int:
    return max((int(segment_offsets[b] - segment_offsets[a]) for a, b in runs), default=0)


def _one_chunk(rows: pa.Table, names: list[str]) -> pa.Table:
    """`rows` with each column in one chunk (several chunks are combined once, here, not per use)."""
    return pa.table({name: _single(rows[name]) for name in names})


def lengths_of(rows: pa.Table) -> np.ndarray:
    """Tokens per row (`input_ids` lengths), after checking that no row lacks a per-token column and that every
    other one (`labels`, and any carried list column) is as long as the ids in every row."""
    names = token_columns(rows)
    for name in names:
        if rows[name].null_count:
            first = int(np.flatnonzero(pc.is_null(rows[name]).to_numpy(zero_copy_only=False))[0])
            raise PackError(
                f"row {rows['id'][first].as_py()!r} has no {name} (null); every row to pack needs its "
                f"{', '.join(names)}"
            )
    lengths = pc.list_value_length(rows["input_ids"]).to_numpy(zero_copy_only=False).astype(np.int64)
    for name in names[1:]:
        other = pc.list_value_length(rows[name]).to_numpy(zero_copy_only=False).astype(np.int64)
        bad = np.flatnonzero(lengths != other)
        if len(bad):
            first = int(bad[0])
            what = "labels" if name == "labels" else f"{name} values"
            raise PackError(
                f"{len(bad)} row(s) have {name} of another length than their input_ids, e.g. row "
                f"{rows['id'][first].as_py()!r}: {lengths[first]} ids, {other[first]} {what}"
            )
    return lengths


def _layouts(
    columns: list[_Tokens], rows: np.ndarray, lengths: np.ndarray, segment_offsets: np.ndarray, size: int
) -> tuple[list[_Gather], list[int]]:
    """(one `_Gather` per distinct layout of `columns` at segments `rows`, the gather each column uses): columns
    whose rows lie at the same places in their value buffers (ids and labels, as rendered) share one index."""
    gathers: list[_Gather] = []
    which: list[int] = []
    for column in columns:
        starts = column.offsets[rows]
        for i, gather in enumerate(gathers):
            if np.array_equal(gather.starts, starts):
                which.append(i)
                break
        else:
            which.append(len(gathers))
            gathers.append(_Gather(starts, lengths, segment_offsets, size))
    return gathers, which


def build(rows: pa.Table, assignment: Assignment) -> pa.Table:
    """The packed rows of `rows` (columns `id`, `input_ids`, `labels`, and any other per-token list columns, each
    carried after `labels`) under `assignment`.

    Every column is gathered straight into its output buffer, a run of segments at a time; then a segment
    start's label becomes -100 and its loss weight 0.0 by index on the flat arrays."""
    order = assignment.order
    columns = [_tokens(rows, name) for name in token_columns(rows)]
    base = columns[0].offsets
    lengths = base[order + 1] - base[order]
    segment_offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    total = int(segment_offsets[-1])
    runs = _steps(segment_offsets)
    size = _max_run(segment_offsets, runs)
    gathers, which = _layouts(columns, order, lengths, segment_offsets, size)
    outs = [np.empty(total, dtype=column.values.dtype) for column in columns]
    positions = np.empty(total, dtype=np.int32)
    for a, b in runs:
        lo, hi = segment_offsets[a], segment_offsets[b]
        index = [gather.index(a, b) for gather in gathers]
        for column, out, i in zip(columns, outs, which, strict=True):
            np.take(column.values, index[i], out=out[lo:hi], mode="clip")  # clip: no bounds pass (in range)
        _positions_into(positions[lo:hi], segment_offsets[a:b] - lo, lengths[a:b])
    segment_starts = segment_offsets[:-1]  # every placed row has at least one token (empty rows are left out)
    for column, out in zip(columns, outs, strict=True):
        if column.name in BOUNDARY_VALUES:
            out[segment_starts] = BOUNDARY_VALUES[column.name]
    token_offsets = segment_offsets[assignment.bin_offsets]
    packed = {
        column.name: _lists(token_offsets, pa.array(out, column.arrow_type))
        for column, out in zip(columns, outs, strict=True)
    }
    packed["position_ids"] = _lists(token_offsets, pa.array(positions, pa.int32()))
    packed["seq_lengths"] = _lists(assignment.bin_offsets, pa.array(lengths.astype(np.int32), pa.int32()))
    packed["row_ids"] = _lists(assignment.bin_offsets, _single(rows["id"]).take(pa.array(order, pa.int64())))
    packed["n_tokens"] = pa.array(np.diff(token_offsets).astype(np.int32), pa.int32())
    return pa.table(packed)


def _count_trained(values: np.ndarray, starts: np.ndarray) -> int:
    """Labels other than -100 in `values`, less those at `starts` (counted a run at a time: no whole-split mask)."""
    trained = 0
    for lo in range(0, len(values), CHUNK_TOKENS):
        trained += int(np.count_nonzero(values[lo : lo + CHUNK_TOKENS] != IGNORE))
    return trained - int(np.count_nonzero(values[starts] != IGNORE))


def trained_tokens(rows: pa.Table) -> int:
    """Labels a causal-LM loss trains on: labels other than -100, except each row's first (the shift drops it)."""
    labels = _single(rows["labels"])
    values = labels.flatten().to_numpy(zero_copy_only=False)
    lengths = pc.list_value_length(labels).to_numpy(zero_copy_only=False).astype(np.int64)
    starts = np.r_[0, np.cumsum(lengths)[:-1]][lengths > 0]
    return _count_trained(values, starts)


def pack(
    rows: pa.Table,
    max_length: int,
    strategy: Strategy = "bfd",
    overflow: Overflow = "drop",
    seed: int | None = None,
    verify: bool = True,
) -> Packed:
    """Pack `rows` (columns `id`, `input_ids`, `labels`, and any other per-token list columns such as
    `loss_weights`; ids unique): packed rows, left-out ids, statistics.

    With `verify`, unpacking the result is checked to give back every packed row (`check_unpack`)."""
    if rows.num_rows and pc.count_distinct(rows["id"]).as_py() != rows.num_rows:
        raise PackError("row ids must be unique to pack (each segment names the row it came from)")
    rows = _one_chunk(rows, ["id", *token_columns(rows)])
    lengths = lengths_of(rows)
    assignment = assign(lengths, max_length, strategy, overflow, seed)
    table = build(rows, assignment)
    ids = _single(rows["id"])
    left_out = {
        reason: ids.take(pa.array(index, pa.int64())).to_pylist()
        for reason, index in (("too_long", assignment.too_long), ("empty", assignment.empty))
        if len(index)
    }
    if verify:
        problems = check_unpack(rows, table, [i for group in left_out.values() for i in group])
        if problems:
            raise PackError("packing check failed: " + "; ".join(problems[:5]))
    stats = pack_stats(rows, table, lengths, assignment, max_length, strategy)
    return Packed(table, left_out, stats)


# ------------------------------------------------------------------------------------------------------ unpack


def unpack(packed: pa.Table) -> pa.Table:
    """The segments of `packed` as rows again: `id`, `input_ids`, `labels` and every carried per-token column
    (e.g. `loss_weights`), as packed (label 0 is -100, loss weight 0 is 0.0)."""
    lengths = _single(packed["seq_lengths"]).flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    names = [name for name in packed.column_names if name not in PACKED_COLUMNS[2:]]
    return pa.table(
        {
            "id": _single(packed["row_ids"]).flatten(),
            **{n: _lists(offsets, _single(packed[n]).flatten()) for n in names},
        }
    )


def _bits(values: np.ndarray) -> np.ndarray:
    """`values` as unsigned integers of the same width: compared so, floats are equal only bit for bit."""
    return values.view(f"u{values.dtype.itemsize}")


def check_unpack(rows: pa.Table, packed: pa.Table, left_out: list[str]) -> list[str]:
    """What is wrong with `packed` as a packing of `rows`, as messages (empty when nothing is).

    Every row of `rows` must be one segment exactly once, or be in `left_out`; each segment's input_ids must
    equal its row's, its labels too except label 0 (-100 in a packed row), and so must every other per-token
    column of `rows` (`loss_weights`: 0.0 at a segment start); position_ids must restart at 0 on every segment;
    `seq_lengths` must add up to each packed row's length. Vectorised: each column's segments are gathered from
    their rows (found by id, not by the packing's own order) and compared with the packed values as flat arrays,
    a run of segments at a time."""
    ids = _single(rows["id"])
    segment_ids = _single(packed["row_ids"]).flatten()
    source = pc.index_in(segment_ids, value_set=ids)
    if source.null_count:
        unknown = pc.filter(segment_ids, pc.is_null(source)).to_pylist()
        return [f"segments name rows that are not there: {sorted(unknown)[:5]}"]
    src = source.to_numpy(zero_copy_only=False).astype(np.int64)
    counts = np.bincount(src, minlength=rows.num_rows)
    problems: list[str] = []
    if np.any(counts > 1):
        problems.append(
            f"rows in more than one segment: {ids.take(pa.array(np.flatnonzero(counts > 1)[:5])).to_pylist()}"
        )
    left = pc.index_in(pa.array(left_out, pa.string()), value_set=ids).drop_null().to_numpy(zero_copy_only=False)
    if np.any(counts[left] > 0):
        problems.append(f"rows both packed and left out: {ids.take(pa.array(left[counts[left] > 0][:5])).to_pylist()}")
    counts[left] += 1
    if np.any(counts == 0):
        missing = ids.take(pa.array(np.flatnonzero(counts == 0)[:5])).to_pylist()
        problems.append(f"rows neither packed nor left out: {missing}")
    if problems:
        return problems
    seg = _single(packed["seq_lengths"]).flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    per_bin = pc.list_value_length(packed["seq_lengths"]).to_numpy(zero_copy_only=False).astype(np.int64)
    n_tokens = pc.list_value_length(packed["input_ids"]).to_numpy(zero_copy_only=False).astype(np.int64)
    sums = np.add.reduceat(seg, np.r_[0, np.cumsum(per_bin)[:-1]]) if len(seg) else np.zeros(0, dtype=np.int64)
    if len(sums) != len(n_tokens) or not np.array_equal(sums, n_tokens):
        return ["seq_lengths do not add up to the packed rows' lengths"]
    if not np.array_equal(pc.list_value_length(rows["input_ids"]).to_numpy(zero_copy_only=False)[src], seg):
        return ["a segment's length differs from its row's"]
    if len(seg) and seg.min() < 1:
        return ["a segment is empty (packing leaves rows without tokens out)"]
    names = token_columns(rows)
    missing_columns = [name for name in names if name not in packed.column_names]
    if missing_columns:
        return [f"packed rows lack the per-token column(s) {', '.join(missing_columns)}"]
    segment_offsets = np.r_[0, np.cumsum(seg)].astype(np.int64)
    starts = segment_offsets[:-1]
    runs = _steps(segment_offsets)
    size = _max_run(segment_offsets, runs)
    columns = [_tokens(rows, name) for name in names]
    found: list[list[str]] = [[] for _ in names]  # per column, in column order: its messages
    flats = []
    for column, messages in zip(columns, found, strict=True):
        flat = _single(packed[column.name]).flatten().to_numpy(zero_copy_only=False)
        flats.append(flat)
        if len(flat) != segment_offsets[-1] or flat.dtype != column.values.dtype:
            messages.append(f"a segment's {column.name} differ from its row's")
            continue
        boundary = BOUNDARY_VALUES.get(column.name)
        if boundary is not None and np.any(_bits(flat[starts]) != _bits(np.array(boundary, flat.dtype))):
            what = "label is trained" if column.name == "labels" else f"{column.name} value is not {boundary}"
            messages.append(f"a segment's first {what} (it would cross the boundary)")
    positions = _single(packed["position_ids"]).flatten().to_numpy(zero_copy_only=False)
    positions_ok = len(positions) == segment_offsets[-1]
    gathers, which = _layouts(columns, src, seg, segment_offsets, size)
    buffers = [np.empty(size, dtype=column.values.dtype) for column in columns]
    expected = np.empty(size, dtype=positions.dtype)
    pending = [i for i, messages in enumerate(found) if not any("differ" in m for m in messages)]
    for a, b in runs:
        lo, hi = segment_offsets[a], segment_offsets[b]
        local = segment_offsets[a:b] - lo
        index = [gather.index(a, b) for gather in gathers]
        for i in list(pending):
            column, flat = columns[i], flats[i][lo:hi]
            mine = np.take(column.values, index[which[i]], out=buffers[i][: hi - lo], mode="clip")
            if column.name in BOUNDARY_VALUES:  # value 0 of a row is replaced once packed, by design (see above)
                mine[local] = flat[local]
            if not np.array_equal(_bits(mine), _bits(flat)):  # bit for bit: floats too
                found[i].append(f"a segment's {column.name} differ from its row's")
                pending.remove(i)
        if positions_ok and not np.array_equal(_positions_into(expected[: hi - lo], local, seg[a:b]), positions[lo:hi]):
            positions_ok = False
    problems = [message for messages in found for message in messages]
    if not positions_ok:
        problems.append("position_ids do not restart at 0 on every segment")
    return problems


# ------------------------------------------------------------------------------------------------------- stats


def pack_stats(
    rows: pa.Table, packed: pa.Table, lengths: np.ndarray, assignment: Assignment, max_length: int, strategy: str
) -> dict[str, Any]:
    """Efficiency (tokens ÷ capacity), bins, rows per bin, trained tokens before/after, bin-fill histogram."""
    fill = packed["n_tokens"].to_numpy(zero_copy_only=False).astype(np.int64)
    per_bin = np.diff(assignment.bin_offsets)
    capacity = int(np.maximum(fill, max_length).sum())  # a too-long row alone fills its own (larger) bin
    dropped = rows.take(pa.array(assignment.too_long, pa.int64())) if len(assignment.too_long) else None
    trained_in = trained_tokens(rows)
    trained_dropped = trained_tokens(dropped) if dropped is not None else 0
    trained_packed = trained_tokens_packed(packed)
    edges = np.linspace(0.0, 1.0, FILL_BINS + 1)
    # bucket i holds bins filled i/10 ≤ fill < (i+1)/10 of max_length (integers: no float edge cases); full in the last
    buckets = np.minimum(fill * FILL_BINS // max_length, FILL_BINS - 1)
    counts = np.bincount(buckets, minlength=FILL_BINS) if len(fill) else np.zeros(FILL_BINS, dtype=np.int64)
    return {
        "strategy": strategy,
        "max_length": max_length,
        "rows_in": rows.num_rows,
        "rows_packed": int(len(assignment.order)),
        "rows_too_long": int(len(assignment.too_long)),
        "rows_empty": int(len(assignment.empty)),
        "bins": assignment.n_bins,
        "rows_per_bin": {
            "mean": round(float(per_bin.mean()), 3) if len(per_bin) else 0.0,
            "min": int(per_bin.min()) if len(per_bin) else 0,
            "max": int(per_bin.max()) if len(per_bin) else 0,
        },
        "tokens": int(fill.sum()),
        "tokens_too_long": int(lengths[assignment.too_long].sum()),
        "capacity": capacity,
        "efficiency": round(float(fill.sum()) / capacity, 6) if capacity else 0.0,
        "trained_tokens": {
            "unpacked": trained_in,
            "dropped_too_long": trained_dropped,
            "packed": trained_packed,
            "balanced": trained_packed == trained_in - trained_dropped,
        },
        "fill_histogram": {"edges": [round(float(e), 2) for e in edges], "counts": [int(c) for c in counts]},
    }


def trained_tokens_packed(packed: pa.Table) -> int:
    """Labels the loss trains on in packed rows: the same shift rule per packed row (segment starts are -100)."""
    return trained_tokens(packed.select(["labels"])) if packed.num_rows else 0


# ------------------------------------------------------------------------------------------ per render target

# Rendered row kinds that pack: one sequence of input_ids + labels each (preference and KTO rows are pairs or
# carry a label of their own, and their trainers do not take packed rows).
PACKABLE_KINDS: tuple[str, ...] = ("sft", "pretrain")
TOO_LONG_REASON = "too_long_to_pack"


def pack_rendered(
    rendered: pa.Table, max_length: int, strategy: Strategy, drop_longer: bool
) -> tuple[pa.Table, Packed]:
    """Pack one split of a render target: (its rendered rows without those left out, the packed rows).

    Rows of `PACKABLE_KINDS` are packed; other kinds stay as they are (and are not in the packed rows). Rows
    longer than `max_length` leave the rendered rows too when `drop_longer` (so every rendered row is in exactly
    one bin, or in the rejects under `TOO_LONG_REASON`); otherwise they raise PackError. Rows without tokens
    (which a chat template does not produce) leave both as well, under `left_out["empty"]`. Besides `input_ids`
    and `labels`, the packed rows carry the per-token columns of `token_columns` (`loss_weights` when the
    target trains `weighted`)."""
    kinds = rendered["kind"].to_numpy(zero_copy_only=False)
    packable = np.isin(kinds, PACKABLE_KINDS)
    rows = rendered.filter(pa.array(packable))
    rows = rows.select(["id", *token_columns(rows)])
    packed = pack(rows, max_length, strategy, "drop" if drop_longer else "error")
    packed.stats["rows_not_packable"] = int((~packable).sum())
    left = [i for ids in packed.left_out.values() for i in ids]
    if left:
        keep = pc.invert(pc.is_in(rendered["id"], value_set=pa.array(left, pa.string())))
        rendered = rendered.filter(keep)
    return rendered, packed


def merge_stats(per_split: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One target's packing statistics over its splits (train + val), each split's kept under its name."""
    splits = list(per_split.values())
    tokens, capacity = sum(s["tokens"] for s in splits), sum(s["capacity"] for s in splits)
    bins = sum(s["bins"] for s in splits)
    trained = {k: sum(s["trained_tokens"][k] for s in splits) for k in ("unpacked", "dropped_too_long", "packed")}
    trained["balanced"] = all(s["trained_tokens"]["balanced"] for s in splits)
    counts = np.sum([s["fill_histogram"]["counts"] for s in splits], axis=0).tolist() if splits else []
    first = splits[0] if splits else {}
    return {
        "strategy": first.get("strategy"),
        "max_length": first.get("max_length"),
        "rows_packed": sum(s["rows_packed"] for s in splits),
        "rows_too_long": sum(s["rows_too_long"] for s in splits),
        "rows_empty": sum(s["rows_empty"] for s in splits),
        "rows_not_packable": sum(s.get("rows_not_packable", 0) for s in splits),
        "bins": bins,
        "rows_per_bin": round(sum(s["rows_packed"] for s in splits) / bins, 3) if bins else 0.0,
        "tokens": tokens,
        "capacity": capacity,
        "efficiency": round(tokens / capacity, 6) if capacity else 0.0,
        "trained_tokens": trained,
        "fill_histogram": {"edges": first.get("fill_histogram", {}).get("edges", []), "counts": counts},
        "splits": per_split,
    }


def summary_lines(stats: dict[str, Any]) -> list[str]:
    """The report's lines for one target's packing (Markdown)."""
    trained = stats["trained_tokens"]
    lines = [
        f"Packed with `{stats['strategy']}` into {stats['bins']:,} rows of up to {stats['max_length']:,} tokens: "
        f"{stats['rows_packed']:,} rendered rows ({stats['rows_per_bin']} per packed row), efficiency "
        f"{stats['efficiency']:.2%} ({stats['tokens']:,} tokens of {stats['capacity']:,}).",
        f"Trained tokens: {trained['packed']:,} packed = {trained['unpacked']:,} unpacked − "
        f"{trained['dropped_too_long']:,} in rows too long to pack"
        + ("" if trained["balanced"] else " — MISMATCH: packing lost or added trained tokens")
        + " (label 0 of each row is never trained under the causal shift, packed or not).",
    ]
    if stats["rows_too_long"]:
        lines.append(
            f"{stats['rows_too_long']:,} row(s) longer than {stats['max_length']:,} tokens left out "
            f"(rejects reason `{TOO_LONG_REASON}`; rows are never split)."
        )
    if stats.get("rows_not_packable"):
        lines.append(f"{stats['rows_not_packable']:,} preference/KTO row(s) stay unpacked.")
    counts = stats["fill_histogram"]["counts"]
    if counts:
        cells = " | ".join(f"{10 * i}–{10 * (i + 1)}%" for i in range(len(counts)))
        lines += [
            "",
            f"| bin fill | {cells} |",
            "|---|" + "---:|" * len(counts),
            "| packed rows | " + " | ".join(f"{c:,}" for c in counts) + " |",
        ]
    return lines


# ------------------------------------------------------------------------------------------------- hand-offs

# trl 1.16: pre-packed rows train through SFTTrainer's padding-free path. `packing=False` keeps trl from packing
# again; `max_length=None` because trl refuses padding_free without packing when a max_length is set (it could
# not enforce it); `skip_prepare_dataset` keeps the rows exactly as built (no re-tokenizing, no truncation).
# The collator concatenates a batch into one sequence, rebuilds position_ids from `seq_lengths`, and sends no
# attention mask, and SFTTrainer.compute_loss passes use_cache=False: transformers then masks per segment.
TRL_PACKED_ARGS: dict[str, Any] = {
    "padding_free": True,
    "packing": False,
    "max_length": None,
    "dataset_kwargs": {"skip_prepare_dataset": True},
}
# Which attention backends keep packed segments from attending to each other, per trainer (see
# tests/trainers/test_packed_loss.py for what is measured here, on CPU with transformers 5.24 / torch 2.13).
ISOLATION: dict[str, str] = {
    "trl": "isolated with sdpa and eager (measured: packed loss = unpacked loss, per-segment logits equal) and, "
    "by transformers' varlen path, flash_attention_2/3 (GPU, not run here); NOT flex_attention on CPU (measured: "
    "wrong logits or NaN past 128 tokens)",
    "llamafactory": "neat_packing builds a segment-id attention mask: isolated with flash_attn fa2 and with "
    "sdpa/eager; `packing: true` without neat_packing lets rows attend to each other",
    "axolotl": "sample_packing keeps rows apart with flash_attention (cu_seqlens; set here) and, by axolotl's "
    "docs, with sdpa/eager through 4-D attention masks (at lower packing efficiency)",
    "ms-swift": "packing refuses to run without flash attention (`--attn_impl flash_attn`, set here); packed "
    "rows do not see each other",
}
