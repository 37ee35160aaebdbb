"""Nested fields a format does not model (e.g. OpenAI's per-message `weight`), found and counted.

Top-level columns a format does not model are carried in `metadata`; keys nested inside its own columns
(a message's extra keys) have no place in the canonical record. They are counted per field path, reported
by the read stage and the build report, so nothing is dropped without saying so.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


def in_arrays(table: pa.Table, schema: pa.Schema) -> Counter[str]:
    """Counts of non-null values in nested fields of `table` that `schema` does not have, by path."""
    found: Counter[str] = Counter()
    for field in schema:
        if field.name in table.column_names:
            column = table[field.name]
            for chunk in column.chunks:
                _walk_array(chunk, field.type, field.name, found)
    return found


def _walk_array(arr: pa.Array, target: pa.DataType, path: str, found: Counter[str]) -> None:
    typ = arr.type
    if pa.types.is_struct(typ) and pa.types.is_struct(target):
        wanted = {target.field(i).name: target.field(i).type for i in range(target.num_fields)}
        for i in range(typ.num_fields):
            name = typ.field(i).name
            child = arr.field(i)
            if name not in wanted:
                present = len(child) - child.null_count
                if present:
                    found[f"{path}.{name}"] += present
            else:
                _walk_array(child, wanted[name], f"{path}.{name}", found)
    elif (pa.types.is_list(typ) or pa.types.is_large_list(typ)) and (
        pa.types.is_list(target) or pa.types.is_large_list(target)
    ):
        _walk_array(pc.list_flatten(arr), target.value_type, f"{path}[]", found)


def in_record(record: dict[str, Any], schema: pa.Schema, found: Counter[str]) -> None:
    """Add to `found` the nested keys of one parsed record that `schema` does not model."""
    for field in schema:
        if field.name in record:
            _walk_value(record[field.name], field.type, field.name, found)


def _walk_value(value: Any, target: pa.DataType, path: str, found: Counter[str]) -> None:
    if isinstance(value, dict) and pa.types.is_struct(target):
        wanted = {target.field(i).name: target.field(i).type for i in range(target.num_fields)}
        for key, item in value.items():
            if key not in wanted:
                if item is not None:
                    found[f"{path}.{key}"] += 1
            else:
                _walk_value(item, wanted[key], f"{path}.{key}", found)
    elif isinstance(value, list) and (pa.types.is_list(target) or pa.types.is_large_list(target)):
        for item in value:
            _walk_value(item, target.value_type, f"{path}[]", found)
