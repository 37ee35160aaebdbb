"""OpenAI chat records: messages with tool_calls, tool results, reasoning_content, tools; and back."""

from __future__ import annotations

import json

import pytest

from dataforge import formats
from dataforge.formats.toolids import call_id
from dataforge.record import Example, Kind, Message, Provenance, Role, ToolCall

OPENAI = formats.get("openai")


def rejects(checked) -> list[tuple]:
    return [
        (r["stage"], r["row"], r["line"], r["reason"], r["field"], r["message"]) for r in checked.rejects.to_pylist()
    ]


def chat(*messages: dict, **columns) -> dict:
    return {"messages": list(messages), **columns}


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str | None, **more) -> dict:
    return {"role": "assistant", "content": text, **more}


def call(name: str, arguments, id: str | None = "call_1") -> dict:
    return {"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}


def example(*messages: Message, tools=None) -> dict:
    return Example(
        id="src:0",
        kind=Kind.SFT,
        provenance=Provenance("src", "f.jsonl", 0, 1),
        messages=messages,
        tools=tools,
    ).to_row()


@pytest.mark.parametrize("arguments", ['{"city": "Paris"}', {"city": "Paris"}], ids=["text", "object"])
def test_tool_calls_results_reasoning_and_tools(write, check, arguments):
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    checked = check(
        write(
            "chat.jsonl",
            [
                chat(
                    {"role": "system", "content": "sys"},
                    {"role": "user", "content": "weather?", "name": "ann"},
                    assistant(None, tool_calls=[call("weather", arguments)], reasoning_content="need data"),
                    {"role": "tool", "content": "sunny", "tool_call_id": "call_1"},
                    assistant("It is sunny."),
                    tools=tools,
                    id="row-1",
                )
            ],
        )
    )
    assert checked.format == "openai"
    assert checked.rejects.num_rows == 0
    row = checked.examples.to_pylist()[0]
    assert row["messages"] == [
        {
            "role": "system",
            "content": "sys",
            "reasoning": None,
            "tool_calls": None,
            "tool_call_id": None,
            "name": None,
            "weight": None,
        },
        {
            "role": "user",
            "content": "weather?",
            "reasoning": None,
            "tool_calls": None,
            "tool_call_id": None,
            "name": "ann",
            "weight": None,
        },
        {
            "role": "assistant",
            "content": None,
            "reasoning": "need data",
            "tool_calls": [{"id": "call_1", "name": "weather", "arguments": '{"city": "Paris"}'}],
            "tool_call_id": None,
            "name": None,
            "weight": None,
        },
        {
            "role": "tool",
            "content": "sunny",
            "reasoning": None,
            "tool_calls": None,
            "tool_call_id": "call_1",
            "name": None,
            "weight": None,
        },
        {
            "role": "assistant",
            "content": "It is sunny.",
            "reasoning": None,
            "tool_calls": None,
            "tool_call_id": None,
            "name": None,
            "weight": None,
        },
    ]
    assert json.loads(row["tools"]) == [{"name": "weather", "parameters": {"type": "object"}}]
    assert row["metadata"] == '{"id": "row-1"}'


def test_empty_arguments_mean_an_empty_object(write, check):
    checked = check(
        write(
            "empty-args.jsonl",
            [
                chat(
                    user("go"),
                    assistant(None, tool_calls=[call("f", "")]),
                    {"role": "tool", "content": "done"},
                    assistant("ok"),
                )
            ],
        )
    )
    assert checked.examples["messages"].to_pylist()[0][1]["tool_calls"] == [
        {"id": "call_1", "name": "f", "arguments": "{}"}
    ]


def test_rows_that_cannot_convert_are_rejected_with_the_message(write, check):
    no_function = {"id": "call_1", "type": "function"}
    no_name = {"id": "call_1", "type": "function", "function": {"arguments": "{}"}}
    checked = check(
        write(
            "bad.jsonl",
            [
                chat(user("fine"), assistant("ok")),
                chat(user("hi"), {"role": "bot", "content": "x"}),
                chat({"content": "who am I"}, assistant("x")),
                chat(user("hi"), assistant(None, tool_calls=[call("f", "[1]")])),
                chat(user("hi"), assistant(None, tool_calls=[call("f", "{oops")])),
                chat(user("hi"), assistant(None, tool_calls=[no_function])),
                chat(user("hi"), assistant(None, tool_calls=[no_name])),
                chat(user("hi"), assistant("x"), tools="not json"),
                {"tools": None},
                chat({"role": "user", "content": None}, assistant("x")),
                chat(user("hi")),
                chat(user("hi"), assistant(None)),
            ],
        ),
        "openai",
    )
    assert checked.examples["row"].to_pylist() == [0]
    roles = "assistant, system, tool, user"
    assert rejects(checked) == [
        ("convert", 1, 2, "unknown_role", "messages[1].role", f"unknown role 'bot'; expected one of {roles}"),
        ("convert", 2, 3, "unknown_role", "messages[0].role", f"unknown role None; expected one of {roles}"),
        (
            "convert",
            3,
            4,
            "invalid_tool_call",
            "messages[1].tool_calls[0].function.arguments",
            "arguments must be a JSON object (found list)",
        ),
        (
            "convert",
            4,
            5,
            "invalid_tool_call",
            "messages[1].tool_calls[0].function.arguments",
            "arguments must be a JSON object "
            "(Expecting property name enclosed in double quotes: line 1 column 2 "
            "(char 1))",
        ),
        # Arrow reads these as nulls; they crashed the converter (or kept a nameless call) before.
        (
            "convert",
            5,
            6,
            "invalid_tool_call",
            "messages[1].tool_calls[0].function",
            "a tool call needs a `function` object with a string `name`",
        ),
        (
            "convert",
            6,
            7,
            "invalid_tool_call",
            "messages[1].tool_calls[0].function.name",
            "a tool call needs a `function` object with a string `name`",
        ),
        ("convert", 7, 8, "invalid_tool_call", "tools", "tools: Expecting value: line 1 column 1 (char 0)"),
        ("convert", 8, 9, "schema_violation", "messages", "'messages' is required but missing"),
        ("validate", 9, 10, "empty_content", "messages[0].content", "user message has no content (null)"),
        (
            "validate",
            10,
            11,
            "no_assistant_turn",
            "messages",
            "an sft example needs at least one assistant turn to train on",
        ),
        (
            "validate",
            11,
            12,
            "empty_content",
            "messages[1].content",
            "assistant message has no content (null)",
        ),
    ]


def test_tool_call_without_function_is_rejected_on_the_careful_path_too(write, check):
    text = json.dumps(chat(user("hi"), assistant(None, tool_calls=[{"id": "x"}]))) + "\n{broken\n"
    checked = check(write("careful.jsonl", text), "openai")
    assert rejects(checked)[0] == (
        "read",
        0,
        1,
        "schema_violation",
        "messages[1].tool_calls[0].function",
        "'function' is required but missing",
    )


def test_system_message_after_the_first_is_misplaced(write, check):
    checked = check(write("late.jsonl", [chat(user("hi"), {"role": "system", "content": "late"}, assistant("x"))]))
    [reject] = checked.rejects.to_pylist()
    assert (reject["reason"], reject["message"]) == (
        "misplaced_system",
        "system message at position 1; only the first message may be a system prompt",
    )


GENERATED = call_id("src:0", "messages", 1, 1)


def test_from_examples_keeps_everything():
    calls = (ToolCall(name="f", arguments={"b": 1, "a": [2]}, id="call_9"), ToolCall(name="g", arguments={}))
    written = OPENAI.from_examples(
        [
            example(
                Message(Role.USER, "q", name="ann"),
                Message(Role.ASSISTANT, None, reasoning="hmm", tool_calls=calls),
                Message(Role.TOOL, "r1", tool_call_id="call_9"),
                Message(Role.TOOL, "r2"),
                Message(Role.ASSISTANT, "done"),
                tools=[{"name": "f"}, {"name": "g", "description": "G"}],
            )
        ]
    )
    assert written.records == [
        {
            "messages": [
                {"role": "user", "content": "q", "name": "ann"},
                {
                    "role": "assistant",
                    "content": None,
                    "reasoning_content": "hmm",
                    "tool_calls": [
                        {
                            "id": "call_9",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"b": 1, "a": [2]}'},
                        },
                        # No id: one from the example id and the call's place, and the next result answers it.
                        {"id": GENERATED, "type": "function", "function": {"name": "g", "arguments": "{}"}},
                    ],
                },
                {"role": "tool", "content": "r1", "tool_call_id": "call_9"},
                {"role": "tool", "content": "r2", "tool_call_id": GENERATED},
                {"role": "assistant", "content": "done"},
            ],
            "tools": [
                {"type": "function", "function": {"name": "f"}},
                {"type": "function", "function": {"name": "g", "description": "G"}},
            ],
        }
    ]
    assert written.losses == {}


