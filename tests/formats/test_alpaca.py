"""Alpaca: instruction/input/output (+ system, history) to canonical messages and back."""

from __future__ import annotations

import json

import pytest

from dataforge import formats
from dataforge.record import Example, Kind, Message, Provenance, Role, ToolCall

ALPACA = formats.get("alpaca")


def turns(checked) -> list[list[tuple[str, str | None]]]:
    return [[(m["role"], m["content"]) for m in ms] for ms in checked.examples["messages"].to_pylist()]


def rejects(checked) -> list[tuple]:
    return [
        (r["stage"], r["row"], r["line"], r["reason"], r["field"], r["message"]) for r in checked.rejects.to_pylist()
    ]


def example(*messages: Message, tools=None, metadata=None) -> dict:
    return Example(
        id="src:0",
        kind=Kind.SFT,
        provenance=Provenance("src", "f.jsonl", 0, 1),
        messages=messages,
        tools=tools,
        metadata=metadata or {},
    ).to_row()


def test_instruction_and_input_join_with_a_newline(write, check):
    checked = check(
        write(
            "a.jsonl",
            [
                {"instruction": "Translate.", "input": "Bonjour", "output": "Hello"},
                {"instruction": "Say hi.", "input": "", "output": "hi"},
                {"instruction": "Say bye.", "input": None, "output": "bye"},
                {"instruction": "", "input": "only input", "output": "ok"},
                {"instruction": "no input key", "output": "ok"},
            ],
        )
    )
    assert checked.format == "alpaca"
    assert turns(checked) == [
        [("user", "Translate.\nBonjour"), ("assistant", "Hello")],
        [("user", "Say hi."), ("assistant", "hi")],
        [("user", "Say bye."), ("assistant", "bye")],
        [("user", "only input"), ("assistant", "ok")],
        [("user", "no input key"), ("assistant", "ok")],
    ]


def test_system_and_history_come_before_the_last_turn(write, check):
    checked = check(
        write(
            "h.json",
            [
                {
                    "system": "Be brief.",
                    "history": [["Hi", "Hello!"], ["How are you?", "Fine."]],
                    "instruction": "And now?",
                    "output": "Still fine.",
                }
            ],
        )
    )
    assert turns(checked) == [
        [
            ("system", "Be brief."),
            ("user", "Hi"),
            ("assistant", "Hello!"),
            ("user", "How are you?"),
            ("assistant", "Fine."),
            ("user", "And now?"),
            ("assistant", "Still fine."),
        ]
    ]
    row = checked.examples.to_pylist()[0]
    assert (row["id"], row["kind"], row["source"], row["file"], row["row"], row["line"], row["tools"]) == (
        "input:0",
        "sft",
        "input",
        "h.json",
        0,
        2,
        None,
    )
    assert [m["reasoning"] for m in row["messages"]] == [None] * 7


def test_empty_system_adds_no_message(write, check):
    checked = check(write("s.jsonl", [{"system": "", "instruction": "q", "output": "a"}]))
    assert turns(checked) == [[("user", "q"), ("assistant", "a")]]


def test_rows_that_cannot_convert_are_rejected_with_the_field(write, check):
    checked = check(
        write(
            "bad.jsonl",
            [
                {"instruction": "fine", "output": "ok"},
                {"output": "no instruction"},
                {"instruction": "no output"},
                {"instruction": "q", "output": "a", "history": [["lonely"]]},
                {"instruction": "q", "output": ""},
                {"instruction": "", "input": "", "output": "a"},
                {"instruction": "q", "output": "a", "history": [["u", None]]},
            ],
        ),
        "alpaca",
    )
    assert turns(checked) == [[("user", "fine"), ("assistant", "ok")]]
    pair = "every history item must be a [user, assistant] pair of two strings"
    assert rejects(checked) == [
        ("convert", 1, 2, "schema_violation", "instruction", "'instruction' is required but missing"),
        ("convert", 2, 3, "schema_violation", "output", "'output' is required but missing"),
        ("convert", 3, 4, "schema_violation", "history[0]", pair),
        ("validate", 4, 5, "empty_content", "output", "assistant message has no content (empty string)"),
        ("validate", 5, 6, "empty_content", "instruction", "user message has no content (empty string)"),
        ("validate", 6, 7, "empty_content", "history[0][1]", "assistant message has no content (null)"),
    ]
    assert checked.records == checked.examples.num_rows + checked.rejects.num_rows


