"""Per-turn loss control: `train_on: all | last | first_n | weighted`, `loss_weights`, and the per-turn counts.

On a real template (Qwen2.5-Instruct's tokenizer and ChatML template, vendored under tests/fixtures): exact
trained tokens and weights for each mode, preference completions counted from their own start, fractional
weights outside `weighted` counted as a note, negative and non-finite weights rejected by field; a hypothesis
property that the trained turns under each mode are the ones a plain-Python reference picks from the message
indices and weights; and a build whose report shows the counts per render target.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataforge.engine.runner import run
from dataforge.recipe import load_recipe
from dataforge.record import Example, Kind, Message, Provenance, Role
from dataforge.render.engine import IGNORE, RenderOptions, render_rows
from dataforge.render.spans import assistant_turns
from dataforge.render.target import load_target
from dataforge.stages.write import write_build

REPO = Path(__file__).resolve().parents[2]
EOT = "<|im_end|>"


@pytest.fixture(scope="module")
def qwen(fixture_path):
    folder = fixture_path("templates/qwen2.5-instruct")
    return load_target("qwen2.5", str(folder), folder.parent)


def sft(*turns: tuple[str, str, float | None], row: int = 0) -> dict:
    messages = tuple(Message(Role(role), content, weight=weight) for role, content, weight in turns)
    return Example(f"s:{row}", Kind.SFT, Provenance("s", "s.jsonl", row, row + 1), messages=messages).to_row()


# user / assistant, three replies: weight 0.5, weight 0 (never trained), null (1.0)
THREE = sft(
    ("user", "Hi", None),
    ("assistant", "Hello there", 0.5),
    ("user", "More", None),
    ("assistant", "Sure", 0.0),
    ("user", "Again", None),
    ("assistant", "Done", None),
)


def runs(tok, row: dict) -> list[tuple[str, list[float] | None]]:
    """The row's runs of consecutive trained tokens: (decoded text, their loss weights or None)."""
    out, current, weights = [], [], []
    for i, (token, label) in enumerate(zip(row["input_ids"], row["labels"], strict=True)):
        if label != IGNORE:
            current.append(token)
            weights.append(row["loss_weights"][i] if row["loss_weights"] is not None else None)
        elif current:
            out.append((tok.decode(current), weights))
            current, weights = [], []
    if current:
        out.append((tok.decode(current), weights))
    return [(text, None if w[0] is None else w) for text, w in out]


@pytest.mark.parametrize(
    ("mode", "first_n", "expected"),
    [
        ("all", None, ["Hello there" + EOT, "Done" + EOT]),
        ("last", None, ["Done" + EOT]),
        ("first_n", 1, ["Hello there" + EOT]),
        ("first_n", 2, ["Hello there" + EOT]),  # the 2nd turn counts, though its weight 0 keeps it untrained
        ("first_n", 3, ["Hello there" + EOT, "Done" + EOT]),
        ("weighted", None, ["Hello there" + EOT, "Done" + EOT]),
    ],
)
def test_each_mode_trains_exactly_its_turns(qwen, mode, first_n, expected):
    result = render_rows([THREE], qwen, RenderOptions(train_on=mode, first_n=first_n))
    assert result.problems == []
    row = result.table.to_pylist()[0]
    assert [text for text, _ in runs(qwen.tokenizer, row)] == expected
    if mode == "weighted":
        assert [w for _, w in runs(qwen.tokenizer, row)] == [[0.5, 0.5, 0.5], [1.0, 1.0]]  # Hello, ' there', EOT
        assert len(row["loss_weights"]) == len(row["input_ids"])
        assert all(w == 0.0 for w, label in zip(row["loss_weights"], row["labels"], strict=True) if label == IGNORE)
    else:
        assert row["loss_weights"] is None


def test_the_per_turn_counts_of_a_batch(qwen):
    weighted = render_rows([THREE], qwen, RenderOptions(train_on="weighted"))
    assert weighted.turns == {
        "by_role": {"assistant": 5, "text": 0},
        "by_turn": {
            "1": {"turns": 1, "trained_turns": 1, "tokens": 3, "weight": 1.5},
            "2": {"turns": 1, "trained_turns": 0, "tokens": 0, "weight": 0.0},
            "3": {"turns": 1, "trained_turns": 1, "tokens": 2, "weight": 2.0},
            "4+": {"turns": 0, "trained_turns": 0, "tokens": 0, "weight": 0.0},
        },
    }
    # Outside `weighted` the fractional 0.5 trains at full weight: counted as 1.0, and noted.
    every = render_rows([THREE], qwen, RenderOptions(train_on="all"))
    assert every.turns["by_turn"]["1"] == {"turns": 1, "trained_turns": 1, "tokens": 3, "weight": 3.0}
    assert every.notes == {"fractional_weight_ignored": 1}
    assert weighted.notes == {}
    assert render_rows([THREE], qwen, RenderOptions(train_on="last")).notes == {}  # the 0.5 turn is not trained


