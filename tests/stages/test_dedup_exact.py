from pathlib import Path

import pyarrow as pa

from builders import chat, qa, quiet, table
from dataforge.recipe import Dedup
from dataforge.record import Example, Kind, Message, Provenance, Role, ToolCall
from dataforge.stages.dedup import deduplicate as dedup_stage
from dataforge.stages.dedup_exact import normalise, row_text


def deduplicate(t, enabled, progress):
    """The dedup stage with exact deduplication alone (no near, no eval files)."""
    return dedup_stage(t, Dedup(exact=enabled), root=Path("."), files=[], seed=0, progress=progress)


def test_normalise_folds_case_and_whitespace():
    out = normalise(pa.array(["  Hello\n\tWorld  ", "HELLO WORLD", None]))
    assert out.to_pylist() == ["hello world", "hello world", ""]


def test_first_occurrence_wins_within_and_across_sources():
    t = table(
        qa("a", 0, "What is 2+2?", "4"),
        qa("a", 1, "what is   2+2?", "4 "),  # same after normalisation
        qa("a", 2, "What is 3+3?", "6"),
        qa("b", 0, "WHAT IS 2+2?", "4"),  # cross-source copy
        qa("b", 1, "What is 2+2?", "four"),  # different answer: kept
    )
    result = deduplicate(t, True, quiet)
    assert result.tables["examples"]["id"].to_pylist() == ["a:0", "a:2", "b:1"]
    rejects = result.tables["rejects"].to_pylist()
    assert [(r["example_id"], r["duplicate_of"], r["reason"]) for r in rejects] == [
        ("a:1", "a:0", "exact_duplicate"),
        ("b:0", "a:0", "exact_duplicate"),
    ]
    assert result.stats == {"exact": {"removed": 2}, "near": {"enabled": False}, "decontamination": {}}


def test_roles_matter_and_system_prompts_matter():
    t = table(
        chat("s", 0, ("user", "x"), ("assistant", "y")),
        chat("s", 1, ("assistant", "x"), ("user", "y")),
        chat("s", 2, ("user", "x"), ("assistant", "y"), system="pirate"),
    )
    assert deduplicate(t, True, quiet).tables["examples"].num_rows == 3


def test_tool_calls_are_part_of_the_identity():
    def call(row, city):
        return Example(
            id=f"t:{row}",
            kind=Kind.SFT,
            provenance=Provenance("t", "t.jsonl", row, row + 1),
            messages=(
                Message(Role.USER, "weather?"),
                Message(Role.ASSISTANT, None, tool_calls=(ToolCall("w", {"city": city}),)),
            ),
        )

    t = table(call(0, "Paris"), call(1, "Rome"), call(2, "Paris"))
    texts = row_text(t).to_pylist()
    assert texts[0] == texts[2] != texts[1]
    assert deduplicate(t, True, quiet).tables["examples"]["id"].to_pylist() == ["t:0", "t:1"]


def test_disabled_keeps_everything():
    t = table(qa("a", 0, "q", "a"), qa("a", 1, "q", "a"))
    assert deduplicate(t, False, quiet).tables["examples"].num_rows == 2