def test_history_pairs_of_the_wrong_length_are_rejected_on_the_careful_path_too(write, check):
    text = '{"instruction": "q", "output": "a", "history": [["u", "a", "extra"]]}\n{"broken\n'
    checked = check(write("long.jsonl", text))
    assert rejects(checked)[0] == (
        "read",
        0,
        1,
        "schema_violation",
        "history[0]",
        "['u', 'a', 'extra'] is too long",
    )


def test_from_examples_writes_system_history_and_last_pair():
    written = ALPACA.from_examples(
        [
            example(
                Message(Role.SYSTEM, "sys"),
                Message(Role.USER, "u1"),
                Message(Role.ASSISTANT, "a1"),
                Message(Role.USER, "u2"),
                Message(Role.ASSISTANT, "a2"),
                metadata={"id": 7},
            )
        ]
    )
    assert written.records == [
        {
            "system": "sys",
            "instruction": "u2",
            "input": "",
            "output": "a2",
            "history": [["u1", "a1"]],
            "id": 7,
        }
    ]
    assert written.losses == {}


def test_metadata_keys_named_like_alpaca_columns_are_counted_not_written(write, check):
    # A source's extra column named `system` (or `output`) used to become that column when written, or vanish.
    rows = [
        example(
            Message(Role.USER, "q"),
            Message(Role.ASSISTANT, "a"),
            metadata={"system": "x", "output": "y", "k": 1},
        )
    ]
    written = ALPACA.from_examples(rows)
    assert written.records == [{"instruction": "q", "input": "", "output": "a", "k": 1}]
    assert written.losses == {"metadata keys named like a format column": 2}
    checked = check(write("meta.jsonl", written.records), "alpaca")
    assert checked.examples["messages"].to_pylist() == [rows[0]["messages"]]
    assert checked.examples["metadata"].to_pylist() == ['{"k": 1}']


def test_rows_whose_assistant_turn_only_calls_tools_are_not_written():
    call = ToolCall(name="lookup", arguments={})
    written = ALPACA.from_examples(
        [example(Message(Role.USER, "find it"), Message(Role.ASSISTANT, None, tool_calls=(call,)))]
    )
    assert written.records == []  # was {"instruction": "find it", "input": "", "output": ""}
    assert written.losses == {
        "tool calls": 1,
        "rows with an assistant turn that only calls tools (not written)": 1,
    }


def test_from_examples_counts_what_alpaca_cannot_carry():
    call = ToolCall(name="get_weather", arguments={"city": "Paris"}, id="c1")
    written = ALPACA.from_examples(
        [
            example(
                Message(Role.SYSTEM, "first"),
                Message(Role.SYSTEM, "second"),
                Message(Role.USER, "q", name="ann"),
                Message(Role.ASSISTANT, "a", reasoning="because"),
                tools=[{"name": "get_weather"}],
            ),
            example(
                Message(Role.USER, "weather?"),
                Message(Role.ASSISTANT, None, tool_calls=(call,)),
                Message(Role.TOOL, "sunny", tool_call_id="c1"),
                Message(Role.ASSISTANT, "It is sunny."),
            ),
            example(Message(Role.USER, "unanswered")),
        ]
    )
    assert written.records == [{"system": "first", "instruction": "q", "input": "", "output": "a"}]
    assert written.losses == {
        "system messages after the first": 1,
        "message names": 1,
        "reasoning": 1,
        "tool declarations": 1,
        "tool calls": 1,
        "tool results": 1,
        "rows not shaped as alternating user/assistant turns (not written)": 2,
    }


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_written_records_read_back_to_the_same_messages(write, check, suffix):
    rows = [
        example(Message(Role.USER, "q\nwith a newline"), Message(Role.ASSISTANT, "数据 🙂")),
        example(
            Message(Role.SYSTEM, "s"),
            Message(Role.USER, "u1"),
            Message(Role.ASSISTANT, "a1"),
            Message(Role.USER, "u2"),
            Message(Role.ASSISTANT, "a2"),
        ),
    ]
    written = ALPACA.from_examples(rows)
    checked = check(write("back" + suffix, written.records), "alpaca")
    assert checked.rejects.num_rows == 0
    assert checked.examples["messages"].to_pylist() == [r["messages"] for r in rows]


def test_schema_requires_instruction_and_output_is_checked_on_conversion():
    # `output` is required unless the row is a preference pair; the converter says which is missing.
    schema = ALPACA.json_schema()
    assert schema["required"] == ["instruction"]
    assert set(schema["properties"]) == set(ALPACA.shape.arrow.names)
    assert json.loads(json.dumps(schema)) == schema  # publishable as JSON
