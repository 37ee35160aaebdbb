"""pack: rendered rows (input_ids, labels) → packed rows whose segments cannot see or train across each other.

A packed row concatenates whole rendered rows ("segments") up to `max_length` tokens. It carries:

* `input_ids`, `labels`: the segments' tokens and labels end to end, with `labels` set to -100 at the first
  token of every segment. Causal-LM losses shift labels inside the model (the logit at token i predicts
  label i+1), so a trained label at a segment start would teach the previous segment's last token to predict
  the next row's first token: masking it keeps every label inside its own segment. A row's own label 0 is
  never used by that shift either, so nothing a row trains on unpacked is lost by packing;
* `position_ids`: 0, 1, … restarting at every segment (trl, flash-attention varlen kernels and transformers'
  packed-sequence masks all find the segment boundaries from these resets);
* `seq_lengths`: the segment lengths (what trl's padding-free collator builds `position_ids` and
  `cu_seq_lens` from);
* `row_ids`: the `id` of the rendered row behind each segment, in order; `n_tokens`: the packed length.

Rows longer than `max_length` are never split: `overflow="drop"` leaves them out (their ids are returned, for
the rejects table), `"alone"` gives each its own bin, `"error"` raises. Empty rows are left out as `empty`.

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


def _single(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return column


def _lists(offsets: np.ndarray, values: pa.Array) -> pa.Array:
    """A list array over `values` split at `offsets` (large_list when the values outgrow int32 offsets)."""
    if offsets[-1] > np.iinfo(np.int32).max:
        return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), values)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)


def _list_array(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One list array of `column` (combine_chunks copies even a single chunk, so that one is taken as is)."""
    array = _single(column)
    if array.null_count:
        raise PackError("a row has no input_ids or labels (null); rendered rows always have both")
    return array


def _gather_index(column: pa.ChunkedArray | pa.Array, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index into the column's values of every token of `rows`, end to end; each row's first index there).

    One numpy gather instead of Arrow's list `take` (several times slower here), shared by ids and labels."""
    offsets = _list_array(column).offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    starts, lengths = offsets[rows], offsets[rows + 1] - offsets[rows]
    segment_offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    dtype = (
        np.int32 if segment_offsets[-1] < np.iinfo(np.int32).max and offsets[-1] < np.iinfo(np.int32).max else np.int64
    )
    shift = np.repeat((starts - segment_offsets[:-1]).astype(dtype), lengths)
    return np.arange(segment_offsets[-1], dtype=dtype) + shift, segment_offsets


