"""Packing rendered rows: bins, boundaries, positions, unpacking, statistics (src/dataforge/pack.py)."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataforge import pack as P

IGNORE = -100


def rows_of(lengths: list[int], prompt: float = 0.5, seed: int = 0) -> pa.Table:
    """Rendered-like rows: ids r0, r1, …; distinct token values per row; the first `prompt` share untrained."""
    rng = np.random.default_rng(seed)
    ids, labels = [], []
    for i, n in enumerate(lengths):
        tokens = (rng.integers(0, 1000, n) + 1000 * i).tolist()
        cut = int(n * prompt)
        ids.append(tokens)
        labels.append([IGNORE] * cut + tokens[cut:])
    return pa.table(
        {
            "id": pa.array([f"r{i}" for i in range(len(lengths))], pa.string()),
            "input_ids": pa.array(ids, pa.list_(pa.int32())),
            "labels": pa.array(labels, pa.list_(pa.int32())),
        }
    )


lengths_lists = st.lists(st.integers(min_value=0, max_value=40), min_size=0, max_size=60)


def bins_of(assignment: P.Assignment) -> list[list[int]]:
    return [
        assignment.order[a:b].tolist()
        for a, b in zip(assignment.bin_offsets[:-1], assignment.bin_offsets[1:], strict=True)
    ]


# ------------------------------------------------------------------------------------------------ assignment


def test_bfd_places_longest_first_into_the_tightest_bin():
    # 6 opens bin 0 (room 4), 5 opens bin 1 (room 5), 4 → bin 0 (tightest that fits), 3 → bin 1, 2 → bin 1
    assignment = P.assign(np.array([2, 6, 4, 5, 3]), 10, "bfd")
    assert bins_of(assignment) == [[1, 2], [3, 4, 0]]


def test_bfd_equal_lengths_fill_one_bin_before_the_next():
    # ties keep row order; each new bin takes 3 rows of 3 before the next one opens
    assert bins_of(P.assign(np.array([3] * 7), 10, "bfd")) == [[0, 1, 2], [3, 4, 5], [6]]


def test_greedy_is_first_fit_in_row_order():
    # 6 → bin 0 (room 4), 5 → bin 1 (room 5), 4 → bin 0 (first that fits), 3 → bin 1, 2 → bin 1 (room 2 left)
    assert bins_of(P.assign(np.array([6, 5, 4, 3, 2]), 10, "greedy")) == [[0, 2], [1, 3, 4]]
    assert bins_of(P.assign(np.array([2, 9, 8]), 10, "greedy")) == [[0, 2], [1]]


def test_none_gives_each_row_its_own_bin():
    assert bins_of(P.assign(np.array([4, 2, 3]), 10, "none")) == [[0], [1], [2]]


def test_too_long_rows_are_dropped_kept_alone_or_refused_never_split():
    lengths = np.array([3, 12, 4, 11])
    dropped = P.assign(lengths, 10, "bfd", "drop")
    assert bins_of(dropped) == [[2, 0]] and dropped.too_long.tolist() == [1, 3]
    alone = P.assign(lengths, 10, "bfd", "alone")
    assert bins_of(alone) == [[2, 0], [1], [3]] and alone.too_long.tolist() == []
    with pytest.raises(P.PackError, match=r"^2 row\(s\) are longer than max_length 10 \(the longest has 12 tokens\)"):
        P.assign(lengths, 10, "bfd", "error")


def test_empty_rows_are_left_out_by_name():
    assignment = P.assign(np.array([0, 5, 0]), 10, "bfd")
    assert bins_of(assignment) == [[1]] and assignment.empty.tolist() == [0, 2]


def test_unknown_strategy_and_policy_are_refused():
    with pytest.raises(ValueError, match="unknown packing strategy 'ffd'"):
        P.assign(np.array([1]), 10, "ffd")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown overflow policy 'split'"):
        P.assign(np.array([1]), 10, "bfd", "split")  # type: ignore[arg-type]


@pytest.mark.slow  # importing trl (transformers, torch) takes seconds
def test_bfd_matches_trl_pack_dataset_bins():
    """The same rows in the same bins, in the same order, as trl's own BFD (trl.data_utils._pack_bfd)."""
    pytest.importorskip("trl", reason="trl is the reference for the BFD assignment")
    from trl.data_utils import _pack_bfd

    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 120, 2_000)
    table = pa.table({"input_ids": [list(range(i * 1000, i * 1000 + n)) for i, n in enumerate(lengths)]})
    packed = _pack_bfd(table, 128)
    theirs = []
    for ids, seq in zip(packed["input_ids"].to_pylist(), packed["seq_lengths"].to_pylist(), strict=True):
        starts = np.r_[0, np.cumsum(seq)[:-1]]
        theirs.append([ids[s] // 1000 for s in starts])
    assert bins_of(P.assign(lengths, 128, "bfd")) == theirs


def test_seed_reorders_bins_deterministically_without_changing_them():
    lengths = np.random.default_rng(1).integers(1, 50, 500)
    plain = sorted(map(tuple, bins_of(P.assign(lengths, 64, "bfd"))))
    a, b = bins_of(P.assign(lengths, 64, "bfd", seed=7)), bins_of(P.assign(lengths, 64, "bfd", seed=7))
    assert a == b
    assert sorted(map(tuple, a)) == plain
    assert a != bins_of(P.assign(lengths, 64, "bfd"))


# ---------------------------------------------------------------------------------------------- packed rows


def test_packed_rows_mask_every_segment_start_and_reset_positions():
    rows = rows_of([3, 2, 4], prompt=0.0)  # every label trained, so the boundary masks are visible
    packed = P.pack(rows, 6, "bfd").table.to_pylist()
    assert [p["row_ids"] for p in packed] == [["r2", "r1"], ["r0"]]
    first = packed[0]
    r2, r1 = rows["input_ids"][2].as_py(), rows["input_ids"][1].as_py()
    assert first["input_ids"] == r2 + r1
    assert first["labels"] == [IGNORE] + r2[1:] + [IGNORE] + r1[1:]
    assert first["position_ids"] == [0, 1, 2, 3, 0, 1]
    assert first["seq_lengths"] == [4, 2] and first["n_tokens"] == 6


def test_pack_reports_left_out_rows_by_id():
    packed = P.pack(rows_of([3, 20, 0, 2]), 10, "bfd")
    assert packed.left_out == {"too_long": ["r1"], "empty": ["r2"]}
    assert [p["row_ids"] for p in packed.table.to_pylist()] == [["r0", "r3"]]


def test_labels_of_another_length_are_refused():
    rows = pa.table({"id": ["a"], "input_ids": [[1, 2, 3]], "labels": [[1, 2]]})
    with pytest.raises(
        P.PackError,
        match=r"^1 row\(s\) have labels of another length than their input_ids, "
        r"e.g. row 'a': 3 ids, 2 labels$",
    ):
        P.pack(rows, 10)


def test_duplicate_ids_are_refused():
    rows = pa.table({"id": ["a", "a"], "input_ids": [[1], [2]], "labels": [[1], [2]]})
    with pytest.raises(P.PackError, match="row ids must be unique"):
        P.pack(rows, 10)


def test_unpack_gives_back_every_row():
    rows = rows_of([5, 1, 7, 3, 9, 2])
    packed = P.pack(rows, 10, "bfd")
    back = {r["id"]: r for r in P.unpack(packed.table).to_pylist()}
    for row in rows.to_pylist():
        assert back[row["id"]]["input_ids"] == row["input_ids"]
        assert back[row["id"]]["labels"] == [IGNORE] + row["labels"][1:]


def test_check_unpack_names_what_is_wrong():
    rows = rows_of([4, 3, 2])
    table = P.pack(rows, 10, "bfd").table
    assert P.check_unpack(rows, table, []) == []
    assert P.check_unpack(rows.slice(0, 2), table, []) == ["segments name rows that are not there: ['r2']"]
    assert P.check_unpack(rows, table.slice(0, 0), ["r0"]) == ["rows neither packed nor left out: ['r1', 'r2']"]
    assert P.check_unpack(rows, table, ["r1"]) == ["rows both packed and left out: ['r1']"]
    twice = pa.concat_tables([table, table])
    assert P.check_unpack(rows, twice, []) == ["rows in more than one segment: ['r0', 'r1', 'r2']"]
    ids = table["input_ids"].to_pylist()
    ids[0][1] += 1
    tampered = table.set_column(0, "input_ids", pa.array(ids, pa.list_(pa.int32())))
    assert P.check_unpack(rows, tampered, []) == ["a segment's input_ids differ from its row's"]
    labels = table["labels"].to_pylist()
    labels[0][4] = 7  # the second segment's first label (r1 starts at token 4)
    tampered = table.set_column(1, "labels", pa.array(labels, pa.list_(pa.int32())))
    assert P.check_unpack(rows, tampered, []) == ["a segment's first label is trained (it would cross the boundary)"]
    labels = table["labels"].to_pylist()
    labels[0][-1] = -100 if labels[0][-1] != -100 else 5  # a label inside a segment
    tampered = table.set_column(1, "labels", pa.array(labels, pa.list_(pa.int32())))
    assert P.check_unpack(rows, tampered, []) == ["a segment's labels differ from its row's"]
    positions = table["position_ids"].to_pylist()
    positions[0][4] = 4
    tampered = table.set_column(2, "position_ids", pa.array(positions, pa.list_(pa.int32())))
    assert P.check_unpack(rows, tampered, []) == ["position_ids do not restart at 0 on every segment"]


def test_stats_on_a_small_set():
    stats = P.pack(rows_of([6, 5, 4, 3, 2, 30], prompt=0.0), 10, "bfd").stats
    assert stats["bins"] == 2 and stats["rows_packed"] == 5 and stats["rows_too_long"] == 1
    assert stats["tokens"] == 20 and stats["capacity"] == 20 and stats["efficiency"] == 1.0
    assert stats["rows_per_bin"] == {"mean": 2.5, "min": 2, "max": 3}
    # every label trained: each row trains n - 1 labels (label 0 is dropped by the causal shift)
    assert stats["trained_tokens"] == {"unpacked": 15 + 29, "dropped_too_long": 29, "packed": 15, "balanced": True}
    assert stats["fill_histogram"]["counts"] == [0] * 9 + [2]


@pytest.mark.slow
def test_efficiency_on_20k_generated_rows():
    """20,000 rows of 20–700 tokens (seeded) into 1,024-token bins: BFD fills them to 99.96%, first-fit to 98.6%,
    one row per bin to 35%; every trained token survives."""
    lengths = np.random.default_rng(0).integers(20, 700, 20_000)
    rows = rows_of(lengths.tolist(), seed=1)
    found = {}
    for strategy in ("bfd", "greedy", "none"):
        stats = P.pack(rows, 1024, strategy).stats
        assert stats["rows_packed"] == 20_000 and stats["trained_tokens"]["balanced"]
        found[strategy] = (stats["bins"], round(stats["efficiency"], 4))
    assert found == {"bfd": (7015, 0.9996), "greedy": (7110, 0.9862), "none": (20000, 0.3506)}


# ------------------------------------------------------------------------------ the plain-Python reference


def reference_build(rows: pa.Table, assignment: P.Assignment) -> pa.Table:
    """The packed rows, one Python list at a time: the oracle `P.build` must equal byte for byte.

    Per bin, its rows' input_ids end to end; labels and loss_weights the same but -100 / 0.0 at every segment's
    first token; position_ids 0, 1, … per segment; seq_lengths, row_ids, n_tokens. Every other list column is
    carried as it is."""
    listed = rows.to_pylist()
    names = P.token_columns(rows)
    out: dict[str, list] = {name: [] for name in [*names, "position_ids", "seq_lengths", "row_ids", "n_tokens"]}
    for a, b in zip(assignment.bin_offsets[:-1].tolist(), assignment.bin_offsets[1:].tolist(), strict=True):
        members = [listed[i] for i in assignment.order[a:b].tolist()]
        for name in names:
            column = []
            for row in members:
                values = list(row[name])
                if name in P.BOUNDARY_VALUES:
                    values[0] = P.BOUNDARY_VALUES[name]
                column += values
            out[name].append(column)
        out["position_ids"].append([p for row in members for p in range(len(row["input_ids"]))])
        out["seq_lengths"].append([len(row["input_ids"]) for row in members])
        out["row_ids"].append([row["id"] for row in members])
        out["n_tokens"].append(sum(len(row["input_ids"]) for row in members))
    types = {name: pa.list_(rows.schema.field(name).type.value_type) for name in names[2:]}
    types |= {"input_ids": pa.list_(pa.int32()), "labels": pa.list_(pa.int32())}
    types |= {"position_ids": pa.list_(pa.int32()), "seq_lengths": pa.list_(pa.int32())}
    types |= {"row_ids": pa.list_(rows.schema.field("id").type), "n_tokens": pa.int32()}
    return pa.table({name: pa.array(values, types[name]) for name, values in out.items()})


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def weighted(rows: pa.Table, seed: int = 0) -> pa.Table:
    """`rows` with a `loss_weights` column (float32, one per token; 0 on untrained tokens, as render writes it)."""
    rng = np.random.default_rng(seed)
    weights = []
    for labels in rows["labels"].to_pylist():
        scale = float(rng.choice([0.25, 0.5, 1.0, 2.0]))
        weights.append([0.0 if label == IGNORE else scale for label in labels])
    return rows.append_column("loss_weights", pa.array(weights, pa.list_(pa.float32())))


def chunked(rows: pa.Table, pieces: int) -> pa.Table:
    """The same rows in `pieces` chunks (as the render stage concatenates shards), each chunk a slice."""
    if pieces <= 1 or rows.num_rows < 2:
        return rows
    cuts = np.linspace(0, rows.num_rows, pieces + 1).astype(int)
    return pa.concat_tables([rows.slice(a, b - a) for a, b in zip(cuts[:-1], cuts[1:], strict=True)])


def shifted(rows: pa.Table, name: str, by: int = 5) -> pa.Table:
    """`rows` with column `name` rebuilt over a values buffer that starts with `by` other values: the same lists,
    but not where input_ids lie in theirs (so build and check need a gather of their own for it)."""
    column = rows[name].combine_chunks()
    values = column.flatten()
    padded = pa.concat_arrays([pa.array(np.arange(by), values.type), values])
    offsets = pa.array(column.offsets.to_numpy() - column.offsets[0].as_py() + by, pa.int32())
    return rows.set_column(rows.column_names.index(name), name, pa.ListArray.from_arrays(offsets, padded))


def test_build_equals_the_reference_when_columns_lie_apart():
    rows = weighted(rows_of([5, 1, 7, 3, 9, 2, 6], prompt=0.4))
    for name in ("labels", "loss_weights"):
        moved = shifted(rows, name)
        assert moved[name].to_pylist() == rows[name].to_pylist()
        assignment = P.assign(P.lengths_of(moved), 12, "bfd")
        assert parquet_bytes(P.build(moved, assignment)) == parquet_bytes(reference_build(rows, assignment))
        packed = P.pack(moved, 12, "bfd")  # the check gathers the moved column on its own too
        assert P.check_unpack(moved, packed.table, []) == []
        assert packed.table.equals(P.pack(rows, 12, "bfd").table)


def test_a_list_column_no_row_has_is_not_carried():
    rows = rows_of([3, 4]).append_column("rejected_input_ids", pa.nulls(2, pa.list_(pa.int32())))
    assert P.token_columns(rows) == ["input_ids", "labels"]
    assert P.pack(rows, 10).table.column_names == list(P.PACKED_COLUMNS)


def test_build_equals_the_reference_on_demo_like_rows():
    """Rows sized like the demo's rendered chats (20–400 tokens, a prompt share untrained, 223 rows in three
    shards) into 1,024-token rows: the packed Parquet bytes equal the reference's, for every strategy."""
    lengths = np.random.default_rng(11).integers(20, 400, 223).tolist()
    rows = chunked(weighted(rows_of(lengths, prompt=0.6, seed=4), seed=2), 3)
    for strategy in P.STRATEGIES:
        assignment = P.assign(P.lengths_of(rows), 1024, strategy)
        built = P.build(rows, assignment)
        assert parquet_bytes(built) == parquet_bytes(reference_build(rows, assignment))
        assert built.column_names == [*P.PACKED_COLUMNS[:2], "loss_weights", *P.PACKED_COLUMNS[2:]]
        assert P.pack(rows, 1024, strategy).table.equals(built)


@settings(max_examples=60, deadline=None)
@given(
    lengths=lengths_lists,
    capacity=st.integers(min_value=1, max_value=48),
    strategy=st.sampled_from(P.STRATEGIES),
    policy=st.sampled_from(("drop", "alone")),
    seed=st.one_of(st.none(), st.integers(0, 5)),
    pieces=st.integers(1, 3),
    weights=st.booleans(),
    chunk=st.sampled_from((1, 7, 64, P.CHUNK_TOKENS)),
)
def test_build_equals_the_reference_and_unpacks_exactly(
    lengths, capacity, strategy, policy, seed, pieces, weights, chunk
):
    rows = rows_of(lengths, prompt=0.3, seed=len(lengths))
    rows = chunked(weighted(rows) if weights else rows, pieces)
    default, P.CHUNK_TOKENS = P.CHUNK_TOKENS, chunk  # small runs: the run-at-a-time loops cross many boundaries
    try:
        assignment = P.assign(P.lengths_of(rows), capacity, strategy, policy, seed)
        built = P.build(rows, assignment)
        assert parquet_bytes(built) == parquet_bytes(reference_build(rows, assignment))
        packed = P.pack(rows, capacity, strategy, policy, seed)  # verify=True: check_unpack finds nothing
        left = [i for ids in packed.left_out.values() for i in ids]
        assert P.check_unpack(rows, packed.table, left) == []
    finally:
        P.CHUNK_TOKENS = default
    assert packed.table.equals(built)
    back = {row["id"]: row for row in P.unpack(packed.table).to_pylist()}
    assert sorted(back) == sorted(set(rows["id"].to_pylist()) - set(left))
    for row in rows.to_pylist():
        if row["id"] in back:
            expected = {**row, "labels": [IGNORE] + row["labels"][1:]}
            if weights:
                expected["loss_weights"] = [0.0] + row["loss_weights"][1:]
            assert back[row["id"]] == expected


def test_loss_weights_are_carried_with_zero_at_every_segment_start():
    rows = weighted(rows_of([3, 2, 4], prompt=0.0), seed=5)
    packed = P.pack(rows, 6, "bfd").table
    assert packed.schema.field("loss_weights").type == pa.list_(pa.float32())
    first = packed.to_pylist()[0]
    assert first["row_ids"] == ["r2", "r1"]
    w2, w1 = rows["loss_weights"][2].as_py(), rows["loss_weights"][1].as_py()
    assert first["loss_weights"] == [0.0] + w2[1:] + [0.0] + w1[1:]
    back = {r["id"]: r["loss_weights"] for r in P.unpack(packed).to_pylist()}
    assert back == {f"r{i}": [0.0] + rows["loss_weights"][i].as_py()[1:] for i in range(3)}


def test_check_unpack_finds_a_changed_loss_weight_and_a_weighted_segment_start():
    rows = weighted(rows_of([4, 3, 2], prompt=0.0))
    table = P.pack(rows, 10, "bfd").table
    assert P.check_unpack(rows, table, []) == []
    column = table.column_names.index("loss_weights")
    weights = table["loss_weights"].to_pylist()
    weights[0][4] = 1.0  # the second segment's first weight
    tampered = table.set_column(column, "loss_weights", pa.array(weights, pa.list_(pa.float32())))
    assert P.check_unpack(rows, tampered, []) == [
        "a segment's first loss_weights value is not 0.0 (it would cross the boundary)"
    ]
    weights = table["loss_weights"].to_pylist()
    weights[0][0] = -0.0  # equal to 0.0 as a float, but not the value packing writes: compared bit for bit
    tampered = table.set_column(column, "loss_weights", pa.array(weights, pa.list_(pa.float32())))
    assert P.check_unpack(rows, tampered, []) == [
        "a segment's first loss_weights value is not 0.0 (it would cross the boundary)"
    ]
    weights = table["loss_weights"].to_pylist()
    weights[0][-1] = -0.0 if weights[0][-1] == 0.0 else 0.0
    tampered = table.set_column(column, "loss_weights", pa.array(weights, pa.list_(pa.float32())))
    assert P.check_unpack(rows, tampered, []) == ["a segment's loss_weights differ from its row's"]
    assert P.check_unpack(rows, table.drop_columns(["loss_weights"]), []) == [
        "packed rows lack the per-token column(s) loss_weights"
    ]


def test_check_unpack_finds_a_change_in_a_later_run(monkeypatch):
    rows = rows_of([5, 1, 7, 3, 9, 2, 6], prompt=0.0)
    monkeypatch.setattr(P, "CHUNK_TOKENS", 4)  # runs of a segment or two: the change is far from the first run
    table = P.pack(rows, 10, "bfd").table
    ids = table["input_ids"].to_pylist()
    ids[-1][-1] += 1
    tampered = table.set_column(0, "input_ids", pa.array(ids, pa.list_(pa.int32())))
    assert P.check_unpack(rows, tampered, []) == ["a segment's input_ids differ from its row's"]
    positions = table["position_ids"].to_pylist()
    positions[-1][-1] += 1
    tampered = table.set_column(2, "position_ids", pa.array(positions, pa.list_(pa.int32())))
    assert P.check_unpack(rows, tampered, []) == ["position_ids do not restart at 0 on every segment"]


def test_per_token_columns_that_cannot_be_packed_are_refused_by_name():
    rows = weighted(rows_of([3, 2]))
    short = rows.set_column(3, "loss_weights", pa.array([[1.0, 1.0, 1.0], [1.0]], pa.list_(pa.float32())))
    with pytest.raises(
        P.PackError,
        match=r"^1 row\(s\) have loss_weights of another length than their input_ids, e.g. row 'r1': 2 ids, "
        r"1 loss_weights values$",
    ):
        P.pack(short, 10)
    missing = rows.set_column(3, "loss_weights", pa.array([[1.0, 1.0, 1.0], None], pa.list_(pa.float32())))
    with pytest.raises(P.PackError, match=r"^row 'r1' has no loss_weights \(null\)"):
        P.pack(missing, 10)
    words = rows.append_column("tags", pa.array([["a", "b", "c"], ["d", "e"]]))
    with pytest.raises(P.PackError, match="column 'tags' holds string values; per-token columns must be lists"):
        P.pack(words, 10)
    clash = rows.append_column("position_ids", rows["input_ids"])
    with pytest.raises(P.PackError, match="cannot have a column named 'position_ids'"):
        P.pack(clash, 10)


# ------------------------------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(
    lengths=lengths_lists,
    capacity=st.integers(min_value=1, max_value=48),
    strategy=st.sampled_from(P.STRATEGIES),
    policy=st.sampled_from(("drop", "alone")),
)
def test_every_row_in_exactly_one_bin_or_left_out(lengths, capacity, strategy, policy):
    array = np.array(lengths, dtype=np.int64)
    assignment = P.assign(array, capacity, strategy, policy)
    placed = assignment.order.tolist()
    everything = sorted(placed + assignment.too_long.tolist() + assignment.empty.tolist())
    assert everything == list(range(len(lengths)))
    for members in bins_of(assignment):
        total = int(array[members].sum())
        assert members and (total <= capacity or (policy == "alone" and len(members) == 1))
    assert P.assign(array, capacity, strategy, policy).order.tolist() == placed  # deterministic


@settings(max_examples=40, deadline=None)
@given(
    lengths=lengths_lists,
    capacity=st.integers(min_value=1, max_value=48),
    strategy=st.sampled_from(P.STRATEGIES),
    seed=st.one_of(st.none(), st.integers(0, 5)),
)
def test_packing_round_trips_and_keeps_trained_tokens(lengths, capacity, strategy, seed):
    rows = rows_of(lengths, prompt=0.3)
    packed = P.pack(rows, capacity, strategy, "drop", seed)  # verify=True: check_unpack must find nothing
    assert P.check_unpack(rows, packed.table, [i for ids in packed.left_out.values() for i in ids]) == []
    assert packed.stats["trained_tokens"]["balanced"]
    labels, positions = packed.table["labels"].to_pylist(), packed.table["position_ids"].to_pylist()
    for row_labels, row_positions in zip(labels, positions, strict=True):
        assert all(label == IGNORE for label, pos in zip(row_labels, row_positions, strict=True) if pos == 0)
    assert all(n <= capacity for n in packed.table["n_tokens"].to_pylist())


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=80),
    capacity=st.integers(min_value=30, max_value=64),
    strategy=st.sampled_from(("bfd", "greedy")),
)
def test_at_most_one_bin_is_half_empty(lengths, capacity, strategy):
    # Both open a bin only for a row that fits no open bin, so two bins at most half full cannot both exist.
    array = np.array(lengths)
    fills = [int(array[members].sum()) for members in bins_of(P.assign(array, capacity, strategy))]
    assert sum(2 * fill <= capacity for fill in fills) <= 1


