"""Preference pairs and KTO labels in Alpaca, ShareGPT and OpenAI: read, rejected, written, round-tripped."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataforge import formats
from dataforge.checking import Checked, check_files
from dataforge.record import Example, Kind, Message, Provenance, Role, ToolCall
from dataforge.stages.lint import same_completion


def m(role: str, content: str | None, **fields: Any) -> dict[str, Any]:
    return Message(Role(role), content, **fields).to_row()


def canonical(checked: Checked) -> list[dict[str, Any]]:
    """The content of each example: kind, prompt/conversation, completions, label, tools."""
    keys = ("kind", "messages", "chosen", "rejected", "label", "tools")
    return [{k: row[k] for k in keys} for row in checked.examples.to_pylist()]


def rejects(checked: Checked) -> list[tuple]:
    return [(r["stage"], r["row"], r["reason"], r["field"], r["message"]) for r in checked.rejects.to_pylist()]


def pair(messages, chosen, rejected, tools=None) -> dict[str, Any]:
    return {
        "kind": "preference",
        "messages": messages,
        "chosen": chosen,
        "rejected": rejected,
        "label": None,
        "tools": tools,
    }


def kto(messages, label: bool, tools=None) -> dict[str, Any]:
    return {"kind": "kto", "messages": messages, "chosen": None, "rejected": None, "label": label, "tools": tools}


def sft(messages, tools=None) -> dict[str, Any]:
    return {"kind": "sft", "messages": messages, "chosen": None, "rejected": None, "label": None, "tools": tools}


def row(kind: Kind, messages=(), chosen=(), rejected=(), label=None, tools=None, text=None, metadata=None) -> dict:
    return Example(
        id="src:0",
        kind=kind,
        provenance=Provenance("src", "f.jsonl", 0, 1),
        messages=tuple(messages),
        chosen=tuple(chosen),
        rejected=tuple(rejected),
        label=label,
        tools=tools,
        text=text,
        metadata=metadata or {},
    ).to_row()


U, A, S = Role.USER, Role.ASSISTANT, Role.SYSTEM


# --- Alpaca ---------------------------------------------------------------------------------------


def test_alpaca_preference_and_kto_rows(write, check):
    checked = check(
        write(
            "a.jsonl",
            [
                {
                    "system": "s",
                    "history": [["u1", "a1"]],
                    "instruction": "q",
                    "input": "ctx",
                    "chosen": "good",
                    "rejected": "bad",
                },
                {"instruction": "q", "output": "a", "kto_tag": True},
                {"instruction": "q", "output": "a", "label": False},
                {"instruction": "q", "output": "a", "kto_tag": False, "label": False},
                {"instruction": "q", "output": "a"},
            ],
        )
    )
    assert checked.format == "alpaca"
    qa = [m("user", "q"), m("assistant", "a")]
    assert canonical(checked) == [
        pair(
            [m("system", "s"), m("user", "u1"), m("assistant", "a1"), m("user", "q\nctx")],
            [m("assistant", "good")],
            [m("assistant", "bad")],
        ),
        kto(qa, True),
        kto(qa, False),
        kto(qa, False),
        sft(qa),
    ]


def test_alpaca_preference_is_detected_without_output(write, check):
    checked = check(write("p.json", [{"instruction": "q", "chosen": "good", "rejected": "bad"}]))
    assert checked.format == "alpaca"
    assert canonical(checked) == [pair([m("user", "q")], [m("assistant", "good")], [m("assistant", "bad")])]


def test_alpaca_rows_that_cannot_be_preference_or_kto_are_rejected(write, check):
    checked = check(
        write(
            "bad.jsonl",
            [
                {"instruction": "q", "chosen": "good"},
                {"instruction": "q", "output": "a", "chosen": "good", "rejected": "bad"},
                {"instruction": "q", "chosen": "good", "rejected": "bad", "kto_tag": True},
                {"instruction": "q", "output": "a", "kto_tag": True, "label": False},
                {"instruction": "q", "output": "a", "kto_tag": "yes"},
            ],
        ),
        "alpaca",
    )
    assert checked.examples.num_rows == 0
    assert rejects(checked) == [
        (
            "validate",
            0,
            "missing_preference",
            "rejected",
            "a preference example needs a non-empty `rejected` completion",
        ),
        (
            "convert",
            1,
            "schema_violation",
            "output",
            "a row holds either 'output' (sft, kto) or 'chosen' and 'rejected' (preference), not both",
        ),
        (
            "convert",
            2,
            "schema_violation",
            "kto_tag",
            "a row is either a preference pair (chosen/rejected) or a KTO example (a label), not both",
        ),
        ("convert", 3, "schema_violation", "label", "'kto_tag' and 'label' both hold a KTO label and they differ"),
        ("read", 4, "schema_violation", "kto_tag", "expected boolean or null, found a string"),
    ]


def test_alpaca_writes_preference_and_kto_rows():
    written = formats.get("alpaca").from_examples(
        [
            row(
                Kind.PREFERENCE,
                [Message(S, "s"), Message(U, "u1"), Message(A, "a1"), Message(U, "q")],
                [Message(A, "good")],
                [Message(A, "bad")],
            ),
            row(Kind.KTO, [Message(U, "q"), Message(A, "a")], label=False),
        ]
    )
    assert written.records == [
        {
            "system": "s",
            "instruction": "q",
            "input": "",
            "chosen": "good",
            "rejected": "bad",
            "history": [["u1", "a1"]],
        },
        {"instruction": "q", "input": "", "output": "a", "kto_tag": False},
    ]
    assert written.losses == {}


def test_alpaca_counts_what_a_preference_row_cannot_carry():
    call = ToolCall(name="f", arguments={})
    written = formats.get("alpaca").from_examples(
        [
            row(Kind.PREFERENCE, [Message(U, "q")], [Message(A, "good", reasoning="r")], [Message(A, "bad")]),
            row(Kind.PREFERENCE, [Message(U, "q")], [Message(A, "x"), Message(A, "y")], [Message(A, "bad")]),
            row(Kind.PREFERENCE, [Message(U, "q")], [Message(A, None, tool_calls=(call,))], [Message(A, "bad")]),
            row(Kind.PREFERENCE, [Message(U, "q"), Message(A, "a")], [Message(A, "good")], [Message(A, "bad")]),
            row(Kind.PRETRAIN, text="plain"),
        ]
    )
    assert written.records == [{"instruction": "q", "input": "", "chosen": "good", "rejected": "bad"}]
    assert written.losses == {
        "reasoning": 1,
        "tool calls": 1,
        "preference rows whose chosen is not one assistant text turn (not written)": 2,
        "preference rows whose prompt is not alternating user/assistant turns ending on a user turn (not written)": 1,
        "pretrain rows (plain text, not written)": 1,
    }


# --- ShareGPT -------------------------------------------------------------------------------------


def test_sharegpt_ranking_rows_with_one_turn_or_a_list_and_kto_tags(write, check):
    human = {"from": "human", "value": "q"}
    checked = check(
        write(
            "s.json",
            [
                {
                    "conversations": [{"from": "system", "value": "s"}, human],
                    "chosen": {"from": "gpt", "value": "good"},
                    "rejected": {"from": "gpt", "value": "bad"},
                },
                {
                    "conversations": [human],
                    "chosen": [
                        {"from": "function_call", "value": '{"name": "f", "arguments": {"x": 1}}'},
                        {"from": "observation", "value": "42"},
                        {"from": "gpt", "value": "it is 42"},
                    ],
                    "rejected": [{"from": "gpt", "value": "no idea"}],
                },
                {"conversations": [human, {"from": "gpt", "value": "a"}], "kto_tag": True},
                {"conversations": [human, {"from": "gpt", "value": "a"}], "label": False},
            ],
        )
    )
    assert checked.format == "sharegpt"
    call = ToolCall(name="f", arguments={"x": 1})
    assert canonical(checked) == [
        pair([m("system", "s"), m("user", "q")], [m("assistant", "good")], [m("assistant", "bad")]),
        pair(
            [m("user", "q")],
            [m("assistant", None, tool_calls=(call,)), m("tool", "42"), m("assistant", "it is 42")],
            [m("assistant", "no idea")],
        ),
        kto([m("user", "q"), m("assistant", "a")], True),
        kto([m("user", "q"), m("assistant", "a")], False),
    ]


def test_sharegpt_completion_problems_name_the_turn(write, check):
    human = {"from": "human", "value": "q"}
    checked = check(
        write(
            "bad.json",
            [
                {
                    "conversations": [human],
                    "chosen": {"from": "bot", "value": "x"},
                    "rejected": {"from": "gpt", "value": "y"},
                },
                {"conversations": [human], "chosen": {"from": "gpt", "value": "x"}},
                {"conversations": [human], "chosen": "x", "rejected": "y"},
                {"conversations": [human], "chosen": [{"from": "function_call", "value": "{"}], "rejected": [human]},
            ],
        ),
        "sharegpt",
    )
    assert [(r[:4]) for r in rejects(checked)] == [
        ("convert", 0, "unknown_role", "chosen[0].from"),
        ("validate", 1, "missing_preference", "rejected"),
        ("read", 2, "schema_violation", "chosen"),
        ("convert", 3, "invalid_tool_call", "chosen[0].value"),
    ]


def test_sharegpt_writes_ranking_rows_as_llamafactory_does():
    call = ToolCall(name="f", arguments={"x": 1})
    written = formats.get("sharegpt").from_examples(
        [
            row(Kind.PREFERENCE, [Message(S, "s"), Message(U, "q")], [Message(A, "good")], [Message(A, "bad")]),
            row(
                Kind.PREFERENCE,
                [Message(U, "q")],
                [Message(A, None, tool_calls=(call,)), Message(Role.TOOL, "42"), Message(A, "42!")],
                [Message(A, "bad", reasoning="hmm")],
            ),
            row(Kind.KTO, [Message(U, "q"), Message(A, "a")], label=True),
            row(Kind.PRETRAIN, text="plain"),
        ]
    )
    q = {"from": "human", "value": "q"}
    assert written.records == [
        {
            "conversations": [{"from": "system", "value": "s"}, q],
            "chosen": {"from": "gpt", "value": "good"},
            "rejected": {"from": "gpt", "value": "bad"},
        },
        {
            "conversations": [q],
            "chosen": [
                {"from": "function_call", "value": '{"name": "f", "arguments": {"x": 1}}'},
                {"from": "observation", "value": "42"},
                {"from": "gpt", "value": "42!"},
            ],
            "rejected": {"from": "gpt", "value": "bad"},
        },
        {"conversations": [q, {"from": "gpt", "value": "a"}], "kto_tag": True},
    ]
    assert written.losses == {"reasoning": 1, "pretrain rows (plain text, not written)": 1}


# --- OpenAI ---------------------------------------------------------------------------------------


def test_openai_preference_kto_and_thinking(write, check):
    user = {"role": "user", "content": "q"}
    checked = check(
        write(
            "o.jsonl",
            [
                {
                    "messages": [user],
                    "chosen": [{"role": "assistant", "content": "good", "thinking": "t"}],
                    "rejected": {"role": "assistant", "content": "bad", "reasoning_content": "r"},
                },
                {"messages": [user, {"role": "assistant", "content": "a", "thinking": "t"}], "label": True},
                {"messages": [user, {"role": "assistant", "content": "a"}]},
            ],
        )
    )
    assert checked.format == "openai"
    assert canonical(checked) == [
        pair([m("user", "q")], [m("assistant", "good", reasoning="t")], [m("assistant", "bad", reasoning="r")]),
        kto([m("user", "q"), m("assistant", "a", reasoning="t")], True),
        sft([m("user", "q"), m("assistant", "a")]),
    ]


def test_openai_completion_problems_name_the_message(write, check):
    user = {"role": "user", "content": "q"}
    answer = {"role": "assistant", "content": "a"}
    checked = check(
        write(
            "bad.jsonl",
            [
                {"messages": [user], "chosen": [{"role": "bot", "content": "x"}], "rejected": [answer]},
                {"messages": [user], "rejected": [answer]},
                {"messages": [user, answer], "label": "yes"},
                {"messages": [user, {**answer, "thinking": "a", "reasoning_content": "b"}]},
                {"messages": [user], "chosen": [answer], "rejected": [answer], "label": True},
            ],
        ),
        "openai",
    )
    assert [(r[:4]) for r in rejects(checked)] == [
        ("convert", 0, "unknown_role", "chosen[0].role"),
        ("validate", 1, "missing_preference", "chosen"),
        ("read", 2, "schema_violation", "label"),
        ("convert", 3, "schema_violation", "messages[1].thinking"),
        ("convert", 4, "schema_violation", "label"),
    ]


def test_openai_writes_preference_and_kto_rows():
    written = formats.get("openai").from_examples(
        [
            row(Kind.PREFERENCE, [Message(U, "q")], [Message(A, "good", reasoning="t")], [Message(A, "bad")]),
            row(Kind.KTO, [Message(U, "q"), Message(A, "a")], label=False),
            row(Kind.PRETRAIN, text="plain"),
        ]
    )
    user = {"role": "user", "content": "q"}
    assert written.records == [
        {
            "messages": [user],
            "chosen": [{"role": "assistant", "content": "good", "reasoning_content": "t"}],
            "rejected": [{"role": "assistant", "content": "bad"}],
        },
        {"messages": [user, {"role": "assistant", "content": "a"}], "label": False},
    ]
    assert written.losses == {"pretrain rows (plain text, not written)": 1}


# --- round trips: canonical → format → canonical is exact when nothing is lost --------------------

# Reasoning tags are left out: hypothesis also draws string constants from the code under test, and a lone
# `<think>` in content is a row the lint rejects (unbalanced_think) on any path, so not a round-trip property.
text = (
    st.text(min_size=1, max_size=20) | st.sampled_from(["line one\nline two", "数据 🙂", '"q" \\ {j}', "\t"])
).filter(lambda s: "think>" not in s)
arguments = st.dictionaries(st.text(max_size=6), st.integers() | st.text(max_size=6) | st.none(), max_size=3)
# What each format can carry: tool calls (and their ids), reasoning, completions of several turns.
CARRIES = {  # alpaca has no tools column: its rows declare none
    "alpaca": {"tools": False, "ids": False, "reasoning": False, "long": False},
    "sharegpt": {"tools": True, "ids": False, "reasoning": False, "long": True},
    "openai": {"tools": True, "ids": True, "reasoning": True, "long": True},
    "trl": {"tools": True, "ids": True, "reasoning": True, "long": True},
}


@st.composite
def answer(draw, can: dict[str, bool], declared: list[dict[str, Any]]) -> list[Message]:
    """An assistant completion: text (maybe with reasoning), or tool calls → results → text. Called functions
    are added to `declared` (a call to an undeclared function is a lint reject)."""
    reasoning = draw(st.none() | text) if can["reasoning"] else None
    if can["long"] and can["tools"] and draw(st.booleans()):
        calls = tuple(
            ToolCall(draw(text), draw(arguments), draw(text) if can["ids"] else None)
            for _ in range(draw(st.integers(1, 2)))
        )
        declared += [{"name": c.name} for c in calls if {"name": c.name} not in declared]
        results = [Message(Role.TOOL, draw(text), tool_call_id=c.id) for c in calls]
        return [Message(A, None, tool_calls=calls), *results, Message(A, draw(text), reasoning=reasoning)]
    return [Message(A, draw(text), reasoning=reasoning)]


@st.composite
def examples(draw, fmt: str) -> Example:
    """A preference pair or a KTO example with a multi-turn prompt and maybe a system prompt."""
    can = CARRIES[fmt]
    declared: list[dict[str, Any]] = []
    msgs: list[Message] = [Message(S, draw(text))] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(0, 2))):
        msgs += [Message(U, draw(text)), *draw(answer(can, declared))]
    msgs.append(Message(U, draw(text)))
    where = Provenance("gen", "gen.jsonl", 0, 1)
    if draw(st.booleans()):
        chosen = draw(answer(can, declared))
        rejected = draw(answer(can, declared))
        # Sides the linter would call identical (whitespace aside) are a lint reject, not a pair.
        if same_completion([m.to_row() for m in chosen], [m.to_row() for m in rejected]):
            rejected = [*rejected[:-1], Message(A, (rejected[-1].content or "") + " (worse)")]
        tools = declared or None
        return Example("gen:0", Kind.PREFERENCE, where, tuple(msgs), tools, tuple(chosen), tuple(rejected))
    # A KTO completion is the last assistant turn.
    final = draw(answer({**can, "long": False}, declared))
    return Example("gen:0", Kind.KTO, where, tuple(msgs + final), declared or None, label=draw(st.booleans()))


def written_and_read(rows: list[dict[str, Any]], fmt: str) -> tuple[Checked, Any]:
    written = formats.get(fmt).from_examples(rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in written.records), encoding="utf-8")
        return check_files(str(path), fmt, root=Path(tmp)), written


def content(r: dict[str, Any]) -> tuple:
    return (r["kind"], r["messages"], r["chosen"], r["rejected"], r["label"], r["tools"])


@pytest.mark.parametrize("fmt", list(CARRIES))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_preference_and_kto_round_trip_exactly(fmt, data):
    batch = data.draw(st.lists(examples(fmt), min_size=1, max_size=4))
    rows = [e.to_row() for e in batch]
    checked, written = written_and_read(rows, fmt)
    assert written.losses == {}
    assert checked.rejects.to_pylist() == []
    assert [content(r) for r in checked.examples.to_pylist()] == [content(r) for r in rows]


# --- LLaMA-Factory's own preference and KTO demos -------------------------------------------------

PEERS = [
    ("dpo_en_demo.json", "sharegpt", "preference"),
    ("dpo_zh_demo.json", "sharegpt", "preference"),
    ("kto_en_demo.json", "openai", "kto"),
]


@pytest.fixture(scope="module")
def llamafactory(fixture_path: Callable[[str], Path]) -> Callable[[str], Path]:
    """`llamafactory(name)`: one of LLaMA-Factory's demo files, vendored or shared; skips when neither has it."""
    return lambda name: fixture_path(f"peers/llamafactory/{name}").resolve()


