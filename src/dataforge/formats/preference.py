"""What the chat formats share for preference pairs and KTO labels: row kinds, labels, completion columns.

A row with `chosen` or `rejected` is a preference pair (its conversation is the prompt); a row with a KTO
label (`label`, or LLaMA-Factory's `kto_tag`) is a KTO example (its last assistant turn is the completion);
any other row is SFT. A row cannot be both: it is rejected rather than guessed at.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..record import MESSAGES_TYPE, Kind
from . import columnar as col
from .base import RowProblems

PRETRAIN_NOT_WRITTEN = "pretrain rows (plain text, not written)"


def kto_labels(raw: pa.Table, problems: RowProblems, columns: tuple[str, ...]) -> pa.Array:
    """One boolean label per row from the first of `columns` that holds one; rows whose columns disagree
    are problems (two spellings of one label that contradict each other cannot both be right)."""
    arrays = [col.whole(raw[c]).cast(pa.bool_()) for c in columns if c in raw.column_names]
    if not arrays:
        return pa.nulls(raw.num_rows, pa.bool_())
    first = arrays[0]
    for name, other in zip(columns[1:], arrays[1:], strict=False):
        clash = pc.fill_null(pc.not_equal(first, other), False).to_numpy(zero_copy_only=False)
        message = f"'{columns[0]}' and '{name}' both hold a KTO label and they differ"
        problems.add_rows(clash, "schema_violation", name, message)
    return pc.coalesce(*arrays) if len(arrays) > 1 else first


def row_kinds(paired: np.ndarray, labelled: np.ndarray, problems: RowProblems, label_field: str) -> pa.Array:
    """The kind of each row: preference where `paired`, kto where `labelled`, sft otherwise."""
    problems.add_rows(
        paired & labelled,
        "schema_violation",
        label_field,
        "a row is either a preference pair (chosen/rejected) or a KTO example (a label), not both",
    )
    kinds = np.where(paired, Kind.PREFERENCE.value, np.where(labelled, Kind.KTO.value, Kind.SFT.value))
    return pa.array(kinds.astype(object), pa.string())


def present(arr: pa.Array) -> np.ndarray:
    """Boolean mask: the value is not null."""
    return ~col.is_null(arr)


def completion_lists(n: int, parts: list[col.Part], held: np.ndarray) -> pa.Array:
    """A MESSAGES_TYPE list per row from `parts`; null where the row holds no such column (`held` false),
    so SFT rows carry no `chosen`, as the canonical record has it."""
    lists, _ = col.conversations(n, parts)
    return pa.ListArray.from_arrays(lists.offsets, lists.values, type=MESSAGES_TYPE, mask=pa.array(~held))


def count_pretrain(example: dict[str, Any], losses: Counter[str]) -> bool:
    """True (and a loss counted) when `example` is plain text, which chat formats have no place for."""
    if example["kind"] == Kind.PRETRAIN.value:
        losses[PRETRAIN_NOT_WRITTEN] += 1
        return True
    return False
