"""columnar.contains: one scan of a string column's buffer gives the same mask as Arrow's per-string kernel."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from dataforge.formats.columnar import contains

# Strings made of tag pieces, so that matches, near-misses and matches split across two strings all occur.
pieces = st.sampled_from(["<think>", "</think>", "<thi", "nk>", "<", "/", "think", ">", "a", "é", "数", "\n"])
strings = st.lists(st.none() | st.lists(pieces, max_size=6).map("".join), max_size=30)


def reference(arr: pa.Array, pattern: str) -> list[bool]:
    return pc.fill_null(pc.match_substring_regex(arr, pattern), False).to_pylist()


@settings(max_examples=300, deadline=None)
@given(strings, st.integers(0, 5), st.sampled_from(["</?think>", "<think>"]), st.booleans())
def test_contains_equals_the_arrow_kernel(values, skip, pattern, large):
    arr = pa.array(values, pa.large_string() if large else pa.string())
    sliced = arr.slice(min(skip, len(arr)))  # a non-zero offset into the buffers
    assert contains(sliced, pattern).tolist() == reference(sliced, pattern)


def test_a_match_split_across_two_strings_is_not_a_match():
    arr = pa.array(["ab<thi", "nk>cd", None, "x<think>"])
    assert contains(arr, "<think>").tolist() == [False, False, False, True]
    assert contains(pa.array([], pa.string()), "<think>").tolist() == []
    assert contains(pa.array([None, None], pa.string()), "<think>").tolist() == [False, False]
