"""The dedup stage and the split's decontamination: keep policies, cross-source clusters, eval files,
validation rows, determinism, and a whole build whose ledger balances."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from builders import qa, quiet, table
from dataforge.engine.runner import run
from dataforge.errors import RecipeError
from dataforge.recipe import Dedup, NearDedup, Split, load_recipe, parse_recipe
from dataforge.record import Example
from dataforge.stages.dedup import deduplicate
from dataforge.stages.split import split
from dataforge.stages.write import write_build

VOCAB = [f"word{i}" for i in range(3000)]


def answer(seed: int, words: int = 60) -> str:
    return " ".join(np.random.default_rng(seed).choice(VOCAB, words))


def edited(text: str, suffix: str = "indeed") -> str:
    """`text` plus one word at the end: a near-copy (Jaccard of word 5-grams about 0.98)."""
    return f"{text} {suffix}"


def with_meta(example: Example, **meta) -> Example:
    return Example(
        id=example.id, kind=example.kind, provenance=example.provenance, messages=example.messages, metadata=meta
    )


NEAR = NearDedup(threshold=0.8)


def run_dedup(t, **policy):
    return deduplicate(t, Dedup(near=NEAR, **policy), root=Path("."), files=[], seed=0, progress=quiet)


def removed(result) -> list[tuple[str, str, str]]:
    return [(r["example_id"], r["duplicate_of"], r["reason"]) for r in result.tables["rejects"].to_pylist()]


def test_first_keeps_the_earliest_row_in_recipe_order_across_sources():
    t = table(
        qa("a", 0, "Q zero", answer(0)),
        qa("a", 1, "Q one", answer(1)),
        qa("b", 0, "Q zero", edited(answer(0))),
        qa("b", 1, "Q two", answer(2)),
    )
    result = run_dedup(t)
    assert result.tables["examples"]["id"].to_pylist() == ["a:0", "a:1", "b:1"]
    assert removed(result) == [("b:0", "a:0", "near_duplicate")]
    rejects = result.tables["rejects"].to_pylist()
    assert 0.8 <= rejects[0]["similarity"] < 1.0 and rejects[0]["outcome"] == "deduplicated"
    near = result.stats["near"]
    assert near["clusters"] == 1 and near["cross_source_clusters"] == 1 and near["cluster_sizes"] == {"2": 1}
    assert near["cross_source_removed"] == 1
    assert near["by_source"] == {
        "a": {"rows": 2, "removed": 0, "rate": 0.0},
        "b": {"rows": 2, "removed": 1, "rate": 0.5},
    }
    sample = near["samples"][0]
    assert [(m["id"], m["kept"]) for m in sample["members"]] == [("a:0", True), ("b:0", False)]


def test_longest_keeps_the_longest_row():
    t = table(qa("a", 0, "Q", answer(0)), qa("a", 1, "Q", edited(answer(0), "indeed, truly so")))
    assert removed(run_dedup(t, keep="longest")) == [("a:0", "a:1", "near_duplicate")]


def test_quality_keeps_the_highest_score_and_rows_without_one_lose():
    t = table(
        with_meta(qa("a", 0, "Q", answer(0)), quality=0.2),
        qa("a", 1, "Q", edited(answer(0))),  # no score
        with_meta(qa("a", 2, "Q", edited(answer(0), "really")), quality=0.9),
    )
    result = run_dedup(t, keep="quality")
    assert result.tables["examples"]["id"].to_pylist() == ["a:2"]
    assert sorted(removed(result)) == [("a:0", "a:2", "near_duplicate"), ("a:1", "a:2", "near_duplicate")]


def test_a_named_source_wins_for_exact_and_near_copies():
    t = table(
        qa("web", 0, "Q", answer(0)),
        qa("web", 1, "Q2", answer(1)),
        qa("curated", 0, "q", answer(0)),  # exact copy after case folding
        qa("curated", 1, "Q2", edited(answer(1))),  # near copy
    )
    result = run_dedup(t, keep="curated")
    assert result.tables["examples"]["id"].to_pylist() == ["curated:0", "curated:1"]
    assert removed(result) == [("web:0", "curated:0", "exact_duplicate"), ("web:1", "curated:1", "near_duplicate")]


def test_exact_runs_first_and_near_sees_only_what_it_kept():
    t = table(qa("a", 0, "Q", answer(0)), qa("a", 1, "Q", answer(0)), qa("a", 2, "Q", edited(answer(0))))
    result = run_dedup(t)
    assert removed(result) == [("a:1", "a:0", "exact_duplicate"), ("a:2", "a:0", "near_duplicate")]
    assert result.stats["exact"] == {"removed": 1} and result.stats["near"]["rows_compared"] == 2


def test_fields_choose_the_text_compared():
    # Same question, different answers: a duplicate by first_user, not by the whole conversation.
    question = answer(7, 40)
    t = table(qa("a", 0, question, answer(1)), qa("a", 1, question, answer(2)))
    assert run_dedup(t).tables["rejects"].num_rows == 0
    by_prompt = deduplicate(
        t, Dedup(near=NearDedup(fields="first_user")), root=Path("."), files=[], seed=0, progress=quiet
    )
    assert removed(by_prompt) == [("a:1", "a:0", "near_duplicate")]


def test_the_same_seed_gives_the_same_clusters():
    rows = [qa("s", i, f"Q{i}", answer(i % 7) + (" again" * (i // 7))) for i in range(28)]
    t = table(*rows)
    a, b = run_dedup(t), run_dedup(t)
    assert a.tables["rejects"].equals(b.tables["rejects"]) and a.stats == b.stats


def test_validation_rows_with_a_near_copy_in_train_are_removed():
    rows = [qa("s", i, f"Q{i}", answer(i)) for i in range(20)]
    rows += [qa("s", 20 + i, f"Q{i}", edited(answer(i))) for i in range(20)]  # each a near-copy of row i
    out = split(table(*rows), ["s"], Split(validation=0.25), seed=3, progress=quiet)
    train_ids = set(out.tables["train"]["id"].to_pylist())
    rejects = out.tables["rejects"].to_pylist()
    assert rejects, "some validation rows have their near-copy in train"
    for r in rejects:
        assert r["reason"] == "val_near_train" and r["stage"] == "split" and r["duplicate_of"] in train_ids
        i = int(r["example_id"].split(":")[1])
        assert r["duplicate_of"] == f"s:{(i + 20) % 40}"
    counts = out.stats["per_source"]["s"]
    assert counts["val"] + counts["val_removed"] == 10 and counts["val_removed"] == len(rejects)
    assert out.tables["val"].num_rows == counts["val"]
    undone = split(table(*rows), ["s"], Split(validation=0.25, decontaminate=False), seed=3, progress=quiet)
    assert undone.tables["val"].num_rows == 10 and undone.tables["rejects"].num_rows == 0


RECIPE = """\
name: near
seed: 5
sources:
  - name: first
    from: first.jsonl
  - name: second
    from: second.jsonl