def test_truncation_cuts_the_weights_and_the_counts(qwen):
    whole = render_rows([THREE], qwen, RenderOptions(train_on="weighted")).table.to_pylist()[0]
    cut = len(whole["input_ids"]) - 2  # inside the last reply: "Done" stays, its end-of-turn token goes
    result = render_rows([THREE], qwen, RenderOptions(train_on="weighted", max_length=cut, overflow="truncate"))
    row = result.table.to_pylist()[0]
    assert row["truncated"] and len(row["loss_weights"]) == len(row["input_ids"]) == cut
    assert [text for text, _ in runs(qwen.tokenizer, row)] == ["Hello there" + EOT, "Done"]
    assert result.turns["by_role"]["assistant"] == row["n_trained"] == 4
    assert result.turns["by_turn"]["3"] == {"turns": 1, "trained_turns": 1, "tokens": 1, "weight": 1.0}


def test_adjacent_spans_are_told_apart_by_the_offsets(qwen):
    """Two spans with no untrained token between them make one run of trained tokens: the tokenizer's offsets
    then say which span each token is in (the batch pass counts runs, and falls back to them)."""
    import numpy as np

    from dataforge.render.engine import Owners, Sequence

    tok = qwen.tokenizer
    texts = ["Hello world. Goodbye world.", "Hi."]
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    metas = [
        Sequence(texts[0], [(0, 12), (12, 27)], [0.5, 2.0], [0, 1], 2),
        Sequence(texts[1], [(0, 3)], [1.0], [0], 1),
    ]
    flat = np.array(ids[0] + ids[1], np.int32)
    starts = np.array([0, len(ids[0]), len(flat)])
    owners = Owners.of(tok, texts, metas, flat, np.ones(len(flat), bool), starts)
    pieces = [tok.decode([t]) for t in ids[0]]
    first = pieces.index(" Good")
    assert owners.owner.tolist() == [0] * first + [1] * (len(ids[0]) - first) + [2] * len(ids[1])
    assert owners.weights[: len(ids[0])].tolist() == [0.5] * first + [2.0] * (len(ids[0]) - first)
    owners.count(0, None)
    totals = owners.totals(metas)
    assert totals["by_turn"]["2"] == {
        "turns": 1,
        "trained_turns": 1,
        "tokens": len(ids[0]) - first,
        "weight": 2.0 * (len(ids[0]) - first),
    }


def test_five_turns_share_the_last_bucket(qwen):
    turns = [("user", "q", None)]
    for i in range(5):
        turns += [("assistant", f"a{i}", None), ("user", "q", None)]
    result = render_rows([sft(*turns[:-1])], qwen, RenderOptions(train_on="first_n", first_n=4))
    by_turn = result.turns["by_turn"]
    assert [by_turn[b]["turns"] for b in ("1", "2", "3", "4+")] == [1, 1, 1, 2]
    assert [by_turn[b]["trained_turns"] for b in ("1", "2", "3", "4+")] == [1, 1, 1, 1]  # a4 is the 5th: untrained


def test_preference_turns_count_from_the_completion(qwen):
    """A preference row's prompt may hold assistant turns; `first_n` counts from the completion's first."""
    example = Example(
        "p:0",
        Kind.PREFERENCE,
        Provenance("p", "p.jsonl", 0, 1),
        messages=(Message(Role.USER, "Hi"), Message(Role.ASSISTANT, "Earlier"), Message(Role.USER, "Now?")),
        chosen=(
            Message(Role.ASSISTANT, "Good", weight=0.5),
            Message(Role.USER, "And?"),
            Message(Role.ASSISTANT, "Also"),
        ),
        rejected=(Message(Role.ASSISTANT, "Bad"), Message(Role.USER, "And?"), Message(Role.ASSISTANT, "Worse")),
    )
    result = render_rows([example.to_row()], qwen, RenderOptions(train_on="first_n", first_n=1))
    row = result.table.to_pylist()[0]
    tok = qwen.tokenizer
    assert [t for t, _ in runs(tok, row)] == ["Good" + EOT]
    rejected = {"input_ids": row["rejected_input_ids"], "labels": row["rejected_labels"], "loss_weights": None}
    assert [t for t, _ in runs(tok, rejected)] == ["Bad" + EOT]
    assert result.turns["by_turn"]["1"]["turns"] == 1 and result.turns["by_turn"]["2"]["turns"] == 1
    weighted = render_rows([example.to_row()], qwen, RenderOptions(train_on="weighted")).table.to_pylist()[0]
    assert [w for _, w in runs(tok, weighted)] == [[0.5, 0.5], [1.0, 1.0]]


