"""Linting: each finding rejects its row with a reason naming the field; ignored reasons only count."""

from __future__ import annotations

import pytest

from builders import quiet, table
from dataforge.formats.inline import think_problem
from dataforge.record import Example, Kind, Message, Provenance, Role, ToolCall
from dataforge.stages.validate import validate_examples

WEATHER = {
    "name": "weather",
    "description": "Current weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
        "required": ["city"],
    },
}


def example(row: int, *messages: Message, tools=None, kind=Kind.SFT, chosen=(), rejected=(), label=None) -> Example:
    return Example(
        id=f"s:{row}",
        kind=kind,
        provenance=Provenance("s", "s.jsonl", row, row + 1),
        messages=tuple(messages),
        tools=tools,
        chosen=tuple(chosen),
        rejected=tuple(rejected),
        label=label,
    )


def user(text: str) -> Message:
    return Message(Role.USER, text)


def assistant(text: str | None, *calls: ToolCall, reasoning: str | None = None) -> Message:
    return Message(Role.ASSISTANT, text, reasoning=reasoning, tool_calls=calls)


def tool(text: str, call_id: str | None = None) -> Message:
    return Message(Role.TOOL, text, tool_call_id=call_id)


def findings(*examples: Example, ignore: frozenset[str] = frozenset()):
    result = validate_examples(table(*examples), quiet, ignore)
    rejects = {(r["example_id"], r["reason"], r["field"]): r["message"] for r in result.tables["rejects"].to_pylist()}
    return rejects, result


def test_a_clean_tool_conversation_passes():
    good = example(
        0,
        user("weather in Paris?"),
        assistant(None, ToolCall("weather", {"city": "Paris", "days": 2}, id="c1")),
        tool('{"temp": 21}', "c1"),
        assistant("21 degrees."),
        tools=[WEATHER],
    )
    rejects, result = findings(good)
    assert rejects == {}
    assert result.tables["examples"].num_rows == 1


def test_each_tool_problem_is_named():
    rows = [
        example(
            0,
            user("q"),
            assistant(None, ToolCall("forecast", {"city": "Oslo"})),
            tool("x"),
            assistant("a"),
            tools=[WEATHER],
        ),
        example(
            1, user("q"), assistant(None, ToolCall("weather", {"days": 2})), tool("x"), assistant("a"), tools=[WEATHER]
        ),
        example(
            2,
            user("q"),
            assistant(None, ToolCall("weather", {"city": "Oslo", "days": 0})),
            tool("x"),
            assistant("a"),
            tools=[WEATHER],
        ),
        example(3, user("q"), tool("stray result"), assistant("a")),
        example(
            4,
            user("q"),
            assistant(None, ToolCall("weather", {"city": "Oslo"}, id="c1")),
            tool("x", "c9"),
            assistant("a"),
            tools=[WEATHER],
        ),
    ]
    rejects, _ = findings(*rows)
    assert rejects == {
        (
            "s:0",
            "unknown_tool",
            "messages[1].tool_calls[0].name",
        ): "'forecast' is not a declared tool (declared: weather)",
        ("s:1", "arguments_schema_violation", "messages[1].tool_calls[0].arguments"): (
            "weather: 'city' is a required property"
        ),
        ("s:2", "arguments_schema_violation", "messages[1].tool_calls[0].arguments"): (
            "weather: days: 0 is less than the minimum of 1"
        ),
        (
            "s:3",
            "orphan_tool_result",
            "messages[1]",
        ): "a tool result with no tool call before it (since the last user turn)",
        ("s:4", "orphan_tool_result", "messages[2].tool_call_id"): "no earlier tool call has the id 'c9'",
    }


