"""Sharded dedup and validation decontamination: exactly today's result (kept rows, rejects in order, stats) on
the concatenated parts, whatever the part splitting and the executor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builders import quiet
from dataforge.dedup.candidates import LARGE_GROUP
from dataforge.dedup.sharded import decontaminate_validation_sharded, deduplicate_sharded
from dataforge.engine.executor import LocalExecutor, SerialExecutor
from dataforge.recipe import Dedup, NearDedup
from dataforge.record import Example, Kind, Message, Provenance, Role, examples_to_table
from dataforge.rejects import concat_rejects
from dataforge.stages.dedup import deduplicate
from dataforge.stages.split import decontaminate_validation

VOCAB = [f"w{i}" for i in range(2000)]


@pytest.fixture
def local():
    """Two worker processes, stopped after the test."""
    with LocalExecutor(2) as executor:
        yield executor


def words(seed: int, n: int = 50) -> str:
    return " ".join(np.random.default_rng(seed).choice(VOCAB, n))


def variant(seed: int, edit: int) -> str:
    """Text `seed`, exactly (edit 0), case-changed (1: an exact duplicate after folding) or with `edit` words
    appended (a near-copy whose similarity falls with `edit`)."""
    base = words(seed)
    if edit == 0:
        return base
    if edit == 1:
        return base.upper()
    return base + " " + " ".join(f"extra{edit}x{k}" for k in range(edit - 1))


def row(i: int, source: str, kind: Kind, text: str, quality: float | None = None) -> Example:
    user = Message(Role.USER, f"question {text[:12]}")
    answer = Message(Role.ASSISTANT, text)
    meta = {"quality": quality} if quality is not None else {}
    common = {"id": f"{source}:{i}", "provenance": Provenance(source, f"{source}.jsonl", i, i + 1), "metadata": meta}
    if kind == Kind.PREFERENCE:
        other = Message(Role.ASSISTANT, "no " + text[:40])
        return Example(kind=kind, messages=(user,), chosen=(answer,), rejected=(other,), **common)
    if kind == Kind.KTO:
        return Example(kind=kind, messages=(user, answer), label=bool(i % 2), **common)
    if kind == Kind.PRETRAIN:
        return Example(kind=kind, text=f"question {text[:12]} {text}", **common)
    return Example(kind=kind, messages=(user, answer), **common)


def write_parts(table: pa.Table, cuts: list[int], folder: Path) -> list[Path]:
    """`table` written as consecutive parts ending at `cuts` (then the rest)."""
    folder.mkdir(parents=True, exist_ok=True)
    bounds = [0, *sorted(c for c in cuts if 0 <= c <= table.num_rows), table.num_rows]
    paths = []
    for k, (lo, hi) in enumerate(zip(bounds, bounds[1:], strict=False)):
        path = folder / f"part-{k}.parquet"
        pq.write_table(table.slice(lo, hi - lo), path)
        paths.append(path)
    return paths


def read_all(paths: list[Path]) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in paths])


def check_same(table: pa.Table, policy: Dedup, tmp: Path, cuts: list[int], executor, files=(), seed=0):
    """Sharded dedup of `table` cut at `cuts` equals `deduplicate` of the whole table."""
    want = deduplicate(table, policy, root=tmp, files=list(files), seed=seed, progress=quiet)
    parts = write_parts(table, cuts, tmp / "parts")
    got = deduplicate_sharded(
        parts, policy, root=tmp, files=list(files), seed=seed, executor=executor, work=tmp / "work", progress=quiet
    )
    assert len(got.examples) == len(parts) and len(got.rejects) == 3 * len(parts)
    assert read_all(got.examples).equals(want.tables["examples"])
    rejects = concat_rejects([pq.read_table(p) for p in got.rejects])
    assert rejects.to_pylist() == want.tables["rejects"].to_pylist()
    assert rejects.equals(want.tables["rejects"])
    assert got.stats == want.stats
    return want


def corpus(spec: list[tuple[int, int, int, int, int]]) -> pa.Table:
    """Rows from (text seed, edit, kind, source, quality) tuples."""
    kinds = [Kind.SFT, Kind.PREFERENCE, Kind.KTO, Kind.PRETRAIN]
    rows = []
    for i, (seed, edit, kind, source, quality) in enumerate(spec):
        rows.append(row(i, f"s{source}", kinds[kind], variant(seed, edit), quality / 4 if quality else None))
    return examples_to_table(rows)


SPEC = st.tuples(
    st.integers(0, 5), st.integers(0, 5), st.sampled_from([0, 0, 0, 1, 2, 3]), st.integers(0, 2), st.integers(0, 4)
)
POLICIES = st.builds(
    lambda exact, near, keep, verify, threshold, engine: Dedup(
        exact=exact,
        near=NearDedup(threshold=threshold, verify=verify, engine=engine) if near else None,
        keep=keep,
    ),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["first", "longest", "quality", "s1"]),
    st.sampled_from(["auto", "exact", "estimate"]),
    st.sampled_from([0.5, 0.8, 0.9]),
    st.sampled_from(["banded", "banded", "lsh"]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=st.lists(SPEC, max_size=30), policy=POLICIES, cuts=st.lists(st.integers(0, 30), max_size=6))
def test_any_part_splitting_gives_todays_result(tmp_path_factory, spec, policy, cuts):
    check_same(corpus(spec), policy, tmp_path_factory.mktemp("h"), cuts, SerialExecutor())


# A hand corpus: exact copies (across sources, with a case change), near copies at several distances, the
# same text as sft, preference, kto and pretrain rows (never duplicates of each other), quality scores.
HAND = [(s, e, k, src, q) for s in range(4) for e in (0, 1, 2, 3) for k in (0, 1) for src, q in ((0, 1), (1, 3))]
HAND += [(7, 0, k, 2, 0) for k in range(4)] + [(8, e, 0, 2, 4 - e) for e in range(5)]


@pytest.mark.parametrize("keep", ["first", "longest", "quality", "s1"])
@pytest.mark.parametrize("mode", ["exact", "near", "both"])
def test_hand_cases_for_every_policy_and_step(tmp_path, keep, mode):
    policy = Dedup(exact=mode != "near", near=NearDedup(threshold=0.7) if mode != "exact" else None, keep=keep)
    table = corpus(HAND)
    n = table.num_rows
    for k, cuts in enumerate([[], [1, 2, 3, 5, 8, 13, 21, 34, 55], list(range(0, n, 3)), [n // 2, n // 2]]):
        want = check_same(table, policy, tmp_path / str(k), cuts, SerialExecutor())
    if mode != "exact":
        assert want.stats["near"]["removed"] > 0
    if mode != "near":
        assert want.stats["exact"]["removed"] > 0


@pytest.mark.slow  # worker processes: seconds to start
def test_one_part_per_row_and_two_workers_give_the_same_result(tmp_path, local):
    policy = Dedup(near=NearDedup(threshold=0.7), keep="longest")
    table = corpus(HAND)
    check_same(table, policy, tmp_path / "a", list(range(table.num_rows)), local)
    check_same(table, policy, tmp_path / "b", [5, 40], local)
    # Byte-identical outputs whatever the executor.
    parts = write_parts(table, [5, 40], tmp_path / "parts")
    outputs = []
    for k, executor in enumerate([SerialExecutor(), local]):
        got = deduplicate_sharded(
            parts, policy, root=tmp_path, files=[], seed=0, executor=executor, work=tmp_path / f"w{k}", progress=quiet
        )
        outputs.append([p.read_bytes() for p in got.examples + got.rejects])
    assert outputs[0] == outputs[1]


def test_kinds_are_never_paired(tmp_path):
    # The same text as an sft, a preference, a kto and a pretrain row: four kinds, no duplicates.
    table = corpus([(3, 0, k, 0, 0) for k in range(4)] + [(3, 2, k, 1, 0) for k in range(4)])
    want = check_same(table, Dedup(exact=False, near=NearDedup(threshold=0.5)), tmp_path, [3, 5], SerialExecutor())
    assert want.stats["near"]["clusters"] == 4 and want.stats["near"]["removed"] == 4


@pytest.mark.parametrize("engine", ["banded", "lsh"])
def test_buckets_above_large_group(tmp_path, engine):
    # Templated rows: one long text with a different last word each, all in one band bucket.
    base = words(11, 200)
    rows = [row(i, "t", Kind.SFT, f"{base} tail{i}") for i in range(LARGE_GROUP + 40)]
    rows += [row(1000 + i, "u", Kind.SFT, words(100 + i)) for i in range(10)]
    table = examples_to_table(rows)
    policy = Dedup(exact=False, near=NearDedup(threshold=0.95, engine=engine, verify="estimate"))
    want = check_same(table, policy, tmp_path, [50, 51, 200, 290], SerialExecutor())
    assert want.stats["near"]["removed"] >= LARGE_GROUP


def eval_file(path: Path, texts: list[str]) -> Path:
    lines = [
        json.dumps({"messages": [{"role": "user", "content": "eval"}, {"role": "assistant", "content": t}]})
        for t in texts
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("near", [None, NearDedup(threshold=0.7)])
def test_decontamination_files(tmp_path, near):
    first = eval_file(tmp_path / "eval.jsonl", [variant(2, 0), variant(8, 3)])
    second = eval_file(tmp_path / "more.jsonl", [variant(2, 2), variant(3, 0), "nothing like it"])
    table = corpus(HAND)
    for k, cuts in enumerate([[], [1, 7, 30], list(range(table.num_rows))]):
        want = check_same(
            table, Dedup(near=near), tmp_path / str(k), cuts, SerialExecutor(), files=[first, second], seed=3
        )
    decon = want.stats["decontamination"]
    assert decon["removed"] > 0 and len(decon["files"]) == 2 and all(v > 0 for v in decon["files"].values())
    reasons = {r for r in want.tables["rejects"]["reason"].to_pylist()}
    assert "eval_contamination" in reasons


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    spec=st.lists(SPEC, min_size=1, max_size=25),
    evals=st.lists(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 4)), min_size=1, max_size=3), max_size=3),
    near=st.booleans(),
    cuts=st.lists(st.integers(0, 25), max_size=5),
)
def test_any_eval_files_give_todays_decontamination(tmp_path_factory, spec, evals, near, cuts):
    tmp = tmp_path_factory.mktemp("e")
    files = [eval_file(tmp / f"eval{k}.jsonl", [variant(s, e) for s, e in texts]) for k, texts in enumerate(evals)]
    policy = Dedup(near=NearDedup(threshold=0.7) if near else None)
    check_same(corpus(spec), policy, tmp, cuts, SerialExecutor(), files=files)


def test_empty_input(tmp_path):
    table = corpus([])
    check_same(table, Dedup(near=NearDedup()), tmp_path, [], SerialExecutor())


def check_split(train: pa.Table, val: pa.Table, near, tmp: Path, cuts, executor, seed=0):
    want_val, want_rejects, want_stats = decontaminate_validation(train, val, near, seed)
    tparts = write_parts(train, cuts[0], tmp / "train")
    vparts = write_parts(val, cuts[1], tmp / "val")
    got_val, got_rejects, got_stats = decontaminate_validation_sharded(
        tparts, vparts, near, seed, executor=executor, work=tmp / "work"
    )
    assert len(got_val) == len(vparts) == len(got_rejects)
    assert read_all(got_val).equals(want_val)
    assert concat_rejects([pq.read_table(p) for p in got_rejects]).equals(want_rejects)
    assert got_stats == want_stats
    return want_stats


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    spec=st.lists(SPEC, min_size=2, max_size=30),
    val_every=st.integers(2, 4),
    threshold=st.sampled_from([0.5, 0.8]),
    cuts=st.tuples(st.lists(st.integers(0, 30), max_size=4), st.lists(st.integers(0, 10), max_size=3)),
)
def test_validation_decontamination_matches(tmp_path_factory, spec, val_every, threshold, cuts):
    table = corpus(spec)
    is_val = np.arange(table.num_rows) % val_every == 0
    train, val = table.filter(pa.array(~is_val)), table.filter(pa.array(is_val))
    check_split(train, val, NearDedup(threshold=threshold), tmp_path_factory.mktemp("s"), cuts, SerialExecutor())


def test_validation_decontamination_hand_case_and_big_buckets(tmp_path, local):
    base = words(11, 200)
    train = examples_to_table([row(i, "t", Kind.SFT, f"{base} tail{i}") for i in range(LARGE_GROUP + 30)])
    val = corpus(HAND[::3] + [(11, 0, 0, 0, 0)])
    val = pa.concat_tables([val, examples_to_table([row(900, "v", Kind.SFT, f"{base} other")])])
    stats = check_split(train, val, None, tmp_path / "a", ([10, 100], [2, 4]), local)
    assert stats["val_removed"] >= 1
    train2 = corpus(HAND)
    stats = check_split(train2, val, NearDedup(threshold=0.7), tmp_path / "b", ([], []), SerialExecutor())
    assert stats["val_removed"] > 0


def test_a_removed_row_not_compared_with_its_keeper_gets_its_own_similarity(tmp_path, local):
    # A chain: b is near a, c is near b, but c is not near a; c's similarity to its keeper a is computed.
    a = words(21, 50)
    b = a + " " + " ".join(f"more{k}" for k in range(10))
    c = b + " " + " ".join(f"again{k}" for k in range(10))
    table = examples_to_table([row(0, "s", Kind.SFT, a), row(1, "s", Kind.SFT, b), row(2, "s", Kind.SFT, c)])
    for verify in ("auto", "exact"):
        policy = Dedup(near=NearDedup(threshold=0.8, verify=verify))
        executor = local if verify == "auto" else SerialExecutor()
        want = check_same(table, policy, tmp_path / verify, [1, 2], executor)
        sims = {r["example_id"]: r["similarity"] for r in want.tables["rejects"].to_pylist()}
        assert set(sims) == {"s:1", "s:2"} and sims["s:1"] >= 0.8 > sims["s:2"]
