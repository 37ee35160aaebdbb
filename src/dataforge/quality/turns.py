"""The text each role contributes to a row, as one string per row: what the per-role signals are computed on.

- `user`: the content of the user turns of `messages`;
- `assistant`: the content of the assistant turns of `messages` and of `chosen` (a preference pair's preferred
  completion), or `text` for a pretraining row;
- `all`: every message's content and reasoning in `messages`, `chosen` and `rejected`, and `text` — what PII is
  looked for in, since a leaked address is a leak wherever it sits.

Turns are joined with a blank line, so two identical turns count as a repeated paragraph. Turns without content
(a tool call) are left out and not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ROLES = ("user", "assistant")
TURN_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class RoleText:
    """Per row: the joined text (null where the role has no turn with content) and the number of such turns."""

    text: pa.Array
    turns: np.ndarray


def _np(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False)


def _column(examples: pa.Table, name: str) -> pa.Array:
    column = examples[name]
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _turns(lists: pa.Array, role: str | None, fields: tuple[str, ...]) -> tuple[np.ndarray, pa.Array]:
    """(row, text) of each non-empty field of each message of `role` (None: any role) in a list<message> column."""
    flat = pc.list_flatten(lists)
    parents = _np(pc.list_parent_indices(lists))
    rows, texts = [], []
    for name in fields:
        values = pc.struct_field(flat, name)
        keep = pc.greater(pc.fill_null(pc.utf8_length(values), 0), 0)
        if role is not None:
            keep = pc.and_(keep, pc.fill_null(pc.equal(pc.struct_field(flat, "role"), role), False))
        rows.append(parents[_np(keep).astype(bool)])
        texts.append(values.filter(keep))
    return np.concatenate(rows), pa.concat_arrays(texts) if texts else pa.array([], pa.string())


def _join(n_rows: int, parts: list[tuple[np.ndarray, pa.Array]]) -> RoleText:
    rows = np.concatenate([r for r, _ in parts]) if parts else np.zeros(0, dtype=np.int64)
    values = pa.concat_arrays([v for _, v in parts]) if parts else pa.array([], pa.string())
    order = np.argsort(rows, kind="stable")  # each row's turns in column order, then message order
    counts = np.bincount(rows, minlength=n_rows)
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), values.take(pa.array(order)))
    joined = pc.binary_join(lists, TURN_SEPARATOR)
    joined = pc.if_else(pa.array(counts > 0), joined, pa.scalar(None, pa.string()))
    return RoleText(joined, counts)


def role_text(examples: pa.Table, role: str) -> RoleText:
    """The joined text of `role` (`user`, `assistant` or `all`) for each row of an `EXAMPLE_SCHEMA` table."""
    n = examples.num_rows
    parts: list[tuple[np.ndarray, pa.Array]] = []
    if role == "all":
        for name in ("messages", "chosen", "rejected"):
            parts.append(_turns(_column(examples, name), None, ("content", "reasoning")))
    else:
        parts.append(_turns(_column(examples, "messages"), role, ("content",)))
        if role == "assistant":
            parts.append(_turns(_column(examples, "chosen"), role, ("content",)))
    if role in ("assistant", "all"):
        text = _column(examples, "text")
        keep = pc.greater(pc.fill_null(pc.utf8_length(text), 0), 0)
        if role == "assistant":
            keep = pc.and_(keep, pc.equal(_column(examples, "kind"), "pretrain"))
        parts.append((np.flatnonzero(_np(keep).astype(bool)), text.filter(keep)))
    return _join(n, parts)
