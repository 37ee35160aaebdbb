"""The Gopher repetition rules on hand-made texts with values worked out by hand, vectorised and reference alike."""

from __future__ import annotations

import pyarrow as pa
import pytest

from dataforge.quality import repetition_reference as ref
from dataforge.quality.repetition import CHUNK_ROWS, LRS_MAX_WORDS, SIGNALS, repetition_signals
from dataforge.quality.words import lines_of, paragraphs_of, split_words, words_of


def one(text: str | None) -> dict[str, float]:
    out = repetition_signals(pa.array([text], pa.string()))
    return {name: float(values[0]) for name, values in out.items()}


def test_words_are_lowercased_tokens_without_edge_punctuation_and_cjk_characters_stand_alone() -> None:
    text = "Hello, World! don't (stop) 3.14 -- 你好世界。"
    assert words_of(text) == ["hello", "world", "don't", "stop", "3.14", "你", "好", "世", "界"]
    assert split_words(pa.array([text])).values.to_pylist() == words_of(text)


def test_lines_and_paragraphs_are_stripped_and_blank_ones_dropped() -> None:
    text = "  a  \n\n\t\nb\r\nb\n \n\nc"
    assert lines_of(text) == ["a", "b", "b", "c"]
    assert paragraphs_of(text) == ["a", "b\r\nb", "c"]


def test_duplicate_lines_count_repeats_after_the_first() -> None:
    text = "alpha\nalpha\nbeta\nalpha"  # 4 lines, 2 repeat an earlier one; 10 of 22 characters
    got = one(text)
    assert got["dup_line_share"] == 0.5
    assert got["dup_line_char_share"] == 10 / 22


def test_duplicate_paragraphs_count_repeats_after_the_first() -> None:
    text = "one two\n\nthree\n\none two"  # 3 paragraphs, 1 repeated (7 characters of 23)
    got = one(text)
    assert got["dup_para_share"] == 1 / 3
    assert got["dup_para_char_share"] == 7 / 23


def test_top_ngram_share_takes_the_most_frequent_then_the_longest() -> None:
    text = "The capital of France is Paris. The capital of France is Paris."
    got = one(text)  # 12 words, 50 word characters; every n-gram inside the sentence occurs twice
    assert got["top_2gram_share"] == 2 * len("thecapital") / 50
    assert got["top_3gram_share"] == 2 * len("capitaloffrance") / 50
    assert got["top_4gram_share"] == 2 * len("thecapitaloffrance") / 50
    assert got["dup_5gram_share"] == got["dup_6gram_share"] == 1.0
    assert got["dup_7gram_share"] == 0.0  # "… paris the …" occurs once
    assert got["lrs_share"] == 25 / 50


def test_overlapping_occurrences_are_capped_at_one_and_covered_words_count_once() -> None:
    got = one("the the the the")  # "the the" three times (overlapping): 3 × 6 / 12 = 1.5, capped
    assert got["top_2gram_share"] == 1.0
    assert got["top_4gram_share"] == 0.0
    assert got["lrs_share"] == 9 / 12  # "the the the" occurs at 0 and 1


def test_dup_ngram_share_covers_only_the_repeated_span() -> None:
    got = one("a b c d e x a b c d e")  # the 5-gram "a b c d e" twice: 10 of 11 characters
    assert got["dup_5gram_share"] == 10 / 11
    assert got["dup_6gram_share"] == 0.0
    assert got["top_2gram_share"] == 2 * 2 / 11


def test_nothing_repeats_in_plain_text_and_empty_or_null_text_scores_zero() -> None:
    assert all(one("a quick brown fox jumps over the lazy dog")[s] == 0.0 for s in SIGNALS)
    for text in ("", None, " \n\n "):
        assert all(v == 0.0 for v in one(text).values())


def test_chinese_repetition_is_measured_in_characters() -> None:
    got = one("你好你好你好")  # 6 one-character words; "你好" at 0, 2, 4
    assert got["top_2gram_share"] == 1.0  # "你好" 3× and "好你" 2×: the top one is "你好", 3 × 2 / 6
    assert got["lrs_share"] == 4 / 6  # "你好你好" at 0 and 2


def test_longest_repeat_is_capped_so_degenerate_text_costs_a_bounded_number_of_levels() -> None:
    words = ["spam"] * (LRS_MAX_WORDS * 3)
    got = one(" ".join(words))
    assert got["lrs_share"] == LRS_MAX_WORDS / len(words)
    assert ref.lrs_share(words) == got["lrs_share"]


def test_rows_are_independent_across_chunks() -> None:
    texts = ["x y z x y z"] + ["unique words only here"] * (CHUNK_ROWS + 1) + ["x y z x y z"]
    out = repetition_signals(pa.chunked_array([pa.array(texts[:5]), pa.array(texts[5:])]))
    assert out["top_3gram_share"][0] == out["top_3gram_share"][-1] == 1.0
    assert set(out["top_2gram_share"][1:-1]) == {0.0}
    assert list(out["words"][:2]) == [6, 4]


@pytest.mark.parametrize(
    "text",
    ["alpha\nalpha\nbeta\nalpha", "The capital of France is Paris. The capital of France is Paris.", "你好你好你好"],
)
def test_the_reference_agrees_on_the_hand_made_texts(text: str) -> None:
    assert ref.repetition_signals(text) == pytest.approx(one(text), abs=0)