def test_calls_without_declared_tools_and_unusable_schemas_are_not_rejected():
    sloppy = {"name": "lookup", "parameters": {"type": "dict", "properties": {"q": {"type": "str"}}}}
    rows = [
        example(0, user("q"), assistant(None, ToolCall("anything", {"x": 1})), tool("r"), assistant("a")),
        example(1, user("q"), assistant(None, ToolCall("lookup", {"q": 5})), tool("r"), assistant("a"), tools=[sloppy]),
    ]
    rejects, result = findings(*rows)
    assert rejects == {}
    # The second row's schema is not valid JSON Schema ("dict", "str"): its arguments could not be checked.
    assert result.stats["tool_schemas_unchecked"] == 1


@pytest.mark.parametrize(
    ("content", "reasoning", "expected"),
    [
        ("<think>a</think> b", None, None),
        ("<think>a b", None, ("unbalanced_think", "content")),
        ("a</think> b", None, ("unbalanced_think", "content")),
        ("<think>a<think>b</think></think>c", None, ("nested_think", "content")),
        ("answer", "I think <think>so</think>", ("nested_think", "reasoning")),
    ],
)
def test_think_tags_must_pair_up(content, reasoning, expected):
    rejects, _ = findings(example(0, user("q"), assistant(content, reasoning=reasoning)))
    if expected is None:
        assert rejects == {}
    else:
        reason, field = expected
        assert [(k[1], k[2]) for k in rejects] == [(reason, f"messages[1].{field}")]


def test_think_problem_messages():
    assert think_problem("<think>x") == ("unbalanced_think", "a <think> is never closed")
    assert think_problem("x</think>") == ("unbalanced_think", "a </think> closes no <think>")
    assert think_problem("plain") is None


def test_reasoning_on_a_user_turn_is_misplaced():
    rejects, _ = findings(example(0, Message(Role.USER, "q", reasoning="hmm"), assistant("a")))
    assert list(rejects) == [("s:0", "misplaced_reasoning", "messages[0].reasoning")]


def test_preference_pairs_are_linted():
    same = [assistant("Paris.")]
    rows = [
        example(0, user("capital of France?"), kind=Kind.PREFERENCE, chosen=same, rejected=[assistant(" Paris. ")]),
        example(
            1, user("q"), assistant("earlier"), kind=Kind.PREFERENCE, chosen=[assistant("a")], rejected=[assistant("b")]
        ),
        example(2, user("q"), kind=Kind.PREFERENCE, chosen=[assistant("a")], rejected=[assistant("b")]),
        example(3, user("q"), assistant("x"), assistant("y"), kind=Kind.KTO, label=True),
        example(4, user("q"), assistant("y"), kind=Kind.KTO, label=False),
    ]
    rejects, result = findings(*rows)
    assert set(rejects) == {
        ("s:0", "identical_pair", "rejected"),
        ("s:1", "prompt_not_ending_on_user", "messages[1]"),
        ("s:3", "prompt_not_ending_on_user", "messages[1]"),
    }
    assert result.tables["examples"]["id"].to_pylist() == ["s:2", "s:4"]


def test_ignored_reasons_keep_the_row_and_are_counted():
    row = example(0, user("q"), assistant(None, ToolCall("forecast", {})), tool("x"), assistant("a"), tools=[WEATHER])
    rejects, result = findings(row, ignore=frozenset({"unknown_tool"}))
    assert rejects == {}
    assert result.tables["examples"].num_rows == 1
    assert result.stats["lint_warnings"] == {"unknown_tool": 1}


def test_a_completion_may_answer_calls_made_in_the_prompt():
    row = example(
        0,
        user("q"),
        assistant(None, ToolCall("weather", {"city": "Rome"}, id="c1")),
        kind=Kind.PREFERENCE,
        tools=[WEATHER],
        chosen=[tool("sunny", "c1"), assistant("Sunny.")],
        rejected=[tool("sunny", "c1"), assistant("Rainy.")],
    )
    # The prompt ends on the assistant's call: the lint asks for a user or tool turn there.
    rejects, _ = findings(row)
    assert list(rejects) == [("s:0", "prompt_not_ending_on_user", "messages[1]")]