# ---------------------------------------------------------------------------------------- per render target


def rendered_of(lengths: list[int], kinds: list[str]) -> pa.Table:
    rows = rows_of(lengths, prompt=0.0)
    return rows.append_column("kind", pa.array(kinds, pa.string()))


def test_pack_rendered_packs_sft_rows_and_leaves_out_the_too_long():
    rendered = rendered_of([4, 30, 3, 5], ["sft", "sft", "preference", "pretrain"])
    kept, packed = P.pack_rendered(rendered, 10, "bfd", drop_longer=True)
    assert kept["id"].to_pylist() == ["r0", "r2", "r3"]  # r1 is too long: it leaves the rendered rows too
    assert packed.left_out == {"too_long": ["r1"]}
    assert [p["row_ids"] for p in packed.table.to_pylist()] == [["r3", "r0"]]  # r2 (preference) stays unpacked
    assert packed.stats["rows_not_packable"] == 1
    with pytest.raises(P.PackError, match=r"^1 row\(s\) are longer than max_length 10"):
        P.pack_rendered(rendered, 10, "bfd", drop_longer=False)


def test_pack_rendered_carries_loss_weights_but_not_the_rejected_side():
    rendered = weighted(rendered_of([4, 3, 5], ["sft", "preference", "sft"]))
    rejected = pa.array([None, [1, 2], None], pa.list_(pa.int32()))
    rendered = rendered.append_column("rejected_input_ids", rejected)
    kept, packed = P.pack_rendered(rendered, 10, "bfd", drop_longer=True)
    assert packed.table.column_names == [*P.PACKED_COLUMNS[:2], "loss_weights", *P.PACKED_COLUMNS[2:]]
    assert P.unpack(packed.table).column_names == ["id", "input_ids", "labels", "loss_weights"]
    weights = {r["id"]: r["loss_weights"] for r in P.unpack(packed.table).to_pylist()}
    assert weights == {i: [0.0] + rendered["loss_weights"][int(i[1:])].as_py()[1:] for i in ("r0", "r2")}
    unweighted = rendered.set_column(
        rendered.column_names.index("loss_weights"), "loss_weights", pa.nulls(3, pa.list_(pa.float32()))
    )
    assert "loss_weights" not in P.pack_rendered(unweighted, 10, "bfd", True)[1].table.column_names