dedup:
  near: {threshold: 0.8}
  decontaminate: [eval.jsonl]
split:
  validation: 0.2
"""


def write_jsonl(path: Path, rows: list[tuple[str, str]]) -> None:
    lines = [
        json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}) for q, a in rows
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def near_project(root: Path) -> Path:
    write_jsonl(root / "first.jsonl", [(f"Q{i}", answer(i)) for i in range(30)])
    second = [(f"Q{i}", edited(answer(i))) for i in range(5)] + [(f"Q{i}", answer(i)) for i in range(100, 120)]
    write_jsonl(root / "second.jsonl", second)
    write_jsonl(root / "eval.jsonl", [("eval", answer(110)), ("eval", answer(10))])
    (root / "near.yaml").write_text(RECIPE, encoding="utf-8")
    return root / "near.yaml"


def test_a_build_removes_near_copies_and_eval_contamination_and_balances(tmp_path):
    loaded = load_recipe(near_project(tmp_path))
    result = run(loaded)
    manifest = write_build(loaded, result.stages, result.entries)
    rejects = pq.read_table(loaded.build_dir / "rejects.parquet").to_pylist()
    reasons = sorted((r["reason"], r["example_id"]) for r in rejects)
    assert ("eval_contamination", "first:10") in reasons and ("eval_contamination", "second:15") in reasons
    near = [r for r in rejects if r["reason"] == "near_duplicate"]
    assert sorted(r["example_id"] for r in near) == [f"second:{i}" for i in range(5)]
    assert all(r["duplicate_of"] == f"first:{r['row']}" for r in near)
    eval_hit = next(r for r in rejects if r["example_id"] == "first:10")
    assert eval_hit["duplicate_of"] == "eval.jsonl:2" and eval_hit["similarity"] > 0.9  # the questions differ
    total = manifest["ledger"]["total"]
    assert total["balanced"] and total["deduplicated"] == len(near) + 2
    report = json.loads((loaded.build_dir / "report" / "report.json").read_text())
    assert report["dedup"]["near"]["removed"] == 5 and report["dedup"]["near"]["cross_source_clusters"] == 5
    assert report["dedup"]["decontamination"]["files"] == {"eval.jsonl": 2}
    # Same recipe and inputs, built again from scratch: byte-identical rejects.
    first = (loaded.build_dir / "rejects.parquet").read_bytes()
    shutil.rmtree(loaded.build_dir)
    again = run(loaded)
    write_build(loaded, again.stages, again.entries)
    assert (loaded.build_dir / "rejects.parquet").read_bytes() == first


def test_recipe_errors_name_the_line():
    with pytest.raises(RecipeError) as exc:
        parse_recipe(
            "name: x\nsources:\n  - {name: a, from: a.jsonl}\ndedup:\n  keep: b\n  near: {threshold: 1.5, ngrams: 3}\n",
            Path("r.yaml"),
        )
    problems = "\n".join(exc.value.problems)
    assert "line 5: dedup.keep: 'b' is neither a policy nor a source" in problems
    assert (
        "line 6: dedup.near.threshold" in problems
        and "dedup.near.ngrams: unknown key (did you mean `ngram`?)" in problems
    )


def test_near_dedup_compares_rows_of_the_same_kind_only():
    """A KTO row made from a DPO pair says the same thing as the pair but trains something else: both stay.
    Two copies of the KTO row are still duplicates (issue 19)."""
    from dataforge.record import Kind, Message, Provenance, Role

    question, good, bad = "Q " + answer(7, 20), answer(8), answer(9)

    def row(i: int, kind: Kind, **more) -> Example:
        where = Provenance("s", "s.jsonl", i, i + 1)
        return Example(id=f"s:{i}", kind=kind, provenance=where, **more)

    dpo = row(
        0,
        Kind.PREFERENCE,
        messages=(Message(Role.USER, question),),
        chosen=(Message(Role.ASSISTANT, good),),
        rejected=(Message(Role.ASSISTANT, bad),),
    )
    kto = dict(messages=(Message(Role.USER, question), Message(Role.ASSISTANT, good)), label=True)
    result = run_dedup(table(dpo, row(1, Kind.KTO, **kto), row(2, Kind.KTO, **kto), row(3, Kind.SFT, **kto)))
    assert result.tables["examples"]["id"].to_pylist() == ["s:0", "s:1", "s:3"]
    assert removed(result) == [("s:2", "s:1", "exact_duplicate")]
    near = run_dedup(table(dpo, row(1, Kind.KTO, **kto), row(2, Kind.KTO, messages=kto["messages"], label=False)))
    assert near.tables["examples"]["id"].to_pylist() == ["s:0", "s:1"]
    assert [(r[0], r[1], r[2]) for r in removed(near)] == [("s:2", "s:1", "near_duplicate")]
