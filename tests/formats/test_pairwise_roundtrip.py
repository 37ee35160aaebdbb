"""For every pair of registered formats A, B: canonical → A → canonical → B → canonical gives the same record
whenever B's writer reports that it carried everything (no losses). Generated with hypothesis: conversations
with system prompts, tool calls (parallel ones too) and their results, reasoning, preference pairs, KTO labels
and plain text."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataforge import formats
from dataforge.checking import check_files
from dataforge.formats.toolids import with_call_ids
from dataforge.record import Example, Kind, Message, Provenance, Role, ToolCall

# Text that survives any format: no surrogates, no think/tool tags (dialects that spell those inline would
# read them as structure, which is their job), no leading/trailing whitespace (some dialects frame content
# with newlines), not empty.
words = (
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="<>"), min_size=1, max_size=12
    )
    .map(str.strip)
    .filter(bool)
)
text = st.lists(words, min_size=1, max_size=4).map(" ".join)
arguments = st.dictionaries(
    st.sampled_from(["city", "q", "n", "flag"]), st.integers(-9, 99) | words | st.booleans(), max_size=3
)


@st.composite
def examples(draw) -> Example:
    kind = draw(st.sampled_from([Kind.SFT, Kind.SFT, Kind.PREFERENCE, Kind.KTO, Kind.PRETRAIN]))
    where = Provenance("gen", "gen.jsonl", 0, 1)
    if kind == Kind.PRETRAIN:
        return Example(id="gen:0", kind=kind, provenance=where, text=draw(text))
    msgs: list[Message] = []
    if draw(st.booleans()):
        msgs.append(Message(Role.SYSTEM, draw(text)))
    tools: list[dict[str, Any]] = []
    for turn in range(draw(st.integers(1, 2))):
        msgs.append(Message(Role.USER, draw(text)))
        if kind == Kind.SFT and draw(st.booleans()):
            calls = tuple(
                ToolCall(name=f"fn_{turn}_{i}", arguments=draw(arguments)) for i in range(draw(st.integers(1, 2)))
            )
            msgs.append(Message(Role.ASSISTANT, None, tool_calls=calls))
            msgs.extend(Message(Role.TOOL, draw(text)) for _ in calls)
            tools += [{"name": c.name, "description": draw(text)} for c in calls]
        reasoning = draw(st.none() | text)
        msgs.append(Message(Role.ASSISTANT, draw(text), reasoning=reasoning))
    if kind == Kind.SFT:
        return Example(id="gen:0", kind=kind, provenance=where, messages=tuple(msgs), tools=tools or None)
    prompt = tuple(msgs[:-1])
    if kind == Kind.KTO:
        return Example(id="gen:0", kind=kind, provenance=where, messages=tuple(msgs), label=draw(st.booleans()))
    answer = draw(text)
    chosen = (Message(Role.ASSISTANT, answer, reasoning=draw(st.none() | text)),)
    # Different from the chosen answer: an identical pair is a lint reject, not a round-trip question.
    rejected = (Message(Role.ASSISTANT, draw(text.filter(lambda t: t != answer))),)
    return Example(id="gen:0", kind=kind, provenance=where, messages=prompt, chosen=chosen, rejected=rejected)


def content(row: dict[str, Any]) -> dict[str, Any]:
    def side(messages):
        return [
            (
                m["role"],
                m["content"] or None,
                m["reasoning"],
                [(c["name"], json.loads(c["arguments"]), c["id"]) for c in m["tool_calls"] or ()],
                m["tool_call_id"],
                m["name"],
                m["weight"],
            )
            for m in messages or ()
        ]

    return {
        "kind": row["kind"],
        "label": row["label"],
        "text": row["text"],
        "tools": json.loads(row["tools"]) if row["tools"] else None,
        "messages": side(row["messages"]),
        "chosen": side(row["chosen"]),
        "rejected": side(row["rejected"]),
    }


def through(row: dict[str, Any], fmt: str) -> dict[str, Any] | None:
    """`row` written as `fmt` and read back; None when the writer could not carry all of it. Written under the
    generated example's id at every hop, so writers that give id-less tool calls ids (`with_call_ids`, from the
    example id) give the same ones whichever hop they write."""
    written = formats.get(fmt).from_examples([{**row, "id": "gen:0"}])
    if written.losses or len(written.records) != 1:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.jsonl"
        path.write_text(json.dumps(written.records[0], ensure_ascii=False) + "\n", encoding="utf-8")
        checked = check_files(str(path), fmt, root=Path(tmp))
    assert checked.rejects.to_pylist() == [], (fmt, written.records[0], checked.rejects.to_pylist())
    (back,) = checked.examples.to_pylist()
    return back


NAMES = formats.names()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(examples(), st.sampled_from(NAMES), st.sampled_from(NAMES))
def test_a_to_b_keeps_whatever_b_can_carry(example, a, b):
    original = example.to_row()
    via_a = through(original, a)
    if via_a is None:
        return
    assert identified(via_a) == identified(original), a
    via_b = through(via_a, b)
    if via_b is None:
        return
    assert identified(via_b) == identified(via_a), (a, b)


def identified(row: dict[str, Any]) -> dict[str, Any]:
    """`content` of the row with the tool-call ids an id-carrying writer gives it (generated ids are not lost
    or added content: every writer that carries ids derives the same ones from the row)."""
    return content(with_call_ids({**row, "id": "gen:0"}))


@settings(max_examples=60, deadline=None)
@given(examples())
def test_every_kind_has_a_format_that_carries_it_exactly(example):
    carried = [fmt for fmt in NAMES if through(example.to_row(), fmt) is not None]
    assert carried, example