@pytest.mark.parametrize(("name", "fmt", "kind"), PEERS)
def test_peer_demo_is_detected_read_whole_and_written_back_unchanged(llamafactory, tmp_path, name, fmt, kind):
    source = llamafactory(name)
    original = json.loads(source.read_text(encoding="utf-8"))
    checked = check_files(str(source), None, root=source.parent)
    assert checked.format == fmt
    assert checked.rejects.to_pylist() == []
    assert checked.examples.num_rows == checked.records == len(original)
    assert set(checked.examples["kind"].to_pylist()) == {kind}

    written = formats.get(fmt).from_examples(checked.examples.to_pylist())
    assert written.losses == {}
    assert written.records == original  # dict equality: key order aside
    path = tmp_path / name
    path.write_text(json.dumps(written.records, ensure_ascii=False), encoding="utf-8")
    again = check_files(str(path), fmt, root=tmp_path)
    assert again.rejects.to_pylist() == []
    assert [content(r) for r in again.examples.to_pylist()] == [content(r) for r in checked.examples.to_pylist()]


def test_peer_dpo_pairs_keep_their_prompt_and_both_answers(llamafactory):
    source = llamafactory("dpo_en_demo.json")
    original = json.loads(source.read_text(encoding="utf-8"))
    checked = check_files(str(source), None, root=source.parent)
    rows = checked.examples.to_pylist()
    assert [[t["content"] for t in r["messages"]] for r in rows] == [
        [t["value"] for t in o["conversations"]] for o in original
    ]
    assert [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows] == [
        (o["chosen"]["value"], o["rejected"]["value"]) for o in original
    ]
    assert {r["messages"][-1]["role"] for r in rows} == {"user"}
