"""LLaMA-Factory's typed-content JSONL: parts of {type: text|reasoning|tool_call, value}, loss_weight, DPO pairs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_swift import assert_round_trip, call, canonical_examples, msg

from dataforge import formats
from dataforge.checking import check_files
from dataforge.recipe import Source
from dataforge.record import Example, Kind, Message, Provenance, Role, ToolCall
from dataforge.stages.convert import convert_raw
from dataforge.stages.read import read_source, resolve_format, source_files

PEER_FILES = ["reason_tool_use_demo_50.jsonl", "v1_sft_demo.jsonl", "v1_dpo_demo.jsonl"]


def text(value: str) -> dict[str, str]:
    return {"type": "text", "value": value}


TOOL_USE = {
    "messages": [
        {"role": "user", "content": [text("Area of circles r=1 and r=2?")]},
        {
            "role": "assistant",
            "content": [
                {"type": "reasoning", "value": "Two calls."},
                {"type": "tool_call", "value": '{"name": "circle_area", "arguments": {"radius": 1}}'},
                {"type": "tool_call", "value": '{"name": "circle_area", "arguments": {"radius": 2}}'},
            ],
        },
        # one tool message answering both calls, as the peer data writes it
        {
            "role": "tool",
            "content": [text('[{"name": "circle_area", "content": 3.14}, {"name": "circle_area", "content": 12.57}]')],
        },
        {"role": "assistant", "content": [{"type": "reasoning", "value": "Report."}, text("3.14 and 12.57.")]},
    ],
    "tools": json.dumps([{"type": "function", "function": {"name": "circle_area", "parameters": {"type": "object"}}}]),
}
WEIGHTED = {
    "messages": [
        {"role": "user", "content": [text("hi")], "loss_weight": 0.0},
        {"role": "assistant", "content": [text("Hello!")], "loss_weight": 1.0},
    ]
}
DPO = {
    "chosen_messages": [
        {"role": "system", "content": [text("Be exact.")], "loss_weight": 0.0},
        {"role": "user", "content": [text("Translate: bună")], "loss_weight": 0.0},
        {"role": "assistant", "content": [text("hello")], "loss_weight": 1.0},
    ],
    "rejected_messages": [
        {"role": "system", "content": [text("Be exact.")], "loss_weight": 0.0},
        {"role": "user", "content": [text("Translate: bună")], "loss_weight": 0.0},
        {"role": "assistant", "content": [text("goodbye")], "loss_weight": 1.0},
    ],
}


def test_tool_use_record(write, check):
    checked = check(write("tools.jsonl", [TOOL_USE]))
    assert (checked.format, checked.rejects.num_rows) == ("typed", 0)
    row = checked.examples.to_pylist()[0]
    assert row["messages"] == [
        msg("user", "Area of circles r=1 and r=2?"),
        msg(
            "assistant",
            None,
            reasoning="Two calls.",
            tool_calls=[call("circle_area", {"radius": 1}), call("circle_area", {"radius": 2})],
        ),
        msg("tool", TOOL_USE["messages"][2]["content"][0]["value"]),
        msg("assistant", "3.14 and 12.57.", reasoning="Report."),
    ]
    assert json.loads(row["tools"]) == [{"name": "circle_area", "parameters": {"type": "object"}}]


def test_loss_weight_and_preference_pairs(write, check):
    checked = check(write("mix.jsonl", [WEIGHTED, DPO]))
    assert (checked.format, checked.rejects.num_rows) == ("typed", 0)
    sft, dpo = checked.examples.to_pylist()
    assert sft["messages"] == [msg("user", "hi", weight=0.0), msg("assistant", "Hello!", weight=1.0)]
    assert dpo["kind"] == "preference"
    assert dpo["messages"] == [msg("system", "Be exact.", weight=0.0), msg("user", "Translate: bună", weight=0.0)]
    assert dpo["chosen"] == [msg("assistant", "hello", weight=1.0)]
    assert dpo["rejected"] == [msg("assistant", "goodbye", weight=1.0)]


@pytest.mark.parametrize(
    ("part", "reason", "field", "message"),
    [
        (
            {"type": "tool_call", "value": "{nope"},
            "invalid_tool_call",
            "messages[1].content[0].value",
            "a tool_call part must hold JSON",
        ),
        (
            {"type": "tool_call", "value": '{"name": "f", "arguments": "[1]"}'},
            "invalid_tool_call",
            "messages[1].content[0].value",
            "arguments of 'f' must be a JSON object",
        ),
        ({"type": "color", "value": "red"}, "schema_violation", "messages[1].content[0]", "a content part needs"),
        # Media parts are named as such: dataforge does not carry images (see test_multimodal.py).
        ({"type": "image", "value": "x.png"}, "multimodal_unsupported", "messages[1].content[0]", "row has 1 image"),
    ],
)
def test_bad_parts_are_rejected_naming_the_part(write, check, part, reason, field, message):
    bad = {"messages": [{"role": "user", "content": [text("q")]}, {"role": "assistant", "content": [part]}]}
    checked = check(write("bad.jsonl", [WEIGHTED, bad]), "typed")
    assert checked.examples.num_rows == 1
    [reject] = checked.rejects.to_pylist()
    assert (reject["row"], reject["stage"], reject["reason"], reject["field"]) == (1, "convert", reason, field)
    assert reject["message"].startswith(message)


def test_detection_needs_typed_parts():
    plain = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    assert not formats.get("typed").matches(plain)
    assert formats.detect([plain, plain], "x.jsonl").name == "openai"
    assert formats.detect([TOOL_USE, DPO, WEIGHTED], "x.jsonl").name == "typed"


def test_writer_reproduces_the_records(write, check):
    checked = check(write("mix.jsonl", [TOOL_USE, WEIGHTED, DPO]))
    written = formats.get("typed").from_examples(checked.examples.to_pylist())
    assert written.losses == {}
    assert written.records == [TOOL_USE, WEIGHTED, DPO]


def test_writer_counts_what_it_cannot_carry():
    ex = Example(
        id="x:0",
        kind=Kind.SFT,
        provenance=Provenance("x", "x.jsonl", 0),
        messages=(
            Message(Role.USER, "q"),
            Message(Role.ASSISTANT, None, tool_calls=(ToolCall("f", {}, id="c1"),)),
            Message(Role.TOOL, "r", tool_call_id="c1", name="f"),
            Message(Role.ASSISTANT, "a"),
        ),
    )
    kto = Example(
        id="x:1",
        kind=Kind.KTO,
        provenance=Provenance("x", "x.jsonl", 1),
        messages=(Message(Role.USER, "q"), Message(Role.ASSISTANT, "a")),
        label=True,
    )
    written = formats.get("typed").from_examples([ex.to_row(), kto.to_row()])
    assert written.losses == {
        "tool call ids": 1,
        "tool result ids": 1,
        "message names": 1,
        "kto rows (typed content holds sft and preference; not written)": 1,
    }
    assert len(written.records) == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(canonical_examples(kinds=("sft", "preference"), weighted=True), min_size=1, max_size=4))
def test_canonical_to_typed_and_back_is_exact(batch):
    assert_round_trip(batch, "typed")


# --- LLaMA-Factory's own typed-content demo files ------------------------------------------------------


@pytest.fixture(scope="module")
def llamafactory(fixture_path: Callable[[str], Path]) -> Callable[[str], Path]:
    """`llamafactory(name)`: one of LLaMA-Factory's demo files, vendored or shared; skips when neither has it."""
    return lambda name: fixture_path(f"peers/llamafactory/{name}").resolve()


