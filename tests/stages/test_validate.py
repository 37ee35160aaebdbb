import pyarrow as pa

from builders import chat, qa, quiet, table
from dataforge.record import Example, Kind, Message, Provenance, Role, ToolCall
from dataforge.stages.validate import validate_examples


def _reasons(result):
    return {(r["example_id"], r["reason"], r["field"]) for r in result.tables["rejects"].to_pylist()}


def test_valid_rows_pass_untouched():
    t = table(qa("s", 0, "hi", "hello"), chat("s", 1, ("user", "a"), ("assistant", "b"), system="be brief"))
    result = validate_examples(t, quiet)
    assert result.tables["examples"].to_pylist() == t.to_pylist()
    assert result.tables["rejects"].num_rows == 0


def test_each_structural_problem_is_rejected_with_its_field():
    t = table(
        qa("s", 0, "question", ""),  # empty assistant content
        chat("s", 1, ("user", "only a question")),  # no assistant turn
        chat("s", 2, ("user", "q"), ("system", "late"), ("assistant", "a")),  # system not first
        qa("s", 3, "fine", "fine too"),
    )
    result = validate_examples(t, quiet)
    assert _reasons(result) == {
        ("s:0", "empty_content", "messages[1].content"),
        ("s:1", "no_assistant_turn", "messages"),
        ("s:2", "misplaced_system", "messages[1].role"),
    }
    assert result.tables["examples"]["id"].to_pylist() == ["s:3"]
    rejects = result.tables["rejects"].to_pylist()
    assert all(r["stage"] == "validate" and r["outcome"] == "rejected" for r in rejects)
    assert {r["line"] for r in rejects} == {1, 2, 3}
    empty = next(r for r in rejects if r["reason"] == "empty_content")
    assert empty["message"] == "assistant message has no content (empty string)"
    assert '"content": ""' in empty["raw"]


def test_assistant_turn_with_only_tool_calls_is_valid():
    ex = Example(
        id="t:0",
        kind=Kind.SFT,
        provenance=Provenance("t", "t.jsonl", 0, 1),
        messages=(
            Message(Role.USER, "weather in Paris?"),
            Message(Role.ASSISTANT, None, tool_calls=(ToolCall("get_weather", {"city": "Paris"}, "c1"),)),
            Message(Role.TOOL, '{"temp": 21}', tool_call_id="c1"),
            Message(Role.ASSISTANT, "It is 21 °C."),
        ),
    )
    result = validate_examples(table(ex), quiet)
    assert result.tables["rejects"].num_rows == 0
    assert result.tables["examples"].num_rows == 1


def test_origin_column_names_the_source_field_and_is_dropped():
    t = table(qa("s", 0, "q", ""))
    t = t.append_column("__origin", pa.array([["instruction", "output"]], pa.list_(pa.string())))
    result = validate_examples(t, quiet)
    assert result.tables["rejects"]["field"].to_pylist() == ["output"]
    assert "__origin" not in result.tables["examples"].column_names


def test_non_chat_kinds_need_their_own_fields():
    base = dict(provenance=Provenance("p", "p.jsonl", 0, 1))
    rows = [
        Example(
            id="p:0",
            kind=Kind.PREFERENCE,
            messages=(Message(Role.USER, "q"),),
            chosen=(Message(Role.ASSISTANT, "good"),),
            **base,
        ),
        Example(id="p:1", kind=Kind.KTO, messages=(Message(Role.USER, "q"), Message(Role.ASSISTANT, "a")), **base),
        Example(id="p:2", kind=Kind.PRETRAIN, text="", **base),
        Example(id="p:3", kind=Kind.PRETRAIN, text="Some text.", **base),
    ]
    result = validate_examples(table(*rows), quiet)
    assert _reasons(result) == {
        ("p:0", "missing_preference", "rejected"),
        ("p:1", "missing_label", "label"),
        ("p:2", "empty_text", "text"),
    }
    assert result.tables["examples"]["id"].to_pylist() == ["p:3"]
