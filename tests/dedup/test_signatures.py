"""Shingles and MinHash signatures against a plain-Python reference of what they are meant to compute."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from dataforge.dedup.signatures import densify, shingle_hashes, signatures

WORDS = st.sampled_from(["a", "b", "c", "dd", "éé", "数据", "x1", "the", "cat"])
TEXT = st.lists(WORDS, min_size=0, max_size=30).map(" ".join)


def word_shingles(text: str, n: int) -> set[tuple[str, ...]]:
    """The reference: word n-grams as tuples; a text shorter than n is one shingle of all its words."""
    words = text.split()
    if not words:
        return set()
    if len(words) < n:
        return {tuple(words)}
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def char_shingles(text: str, n: int) -> set[str]:
    if not text:
        return set()
    if len(text) < n:
        return {text}
    return {text[i : i + n] for i in range(len(text) - n + 1)}


def hashed_sets(texts: list[str], n: int, unit: str) -> list[set[int]]:
    doc, hashes = shingle_hashes(pa.array(texts), n, unit, seed=7)
    out: list[set[int]] = [set() for _ in texts]
    for d, h in zip(doc.tolist(), hashes.tolist(), strict=True):
        out[d].add(h)
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(TEXT, min_size=1, max_size=6), st.integers(1, 6))
def test_word_shingle_hashes_match_the_reference_sets(texts, n):
    got = hashed_sets(texts, n, "word")
    want = [word_shingles(t, n) for t in texts]
    for g, w in zip(got, want, strict=True):
        assert len(g) == len(w)  # no collisions, no missing or extra shingles
    # Equal shingles hash equally across texts: pairwise intersections agree with the reference.
    for i in range(len(texts)):
        for j in range(len(texts)):
            assert len(got[i] & got[j]) == len(want[i] & want[j])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(alphabet="abé数 ", max_size=20), min_size=1, max_size=5), st.integers(1, 5))
def test_char_shingle_hashes_match_the_reference_sets(texts, n):
    got = hashed_sets(texts, n, "char")
    want = [char_shingles(t, n) for t in texts]
    for i in range(len(texts)):
        assert len(got[i]) == len(want[i])
        for j in range(len(texts)):
            assert len(got[i] & got[j]) == len(want[i] & want[j])


def test_words_are_split_on_any_run_of_ascii_whitespace():
    a, b = hashed_sets(["the  cat\tsat on\nthe mat", "the cat sat on the mat"], 3, "word")
    assert a == b and len(a) == 4


def test_a_sliced_array_hashes_like_a_fresh_one():
    texts = ["one two three four", "five six seven", "eight nine ten eleven twelve"]
    whole = pa.array(["zero"] + texts)
    sliced = shingle_hashes(whole.slice(1), 2, "word", seed=1)
    fresh = shingle_hashes(pa.array(texts), 2, "word", seed=1)
    assert sliced[0].tolist() == fresh[0].tolist() and sliced[1].tolist() == fresh[1].tolist()


def test_the_seed_changes_the_hashes_but_not_the_sets():
    a = shingle_hashes(pa.array(["a b c d"]), 2, "word", seed=1)[1]
    b = shingle_hashes(pa.array(["a b c d"]), 2, "word", seed=2)[1]
    assert len(set(a.tolist())) == len(set(b.tolist())) == 3 and set(a.tolist()) != set(b.tolist())


def test_empty_texts_have_no_shingles_and_an_empty_signature():
    sig = signatures(pa.array(["", "a b c d e f", "   "]), num_perm=32, ngram=2, unit="word", seed=1)
    assert sig.empty.tolist() == [True, False, True]
    assert sig.values.shape == (3, 32)


def test_identical_texts_have_identical_signatures_and_different_ones_do_not():
    sig = signatures(
        pa.array(["the quick brown fox jumps"] * 2 + ["a completely different sentence here"]),
        num_perm=64,
        ngram=2,
        unit="word",
        seed=3,
    )
    assert (sig.values[0] == sig.values[1]).all()
    assert (sig.values[0] == sig.values[2]).mean() < 0.2


def test_the_signature_estimates_jaccard():
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(5000)]
    base = list(rng.choice(vocab, 300))
    texts, truth = [], []
    for edits in (0, 3, 10, 30, 80):
        other = base.copy()
        for i in rng.choice(300, edits, replace=False):
            other[i] = f"new{i}"
        texts.append(" ".join(other))
        a, b = word_shingles(" ".join(base), 5), word_shingles(" ".join(other), 5)
        truth.append(len(a & b) / len(a | b))
    sig = signatures(pa.array([" ".join(base), *texts]), num_perm=256, ngram=5, unit="word", seed=11)
    estimates = [(sig.values[0] == sig.values[k + 1]).mean() for k in range(len(texts))]
    for est, true in zip(estimates, truth, strict=True):
        # 5 standard errors of a 256-value estimate: a failure here is a bug, not bad luck.
        assert abs(est - true) <= 5 * np.sqrt(max(true * (1 - true), 0.01) / 256), (est, true)


def test_densify_fills_every_empty_bin_from_the_same_row_the_same_way_for_every_document():
    empty = np.iinfo(np.uint64).max
    rng = np.random.default_rng(5)
    sig = rng.integers(0, 2**32, size=(6, 64), dtype=np.uint64)
    sig[rng.random((6, 64)) < 0.8] = empty  # most bins empty, as for a short text
    sig[4] = empty  # a row without shingles
    sig[5] = sig[0]  # the same filled bins as row 0
    out = densify(sig)
    for r in range(6):
        filled = sig[r] != empty
        if not filled.any():
            assert (out[r] == empty).all()
            continue
        assert (out[r][filled] == sig[r][filled]).all()
        assert set(out[r].tolist()) <= set(sig[r][filled].tolist())  # borrowed, never invented
    assert (out[5] == out[0]).all()


def test_short_texts_that_share_little_do_not_share_lsh_bands():
    # Templated rows differing in one number: 3 of 8 word 5-grams shared (Jaccard 0.23). Densified bins
    # borrow from random bins, so whole bands of copies of the shared shingles' values do not arise.
    from dataforge.dedup.candidates import band_keys

    texts = [f"question {i} about alpaca answer {i} alpaca is explained in a few words" for i in range(2000)]
    sig = signatures(pa.array(texts), num_perm=128, ngram=5, unit="word", seed=1)
    keys = band_keys(sig.values, 12, 10)
    shared = sum(len(col) - len(set(col.tolist())) for col in keys.T)
    assert shared < 20
