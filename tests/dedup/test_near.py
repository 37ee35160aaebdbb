"""Near-duplicate clusters: both candidate engines, verification, keepers, decontamination joins."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataforge.dedup.candidates import band_shape, candidate_pairs
from dataforge.dedup.near import (
    NearSettings,
    compute_signatures,
    exact_jaccard,
    near_duplicates,
    near_matches,
    shingle_sets,
)


def corpus(seed: int = 0, originals: int = 300) -> tuple[list[str], list[int]]:
    """Random 120-word documents, a third of them followed by a copy with 1 or 2 words changed.

    One changed word leaves 111 of 121 distinct word 5-grams shared (Jaccard 0.92), two leave 106 of 126
    (0.84): both far enough above 0.7 that even the signature estimate cannot miss them.
    """
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(20_000)])
    docs, family = [], []
    for f in range(originals):
        words = list(rng.choice(vocab, 120))
        docs.append(" ".join(words))
        family.append(f)
        if f % 3 == 0:
            for i in rng.choice(120, int(rng.integers(1, 3)), replace=False):
                words[i] = "changed"
            docs.append(" ".join(words))
            family.append(f)
    return docs, family


@pytest.mark.parametrize("verify", ["auto", "exact", "estimate"])
def test_near_copies_cluster_with_their_original_and_nothing_else(verify):
    docs, family = corpus()
    clusters = near_duplicates(pa.array(docs), np.arange(len(docs)), NearSettings(threshold=0.7, verify=verify))
    family = np.array(family)
    removed = np.flatnonzero(clusters.removed)
    # Every planted copy is removed in favour of its original (the first row of its family).
    copies = [i for i in range(1, len(docs)) if family[i] == family[i - 1]]
    assert removed.tolist() == copies
    assert all(clusters.keeper[i] == i - 1 for i in copies)
    assert (clusters.similarity[removed] >= 0.7).all()
    assert len(set(clusters.label[clusters.label >= 0].tolist())) == len(copies)


def test_the_two_engines_find_the_same_pairs_and_clusters():
    docs, _ = corpus(seed=1)
    texts = pa.array(docs)
    lsh = NearSettings(engine="lsh")
    banded = NearSettings(engine="banded")
    sigs = compute_signatures(texts, lsh)
    assert (
        candidate_pairs(sigs, threshold=0.8, engine="lsh", seed=1).tolist()
        == candidate_pairs(sigs, threshold=0.8, engine="banded", seed=1).tolist()
    )
    a = near_duplicates(texts, np.arange(len(docs)), lsh)
    b = near_duplicates(texts, np.arange(len(docs)), banded)
    assert a.keeper.tolist() == b.keeper.tolist() and a.label.tolist() == b.label.tolist()


def test_same_seed_same_clusters_other_seed_same_answer_on_clear_cases():
    docs, _ = corpus(seed=2)
    texts = pa.array(docs)
    runs = [near_duplicates(texts, np.arange(len(docs)), NearSettings(seed=s, threshold=0.7)) for s in (5, 5, 6)]
    assert runs[0].keeper.tolist() == runs[1].keeper.tolist()
    assert np.array_equal(runs[0].similarity, runs[1].similarity, equal_nan=True)
    # Planted copies (Jaccard 0.84 and 0.92) are far above 0.7: another seed finds the same ones.
    assert runs[2].removed.tolist() == runs[0].removed.tolist()


def test_the_rank_chooses_the_keeper():
    docs = ["alpha beta gamma delta epsilon zeta eta theta iota kappa"] * 1 + [
        "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda"
    ]
    settings = NearSettings(threshold=0.5, ngram=2)
    first = near_duplicates(pa.array(docs), np.array([0, 1]), settings)
    assert first.keeper.tolist() == [0, 0]
    second = near_duplicates(pa.array(docs), np.array([1, 0]), settings)
    assert second.keeper.tolist() == [1, 1] and second.removed.tolist() == [True, False]


def test_chains_join_one_cluster_and_report_similarity_to_the_keeper():
    base = [f"t{i}" for i in range(100)]
    a = " ".join(base)
    b = " ".join(base[:10] + ["x"] + base[11:])  # one word from a: word 3-gram Jaccard 95/101
    c = " ".join(base[:10] + ["x"] + base[11:60] + ["y"] + base[61:])  # one word from b, two from a: 92/104
    settings = NearSettings(threshold=0.9, ngram=3, verify="exact")
    clusters = near_duplicates(pa.array([a, b, c]), np.arange(3), settings)
    assert clusters.keeper.tolist() == [0, 0, 0]  # c joins through b although it is below 0.9 from a
    assert clusters.similarity[1] == pytest.approx(95 / 101)
    assert clusters.similarity[2] == pytest.approx(92 / 104)


def test_near_matches_joins_queries_to_references():
    docs, family = corpus(seed=3, originals=60)
    references = pa.array(docs[::2])
    queries = pa.array(["something unrelated entirely " * 10, docs[1], docs[0]])
    m = near_matches(queries, references, NearSettings())
    assert m.reference[0] == -1 and np.isnan(m.similarity[0])
    assert docs[::2][m.reference[2]] == docs[0] and m.similarity[2] == 1.0
    # docs[1] is the copy of docs[0] (family 0): it matches the original.
    assert family[1] == family[0] and docs[::2][m.reference[1]] == docs[0] and 0.8 <= m.similarity[1] < 1.0


def test_band_shape_favours_recall_and_fits_the_signature():
    b, r = band_shape(0.8, 128)
    assert b * r <= 128
    recall_at_threshold = 1 - (1 - 0.8**r) ** b
    assert recall_at_threshold > 0.7


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from("abcdefgh"), min_size=0, max_size=25), min_size=2, max_size=8))
def test_exact_jaccard_matches_python_sets(word_lists):
    texts = [" ".join(w) for w in word_lists]
    near = NearSettings(ngram=2)
    pairs = np.array([(i, j) for i in range(len(texts)) for j in range(len(texts))], dtype=np.int64)
    sets = shingle_sets(pa.array(texts), pairs.ravel(), near)
    got = exact_jaccard(pairs, sets, sets)

    def grams(w: list[str]) -> set[tuple[str, ...]]:
        if not w:
            return set()
        return {tuple(w[k : k + 2]) for k in range(max(len(w) - 1, 1))}

    for (i, j), value in zip(pairs.tolist(), got.tolist(), strict=True):
        a, b = grams(word_lists[i]), grams(word_lists[j])
        assert value == pytest.approx(len(a & b) / len(a | b) if a | b else 0.0)


def test_worker_processes_compute_the_same_signatures():
    docs, _ = corpus(seed=4, originals=50)
    texts = pa.array(docs * 60)  # several batches
    one = compute_signatures(texts, NearSettings(workers=1))
    two = compute_signatures(texts, NearSettings(workers=2), parallel_from=0)
    assert np.array_equal(one.values, two.values) and np.array_equal(one.empty, two.empty)


def test_a_huge_bucket_of_near_identical_rows_stays_linear_and_connected():
    from dataforge.dedup.candidates import LARGE_GROUP

    base = " ".join(f"w{i}" for i in range(60))
    texts = pa.array([f"{base} tail{i}" for i in range(3 * LARGE_GROUP)])  # all pairs at Jaccard ~0.97
    clusters = near_duplicates(texts, np.arange(len(texts)), NearSettings(engine="banded"))
    assert clusters.pairs < 2 * len(texts) * 16  # star + chain per band, not n² / 2
    assert (clusters.keeper == 0).all() and clusters.removed.sum() == len(texts) - 1