def _values(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return _list_array(column).values.to_numpy(zero_copy_only=False)


def _flat(column: pa.ChunkedArray | pa.Array, rows: np.ndarray) -> np.ndarray:
    """The values of list column `column` at `rows`, end to end, as numpy."""
    return _values(column)[_gather_index(column, rows)[0]]


def lengths_of(rows: pa.Table) -> np.ndarray:
    """Tokens per row (`input_ids` lengths), after checking that every row's labels are as long as its ids."""
    lengths = pc.list_value_length(rows["input_ids"]).to_numpy(zero_copy_only=False).astype(np.int64)
    label_lengths = pc.list_value_length(rows["labels"]).to_numpy(zero_copy_only=False).astype(np.int64)
    bad = np.flatnonzero(lengths != label_lengths)
    if len(bad):
        first = int(bad[0])
        raise PackError(
            f"{len(bad)} row(s) have labels of another length than their input_ids, e.g. row "
            f"{rows['id'][first].as_py()!r}: {lengths[first]} ids, {label_lengths[first]} labels"
        )
    return lengths


def _same_offsets(rows: pa.Table) -> bool:
    """Whether `labels` lie exactly where `input_ids` do in their value buffers (then one gather serves both)."""
    ids, labels = _list_array(rows["input_ids"]), _list_array(rows["labels"])
    return ids.offsets.equals(labels.offsets)


def build(rows: pa.Table, assignment: Assignment) -> pa.Table:
    """The packed rows of `rows` (columns `id`, `input_ids`, `labels`) under `assignment`."""
    order = assignment.order
    gather, segment_offsets = _gather_index(rows["input_ids"], order)
    label_gather = gather if _same_offsets(rows) else _gather_index(rows["labels"], order)[0]
    segment = np.diff(segment_offsets)
    token_offsets = segment_offsets[assignment.bin_offsets]
    ids = _values(rows["input_ids"])[gather]
    labels = _values(rows["labels"])[label_gather]  # a fresh array (fancy indexing), so safe to write into
    labels = labels if labels.dtype == np.int32 else labels.astype(np.int32)
    starts = segment_offsets[:-1]  # every placed row has at least one token (empty rows are left out)
    labels[starts] = IGNORE  # no label may cross a segment boundary (see module doc)
    step = np.ones(len(ids), dtype=np.int32)  # +1 per token; at a segment start, back to 0
    if len(ids):
        step[0] = 0
        step[starts[1:]] = 1 - segment[:-1]
    positions = np.cumsum(step, dtype=np.int32)
    row_ids = _single(rows["id"]).take(pa.array(order, pa.int64()))
    return pa.table(
        {
            "input_ids": _lists(token_offsets, pa.array(ids.astype(np.int32, copy=False), pa.int32())),
            "labels": _lists(token_offsets, pa.array(labels, pa.int32())),
            "position_ids": _lists(token_offsets, pa.array(positions, pa.int32())),
            "seq_lengths": _lists(assignment.bin_offsets, pa.array(segment.astype(np.int32), pa.int32())),
            "row_ids": _lists(assignment.bin_offsets, row_ids),
            "n_tokens": pa.array(np.diff(token_offsets).astype(np.int32), pa.int32()),
        }
    )


def trained_tokens(rows: pa.Table) -> int:
    """Labels a causal-LM loss trains on: labels other than -100, except each row's first (the shift drops it)."""
    labels = _single(rows["labels"])
    values = labels.flatten().to_numpy(zero_copy_only=False)
    lengths = pc.list_value_length(labels).to_numpy(zero_copy_only=False).astype(np.int64)
    starts = np.r_[0, np.cumsum(lengths)[:-1]][lengths > 0]
    return int(np.count_nonzero(values != IGNORE) - np.count_nonzero(values[starts] != IGNORE))


def pack(
    rows: pa.Table,
    max_length: int,
    strategy: Strategy = "bfd",
    overflow: Overflow = "drop",
    seed: int | None = None,
    verify: bool = True,
) -> Packed:
    """Pack `rows` (columns `id`, `input_ids`, `labels`; ids unique): packed rows, left-out ids, statistics.

    With `verify`, unpacking the result is checked to give back every packed row (`check_unpack`)."""
    if rows.num_rows and pc.count_distinct(rows["id"]).as_py() != rows.num_rows:
        raise PackError("row ids must be unique to pack (each segment names the row it came from)")
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
    """The segments of `packed` as rows again: `id`, `input_ids`, `labels` (label 0 is -100, as packed)."""
    lengths = _single(packed["seq_lengths"]).flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    flat = {name: _single(packed[name]).flatten() for name in ("input_ids", "labels")}
    return pa.table(
        {
            "id": _single(packed["row_ids"]).flatten(),
            "input_ids": _lists(offsets, flat["input_ids"]),
            "labels": _lists(offsets, flat["labels"]),
        }
    )


def check_unpack(rows: pa.Table, packed: pa.Table, left_out: list[str]) -> list[str]:
    """What is wrong with `packed` as a packing of `rows`, as messages (empty when nothing is).

    Every row of `rows` must be one segment exactly once, or be in `left_out`; each segment's input_ids must
    equal its row's, its labels too except label 0 (-100 in a packed row); position_ids must restart at 0
    on every segment; `seq_lengths` must add up to each packed row's length. (Vectorised: the segments are
    compared with their rows through one gather, not row by row.)"""
    ids = _single(rows["id"])
    segment_ids = _single(packed["row_ids"]).flatten()
    source = pc.index_in(segment_ids, value_set=ids)
    counts = np.zeros(rows.num_rows, dtype=np.int64)
    if source.null_count:
        unknown = pc.filter(segment_ids, pc.is_null(source)).to_pylist()
        return [f"segments name rows that are not there: {sorted(unknown)[:5]}"]
    src = source.to_numpy(zero_copy_only=False).astype(np.int64)
    np.add.at(counts, src, 1)
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
    gather, segment_offsets = _gather_index(rows["input_ids"], src)
    if not np.array_equal(_values(rows["input_ids"])[gather], _single(packed["input_ids"]).flatten().to_numpy()):
        problems.append("a segment's input_ids differ from its row's")
    starts = segment_offsets[:-1]
    original = _values(rows["labels"])[gather if _same_offsets(rows) else _gather_index(rows["labels"], src)[0]]
    packed_labels = _single(packed["labels"]).flatten().to_numpy()
    if np.any(packed_labels[starts] != IGNORE):
        problems.append("a segment's first label is trained (it would cross the boundary)")
    same = original == packed_labels
    same[starts] = True  # label 0 of a row is -100 once packed, by design
    if not same.all():
        problems.append("a segment's labels differ from its row's")
    positions = _single(packed["position_ids"]).flatten().to_numpy()
    if len(positions) != len(gather) or np.any(positions != np.arange(len(gather)) - np.repeat(starts, seg)):
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
    (which a chat template does not produce) leave both as well, under `left_out["empty"]`."""
    kinds = rendered["kind"].to_numpy(zero_copy_only=False)
    packable = np.isin(kinds, PACKABLE_KINDS)
    rows = rendered.filter(pa.array(packable)).select(["id", "input_ids", "labels"])
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
