"""ShareGPT: {from, value} turns (with LLaMA-Factory's function_call/observation tools) and back."""

from __future__ import annotations

import json

from dataforge import formats
from dataforge.record import Example, Kind, Message, Provenance, Role, ToolCall

SHAREGPT = formats.get("sharegpt")
ROLES = "human, user, gpt, assistant, chatgpt, system, observation, tool, function_call"


def turns(checked) -> list[list[tuple[str, str | None]]]:
    return [[(m["role"], m["content"]) for m in ms] for ms in checked.examples["messages"].to_pylist()]


def rejects(checked) -> list[tuple]:
    return [
        (r["stage"], r["row"], r["line"], r["reason"], r["field"], r["message"]) for r in checked.rejects.to_pylist()
    ]


def conv(*pairs: tuple[str, str], **columns) -> dict:
    return {"conversations": [{"from": f, "value": v} for f, v in pairs], **columns}


def example(*messages: Message, tools=None, metadata=None) -> dict:
    return Example(
        id="src:0",
        kind=Kind.SFT,
        provenance=Provenance("src", "f.jsonl", 0, 1),
        messages=messages,
        tools=tools,
        metadata=metadata or {},
    ).to_row()


def test_every_role_spelling_maps_to_a_canonical_role(write, check):
    checked = check(
        write(
            "roles.jsonl",
            [
                conv(
                    ("system", "s"),
                    ("human", "h"),
                    ("gpt", "g"),
                    ("user", "u"),
                    ("assistant", "a"),
                    ("chatgpt", "c"),
                    ("function_call", '{"name": "f", "arguments": {}}'),  # results answer a call (lint)
                    ("observation", "o"),
                    ("tool", "t"),
                    ("gpt", "end"),
                ),
            ],
        ),
        "sharegpt",
    )
    assert turns(checked) == [
        [
            ("system", "s"),
            ("user", "h"),
            ("assistant", "g"),
            ("user", "u"),
            ("assistant", "a"),
            ("assistant", "c"),
            ("assistant", None),
            ("tool", "o"),
            ("tool", "t"),
            ("assistant", "end"),
        ]
    ]


def test_system_column_becomes_the_first_message(write, check):
    checked = check(write("sys.json", [conv(("human", "hi"), ("gpt", "yo"), system="Be kind.", id="x1")]))
    assert checked.format == "sharegpt"
    assert turns(checked) == [[("system", "Be kind."), ("user", "hi"), ("assistant", "yo")]]
    assert checked.examples["metadata"].to_pylist() == ['{"id": "x1"}']


