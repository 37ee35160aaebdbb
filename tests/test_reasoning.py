"""The reasoning policy: inline <think> blocks and the reasoning field, moved or stripped exactly."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from builders import quiet, table
from dataforge.formats.columnar import ORIGIN
from dataforge.reasoning import apply_policy, join_think, split_think
from dataforge.record import Example, Kind, Message, Provenance, Role
from dataforge.stages.convert import _split_off  # the stage's own reject builder, exercised below
from dataforge.stages.validate import validate_examples


def row(i: int, *assistant: Message, kind: Kind = Kind.SFT, chosen=(), rejected=()) -> Example:
    return Example(
        id=f"s:{i}",
        kind=kind,
        provenance=Provenance("s", "s.jsonl", i, i + 1),
        messages=(Message(Role.USER, "q"), *assistant),
        chosen=tuple(chosen),
        rejected=tuple(rejected),
    )


def turns(t, side: str = "messages"):
    return [(m["content"], m["reasoning"]) for r in t.to_pylist() for m in (r[side] or ()) if m["role"] == "assistant"]


def test_split_and_join():
    assert split_think("<think>\nstep 1\nstep 2\n</think>\n\nAnswer.") == ("step 1\nstep 2", "Answer.")
    assert split_think("  <think>x</think>y") == ("x", "y")
    assert split_think("Answer first <think>x</think>") == (None, "Answer first <think>x</think>")
    assert split_think("<think>never closed") == (None, "<think>never closed")
    assert split_think("<think></think>Answer") == ("", "Answer")
    assert join_think("r", "c") == "<think>\nr\n</think>\n\nc"
    assert join_think(None, "c") == "c"


reasoning_text = st.text(min_size=1, max_size=40).filter(lambda s: s.strip("\n") == s and "</think>" not in s)
content_text = st.text(max_size=40).filter(lambda s: not s.startswith("\n"))


@settings(max_examples=200, deadline=None)
@given(reasoning_text, content_text)
def test_join_then_split_round_trips(reasoning, content):
    assert split_think(join_think(reasoning, content)) == (reasoning, content)


def test_policies_move_and_strip_reasoning():
    t = table(
        row(0, Message(Role.ASSISTANT, "<think>\nplan\n</think>\n\nAnswer.")),
        row(1, Message(Role.ASSISTANT, "Answer.", reasoning="plan")),
        row(2, Message(Role.ASSISTANT, "No reasoning.")),
    )
    field, counts, problems = apply_policy(t, "field")
    assert turns(field) == [("Answer.", "plan"), ("Answer.", "plan"), ("No reasoning.", None)]
    assert counts == {"inline <think> blocks moved to the reasoning field": 1} and problems == []
    inline, counts, _ = apply_policy(t, "inline")
    think = "<think>\nplan\n</think>\n\nAnswer."
    assert turns(inline) == [(think, None), (think, None), ("No reasoning.", None)]
    assert counts == {"reasoning fields moved inline": 1}
    stripped, counts, _ = apply_policy(t, "strip")
    assert turns(stripped) == [("Answer.", None), ("Answer.", None), ("No reasoning.", None)]
    assert counts == {"inline <think> blocks stripped": 1, "reasoning fields stripped": 1}
    kept, counts, _ = apply_policy(t, "keep")
    assert kept.equals(t) and counts == {}
    # Everything else in the table is untouched.
    assert field.select(["id", "kind", "source", "row"]).equals(t.select(["id", "kind", "source", "row"]))


def test_preference_sides_follow_the_policy():
    t = table(
        row(
            0,
            kind=Kind.PREFERENCE,
            chosen=[Message(Role.ASSISTANT, "<think>good</think>Yes.")],
            rejected=[Message(Role.ASSISTANT, "<think>bad</think>No.")],
        )
    )
    moved, _, _ = apply_policy(t, "field")
    assert turns(moved, "chosen") == [("Yes.", "good")]
    assert turns(moved, "rejected") == [("No.", "bad")]


def test_reasoning_in_both_places_is_a_conflict_and_the_row_is_rejected():
    t = table(
        row(0, Message(Role.ASSISTANT, "<think>inline</think>A", reasoning="field")),
        row(1, Message(Role.ASSISTANT, "B", reasoning="fine")),
    )
    out, _, problems = apply_policy(t, "field")
    assert problems == [
        (0, "messages[1].content", "the turn has reasoning both in its reasoning field and as an inline <think> block")
    ]
    # The convert stage splits conflicting rows off as rejects (the table carries converters' origin column).

    with_origin = out.append_column(ORIGIN, pa.array([["m"], ["m"]], pa.list_(pa.string())))
    kept, rejects = _split_off(with_origin, problems)
    assert kept["id"].to_pylist() == ["s:1"]
    assert [(r["example_id"], r["reason"], r["field"]) for r in rejects.to_pylist()] == [
        ("s:0", "reasoning_conflict", "messages[1].content")
    ]
    assert validate_examples(kept.drop_columns([ORIGIN]), quiet).tables["examples"].num_rows == 1
