"""Formats converted record by record in Python.

Dialects whose rows vary in shape (a trl `prompt` that is a string in one row and a list of messages in
the next; typed content parts; tool calls spelled inside text) are not worth a columnar converter: they
are a small share of any mix and their parsing is inherently per string. Such a format implements
`example(record)` returning the canonical fields of one record, or raising `RowError` naming the field
at fault; this module does the rest (ids, provenance, tools, rejects) exactly as the columnar formats do.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ..readers import EXTRA, LINE, ROW
from ..record import EXAMPLE_SCHEMA, Kind
from ..tables import keep_rows
from .base import FILE, ORDINAL, Converted, Format, RowProblems
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
                else json.dumps(c["arguments"], ensure_ascii=False),
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
            value = json.loads(value) if value.strip() else {}
        except ValueError as exc:
            raise RowError("invalid_tool_call", where, f"arguments of {name!r} are not valid JSON ({exc})") from None
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise RowError("invalid_tool_call", where, f"arguments of {name!r} must be a JSON object")
    return value


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
            for key in json_columns & record.keys():
                if record[key] is not None:
                    record[key] = json.loads(record[key])
            try:
                parsed = self.example(record)
                tools = _tools(parsed)
            except RowError as exc:
                problems.add(i, exc.reason, exc.field, exc.message)
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


def _tools(parsed: Parsed) -> str | None:
    value = parsed.tools
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        specs = canonical_tool_list(json.loads(value) if isinstance(value, str) else value)
    except ValueError as exc:
        raise RowError("invalid_tool_call", parsed.tools_field, f"tools: {exc}") from None
    return json.dumps(specs, ensure_ascii=False) if specs else None


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