def test_function_calls_observations_and_tools(write, check):
    calls = [{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": '{"y": 2}', "id": "c9"}]
    tools = [{"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}}, {"name": "b"}]
    checked = check(
        write(
            "tools.jsonl",
            [
                conv(
                    ("human", "w?"),
                    ("function_call", json.dumps(calls)),
                    ("observation", "r"),
                    ("gpt", "done"),
                    tools=json.dumps(tools),
                ),
                conv(
                    ("human", "one"),
                    ("function_call", '{"name": "a", "arguments": {"x": 2}}'),
                    ("observation", "r"),
                    ("gpt", "ok"),
                    tools=[{"name": "a"}],
                ),  # tools given as an array: coerced to JSON text
            ],
        ),
        "sharegpt",
    )
    assert checked.rejects.num_rows == 0
    first, second = checked.examples.to_pylist()
    assert [(m["role"], m["content"]) for m in first["messages"]] == [
        ("user", "w?"),
        ("assistant", None),
        ("tool", "r"),
        ("assistant", "done"),
    ]
    assert first["messages"][1]["tool_calls"] == [
        {"id": None, "name": "a", "arguments": '{"x": 1}'},
        {"id": "c9", "name": "b", "arguments": '{"y": 2}'},
    ]
    assert json.loads(first["tools"]) == [{"name": "a", "parameters": {"type": "object"}}, {"name": "b"}]
    assert second["messages"][1]["tool_calls"] == [{"id": None, "name": "a", "arguments": '{"x": 2}'}]
    assert second["tools"] == '[{"name": "a"}]'


def test_rows_that_cannot_convert_are_rejected_with_the_turn(write, check):
    checked = check(
        write(
            "bad.jsonl",
            [
                conv(("human", "fine"), ("gpt", "ok")),
                conv(("user", "1"), ("bot", "2")),
                conv(("human", "1"), ("function_call", "not json")),
                conv(("human", "1"), ("function_call", '{"name": "f", "arguments": [1]}')),
                conv(("human", "1"), ("function_call", '{"name": "f", "arguments": "{oops"}')),
                conv(("human", "1"), ("function_call", '{"arguments": {}}')),
                conv(("human", "1"), ("gpt", "x"), tools='[{"description": "no name"}]'),
                conv(("human", "1"), ("gpt", "x"), tools='{"name": "f"}'),
                {"system": "no conversations"},
                {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": None}]},
                conv(("human", "1"), ("gpt", "")),
            ],
        ),
        "sharegpt",
    )
    assert turns(checked) == [[("user", "fine"), ("assistant", "ok")]]
    assert rejects(checked) == [
        (
            "convert",
            1,
            2,
            "unknown_role",
            "conversations[1].from",
            f"unknown role 'bot'; expected one of {ROLES}",
        ),
        (
            "convert",
            2,
            3,
            "invalid_tool_call",
            "conversations[1].value",
            "function_call value is not valid JSON (Expecting value: line 1 column 1 (char 0))",
        ),
        (
            "convert",
            3,
            4,
            "invalid_tool_call",
            "conversations[1].value",
            "arguments of 'f' must be a JSON object",
        ),
        (
            "convert",
            4,
            5,
            "invalid_tool_call",
            "conversations[1].value",
            "arguments of 'f' are a string that is not valid JSON",
        ),
        (
            "convert",
            5,
            6,
            "invalid_tool_call",
            "conversations[1].value",
            'function_call value must be {"name": ..., "arguments": {...}} (or a list of them)',
        ),
        (
            "convert",
            6,
            7,
            "invalid_tool_call",
            "tools",
            "tools: tools[0] must be an object with a string 'name'",
        ),
        (
            "convert",
            7,
            8,
            "invalid_tool_call",
            "tools",
            "tools: tools must be a JSON array of function specs",
        ),
        ("convert", 8, 9, "schema_violation", "conversations", "'conversations' is required but missing"),
        ("convert", 9, 10, "schema_violation", "conversations[1].value", "every turn needs a string 'value'"),
        (
            "validate",
            10,
            11,
            "empty_content",
            "conversations[1].value",
            "assistant message has no content (empty string)",
        ),
    ]
    assert checked.records == checked.examples.num_rows + checked.rejects.num_rows


def test_from_examples_writes_turns_calls_and_tools():
    call = ToolCall(name="get_weather", arguments={"city": "Paris", "unit": "C"})
    two = (ToolCall(name="a", arguments={}), ToolCall(name="b", arguments={"k": [1]}))
    written = SHAREGPT.from_examples(
        [
            example(
                Message(Role.SYSTEM, "sys"),
                Message(Role.USER, "weather?"),
                Message(Role.ASSISTANT, None, tool_calls=(call,)),
                Message(Role.TOOL, "sunny"),
                Message(Role.ASSISTANT, None, tool_calls=two),
                Message(Role.TOOL, "x"),
                Message(Role.TOOL, "y"),
                Message(Role.ASSISTANT, "It is sunny."),
                tools=[{"name": "get_weather", "parameters": {"type": "object"}}],
                metadata={"lang": "en"},
            )
        ]
    )
    assert written.records == [
        {
            "conversations": [
                {"from": "system", "value": "sys"},
                {"from": "human", "value": "weather?"},
                {
                    "from": "function_call",
                    "value": '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}',
                },
                {"from": "observation", "value": "sunny"},
                {
                    "from": "function_call",
                    "value": '[{"name": "a", "arguments": {}}, {"name": "b", "arguments": {"k": [1]}}]',
                },
                {"from": "observation", "value": "x"},
                {"from": "observation", "value": "y"},
                {"from": "gpt", "value": "It is sunny."},
            ],
            "tools": '[{"name": "get_weather", "parameters": {"type": "object"}}]',
            "lang": "en",
        }
    ]
    assert written.losses == {}


def test_from_examples_counts_what_sharegpt_cannot_carry():
    call = ToolCall(name="f", arguments={}, id="call_1")
    written = SHAREGPT.from_examples(
        [
            example(
                Message(Role.USER, "q", name="ann"),
                Message(Role.ASSISTANT, "let me look", reasoning="think", tool_calls=(call,)),
                Message(Role.TOOL, "result", tool_call_id="call_1"),
                Message(Role.ASSISTANT, "a"),
            )
        ]
    )
    assert [t["from"] for t in written.records[0]["conversations"]] == [
        "human",
        "function_call",
        "observation",
        "gpt",
    ]
    assert written.losses == {
        "message names": 1,
        "reasoning": 1,
        "assistant text beside tool calls": 1,
        "tool call ids": 1,
        "tool result ids": 1,
    }


def test_metadata_keys_named_like_sharegpt_columns_are_counted_not_written():
    written = SHAREGPT.from_examples(
        [example(Message(Role.USER, "q"), Message(Role.ASSISTANT, "a"), metadata={"tools": "[]", "system": "s"})]
    )
    assert written.records == [{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}]
    assert written.losses == {"metadata keys named like a format column": 2}


def test_written_records_read_back_to_the_same_messages(write, check):
    call = ToolCall(name="lookup", arguments={"q": "数据", "n": 2})
    rows = [
        example(
            Message(Role.SYSTEM, "s"),
            Message(Role.USER, "q\r\nline two"),
            Message(Role.ASSISTANT, None, tool_calls=(call,)),
            Message(Role.TOOL, '{"hits": 0}'),
            Message(Role.ASSISTANT, "none 🙂"),
            tools=[{"name": "lookup"}],
        ),
    ]
    written = SHAREGPT.from_examples(rows)
    checked = check(write("back.jsonl", written.records), "sharegpt")
    assert checked.rejects.num_rows == 0
    assert checked.examples["messages"].to_pylist() == [r["messages"] for r in rows]
    assert checked.examples["tools"].to_pylist() == ['[{"name": "lookup"}]']
