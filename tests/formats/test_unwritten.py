"""Every row a writer is given is written or counted as not written, under a loss that names why: for every
format and export, every kind, and any row (a hypothesis property)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataforge import formats
from dataforge.exports import export, export_names
from dataforge.formats.base import is_unwritten, write_each
from dataforge.record import Example, Kind, Message, Provenance, Role, ToolCall


def row(kind: Kind, i: int = 0) -> dict[str, Any]:
    """A plain, valid canonical row of `kind`."""
    user, answer = Message(Role.USER, "What is 2+2?"), Message(Role.ASSISTANT, "4.")
    more: dict[str, Any] = {
        Kind.SFT: {"messages": (user, answer)},
        Kind.PREFERENCE: {"messages": (user,), "chosen": (answer,), "rejected": (Message(Role.ASSISTANT, "5."),)},
        Kind.KTO: {"messages": (user, answer), "label": True},
        Kind.PRETRAIN: {"text": "Two and two make four."},
    }[kind]
    return Example(id=f"s:{i}", kind=kind, provenance=Provenance("s", "s.jsonl", i, i + 1), **more).to_row()


# What each format holds, and the loss a row of another kind is counted under (checked by hand against each
# format's documentation: hermes and minimind hold sft only, typed sft and preference, text pretrain only).
NOT_WRITTEN = {
    ("alpaca", "pretrain"): "pretrain rows (plain text, not written)",
    ("sharegpt", "pretrain"): "pretrain rows (plain text, not written)",
    ("openai", "pretrain"): "pretrain rows (plain text, not written)",
    ("hermes", "preference"): "preference rows (hermes holds sft only; not written)",
    ("hermes", "kto"): "kto rows (hermes holds sft only; not written)",
    ("hermes", "pretrain"): "pretrain rows (hermes holds sft only; not written)",
    ("minimind", "preference"): "preference rows (minimind holds sft only; not written)",
    ("minimind", "kto"): "kto rows (minimind holds sft only; not written)",
    ("minimind", "pretrain"): "pretrain rows (minimind holds sft only; not written)",
    ("typed", "kto"): "kto rows (typed content holds sft and preference; not written)",
    ("typed", "pretrain"): "pretrain rows (typed content holds sft and preference; not written)",
    ("text", "sft"): "sft rows (not plain text, not written)",
    ("text", "preference"): "preference rows (not plain text, not written)",
    ("text", "kto"): "kto rows (not plain text, not written)",
}


@pytest.mark.parametrize("kind", [k.value for k in Kind])
@pytest.mark.parametrize("fmt", formats.names())
def test_each_format_writes_each_kind_or_says_it_cannot(fmt, kind):
    given_row = row(Kind(kind))
    written = write_each(formats.get(fmt), [given_row])
    why = NOT_WRITTEN.get((fmt, kind))
    if why is None:
        assert len(written.records) == 1 and written.left_out == [] and written.unwritten == 0
    else:
        assert written.records == []
        assert written.left_out == [(given_row, why)]
        assert written.losses == {why: 1}
        assert is_unwritten(why) and written.unwritten == 1


@pytest.mark.parametrize("kind", [k.value for k in Kind])
@pytest.mark.parametrize("name", ["trl", "llamafactory", "ms-swift", "axolotl"])
def test_every_trainer_export_writes_every_kind(name, kind):
    exported = export(name, {"train": [row(Kind(kind))]}, "x")
    assert sum(exported.rows.values()) == 1 and exported.left_out == []


def test_every_name_is_offered_once():
    names = export_names()
    assert len(names) == len(set(names))
    assert names.count("trl") == 1


names = st.sampled_from(["get_weather", "search", "add"])
texts = st.sampled_from(["", "Hi", "<think>x</think>y", "Paris.", "数据 🙂", "  "]) | st.text(max_size=8)
calls = st.builds(ToolCall, name=names, arguments=st.dictionaries(st.sampled_from("abc"), st.integers(), max_size=2))


@st.composite
def messages(draw, min_size: int = 0) -> tuple[Message, ...]:
    return tuple(
        draw(
            st.lists(
                st.builds(
                    Message,
                    role=st.sampled_from(list(Role)),
                    content=st.none() | texts,
                    reasoning=st.none() | texts,
                    tool_calls=st.lists(calls, max_size=2).map(tuple),
                    tool_call_id=st.none() | st.sampled_from(["c1", "c2"]),
                    name=st.none() | st.just("bob"),
                    weight=st.none() | st.sampled_from([0.0, 1.0]),
                ),
                min_size=min_size,
                max_size=5,
            )
        )
    )


@st.composite
def canonical_rows(draw) -> dict[str, Any]:
    kind = draw(st.sampled_from(list(Kind)))
    more: dict[str, Any] = {}
    if kind == Kind.PREFERENCE:
        more = {"chosen": draw(messages()), "rejected": draw(messages())}
    elif kind == Kind.KTO:
        more = {"label": draw(st.booleans())}
    elif kind == Kind.PRETRAIN:
        more = {"text": draw(texts)}
    metadata = draw(
        st.sampled_from([{}, {"quality": 3}, {"system": "clash"}, {"images": ["a.jpg"]}, {"images": []}, {"id": "x"}])
    )
    tools = draw(st.none() | st.just([{"name": "add", "parameters": {"type": "object"}}]))
    return Example(
        id=f"s:{draw(st.integers(0, 99))}",
        kind=kind,
        provenance=Provenance("s", "s.jsonl", 0, 1),
        messages=draw(messages()) if kind != Kind.PRETRAIN else (),
        tools=tools,
        metadata=metadata,
        **more,
    ).to_row()


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(canonical_rows(), min_size=1, max_size=6))
def test_no_writer_drops_a_row_without_counting_it(rows):
    for fmt in formats.names():
        writer = formats.get(fmt)
        whole = writer.from_examples(rows)
        # A row is written as one record or counted whole under a loss ending in "not written)".
        assert len(whole.records) + whole.unwritten == len(rows), (fmt, whole.losses)
        each = write_each(writer, rows)
        assert each.records == whole.records
        assert each.losses == whole.losses, fmt  # no row needed the fallback count: every writer names its reason
        assert len(each.left_out) == whole.unwritten
        assert all(is_unwritten(why) for _, why in each.left_out)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(canonical_rows(), min_size=1, max_size=6))
def test_no_export_drops_a_row_without_counting_it(rows):
    for name in export_names():
        exported = export(name, {"train": rows}, "x")
        unwritten = sum(
            n for kinds in exported.losses.values() for c in kinds.values() for w, n in c.items() if is_unwritten(w)
        )
        assert sum(exported.rows.values()) + len(exported.left_out) == len(rows), (name, exported.losses)
        assert unwritten == len(exported.left_out), name
