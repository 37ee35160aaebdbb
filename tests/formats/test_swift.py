"""ms-swift's messages: tool_call/tool_response roles, JSON-string tools, inline <think>, rejected_response, label.

Also home of `canonical_examples`, the generator the inline-dialect format tests share.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataforge import formats
from dataforge.checking import Checked, check_files
from dataforge.record import Example, Kind, Message, Provenance, Role, ToolCall

# The docs' agent example (parallel calls) and its DPO/KTO examples.
AGENT = {
    "tools": json.dumps(
        [
            {
                "type": "function",
                "function": {
                    "name": "realtime_aqi",
                    "description": "Weather forecast.",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                },
            }
        ]
    ),
    "messages": [
        {"role": "user", "content": "What is the weather like in Beijing and Shanghai today?"},
        {"role": "tool_call", "content": '{"name": "realtime_aqi", "arguments": {"city": "Beijing"}}'},
        {"role": "tool_call", "content": '{"name": "realtime_aqi", "arguments": {"city": "Shanghai"}}'},
        {"role": "tool_response", "content": '{"city": "Beijing", "aqi": "10"}'},
        {"role": "tool_response", "content": '{"city": "Shanghai", "aqi": "72"}'},
        {"role": "assistant", "content": "Beijing's AQI is 10; Shanghai's is 72."},
    ],
}
THINKING_AGENT = {
    "tools": AGENT["tools"],
    "messages": [
        {"role": "user", "content": "AQI in Beijing?"},
        {"role": "assistant", "content": "<think>\nI can ask the tool.\n</think>\n"},
        {"role": "tool_call", "content": '{"name": "realtime_aqi", "arguments": {"city": "Beijing"}}'},
        {"role": "tool", "content": '{"aqi": "10"}'},
        {"role": "assistant", "content": "<think>\nRead it out.\n</think>\n\nIt is 10."},
    ],
}
DPO = {
    "messages": [
        {"role": "system", "content": "You are a useful and harmless assistant"},
        {"role": "user", "content": "Tell me tomorrow's weather"},
        {"role": "assistant", "content": "Tomorrow's weather will be sunny"},
    ],
    "rejected_response": "I don't know",
}
KTO = {
    "messages": [
        {"role": "user", "content": "What is 1 + 1?"},
        {"role": "assistant", "content": "It equals 2"},
    ],
    "label": True,
}


def msg(role: str, content: str | None, **fields: Any) -> dict[str, Any]:
    """A canonical message row with every field."""
    return {
        "role": role,
        "content": content,
        "reasoning": None,
        "tool_calls": None,
        "tool_call_id": None,
        "name": None,
        "weight": None,
        **fields,
    }


def call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"id": None, "name": name, "arguments": json.dumps(arguments)}


def test_agent_record_reads_as_one_assistant_turn_with_parallel_calls(write, check):
    checked = check(write("agent.jsonl", [AGENT]))
    assert (checked.format, checked.rejects.num_rows) == ("swift", 0)
    row = checked.examples.to_pylist()[0]
    assert row["kind"] == "sft"
    assert row["messages"] == [
        msg("user", "What is the weather like in Beijing and Shanghai today?"),
        msg(
            "assistant",
            None,
            tool_calls=[call("realtime_aqi", {"city": "Beijing"}), call("realtime_aqi", {"city": "Shanghai"})],
        ),
        msg("tool", '{"city": "Beijing", "aqi": "10"}'),
        msg("tool", '{"city": "Shanghai", "aqi": "72"}'),
        msg("assistant", "Beijing's AQI is 10; Shanghai's is 72."),
    ]
    assert json.loads(row["tools"]) == [json.loads(AGENT["tools"])[0]["function"]]


def test_reasoning_before_calls_joins_them(write, check):
    row = check(write("think.jsonl", [THINKING_AGENT]), "swift").examples.to_pylist()[0]
    assert row["messages"][1:] == [
        msg("assistant", None, reasoning="I can ask the tool.", tool_calls=[call("realtime_aqi", {"city": "Beijing"})]),
        msg("tool", '{"aqi": "10"}'),
        msg("assistant", "It is 10.", reasoning="Read it out."),
    ]


def test_text_then_call_is_one_assistant_message(write, check):
    record = {
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "Let me look."},
            {"role": "tool_call", "content": '{"name": "f", "arguments": "{\\"a\\": 1}"}'},
            {"role": "tool_response", "content": "r"},
            {"role": "assistant", "content": "done"},
        ]
    }
    row = check(write("t.jsonl", [record])).examples.to_pylist()[0]
    assert row["messages"][1] == msg("assistant", "Let me look.", tool_calls=[call("f", {"a": 1})])


def test_dpo_and_kto_records(write, check):
    # `label` alone does not claim a record (detection leaves `messages` + `label` to the openai family).
    checked = check(write("rl.jsonl", [DPO, KTO]), "swift")
    assert checked.rejects.num_rows == 0
    dpo, kto = checked.examples.to_pylist()
    assert dpo["kind"] == "preference"
    assert dpo["messages"] == [msg("system", DPO["messages"][0]["content"]), msg("user", DPO["messages"][1]["content"])]
    assert dpo["chosen"] == [msg("assistant", "Tomorrow's weather will be sunny")]
    assert dpo["rejected"] == [msg("assistant", "I don't know")]
    assert (kto["kind"], kto["label"]) == ("kto", True)
    assert kto["messages"] == [msg("user", "What is 1 + 1?"), msg("assistant", "It equals 2")]


def test_tools_given_as_a_list_and_call_content_as_an_object(write, check):
    record = {
        "tools": json.loads(AGENT["tools"]),
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "tool_call", "content": {"name": "realtime_aqi", "arguments": {"city": "X"}}},
            {"role": "tool_response", "content": "r"},
            {"role": "assistant", "content": "a"},
        ],
    }
    checked = check(write("obj.json", [record]), "swift")
    assert checked.rejects.num_rows == 0
    assert checked.examples.to_pylist()[0]["messages"][1]["tool_calls"] == [call("realtime_aqi", {"city": "X"})]


@pytest.mark.parametrize(
    ("messages", "extra", "reason", "field", "message"),
    [
        (
            [{"role": "user", "content": "q"}, {"role": "tool_call", "content": "{oops"}],
            {},
            "invalid_tool_call",
            "messages[1].content",
            "a tool_call turn must hold JSON",
        ),
        (
            [{"role": "user", "content": "q"}, {"role": "tool_call", "content": '{"arguments": {}}'}],
            {},
            "invalid_tool_call",
            "messages[1].content",
            'a tool_call turn must hold {"name": ..., "arguments": {...}}',
        ),
        (
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>never closed"}],
            {},
            "unbalanced_think",
            "messages[1].content",
            "a <think> is never closed",
        ),
        (
            [{"role": "user", "content": "q"}, {"role": "tool_call", "content": '{"name": "f"}'}],
            {"rejected_response": "no"},
            "schema_violation",
            "messages",
            "with `rejected_response`, the last turn must be the chosen assistant response",
        ),
        (
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
            {"rejected_response": "<think>x", "label": None},
            "unbalanced_think",
            "rejected_response",
            "a <think> is never closed",
        ),
        (
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
            {"rejected_response": "b", "label": False},
            "schema_violation",
            "label",
            "a record has `rejected_response` (DPO) or `label` (KTO), not both",
        ),
    ],
)
def test_bad_records_are_rejected_naming_the_turn(write, check, messages, extra, reason, field, message):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "label": True}
    checked = check(write("bad.jsonl", [good, {"messages": messages, **extra}]), "swift")
    assert checked.examples.num_rows == 1
    [reject] = checked.rejects.to_pylist()
    assert (reject["row"], reject["stage"], reject["reason"], reject["field"]) == (1, "convert", reason, field)
    assert reject["message"].startswith(message)


def test_unknown_role_is_rejected(write, check):
    bad = {"messages": [{"role": "user", "content": "q"}, {"role": "function", "content": "x"}], "label": True}
    [reject] = check(write("bad.jsonl", [bad]), "swift").rejects.to_pylist()
    assert (reject["reason"], reject["field"]) == ("unknown_role", "messages[1].role")


def test_detection_leaves_plain_messages_to_openai():
    swift, openai = formats.get("swift"), formats.get("openai")
    plain = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    assert not swift.matches(plain) and openai.matches(plain)
    assert formats.detect([plain, plain], "x.jsonl").name == "openai"
    for record in (AGENT, DPO):
        assert formats.detect([record, record], "x.jsonl").name == "swift"


def test_writer_produces_the_documented_records(write, check):
    checked = check(write("in.jsonl", [AGENT, THINKING_AGENT, DPO, KTO]))
    written = formats.get("swift").from_examples(checked.examples.to_pylist())
    assert written.losses == {}
    thinking = json.loads(json.dumps(THINKING_AGENT))
    # The canonical <think> head ends with a blank line; ms-swift's docs write one newline. Both read the same.
    thinking["messages"][1]["content"] = "<think>\nI can ask the tool.\n</think>\n\n"
    thinking["messages"][3]["role"] = "tool_response"
    assert written.records == [AGENT, thinking, DPO, KTO]


def test_writer_counts_what_it_cannot_carry():
    ex = Example(
        id="x:0",
        kind=Kind.SFT,
        provenance=Provenance("x", "x.jsonl", 0),
        messages=(
            Message(Role.USER, "q", name="ann"),
            Message(Role.ASSISTANT, None, tool_calls=(ToolCall("f", {}, id="c1"), ToolCall("g", {}, id="c2"))),
            Message(Role.TOOL, "r", tool_call_id="c1"),
            Message(Role.ASSISTANT, "a", weight=0.0),
        ),
    )
    pair = Example(
        id="x:1",
        kind=Kind.PREFERENCE,
        provenance=Provenance("x", "x.jsonl", 1),
        messages=(Message(Role.USER, "q"),),
        chosen=(Message(Role.ASSISTANT, "a"), Message(Role.USER, "more"), Message(Role.ASSISTANT, "b")),
        rejected=(Message(Role.ASSISTANT, "c"),),
    )
    text = Example(id="x:2", kind=Kind.PRETRAIN, provenance=Provenance("x", "x.jsonl", 2), text="raw text")
    written = formats.get("swift").from_examples([ex.to_row(), pair.to_row(), text.to_row()])
    assert written.losses == {
        "tool call ids": 2,
        "tool result ids": 1,
        "message names": 1,
        "message weights": 1,
        "preference pairs whose sides are not one plain assistant turn (not written)": 1,
        "pretrain rows (written as one assistant turn; read back as sft)": 1,
    }
    assert written.records[1] == {"messages": [{"role": "assistant", "content": "raw text"}]}


# --- generated canonical examples, shared with the other inline-dialect tests ------------------------

# Text without any markup the dialects use (tags inside text would be read as structure), newlines included.
TAGS = ("think>", "tool_call>", "tool_response>", "tools>", "answer>")
text = (
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]) | st.sampled_from(["\n", " "]), min_size=1, max_size=20)
    | st.sampled_from(["line one\nline two\n", "\n", "数据 🙂", '"quoted" \\ {json}', "  "])
).filter(lambda s: not any(tag in s for tag in TAGS))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**31), 2**31) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
arguments = st.dictionaries(st.text(max_size=8), json_values, max_size=3)
weights = st.sampled_from([None, 0.0, 1.0])


@st.composite
def canonical_examples(
    draw, *, kinds: tuple[str, ...] = ("sft",), tools: bool = True, reasoning: bool = True, weighted: bool = False
) -> Example:
    """A canonical example: system prompt (maybe), then user → [assistant calls → results]* → assistant
    segments, with reasoning and loss weights where asked; preference pairs and KTO completions are one
    assistant turn."""
    kind = Kind(draw(st.sampled_from(kinds)))

    def weight() -> float | None:
        return draw(weights) if weighted else None

    def thought() -> str | None:
        return draw(st.none() | text) if reasoning else None

    msgs: list[Message] = []
    if draw(st.booleans()):
        msgs.append(Message(Role.SYSTEM, draw(text), weight=weight()))
    declared: dict[str, dict[str, Any]] = {}
    for _ in range(draw(st.integers(1, 3))):
        msgs.append(Message(Role.USER, draw(text), weight=weight()))
        while tools and draw(st.booleans()):
            calls = tuple(
                ToolCall(name=draw(text.filter(str.strip)), arguments=draw(arguments))
                for _ in range(draw(st.integers(1, 3)))
            )
            msgs.append(
                Message(Role.ASSISTANT, draw(st.none() | text), reasoning=thought(), tool_calls=calls, weight=weight())
            )
            for c in calls:
                msgs.append(Message(Role.TOOL, draw(text), weight=weight()))
                declared[c.name] = {"name": c.name, "description": draw(text)}
        msgs.append(Message(Role.ASSISTANT, draw(text), reasoning=thought(), weight=weight()))
    chosen: tuple[Message, ...] = ()
    rejected: tuple[Message, ...] = ()
    label = None
    if kind == Kind.PREFERENCE:
        last = msgs.pop()
        chosen = (last,)
        # Sides that differ only in surrounding whitespace are linted as identical: keep them apart.
        different = text.filter(lambda s: s.strip() != (last.content or "").strip())
        rejected = (Message(Role.ASSISTANT, draw(different), reasoning=thought()),)
    elif kind == Kind.KTO:
        label = draw(st.booleans())
    return Example(
        id="gen:0",
        kind=kind,
        provenance=Provenance("gen", "gen.jsonl", 0, 1),
        messages=tuple(msgs),
        tools=list(declared.values()) or None,
        chosen=chosen,
        rejected=rejected,
        label=label,
    )


def write_and_check(records: list[Any], fmt: str | None) -> Checked:
    """Records as JSONL in a fresh directory, read → convert → validate as `fmt` (None: detected)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
        return check_files(str(path), fmt, root=Path(tmp))


CONTENT = ("kind", "messages", "tools", "chosen", "rejected", "label")


def assert_round_trip(batch: list[Example], fmt: str) -> None:
    """canonical → `fmt` → canonical gives the same content, with no losses reported."""
    rows = [e.to_row() for e in batch]
    written = formats.get(fmt).from_examples(rows)
    assert written.losses == {}
    checked = write_and_check(written.records, fmt)
    assert [(r["reason"], r["field"], r["message"]) for r in checked.rejects.to_pylist()] == []
    got = checked.examples.to_pylist()
    assert [{k: r[k] for k in CONTENT} for r in got] == [{k: r[k] for k in CONTENT} for r in rows]


@settings(max_examples=60, deadline=None)
@given(st.lists(canonical_examples(kinds=("sft", "preference", "kto")), min_size=1, max_size=4))
def test_canonical_to_swift_and_back_is_exact(batch):
    assert_round_trip(batch, "swift")