def test_pretrain_rows_train_every_token_at_weight_one(qwen):
    row = Example("t:0", Kind.PRETRAIN, Provenance("t", "t.jsonl", 0, 1), text="Plain text here.").to_row()
    result = render_rows([row], qwen, RenderOptions(train_on="weighted"))
    out = result.table.to_pylist()[0]
    trained = [w for w, label in zip(out["loss_weights"], out["labels"], strict=True) if label != IGNORE]
    assert trained and set(trained) == {1.0}
    assert result.turns["by_role"] == {"assistant": 0, "text": len(trained)}


@pytest.mark.parametrize(("weight", "shown"), [(-0.5, "-0.5"), (math.nan, "nan"), (math.inf, "inf")])
def test_negative_and_non_finite_weights_reject_the_row(qwen, weight, shown):
    bad = sft(("user", "Hi", None), ("assistant", "Hello", weight))
    result = render_rows([bad], qwen, RenderOptions())
    assert result.table.num_rows == 0
    assert result.problems == [
        {
            "id": "s:0",
            "reason": "invalid_loss_weight",
            "field": "messages[1].weight",
            "message": f"messages[1].weight is {shown}: a loss weight must be a finite number >= 0 (0 = not trained)",
        }
    ]


def test_first_n_whose_turns_are_all_weight_zero_is_rejected(qwen):
    row = sft(("user", "Hi", None), ("assistant", "No", 0.0), ("user", "Hi", None), ("assistant", "Yes", None))
    result = render_rows([row], qwen, RenderOptions(train_on="first_n", first_n=1))
    assert [(p["reason"], p["message"]) for p in result.problems] == [
        ("no_trained_tokens", "train_on: first_n and the first 1 assistant turn(s) have loss weight 0")
    ]


# ── the property: trained turns = a plain-Python reference on the message indices ────────────────────────────


def reference(weights: list[float | None], mode: str, first_n: int | None) -> list[int]:
    """Which assistant turns (by their order, 0-based) train, from the rules as the README states them."""
    order = list(range(len(weights)))
    if mode == "last":
        order = order[-1:]
    if mode == "first_n":
        order = order[:first_n]
    return [k for k in order if weights[k] != 0]


WEIGHTS = st.sampled_from([None, 0.0, 0.25, 1.0, 2.0])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    weights=st.lists(WEIGHTS, min_size=1, max_size=5),
    mode=st.sampled_from(["all", "last", "first_n", "weighted"]),
    n=st.integers(1, 6),
    system=st.booleans(),
)
def test_trained_turns_match_the_reference(qwen, weights, mode, n, system):
    first_n = n if mode == "first_n" else None
    turns = [("system", "Be brief.", None)] if system else []
    for k, w in enumerate(weights):
        turns += [("user", f"question{k}", None), ("assistant", f"reply{k}", w)]
    expected = reference(weights, mode, first_n)
    messages = sft(*turns)["messages"]
    indices = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    untrained = frozenset(i for i, m in enumerate(messages) if m["weight"] == 0)
    assert assistant_turns(messages, mode, 0, untrained, first_n) == [indices[k] for k in expected]
    result = render_rows([sft(*turns)], qwen, RenderOptions(train_on=mode, first_n=first_n))
    if not expected:
        assert [p["reason"] for p in result.problems] == ["no_trained_tokens"]
        return
    assert result.problems == []
    row = result.table.to_pylist()[0]
    got = runs(qwen.tokenizer, row)
    assert [text for text, _ in got] == [f"reply{k}{EOT}" for k in expected]
    if mode == "weighted":
        assert [set(w) for _, w in got] == [{1.0 if weights[k] is None else weights[k]} for k in expected]
    fractional = mode != "weighted" and any(weights[k] not in (None, 1.0) for k in expected)
    assert result.notes.get("fractional_weight_ignored", 0) == int(fractional)
    positions = [min(k, 3) for k in expected]
    buckets = ("1", "2", "3", "4+")
    for b, bucket in enumerate(buckets):
        cell = result.turns["by_turn"][bucket]
        assert cell["turns"] == sum(1 for k in range(len(weights)) if min(k, 3) == b)
        assert cell["trained_turns"] == positions.count(b)
    assert result.turns["by_role"]["assistant"] == sum(label != IGNORE for label in row["labels"])


