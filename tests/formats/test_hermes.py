"""Hermes / Qwen inline tool calling: <tools>, <tool_call>, <tool_response> (and <think>) lifted into structure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_swift import CONTENT, assert_round_trip, call, canonical_examples, msg, write_and_check

from dataforge import formats
from dataforge.checking import check_files
from dataforge.formats import inline
from dataforge.record import Example, Kind, Message, Provenance, Role, ToolCall

WEATHER = {
    "name": "get_weather",
    "description": "Current weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
QWEN = {
    "messages": [
        {"role": "system", "content": inline.join_tools("You are helpful.", [WEATHER])},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "<think>\nTwo cities, two calls.\n</think>\n\nChecking.\n"
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>',
        },
        # Qwen's templates put consecutive results in one user turn
        {"role": "user", "content": "<tool_response>\n18C\n</tool_response>\n<tool_response>\n24C\n</tool_response>"},
        {"role": "assistant", "content": "Paris 18C, Rome 24C."},
    ]
}
# NousResearch/hermes-function-calling-v1 spelling: ShareGPT turns, Python-literal calls, `tool` turns.
NOUS = {
    "id": "n1",
    "conversations": [
        {
            "from": "system",
            "value": "You are a function calling AI model. You are provided with function signatures within <tools> "
            f"</tools> XML tags. Here are the available tools: <tools> [{json.dumps(WEATHER)}] </tools> Use them.",
        },
        {"from": "human", "value": "Weather in Oslo?"},
        {"from": "gpt", "value": "<tool_call>\n{'arguments': {'city': 'Oslo'}, 'name': 'get_weather'}\n</tool_call>"},
        {"from": "tool", "value": '<tool_response>\n{"name": "get_weather", "content": "2C"}\n</tool_response>'},
        {"from": "gpt", "value": "It is 2C in Oslo."},
    ],
}


def test_qwen_record_lifts_tools_calls_results_and_reasoning(write, check):
    checked = check(write("qwen.jsonl", [QWEN]))
    assert (checked.format, checked.rejects.num_rows) == ("hermes", 0)
    row = checked.examples.to_pylist()[0]
    assert row["messages"] == [
        msg("system", "You are helpful."),
        msg("user", "Weather in Paris and Rome?"),
        msg(
            "assistant",
            "Checking.",
            reasoning="Two cities, two calls.",
            tool_calls=[call("get_weather", {"city": "Paris"}), call("get_weather", {"city": "Rome"})],
        ),
        msg("tool", "18C"),
        msg("tool", "24C"),
        msg("assistant", "Paris 18C, Rome 24C."),
    ]
    assert json.loads(row["tools"]) == [WEATHER]


def test_nous_sharegpt_record(write, check):
    checked = check(write("nous.json", [NOUS]))
    assert (checked.format, checked.rejects.num_rows) == ("hermes", 0)
    row = checked.examples.to_pylist()[0]
    assert row["messages"] == [
        msg(
            "system",
            "You are a function calling AI model. You are provided with function signatures within <tools> "
            "</tools> XML tags. Here are the available tools:  Use them.",
        ),
        msg("user", "Weather in Oslo?"),
        msg("assistant", None, tool_calls=[call("get_weather", {"city": "Oslo"})]),
        msg("tool", '{"name": "get_weather", "content": "2C"}'),
        msg("assistant", "It is 2C in Oslo."),
    ]
    assert json.loads(row["tools"]) == [WEATHER]
    assert json.loads(row["metadata"]) == {"id": "n1"}


def test_tool_turn_without_tags_and_a_user_quoting_a_tag(write, check):
    record = {
        "messages": [
            {"role": "user", "content": "What does <tool_response> mean?"},
            {"role": "assistant", "content": '<tool_call>\n{"name": "lookup", "arguments": {}}\n</tool_call>'},
            {"role": "tool", "content": "plain result"},
            {"role": "assistant", "content": "It wraps results."},
        ]
    }
    row = check(write("t.jsonl", [record])).examples.to_pylist()[0]
    assert [(m["role"], m["content"]) for m in row["messages"]] == [
        ("user", "What does <tool_response> mean?"),
        ("assistant", None),
        ("tool", "plain result"),
        ("assistant", "It wraps results."),
    ]


@pytest.mark.parametrize(
    ("content", "index", "reason", "message"),
    [
        (
            '<tool_call>\n{"name": "get_weather", "arguments": {city}}\n</tool_call>',
            2,
            "invalid_tool_call",
            "<tool_call>",
        ),
        ("<think>never closed <tool_call>{}</tool_call>", 2, "unbalanced_think", "a <think> is never closed"),
        ('<tool_call>{"name": "f"}', 2, "invalid_tool_call", "<tool_call> and </tool_call> tags do not pair up"),
    ],
)
def test_bad_records_are_rejected_naming_the_turn(write, check, content, index, reason, message):
    bad = json.loads(json.dumps(QWEN))
    bad["messages"][index]["content"] = content
    checked = check(write("bad.jsonl", [QWEN, bad]), "hermes")
    assert checked.examples.num_rows == 1
    [reject] = checked.rejects.to_pylist()
    assert (reject["row"], reject["stage"], reject["reason"]) == (1, "convert", reason)
    assert reject["field"] == f"messages[{index}].content"
    assert reject["message"].startswith(message)


def test_bad_tools_block_names_the_system_turn(write, check):
    bad = {
        "conversations": [
            {"from": "system", "value": "<tools> [{'name': oops}] </tools>"},
            {"from": "human", "value": "q"},
            {"from": "gpt", "value": "a"},
        ]
    }
    [reject] = check(write("bad.jsonl", [bad]), "hermes").rejects.to_pylist()
    assert (reject["reason"], reject["field"]) == ("invalid_tool_call", "conversations[0].value")


def test_detection_needs_the_tags():
    hermes = formats.get("hermes")
    plain = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    sharegpt = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    assert not hermes.matches(plain) and not hermes.matches(sharegpt)
    assert formats.detect([plain, plain], "x.jsonl").name == "openai"
    assert formats.detect([sharegpt, sharegpt], "x.jsonl").name == "sharegpt"
    # A dialect claims only the records that show it: one tagged record in an OpenAI-shaped sample is enough.
    assert formats.detect([QWEN, plain], "x.jsonl").name == "hermes"
    assert formats.detect([QWEN, plain, plain, plain, plain], "x.jsonl").name == "hermes"
    # Tags in a sample whose majority is another container (ShareGPT) do not make it Hermes.
    assert formats.detect([QWEN, sharegpt, sharegpt], "x.jsonl").name == "sharegpt"
    assert formats.detect([QWEN, QWEN, plain], "x.jsonl").name == "hermes"
    assert formats.detect([NOUS, NOUS], "x.jsonl").name == "hermes"


def test_writer_spells_qwens_text(write, check):
    checked = check(write("qwen.jsonl", [QWEN]))
    written = formats.get("hermes").from_examples(checked.examples.to_pylist())
    assert written.losses == {}
    expected = json.loads(json.dumps(QWEN))
    tools = json.dumps({"type": "function", "function": WEATHER})
    assert expected["messages"][0]["content"].count(tools) == 1
    # results come back as `tool` turns, one per result
    expected["messages"][3:4] = [
        {"role": "tool", "content": "<tool_response>\n18C\n</tool_response>"},
        {"role": "tool", "content": "<tool_response>\n24C\n</tool_response>"},
    ]
    assert written.records == [expected]


def test_writer_counts_what_text_cannot_carry():
    ex = Example(
        id="x:0",
        kind=Kind.SFT,
        provenance=Provenance("x", "x.jsonl", 0),
        messages=(
            Message(Role.USER, "q"),
            Message(Role.ASSISTANT, None, tool_calls=(ToolCall("f", {"a": 1}, id="call_1"),)),
            Message(Role.TOOL, "r", tool_call_id="call_1", name="f"),
            Message(Role.ASSISTANT, "a", weight=1.0),
        ),
    )
    pair = Example(
        id="x:1",
        kind=Kind.PREFERENCE,
        provenance=Provenance("x", "x.jsonl", 1),
        messages=(Message(Role.USER, "q"),),
        chosen=(Message(Role.ASSISTANT, "a"),),
        rejected=(Message(Role.ASSISTANT, "b"),),
    )
    written = formats.get("hermes").from_examples([ex.to_row(), pair.to_row()])
    assert written.losses == {
        "tool call ids": 1,
        "tool result ids": 1,
        "message names": 1,
        "message weights": 1,
        "preference rows (hermes holds sft only; not written)": 1,
    }
    assert written.records == [
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": '<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>'},
                {"role": "tool", "content": "<tool_response>\nr\n</tool_response>"},
                {"role": "assistant", "content": "a"},
            ]
        }
    ]


@settings(max_examples=60, deadline=None)
@given(st.lists(canonical_examples(), min_size=1, max_size=4))
def test_canonical_to_hermes_and_back_is_exact(batch):
    assert_round_trip(batch, "hermes")


def test_tool_call_demo_round_trips_through_openai_and_hermes(fixture_path, tmp_path):
    """LLaMA-Factory's glaive tool-call demo (ShareGPT) → openai → hermes → canonical: calls and arguments intact."""
    source = fixture_path("peers/llamafactory/glaive_toolcall_en_demo.json")
    original = check_files(str(source), "sharegpt", root=source.parent)
    rows = original.examples.to_pylist()
    assert sum(bool(m["tool_calls"]) for r in rows for m in r["messages"]) > 100  # the file really has calls

    def through(fmt: str, examples: list[dict], losses: dict) -> list[dict]:
        written = formats.get(fmt).from_examples(examples)
        assert written.losses == losses
        path = Path(tmp_path) / f"{fmt}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in written.records), encoding="utf-8")
        back = check_files(str(path), fmt, root=tmp_path)
        assert back.rejects.to_pylist() == []
        return back.examples.to_pylist()

    # Glaive calls carry no ids: the openai writer gives them ids (and links the results), which hermes cannot
    # carry and counts; nothing else is lost.
    via_hermes = through("hermes", through("openai", rows, {}), {"tool call ids": 210, "tool result ids": 210})
    assert [{k: r[k] for k in CONTENT} for r in via_hermes] == [{k: r[k] for k in CONTENT} for r in rows]


def test_written_records_are_detected_as_hermes():
    batch = [
        Example(
            id="g:0",
            kind=Kind.SFT,
            provenance=Provenance("g", "g.jsonl", 0),
            messages=(
                Message(Role.USER, "q"),
                Message(Role.ASSISTANT, None, tool_calls=(ToolCall("f", {}),)),
                Message(Role.TOOL, "r"),
                Message(Role.ASSISTANT, "a"),
            ),
            tools=[{"name": "f"}],
        ).to_row()
    ]
    checked = write_and_check(formats.get("hermes").from_examples(batch).records, None)
    assert checked.format == "hermes"