def converted(path: Path, fmt: str | None) -> tuple[str, list[dict[str, Any]], int]:
    """(format, converted rows, convert-stage rejects) of a file: read → convert, before validation."""

    def quiet(*_: Any) -> None:
        return None

    source = Source.model_validate({"name": "input", "from": str(path), "format": fmt, "columns": {}})
    files = source_files(source, path.parent)
    resolved = resolve_format(source, files, path.parent)
    read = read_source(source, files, path.parent, resolved, quiet)
    out = convert_raw(read.tables["raw"], resolved, "input", quiet)
    rejects = read.tables["rejects"].num_rows + out.tables["rejects"].num_rows
    return resolved, out.tables["examples"].to_pylist(), rejects


def without_empty_tools(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not (k == "tools" and json.loads(v) == [])}


@pytest.mark.parametrize("name", PEER_FILES)
def test_peer_file_converts_and_writes_back_equal(llamafactory, name):
    source = llamafactory(name)
    originals = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines()]
    fmt, rows, rejects = converted(source, None)
    assert (fmt, rejects, len(rows)) == ("typed", 0, len(originals))
    written = formats.get("typed").from_examples(rows)
    assert written.losses == {}
    # Dict equality: key order aside, the same records. An empty `tools` ("[]", two rows) declares nothing,
    # which the canonical record holds as no tools, written back as no `tools` key.
    assert written.records == [without_empty_tools(r) for r in originals]


@pytest.mark.parametrize("name", PEER_FILES)
def test_peer_file_validates_except_its_stray_think_tags(llamafactory, name):
    """Validation rejects nothing but turns whose text really holds a stray `</think>` (two rows of the
    tool-use demo; the linter reports them as `unbalanced_think`)."""
    source = llamafactory(name)
    originals = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines()]
    stray = {
        (i, f"messages[{j}].content")
        for i, r in enumerate(originals)
        for j, m in enumerate(r.get("messages", []))
        if any(p["type"] == "text" and "</think>" in p["value"] for p in m["content"])
    }
    checked = check_files(str(source), None, root=source.parent)
    rejects = checked.rejects.to_pylist()
    # The v1 SFT demo carries LLaMA-Factory's identity rows, templates meant to be filled ("I am {{name}}"):
    # the linter rejects those 50 as unfilled placeholders.
    unfilled = {r["row"] for r in rejects if r["reason"] == "unfilled_placeholder"}
    assert len(unfilled) == (50 if name == "v1_sft_demo.jsonl" else 0)
    found = {(r["row"], r["field"]) for r in rejects if r["reason"] != "unfilled_placeholder"}
    assert {r["reason"] for r in rejects} <= {"unbalanced_think", "unfilled_placeholder"}
    assert found <= stray
    assert len(stray) == (2 if name == "reason_tool_use_demo_50.jsonl" else 0)
    assert checked.examples.num_rows == len(originals) - len(found) - len(unfilled)


def test_peer_parallel_results_stay_one_tool_message(llamafactory):
    _, rows, _ = converted(llamafactory("reason_tool_use_demo_50.jsonl"), None)
    answered = [
        (len(m["tool_calls"]), json.loads(r["messages"][i + 1]["content"]), r["messages"][i + 2]["role"])
        for r in rows
        for i, m in enumerate(r["messages"][:-2])
        if m["tool_calls"] and len(m["tool_calls"]) > 1 and r["messages"][i + 1]["role"] == "tool"
    ]
    assert len(answered) == 5
    # one tool message holding a JSON list with a result per call, and no tool message after it
    assert all(len(results) == calls and after != "tool" for calls, results, after in answered)
    assert all(m["tool_call_id"] is None for r in rows for m in r["messages"] if m["role"] == "tool")
