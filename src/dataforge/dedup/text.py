"""The text near-deduplication compares: which part of a row (`fields`) and how it is normalised.

Everything is column-wise over the Arrow table: messages are flattened once, the wanted turns selected by a
mask, and joined back per row, so no Python runs per row.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Fields = Literal["conversation", "user", "first_user", "final_answer"]
Normalisation = Literal["case", "punctuation", "whitespace", "digits"]
FIELDS: tuple[str, ...] = ("conversation", "user", "first_user", "final_answer")
NORMALISATIONS: tuple[str, ...] = ("case", "punctuation", "whitespace", "digits")


def _joined(lists_parent: np.ndarray, values: pa.Array, n: int, sep: str = "\n") -> pa.Array:
    """One string per row: `values` (ordered by row) joined with `sep`; rows without values get ""."""
    counts = np.bincount(lists_parent, minlength=n) if len(lists_parent) else np.zeros(n, dtype=np.int64)
    offsets = pa.array(np.concatenate(([0], np.cumsum(counts))).astype(np.int32), pa.int32())
    lists = pa.ListArray.from_arrays(offsets, pc.fill_null(values.cast(pa.string()), ""))
    return pc.fill_null(pc.binary_join(lists, sep), "")


def _turns(messages: pa.Array, n: int) -> tuple[np.ndarray, pa.Array, pa.Array, pa.Array]:
    """(row of each message, role, content, reasoning) of every message, flattened."""
    messages = messages.combine_chunks() if isinstance(messages, pa.ChunkedArray) else messages
    parent = pc.list_parent_indices(messages).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(messages)
    return (
        parent,
        pc.struct_field(flat, "role"),
        pc.fill_null(pc.struct_field(flat, "content"), ""),
        pc.fill_null(pc.struct_field(flat, "reasoning"), ""),
    )


def _pick(parent: np.ndarray, mask: np.ndarray, which: Literal["all", "first", "last"]) -> np.ndarray:
    """Positions (into the flat messages) selected by `mask`, all of them or only each row's first/last."""
    pos = np.flatnonzero(mask)
    if which == "all" or len(pos) == 0:
        return pos
    rows = parent[pos]
    if which == "first":
        _, first = np.unique(rows, return_index=True)
        return pos[first]
    _, last_rev = np.unique(rows[::-1], return_index=True)
    return pos[len(pos) - 1 - last_rev]


def field_text(examples: pa.Table, fields: Fields) -> pa.Array:
    """Per row, the raw text `fields` names.

    conversation: every message's reasoning and content (prompt, then chosen and rejected completions for
    preference rows); user: the user turns; first_user: the first user turn; final_answer: the last
    assistant turn (of the chosen completion for preference rows). Pretraining rows always use their text.
    """
    n = examples.num_rows
    parts: list[pa.Array] = []
    sides = ["messages", "chosen", "rejected"] if fields == "conversation" else ["messages"]
    if fields == "final_answer":
        sides = ["chosen", "messages"]  # the chosen completion's answer when there is one
    for side in sides:
        parent, role, content, reasoning = _turns(examples[side], n)
        if fields == "conversation":
            text = pc.binary_join_element_wise(reasoning, content, "\n")
            parts.append(_joined(parent, text, n))
            continue
        want = "assistant" if fields == "final_answer" else "user"
        mask = pc.equal(role, want).to_numpy(zero_copy_only=False)
        which = {"user": "all", "first_user": "first", "final_answer": "last"}[fields]
        pos = _pick(parent, mask, which)  # type: ignore[arg-type]
        parts.append(_joined(parent[pos], content.take(pa.array(pos, pa.int64())), n))
    if fields == "final_answer":
        chosen, plain = parts
        text = pc.if_else(pc.not_equal(chosen, ""), chosen, plain)
    else:
        text = pc.binary_join_element_wise(*parts, "\n") if len(parts) > 1 else parts[0]
    raw = pc.fill_null(examples["text"].combine_chunks(), "")
    return pc.if_else(pc.not_equal(raw, ""), raw, text)


def normalise(text: pa.Array, steps: tuple[str, ...] | list[str]) -> pa.Array:
    """`text` with the chosen normalisations applied (vectorised regex kernels, Unicode-aware)."""
    if "case" in steps:
        text = pc.utf8_lower(text)
    if "digits" in steps:
        text = pc.replace_substring_regex(text, r"\p{Nd}", "0")
    if "punctuation" in steps:
        text = pc.replace_substring_regex(text, r"[\p{P}\p{S}]+", " ")
    if "whitespace" in steps:
        text = pc.utf8_trim_whitespace(pc.replace_substring_regex(text, r"\s+", " "))
    return text


def dedup_text(examples: pa.Table, fields: Fields, steps: tuple[str, ...] | list[str]) -> pa.Array:
    """The normalised text near-deduplication compares, one string per row."""
    return normalise(field_text(examples, fields), steps)