def test_metadata_keys_named_like_openai_columns_are_counted_not_written():
    row = Example(
        id="src:0",
        kind=Kind.SFT,
        provenance=Provenance("src", "f.jsonl", 0, 1),
        messages=(Message(Role.USER, "q"), Message(Role.ASSISTANT, "a")),
        metadata={"tools": [{"name": "fake"}], "source_id": "x"},
    ).to_row()
    written = OPENAI.from_examples([row])
    assert written.records == [
        {
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
            "source_id": "x",
        }
    ]
    assert written.losses == {"metadata keys named like a format column": 1}


def test_written_records_read_back_to_the_same_example(write, check):
    rows = [
        example(
            Message(Role.SYSTEM, "s"),
            Message(Role.USER, "q\n\tindent", name="ann"),
            Message(Role.ASSISTANT, None, reasoning="r", tool_calls=(ToolCall("f", {"x": "数据"}, "c1"),)),
            Message(Role.TOOL, "out", tool_call_id="c1"),
            Message(Role.ASSISTANT, "🙂"),
            tools=[{"name": "f", "parameters": {"type": "object", "properties": {}}}],
        )
    ]
    checked = check(write("back.jsonl", OPENAI.from_examples(rows).records), "openai")
    assert checked.rejects.num_rows == 0
    got = checked.examples.to_pylist()[0]
    assert got["messages"] == rows[0]["messages"]
    assert got["tools"] == rows[0]["tools"]
