"""OpenAI chat messages: `messages` of `{role, content}` (system, user, assistant, tool), as in OpenAI's
fine-tuning JSONL, with `tool_calls`, `tool_call_id`, `reasoning_content` and a `tools` column.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..readers import RowShape
from ..record import ROLES, TOOL_CALL_TYPE
from . import columnar as col
from .base import Converted, Format, RowProblems, Written, add_metadata, finish, first_per_row
from .tooling import openai_tools

FUNCTION = pa.struct([pa.field("name", pa.string()), pa.field("arguments", pa.string())])
CALL = pa.struct([pa.field("id", pa.string()), pa.field("type", pa.string()), pa.field("function", FUNCTION)])
MESSAGE = pa.struct(
    [
        pa.field("role", pa.string()),
        pa.field("content", pa.string()),
        pa.field("name", pa.string()),
        pa.field("tool_calls", pa.list_(CALL)),
        pa.field("tool_call_id", pa.string()),
        pa.field("reasoning_content", pa.string()),
        pa.field("weight", pa.float64()),
    ]
)
ARROW = pa.schema([pa.field("messages", pa.list_(MESSAGE)), pa.field("tools", pa.string())])
_ROLES = pa.array(sorted(ROLES), pa.string())

JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://dataforge.dev/schemas/formats/openai.schema.json",
    "title": "OpenAI chat record",
    "type": "object",
    "required": ["messages"],
    "properties": {
        "messages": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["role"],
                "properties": {
                    "role": {"type": "string", "description": "system, user, assistant or tool."},
                    "content": {"type": ["string", "null"]},
                    "name": {"type": ["string", "null"]},
                    "reasoning_content": {"type": ["string", "null"]},
                    "weight": {"type": ["number", "null"], "description": "0 or 1: whether an assistant turn trains."},
                    "tool_call_id": {"type": ["string", "null"]},
                    "tool_calls": {
                        "type": ["array", "null"],
                        "items": {
                            "type": "object",
                            "required": ["function"],
                            "properties": {
                                "id": {"type": ["string", "null"]},
                                "type": {"type": ["string", "null"]},
                                "function": {
                                    "type": "object",
                                    "required": ["name"],
                                    "properties": {
                                        "name": {"type": "string"},
                                        "arguments": {"type": ["string", "object", "null"]},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
        "tools": {"type": ["string", "array", "null"], "description": "Declared functions (OpenAI tools)."},
    },
}


def _coerce(record: dict[str, Any]) -> dict[str, Any]:
    """Accept arguments given as objects and tools given as arrays (both common); store them as JSON text."""
    out = dict(record)
    if isinstance(out.get("tools"), list):
        out["tools"] = json.dumps(out["tools"], ensure_ascii=False)
    msgs = out.get("messages")
    if isinstance(msgs, list):
        fixed = []
        for m in msgs:
            calls = m.get("tool_calls") if isinstance(m, dict) else None
            if isinstance(calls, list) and any(
                isinstance(c, dict)
                and isinstance(c.get("function"), dict)
                and isinstance(c["function"].get("arguments"), dict)
                for c in calls
            ):
                m = {**m, "tool_calls": [_args_as_text(c) for c in calls]}
            fixed.append(m)
        out["messages"] = fixed
    return out


def _args_as_text(call: Any) -> Any:
    if isinstance(call, dict) and isinstance(call.get("function"), dict):
        args = call["function"].get("arguments")
        if isinstance(args, dict):
            return {**call, "function": {**call["function"], "arguments": json.dumps(args, ensure_ascii=False)}}
    return call


class OpenAIFormat(Format):
    name = "openai"
    description = "OpenAI chat fine-tuning records: messages of {role, content}, tool_calls, tools"
    shape = RowShape(ARROW, JSON_SCHEMA, _coerce)
    signature = frozenset({"messages"})

    def matches(self, record: dict[str, Any]) -> bool:
        msgs = record.get("messages")
        return isinstance(msgs, list) and all(isinstance(t, dict) and "role" in t for t in msgs)

    def to_examples(self, raw: pa.Table, source: str) -> Converted:
        n = raw.num_rows
        problems = RowProblems(n)
        msgs = col.whole(raw["messages"])
        problems.add_rows(col.is_null(msgs), "schema_violation", "messages", "'messages' is required but missing")
        flat = pc.list_flatten(msgs)
        parents = pc.list_parent_indices(msgs).to_numpy(zero_copy_only=False)
        origin = col.indexed_origin("messages", msgs, ".content")
        roles = pc.struct_field(flat, "role")
        for r, i in first_per_row(col.is_null(pc.index_in(roles, value_set=_ROLES)), parents).items():
            message = f"unknown role {roles[i].as_py()!r}; expected one of {', '.join(sorted(ROLES))}"
            problems.add(r, "unknown_role", origin[i].as_py().removesuffix(".content") + ".role", message)
        calls = pc.struct_field(flat, "tool_calls")
        if calls.null_count == len(calls):
            tool_calls = pa.nulls(len(flat), pa.list_(TOOL_CALL_TYPE))
        else:
            tool_calls = self._tool_calls(calls, parents, origin, problems)
        values = col.messages(
            roles,
            pc.struct_field(flat, "content"),
            reasoning=pc.struct_field(flat, "reasoning_content"),
            tool_calls=tool_calls,
            tool_call_id=pc.struct_field(flat, "tool_call_id"),
            name=pc.struct_field(flat, "name"),
            weight=pc.struct_field(flat, "weight"),
        )
        messages, origins = col.conversations(n, [col.many(values, parents, origin)])
        return finish(raw, source, problems, messages=messages, origins=origins)

    @staticmethod
    def _tool_calls(calls: pa.Array, parents: np.ndarray, origin: pa.Array, problems: RowProblems) -> pa.Array:
        """Canonical tool calls (arguments as JSON object text) for every message; bad calls become problems."""
        converted: list[list[dict[str, Any]] | None] = []
        for i, value in enumerate(calls.to_pylist()):
            if not value:
                converted.append(None)
                continue
            row_calls = []
            for j, c in enumerate(value):
                call_at = origin[i].as_py().removesuffix(".content") + f".tool_calls[{j}]"
                function = c["function"] if c is not None else None
                # Arrow reads a call without `function` (or without a name) as nulls; the careful path rejects
                # such a record, so this one must too.
                if function is None or function["name"] is None:
                    where = f"{call_at}.function" + (".name" if function is not None else "")
                    problems.add(
                        int(parents[i]),
                        "invalid_tool_call",
                        where,
                        "a tool call needs a `function` object with a string `name`",
                    )
                    row_calls.append({"id": None, "name": "", "arguments": "{}"})
                    continue
                args = function.get("arguments")
                try:
                    parsed = json.loads(args) if args else {}
                    if not isinstance(parsed, dict):
                        raise ValueError(f"found {type(parsed).__name__}")
                except ValueError as exc:
                    problems.add(
                        int(parents[i]),
                        "invalid_tool_call",
                        f"{call_at}.function.arguments",
                        f"arguments must be a JSON object ({exc})",
                    )
                    parsed = {}
                row_calls.append(
                    {"id": c.get("id"), "name": function["name"], "arguments": json.dumps(parsed, ensure_ascii=False)}
                )
            converted.append(row_calls)
        return pa.array(converted, pa.list_(TOOL_CALL_TYPE))

    def from_examples(self, examples: list[dict[str, Any]]) -> Written:
        records: list[dict[str, Any]] = []
        losses: Counter[str] = Counter()
        for ex in examples:
            out = []
            for m in ex["messages"] or ():
                msg: dict[str, Any] = {"role": m["role"], "content": m.get("content")}
                if m.get("reasoning"):
                    msg["reasoning_content"] = m["reasoning"]
                if m.get("tool_calls"):
                    msg["tool_calls"] = [
                        {
                            "id": c.get("id"),
                            "type": "function",
                            "function": {"name": c["name"], "arguments": c["arguments"]},
                        }
                        for c in m["tool_calls"]
                    ]
                if m.get("tool_call_id"):
                    msg["tool_call_id"] = m["tool_call_id"]
                if m.get("name"):
                    msg["name"] = m["name"]
                if m.get("weight") is not None:
                    msg["weight"] = _number(m["weight"])
                out.append(msg)
            record: dict[str, Any] = {"messages": out}
            if ex.get("tools"):
                record["tools"] = openai_tools(ex["tools"])
            add_metadata(record, ex.get("metadata"), self.shape.arrow.names, losses)
            records.append(record)
        return Written(records, losses)


def _number(value: float) -> int | float:
    """A weight as written by people: 0 and 1, not 0.0 and 1.0."""
    return int(value) if float(value).is_integer() else value
