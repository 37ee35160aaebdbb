"""MiniMind conversations of {role, content}, with <think>…</think><answer>…</answer> reasoning."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_swift import assert_round_trip, canonical_examples, msg

from dataforge import formats
from dataforge.record import Example, Kind, Message, Provenance, Role, ToolCall

SFT = {
    "conversations": [
        {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "你好！有什么可以帮你？"},
    ]
}
R1 = {
    "conversations": [
        {"role": "system", "content": "Think first."},
        {"role": "user", "content": "1+1?"},
        {"role": "assistant", "content": "<think>\nOne and one.\n</think>\n<answer>\n2\n</answer>"},
    ]
}


def test_sft_and_r1_records(write, check):
    checked = check(write("mix.jsonl", [SFT, R1]))
    assert (checked.format, checked.rejects.num_rows) == ("minimind", 0)
    sft, r1 = checked.examples.to_pylist()
    assert sft["messages"] == [msg("user", "你好"), msg("assistant", "你好！有什么可以帮你？")]
    assert r1["messages"] == [
        msg("system", "Think first."),
        msg("user", "1+1?"),
        msg("assistant", "2", reasoning="One and one."),
    ]


@pytest.mark.parametrize(
    ("content", "reason", "message"),
    [
        ("<think>\nno end\n<answer>\n2\n</answer>", "unbalanced_think", "a <think> is never closed"),
        ("<think><think>a</think></think><answer>2</answer>", "nested_think", "a <think> is opened inside another"),
    ],
)
def test_bad_think_tags_are_rejected_naming_the_turn(write, check, content, reason, message):
    bad = {"conversations": [{"role": "user", "content": "q"}, {"role": "assistant", "content": content}]}
    checked = check(write("bad.jsonl", [SFT, bad]), "minimind")
    assert checked.examples.num_rows == 1
    [reject] = checked.rejects.to_pylist()
    assert (reject["row"], reject["reason"], reject["field"]) == (1, reason, "conversations[1].content")
    assert reject["message"].startswith(message)


def test_unknown_role_is_rejected(write, check):
    bad = {"conversations": [{"role": "human", "content": "q"}, {"role": "assistant", "content": "a"}]}
    [reject] = check(write("bad.jsonl", [bad]), "minimind").rejects.to_pylist()
    assert (reject["reason"], reject["field"]) == ("unknown_role", "conversations[0].role")


def test_detection_keeps_sharegpt_apart():
    sharegpt = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    assert not formats.get("minimind").matches(sharegpt)
    assert not formats.get("sharegpt").matches(SFT)
    assert formats.detect([sharegpt, sharegpt], "x.jsonl").name == "sharegpt"
    assert formats.detect([SFT, R1], "x.jsonl").name == "minimind"


def test_writer_wraps_only_turns_with_reasoning(write, check):
    checked = check(write("mix.jsonl", [SFT, R1]))
    written = formats.get("minimind").from_examples(checked.examples.to_pylist())
    assert written.losses == {}
    assert written.records == [SFT, R1]


def test_writer_counts_rows_it_cannot_hold():
    def example(i: int, kind: Kind, *messages: Message, tools=None) -> dict:
        return Example(
            id=f"x:{i}", kind=kind, provenance=Provenance("x", "x.jsonl", i), messages=messages, tools=tools
        ).to_row()

    rows = [
        example(0, Kind.SFT, Message(Role.USER, "q"), Message(Role.ASSISTANT, None, tool_calls=(ToolCall("f", {}),))),
        example(1, Kind.SFT, Message(Role.USER, "q"), Message(Role.ASSISTANT, "a"), tools=[{"name": "f"}]),
        example(2, Kind.KTO, Message(Role.USER, "q"), Message(Role.ASSISTANT, "a")),
        example(3, Kind.SFT, Message(Role.USER, "q", name="ann"), Message(Role.ASSISTANT, "a", weight=0.0)),
    ]
    written = formats.get("minimind").from_examples(rows)
    assert written.losses == {
        "rows with tools, tool calls or results (not written)": 2,
        "kto rows (minimind holds sft only; not written)": 1,
        "message names": 1,
        "message weights": 1,
    }
    assert written.records == [
        {"conversations": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    ]


@settings(max_examples=60, deadline=None)
@given(st.lists(canonical_examples(tools=False), min_size=1, max_size=4))
def test_canonical_to_minimind_and_back_is_exact(batch):
    assert_round_trip(batch, "minimind")