# ── a build: the counts per render target in report.json and report.md ──────────────────────────────────────


def test_the_report_shows_the_loss_per_turn_of_each_target(tmp_path):
    demo = REPO / "data" / "tokenizers" / "demo-chatml"
    rows = []
    for i in range(24):
        messages = [{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": f"Answer {i}."}]
        messages[1]["weight"] = [0, 0.5, 1][i % 3] if i % 4 else None
        messages += [{"role": "user", "content": "More?"}, {"role": "assistant", "content": f"More {i}."}]
        rows.append({"messages": messages})
    rows.append({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y", "weight": -1}]})
    (tmp_path / "chats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "mix.yaml").write_text(
        "name: turns\nseed: 3\nsources:\n  - name: chats\n    from: chats.jsonl\n    format: openai\n"
        "split:\n  validation: 0.25\n"
        f"render:\n  - name: weighted\n    tokenizer: {demo}\n    train_on: weighted\n"
        f"  - name: first\n    tokenizer: {demo}\n    train_on: first_n\n    first_n: 1\n",
        encoding="utf-8",
    )
    loaded = load_recipe(tmp_path / "mix.yaml")
    result = run(loaded)
    write_build(loaded, result.stages, result.entries)
    out = loaded.build_dir
    report = json.loads((out / "report" / "report.json").read_text())
    schema = json.loads((REPO / "schemas" / "report.schema.json").read_text())
    assert [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(report)] == []
    markdown = (out / "report" / "report.md").read_text()
    for name in ("weighted", "first"):
        rendered = [pq.read_table(out / "rendered" / name / f"{s}.parquet") for s in ("train", "val")]
        loss = report["render"][name]["loss"]
        trained = sum(sum(t["n_trained"].to_pylist()) for t in rendered)
        assert loss["by_role"] == {"assistant": trained, "text": 0}
        n_rows = sum(t.num_rows for t in rendered)
        assert loss["by_turn"]["1"]["turns"] == loss["by_turn"]["2"]["turns"] == n_rows
        assert sum(c["tokens"] for c in loss["by_turn"].values()) == trained
        rejects = pq.read_table(out / "rendered" / name / "rejects.parquet").to_pylist()
        assert [r["field"] for r in rejects if r["reason"] == "invalid_loss_weight"] == ["messages[1].weight"]
        # under first_n: 1, the rows whose first reply has weight 0 (i = 3, 6, 9, 15, 18, 21) train nothing
        untrained = [r for r in rejects if r["reason"] == "no_trained_tokens"]
        assert len(untrained) == (6 if name == "first" else 0) and len(rejects) == len(untrained) + 1
    weighted, first = report["render"]["weighted"]["loss"], report["render"]["first"]["loss"]
    assert weighted["by_turn"]["2"]["trained_turns"] == weighted["by_turn"]["2"]["turns"]  # every 2nd reply trains
    assert first["by_turn"]["2"]["trained_turns"] == 0 and first["first_n"] == 1
    # first replies of weight 0 do not train: the weighted target keeps those rows (their 2nd reply trains)
    assert first["by_turn"]["1"]["trained_turns"] == first["by_turn"]["1"]["turns"]
    assert weighted["by_turn"]["1"]["trained_turns"] == weighted["by_turn"]["1"]["turns"] - 6
    assert 0 < weighted["by_turn"]["1"]["weight"] < weighted["by_turn"]["1"]["tokens"]  # the 0.5 turns count half
    table = pq.read_table(out / "rendered" / "weighted" / "train.parquet")
    assert all(
        len(w) == len(i) for w, i in zip(table["loss_weights"].to_pylist(), table["input_ids"].to_pylist(), strict=True)
    )
    assert "### Loss per turn" in markdown and "`train_on: first_n` (`first_n: 1`)" in markdown
    assert "| 1st |" in markdown and "mean weight |" in markdown
    notes = report["render"]["first"]["checks"]["row_notes"]
    assert notes["fractional_weight_ignored"] > 0
    assert "set `train_on: weighted` to scale those turns' loss" in markdown
