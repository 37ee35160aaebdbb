"""Positioned reads of a few rows from dedup's work files (`keys.read_rows`, `keys.read_texts`): equal to
indexing the whole array, for any rows in any order, repeats, empty texts and spans that merge or not."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataforge.dedup.keys import READ_GAP, read_rows, read_texts, write_texts


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 300),
    st.sampled_from([1, 3, 128]),
    st.sampled_from([np.uint64, np.int32, np.uint8]),
    st.data(),
)
def test_read_rows_equals_indexing_the_whole_array(tmp_path_factory, n, width, dtype, data):
    array = np.random.default_rng(n * width).integers(0, 200, size=(n, width)).astype(dtype)
    if width == 1 and n % 2:
        array = array[:, 0]  # one-dimensional files too (the text offsets)
    path = tmp_path_factory.mktemp("rows") / "a.npy"
    np.save(path, array)
    rows = np.array(data.draw(st.lists(st.integers(0, n - 1), max_size=80)), dtype=np.int64)
    got = read_rows(path, rows)
    assert got.dtype == array.dtype and got.shape == (len(rows), *array.shape[1:])
    assert np.array_equal(got, array[rows])


def test_rows_far_apart_and_close_together_are_both_read_whole(tmp_path):
    # 1 KB rows: neighbours merge into one read (gap ≤ READ_GAP), rows 100 apart do not; both give exact rows.
    array = np.arange(4000 * 128, dtype=np.uint64).reshape(4000, 128)
    np.save(tmp_path / "s.npy", array)
    assert READ_GAP <= array[0].nbytes  # one row between two wanted rows is read through, more is not
    rows = np.array([3999, 0, 1, 3, 100, 200, 201, 3998, 0])
    assert np.array_equal(read_rows(tmp_path / "s.npy", rows), array[rows])


def test_a_row_past_the_end_is_an_error_not_garbage(tmp_path):
    np.save(tmp_path / "s.npy", np.zeros((5, 4), np.uint64))
    with pytest.raises(IndexError):
        read_rows(tmp_path / "s.npy", np.array([5]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=3000), min_size=1, max_size=40), st.data())
def test_read_texts_equals_taking_from_the_written_array(tmp_path_factory, texts, data):
    folder = tmp_path_factory.mktemp("texts")
    paths = (folder / "t.bytes.npy", folder / "t.off.npy")
    array = pa.array(texts, pa.large_string())
    write_texts(array.slice(0), paths)
    rows = np.array(data.draw(st.lists(st.integers(0, len(texts) - 1), max_size=60)), dtype=np.int64)
    got = read_texts(paths, rows)
    assert got.to_pylist() == [texts[i] for i in rows]
