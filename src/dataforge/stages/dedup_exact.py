"""Exact deduplication: rows whose normalised text is identical to another row's, across all sources.

The keeper is the best-ranked row of each group (by default the first occurrence in recipe order: sources in
the order listed, rows in file order), so the result does not depend on scheduling. Normalisation: case
folded, runs of whitespace collapsed, ends trimmed.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..dedup.text import collapse_whitespace
from ..rejects import Outcome, rejects_from_examples

VERSION = 1
ROLE_SEP, MSG_SEP, SIDE_SEP = "\x1f", "\x1e", "\x1d"


def normalise(text: pa.Array) -> pa.Array:
    """Lower case, whitespace runs → one space, trimmed (vectorised)."""
    folded = pc.utf8_lower(pc.fill_null(text, ""))
    return pc.utf8_trim_whitespace(collapse_whitespace(folded))


def _messages_text(messages: pa.Array) -> pa.Array:
    """One string per row: every message as role + normalised content + reasoning + tool calls."""
    flat = pc.list_flatten(messages)
    calls = pc.struct_field(flat, "tool_calls")
    call_flat = pc.list_flatten(calls)
    call_text = pc.binary_join_element_wise(
        pc.fill_null(pc.struct_field(call_flat, "name"), ""),
        pc.fill_null(pc.struct_field(call_flat, "arguments"), ""),
        "(",
    )
    call_lists = pa.ListArray.from_arrays(_offsets(calls), call_text)
    per_message = pc.binary_join_element_wise(
        pc.struct_field(flat, "role"),
        normalise(pc.struct_field(flat, "content")),
        normalise(pc.struct_field(flat, "reasoning")),
        pc.fill_null(pc.binary_join(call_lists, ";"), ""),
        ROLE_SEP,
    )
    offsets = _offsets(messages)
    return pc.fill_null(pc.binary_join(pa.ListArray.from_arrays(offsets, per_message), MSG_SEP), "")


def _offsets(lists: pa.Array) -> pa.Array:
    """Offsets of `lists` with null lists treated as empty, consistent with `list_flatten`."""
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
    return pa.array(np.concatenate(([0], np.cumsum(lengths))).astype(np.int32), pa.int32())


def row_text(examples: pa.Table) -> pa.Array:
    """The normalised text that identifies a row's content for exact deduplication."""
    parts = [
        examples["kind"].combine_chunks(),
        _messages_text(examples["messages"].combine_chunks()),
        _messages_text(examples["chosen"].combine_chunks()),
        _messages_text(examples["rejected"].combine_chunks()),
        pc.fill_null(examples["label"].combine_chunks().cast(pa.string()), ""),
        normalise(examples["text"].combine_chunks()),
    ]
    return pc.binary_join_element_wise(*parts, SIDE_SEP)


def digests(texts: pa.Array) -> np.ndarray:
    """128-bit BLAKE2b digest of every text, as a fixed-width bytes array."""
    out = np.empty(len(texts), dtype="S16")
    for i, t in enumerate(texts.to_pylist()):
        out[i] = hashlib.blake2b(t.encode("utf-8"), digest_size=16).digest()
    return out


def exact_duplicates(examples: pa.Table, rank: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(duplicate mask, index of the kept row for each row): in each group, the lowest `rank` wins (then the
    first row); without `rank`, the first occurrence."""
    keys = digests(row_text(examples))
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    if rank is None:
        keeper = first[inverse]
    else:
        order = np.lexsort((np.arange(len(keys)), rank, inverse))
        starts = np.concatenate(([True], inverse[order][1:] != inverse[order][:-1]))
        best = np.empty(len(first), dtype=np.int64)
        best[inverse[order][starts]] = order[starts]
        keeper = best[inverse]
    return keeper != np.arange(len(keys)), keeper


def exact_rejects(examples: pa.Table, dup: np.ndarray, keeper: np.ndarray) -> pa.Table:
    """Rejects for the exact duplicates, each naming the row it repeats."""
    ids = examples["id"].combine_chunks()
    dup_rows = examples.filter(pa.array(dup))
    return rejects_from_examples(
        dup_rows,
        stage="dedup",
        outcome=Outcome.DEDUPLICATED,
        reason="exact_duplicate",
        message="same normalised text as the kept row",
        duplicate_of=ids.take(pa.array(keeper[dup])),
        similarity=pa.array(np.ones(int(dup.sum()))),
    )
