"""`partition.merge_pairs`: folding the band partitions' pair-code files a few million codes at a time gives
exactly the distinct sorted pairs of all of them (what `unique_pairs` of the concatenation gives)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dataforge.dedup.partition import merge_pairs, unique_pairs


def _pair_files(tmp, chunks: list[list[tuple[int, int]]], width: int) -> tuple[list, np.ndarray]:
    paths, everything = [], []
    for p, chunk in enumerate(chunks):
        pairs = np.array(sorted({(min(a, b), max(a, b)) for a, b in chunk if a != b}), dtype=np.int64).reshape(-1, 2)
        path = tmp / f"pairs-{p}.npy"
        np.save(path, pairs[:, 0] * width + pairs[:, 1])
        paths.append(path)
        everything.append(pairs)
    return paths, np.concatenate(everything) if everything else np.zeros((0, 2), np.int64)


@settings(max_examples=60, deadline=None)
@given(
    width=st.integers(2, 50),
    data=st.data(),
    merge=st.integers(1, 40),
)
def test_merge_pairs_equals_unique_pairs_of_the_concatenation(tmp_path_factory, width, data, merge):
    row = st.integers(0, width - 1)
    chunks = data.draw(st.lists(st.lists(st.tuples(row, row), max_size=30), max_size=8))
    paths, everything = _pair_files(tmp_path_factory.mktemp("pairs"), chunks, width)
    got = merge_pairs(paths, width, fold=merge)
    want = unique_pairs(everything)
    assert got.dtype == np.int64 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_merge_pairs_of_known_files(tmp_path):
    paths, _ = _pair_files(tmp_path, [[(3, 1), (0, 2)], [], [(1, 3), (2, 4)], [(0, 2)]], width=10)
    for fold in (1, 2, 100):  # a fold after every file, every other, once at the end
        np.testing.assert_array_equal(merge_pairs(paths, 10, fold), [[0, 2], [1, 3], [2, 4]])
    assert merge_pairs([], 10).shape == (0, 2)
