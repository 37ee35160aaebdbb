"""Formats converted record by record in Python.

Dialects whose rows vary in shape (a trl `prompt` that is a string in one row and a list of messages in
the next; typed content parts; tool calls spelled inside text) are not worth a columnar converter: they
are a small share of any mix and their parsing is inherently per string. Such a format implements
`example(record)` returning the canonical fields of one record, or raising `RowError` naming the field
at fault; this module does the rest (ids, provenance, tools, rejects) exactly as the columnar formats do.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from .. import jsonsafe
from ..readers import EXTRA, LINE, ROW
from ..record import EXAMPLE_SCHEMA, Kind
from ..tables import keep_rows
from .base import (
    FILE,
    INVALID_UNICODE,
    ORDINAL,
    Converted,
    Format,
    RowProblems,
    lone_surrogate,
    surrogate_field,
    unicode_problem,
)
from .columnar import ORIGIN
from .tooling import canonical_tool_list


class RowError(Exception):
    """Why one record cannot convert: a rejects-table reason, the field at fault, and a message."""

    def __init__(self, reason: str, field: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.field, self.message = reason, field, message


@dataclass
class Parsed:
    """The canonical content of one record. Messages are MESSAGE_TYPE dicts (see `message`)."""

    messages: list[dict[str, Any]]
    kind: Kind = Kind.SFT
    origins: list[str] | None = None  # per message, the field it came from (default `messages[i]`)
    tools: Any = None  # function specs: a list (OpenAI-wrapped or bare) or JSON text
    chosen: list[dict[str, Any]] | None = None
    rejected: list[dict[str, Any]] | None = None
    label: bool | None = None
    text: str | None = None
    tools_field: str = "tools"  # the field named when the tools are bad (Hermes: the system prompt)


def message(
    role: str,
    content: str | None,
    *,
    reasoning: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    tool_call_id: str | None = None,
    name: str | None = None,
    weight: float | None = None,
) -> dict[str, Any]:
    """One canonical message as a MESSAGE_TYPE dict. `tool_calls` items are `{id, name, arguments}` with
    `arguments` a dict (stored as its JSON text, key order kept)."""
    calls = None
    if tool_calls:
        calls = [
            {
                "id": c.get("id"),
                "name": c["name"],
                "arguments": c["arguments"]
                if isinstance(c["arguments"], str)
                else jsonsafe.dumps(c["arguments"], ensure_ascii=False),
            }
            for c in tool_calls
        ]
    return {
        "role": role,
        "content": content,
        "reasoning": reasoning,
        "tool_calls": calls,
        "tool_call_id": tool_call_id,
        "name": name,
        "weight": weight,
    }


def parse_arguments(value: Any, where: str, name: str) -> dict[str, Any]:
    """Tool-call arguments as a dict, from a dict or from JSON text of one; RowError otherwise."""
    if isinstance(value, str):
        try:
            value = jsonsafe.loads(value, field=where) if value.strip() else {}
        except jsonsafe.JsonValueError as exc:
            raise RowError(exc.reason, where, exc.message) from None
        except ValueError as exc:
            raise RowError("invalid_tool_call", where, f"arguments of {name!r} are not valid JSON ({exc})") from None
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise RowError("invalid_tool_call", where, f"arguments of {name!r} must be a JSON object")
    if jsonsafe.value_depth(value) > jsonsafe.MAX_DEPTH:  # an object given as one, e.g. from Parquet
        raise RowError("too_deep", where, jsonsafe.TooDeep(jsonsafe.value_depth(value), field=where).message)
    if not finite(value):
        raise RowError("non_finite_number", where, f"arguments of {name!r} {NON_FINITE}")
    return value


NON_FINITE = "hold NaN or an infinity (e.g. 1e999), which JSON cannot write; write a number or null"


def finite(value: Any) -> bool:
    """Whether `value` (nesting already bounded) can be written as strict JSON: no NaN, no infinity."""
    try:
        jsonsafe.dumps(value)
    except ValueError:
        return False
    return True


class RowwiseFormat(Format):
    """A format whose `to_examples` runs `example` once per record."""

    @abstractmethod
    def example(self, record: dict[str, Any]) -> Parsed:
        """The canonical content of one raw record (format columns only, JSON columns decoded)."""

    def to_examples(self, raw: pa.Table, source: str) -> Converted:
        n = raw.num_rows
        problems = RowProblems(n)
        names = [f.name for f in self.shape.arrow if f.name in raw.column_names]
        records = raw.select(names).to_pylist()
        json_columns = self.shape.json_columns
        rows: list[dict[str, Any]] = []
        origins: list[list[str]] = []
        for i, record in enumerate(records):
            try:
                for key in json_columns & record.keys():
                    if record[key] is not None:
                        record[key] = _json_column(record[key], key)
                hole = _null_item(record, self.shape.arrow)
                if hole is not None:
                    raise RowError("schema_violation", hole, f"{hole} must be an object, found null")
                parsed = self.example(record)
                tools = _tools(parsed)
            except RowError as exc:
                problems.add(i, exc.reason, exc.field, exc.message)
                rows.append(_EMPTY)
                origins.append([])
                continue
            odd = _surrogates(parsed, tools)
            if odd is not None:  # decoded from an escape inside JSON text (a tool call): Arrow cannot hold it
                problems.add(i, INVALID_UNICODE, odd, unicode_problem(odd))
                rows.append(_EMPTY)
                origins.append([])
                continue
            rows.append(
                {
                    "kind": parsed.kind.value,
                    "messages": parsed.messages,
                    "tools": tools,
                    "chosen": parsed.chosen,
                    "rejected": parsed.rejected,
                    "label": parsed.label,
                    "text": parsed.text,
                }
            )
            origins.append(parsed.origins or [f"messages[{j}].content" for j in range(len(parsed.messages))])
        table = _table(raw, source, rows, origins)
        return Converted(keep_rows(table, ~problems.bad), problems.rejects(raw))


_EMPTY: dict[str, Any] = {"kind": Kind.SFT.value, "messages": []}


def _null_item(record: dict[str, Any], schema: pa.Schema) -> str | None:
    """The path of the first null item of a list of objects in `record` (`messages[0]`), else None.

    Arrow reads `[null, {...}]` as a list holding a null struct; the JSON Schema of some formats allows it
    too; converters index every item, so such a record is rejected here, naming the item."""
    stack: list[tuple[Any, pa.DataType, str]] = [
        (record[f.name], f.type, f.name) for f in reversed(schema) if record.get(f.name) is not None
    ]
    while stack:
        value, typ, path = stack.pop()
        if pa.types.is_list(typ) and isinstance(value, list):
            items = typ.value_type
            if pa.types.is_struct(items) and None in value:
                return f"{path}[{value.index(None)}]"
            stack.extend((value[j], items, f"{path}[{j}]") for j in reversed(range(len(value))))
        elif pa.types.is_struct(typ) and isinstance(value, dict):
            for i in reversed(range(typ.num_fields)):
                child = typ.field(i)
                if value.get(child.name) is not None:
                    stack.append((value[child.name], child.type, f"{path}.{child.name}"))
    return None


def _surrogates(parsed: Parsed, tools: str | None) -> str | None:
    """The first field of a parsed record holding a lone surrogate (see `lone_surrogate`), else None."""
    for column, msgs in (("messages", parsed.messages), ("chosen", parsed.chosen), ("rejected", parsed.rejected)):
        where = surrogate_field(msgs, column)
        if where is not None:
            return where
    if lone_surrogate(tools):
        return parsed.tools_field
    return "text" if isinstance(parsed.text, str) and lone_surrogate(parsed.text) else None


def _json_column(text: str, column: str) -> Any:
    """The value a JSON column holds (the reader stored it as JSON text), nesting bounded, NaN refused."""
    try:
        return jsonsafe.loads(text, field=column)
    except jsonsafe.JsonValueError as exc:
        raise RowError(exc.reason, exc.field or column, exc.message) from None


def _tools(parsed: Parsed) -> str | None:
    value = parsed.tools
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        if isinstance(value, str):
            value = jsonsafe.loads(value, field=parsed.tools_field)
        elif jsonsafe.value_depth(value) > jsonsafe.MAX_DEPTH:
            raise jsonsafe.TooDeep(jsonsafe.value_depth(value), field=parsed.tools_field)
        specs = canonical_tool_list(value)
    except jsonsafe.JsonValueError as exc:
        raise RowError(exc.reason, parsed.tools_field, exc.message) from None
    except ValueError as exc:
        raise RowError("invalid_tool_call", parsed.tools_field, f"tools: {exc}") from None
    return jsonsafe.dumps(specs, ensure_ascii=False) if specs else None


def _table(raw: pa.Table, source: str, rows: list[dict[str, Any]], origins: list[list[str]]) -> pa.Table:
    n = raw.num_rows
    body = pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [EXAMPLE_SCHEMA.field(c) for c in ("kind", "messages", "tools", "chosen", "rejected", "label", "text")]
        ),
    )
    ordinals = raw[ORDINAL].to_pylist()
    columns = {
        "id": pa.array([f"{source}:{o}" for o in ordinals], pa.string()),
        **{c: body[c] for c in body.column_names},
        "source": pa.array(np.full(n, source, dtype=object), pa.string()),
        "file": raw[FILE],
        "row": raw[ROW],
        "line": raw[LINE],
        "metadata": raw[EXTRA],
    }
    table = pa.table({name: columns[name] for name in EXAMPLE_SCHEMA.names}, schema=EXAMPLE_SCHEMA)
    return table.append_column(ORIGIN, pa.array(origins, pa.list_(pa.string())))
