"""The fast paths of the quality signals give the values of their plain definitions.

- `ratios.char_signals` counts ASCII texts byte by byte and the others with regexes: both equal a per-character
  count in Python, on mixed columns, sliced arrays (a non-zero Arrow offset), nulls and `large_string`;
- `repetition` sorts word ids with a 16-bit radix sort up to 65,536 distinct words a chunk and falls back to a
  64-bit sort beyond: a chunk past that bound gives the reference's values;
- `signals.compute_signals` works through `BLOCK_ROWS` rows at a time: blocks give what one pass gives.
"""

from __future__ import annotations

import unicodedata

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from builders import chat, qa, table
from dataforge.quality import repetition_reference as ref
from dataforge.quality import signals
from dataforge.quality.ratios import _ASCII_ROWS, bad_chars, char_signals
from dataforge.quality.repetition import CHUNK_ROWS, SIGNALS, repetition_signals

RE2_SPACE = "\t\n\f\r "  # what `\s` means to RE2 (no \v, no Unicode spaces)


def reference(text: str | None) -> tuple[int, float, float]:
    """(chars, non_alpha_share, bad_char_share) of one text, character by character."""
    text = text or ""
    spaces = sum(c in RE2_SPACE for c in text)
    letters = sum(unicodedata.category(c).startswith("L") for c in text)
    other = len(text) - spaces - letters
    non_alpha = other / (len(text) - spaces) if len(text) > spaces else 0.0
    return len(text), non_alpha, bad_chars(text) / len(text) if text else 0.0


CHARACTERS = list("aZz09 .,!-_\t\n\f\r\x0b\x1c") + ["é", "ß", "今", "Ã", "©", "â", "€", "™", "\xa0", "\u2003", "\ufffd"]
texts = st.lists(st.sampled_from(CHARACTERS), max_size=40).map("".join)
ascii_texts = st.lists(st.sampled_from([c for c in CHARACTERS if c.isascii()]), max_size=40).map("".join)


@settings(max_examples=150, deadline=None)
@given(
    batch=st.lists(st.one_of(texts, ascii_texts, st.none()), min_size=1, max_size=12),
    skip=st.integers(0, 3),
    large=st.booleans(),
)
def test_character_ratios_equal_a_per_character_count(batch: list[str | None], skip: int, large: bool) -> None:
    column = pa.array(["Ãx"] * skip + batch, pa.large_string() if large else pa.string()).slice(skip)
    got = char_signals(column)
    for i, text in enumerate(batch):
        chars, non_alpha, bad = reference(text)
        assert (got["chars"][i], got["non_alpha_share"][i], got["bad_char_share"][i]) == (chars, non_alpha, bad), text


def test_character_ratios_of_a_chunked_column_with_empty_texts_between() -> None:
    column = pa.chunked_array([pa.array(["", "ab cd", None]), pa.array(["", "", "1 2 €", "x"])])
    got = char_signals(column)
    assert list(got["chars"]) == [0, 5, 0, 0, 0, 5, 1]
    assert list(got["non_alpha_share"]) == [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def test_a_chunk_with_more_than_65536_distinct_words_takes_the_wide_sort() -> None:
    rows = CHUNK_ROWS
    per_row = 40  # 40 fresh words a row: 81,920 distinct words in the chunk
    texts = []
    for r in range(rows):
        words = [f"w{r}x{i}" for i in range(per_row)]
        if r % 97 == 0:  # some rows repeat a run of their words
            words += words[5:17]
        texts.append(" ".join(words))
    out = repetition_signals(pa.array(texts))
    for r in range(0, rows, 97):
        expected = ref.repetition_signals(texts[r])
        assert {name: out[name][r] for name in SIGNALS} == {name: expected[name] for name in SIGNALS}
    assert out["lrs_share"][0] > 0 and out["lrs_share"][1] == 0.0
    assert np.all(out["words"] == [per_row + (12 if r % 97 == 0 else 0) for r in range(rows)])


def test_character_ratios_across_the_byte_blocks() -> None:
    # Texts cross several `_ASCII_ROWS` blocks, with empty texts and nulls on and around the block edges.
    n = 3 * _ASCII_ROWS + 5
    texts = [None if i % 11 == 0 else "" if i % 7 == 0 else f"Row {i}: ab\tcd é!"[: i % 17] for i in range(n)]
    for edge in (_ASCII_ROWS - 1, _ASCII_ROWS, 2 * _ASCII_ROWS):
        texts[edge] = ""
    got = char_signals(pa.array(texts))
    want = [reference(t) for t in texts]
    assert list(zip(got["chars"], got["non_alpha_share"], got["bad_char_share"], strict=True)) == want


def test_signals_computed_in_blocks_equal_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [
        qa("s", 0, "What is the capital of France?", "Paris. Paris. Paris is the capital of France."),
        qa("s", 1, "mail me: john [at] example [dot] com", "I'm sorry, but I can't help with that."),
        chat("s", 2, ("user", "你好你好"), ("assistant", "你好！"), ("user", "again"), ("assistant", "a b a b a b")),
        qa("s", 3, "call 415-555-2671", "cafÃ© and itâ€™s\n\nline\nline"),
        qa("s", 4, "x", ""),
    ]
    examples = table(*rows * 3)
    whole = signals.compute_signals(examples)
    monkeypatch.setattr(signals, "BLOCK_ROWS", 4)  # blocks of 4 rows: 15 rows go through 4 blocks
    blocked = signals.compute_signals(examples)
    assert blocked.type == signals.QUALITY_TYPE and len(blocked) == 15
    assert blocked.to_pylist() == whole.to_pylist()
    assert [r["pii"]["email"] for r in blocked.to_pylist()[:5]] == [0, 1, 0, 0, 0]
