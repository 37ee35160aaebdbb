"""What near dedup compares: the fields of a row, and the normalisation, against plain regex references."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from builders import chat, table
from dataforge.dedup.text import collapse_whitespace, dedup_text, field_text, normalise
from dataforge.record import Example, Kind, Message, Provenance, Role

ALPHABET = "aZé É5٣ \t\n\u00a0\u3000!?,.-$+~，。“😀_x"
ALL = ["case", "punctuation", "whitespace", "digits"]


def split_words(text: str) -> list[str]:
    """Words as the word shingler splits them: on runs of ASCII whitespace."""
    return [w for w in re.split(r"[ \t\n\v\f\r]+", text) if w]


def reference(texts: list[str], steps: list[str]) -> list[str]:
    """The same normalisation with Arrow's regex kernels on every row (the slow, obvious way)."""
    arr = pa.array(texts)
    if "case" in steps:
        arr = pc.utf8_lower(arr)
    if "digits" in steps:
        arr = pc.replace_substring_regex(arr, r"\p{Nd}", "0")
    if "punctuation" in steps:
        arr = pc.replace_substring_regex(arr, r"[\p{P}\p{S}]", " ")
    if "whitespace" in steps:
        arr = pc.replace_substring_regex(arr, r"[\p{Z}\x{85}]+", " ")
        arr = pc.utf8_trim_whitespace(pc.replace_substring_regex(arr, r"\s+", " "))
    return arr.to_pylist()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text(alphabet=ALPHABET, max_size=30), min_size=1, max_size=8),
    st.lists(st.sampled_from(ALL), unique=True),
)
def test_normalise_matches_the_regex_reference(texts, steps):
    want = reference(texts, steps)
    assert normalise(pa.array(texts), steps).to_pylist() == want
    # For word shingles, runs of spaces are left to the word splitter (ASCII whitespace): the same words.
    words = normalise(pa.array(texts), steps, words=True).to_pylist()
    assert [split_words(w) for w in words] == [split_words(w) for w in want]


def test_fields_pick_the_turns():
    row = chat(
        "s",
        0,
        ("user", "first question"),
        ("assistant", "first answer"),
        ("user", "second question"),
        ("assistant", "final answer"),
        system="be brief",
    )
    t = table(row)
    assert field_text(t, "user").to_pylist() == ["first question\nsecond question"]
    assert field_text(t, "first_user").to_pylist() == ["first question"]
    assert field_text(t, "final_answer").to_pylist() == ["final answer"]
    conversation = field_text(t, "conversation").to_pylist()[0]
    assert all(part in conversation for part in ("be brief", "first answer", "second question", "final answer"))


def test_preference_rows_compare_the_chosen_answer_and_pretrain_rows_their_text():
    prompt = (Message(Role.USER, "pick one"),)
    pref = Example(
        id="p:0",
        kind=Kind.PREFERENCE,
        provenance=Provenance("p", "p.jsonl", 0, 1),
        messages=prompt,
        chosen=(Message(Role.ASSISTANT, "the good one"),),
        rejected=(Message(Role.ASSISTANT, "the bad one"),),
    )
    text = Example(id="t:0", kind=Kind.PRETRAIN, provenance=Provenance("t", "t.jsonl", 0, 1), text="Raw Text!")
    t = table(pref, text)
    assert field_text(t, "final_answer").to_pylist() == ["the good one", "Raw Text!"]
    conversation = field_text(t, "conversation").to_pylist()
    assert "the good one" in conversation[0] and "the bad one" in conversation[0]
    assert dedup_text(t, "conversation", ["case", "punctuation", "whitespace"]).to_pylist()[1] == "raw text"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="ab \t\n\r\f\v\u00a0", max_size=20), min_size=1, max_size=6))
def test_collapse_whitespace_is_the_plain_regex(texts):
    arr = pa.array(texts)
    assert collapse_whitespace(arr).to_pylist() == pc.replace_substring_regex(arr, r"\s+", " ").to_pylist()