def test_merged_stats_and_report_lines():
    train = P.pack_rendered(rendered_of([6, 5, 4, 30], ["sft"] * 4), 10, "bfd", True)[1].stats
    val = P.pack_rendered(rendered_of([3], ["sft"]), 10, "bfd", True)[1].stats
    merged = P.merge_stats({"train": train, "val": val})
    assert (merged["bins"], merged["rows_packed"], merged["tokens"], merged["capacity"]) == (3, 4, 18, 30)
    assert merged["efficiency"] == 0.6 and merged["rows_too_long"] == 1
    assert merged["trained_tokens"] == {"unpacked": 14 + 29, "dropped_too_long": 29, "packed": 14, "balanced": True}
    assert merged["fill_histogram"]["counts"] == [0, 0, 0, 1, 0, 1, 0, 0, 0, 1]
    lines = P.summary_lines(merged)
    assert lines[0] == (
        "Packed with `bfd` into 3 rows of up to 10 tokens: 4 rendered rows (1.333 per packed row), efficiency "
        "60.00% (18 tokens of 30)."
    )
    assert lines[1].startswith("Trained tokens: 14 packed = 43 unpacked − 29 in rows too long to pack (")
    assert (
        lines[2] == "1 row(s) longer than 10 tokens left out (rejects reason `too_long_to_pack`; rows are never split)."
    )
    assert lines[-1] == "| packed rows | 0 | 0 | 0 | 1 | 0 | 1 | 0 | 0 | 0 | 1 |"
