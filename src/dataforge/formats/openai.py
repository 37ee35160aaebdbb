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
from .base import Converted, Format, Written, add_metadata, assemble, reject_rows, split_rows
from .tooling import canonical_tools, openai_tools

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
        rejects = []
        msgs = col.whole(raw["messages"])
        bad = col.is_null(msgs)
        rejects.append(
            reject_rows(
                raw, bad, reason="schema_violation", field="messages", message="'messages' is required but missing"
            )
        )
        flat = pc.list_flatten(msgs)
        parents = pc.list_parent_indices(msgs).to_numpy(zero_copy_only=False)
        roles = pc.struct_field(flat, "role")
        unknown = col.is_null(pc.index_in(roles, value_set=_ROLES))
        if unknown.any():
            origin = col.indexed_origin("messages", msgs)
            first: dict[int, int] = {}
            for i in np.flatnonzero(unknown):
                first.setdefault(int(parents[i]), int(i))
            row_bad = np.zeros(raw.num_rows, dtype=bool)
            row_bad[list(first)] = True
            row_bad &= ~bad
            fields: list[str | None] = [None] * raw.num_rows
            texts: list[str | None] = [None] * raw.num_rows
            for r, i in first.items():
                fields[r] = f"{origin[i].as_py()}.role"
                texts[r] = f"unknown role {roles[i].as_py()!r}; expected one of {', '.join(sorted(ROLES))}"
            rejects.append(
                reject_rows(
                    raw,
                    row_bad,
                    reason="unknown_role",
                    field=pa.array(fields, pa.string()),
                    message=pa.array(texts, pa.string()),
                )
            )
            bad |= row_bad
        good = split_rows(raw, bad)
        examples, more = self._convert(good, source)
        rejects.append(more)
        return Converted(examples, pa.concat_tables(rejects))

    def _convert(self, raw: pa.Table, source: str) -> tuple[pa.Table, pa.Table]:
        n = raw.num_rows
        msgs = col.whole(raw["messages"])
        flat = pc.list_flatten(msgs)
        parents = pc.list_parent_indices(msgs).to_numpy(zero_copy_only=False)
        origin = col.indexed_origin("messages", msgs, ".content")
        calls = pc.struct_field(flat, "tool_calls")
        bad_rows = np.zeros(n, dtype=bool)
        fields: list[str | None] = [None] * n
        texts: list[str | None] = [None] * n
        if calls.null_count == len(calls):
            tool_calls = pa.nulls(len(flat), pa.list_(TOOL_CALL_TYPE))
        else:
            converted: list[list[dict[str, Any]] | None] = []
            for i, value in enumerate(calls.to_pylist()):
                if not value:
                    converted.append(None)
                    continue
                row_calls = []
                for j, c in enumerate(value):
                    call_at = origin[i].as_py().removesuffix(".content") + f".tool_calls[{j}]"
                    function = c["function"] if c is not None else None
                    # Arrow reads a call without `function` (or without a name) as nulls; it crashed here
                    # (AttributeError) or passed with a null name, where the careful path rejects it.
                    if function is None or function["name"] is None:
                        r = int(parents[i])
                        if not bad_rows[r]:
                            bad_rows[r] = True
                            fields[r] = f"{call_at}.function" + (".name" if function is not None else "")
                            texts[r] = "a tool call needs a `function` object with a string `name`"
                        row_calls.append({"id": None, "name": "", "arguments": "{}"})
                        continue
                    args = c["function"].get("arguments")
                    try:
                        parsed = json.loads(args) if args else {}
                        if not isinstance(parsed, dict):
                            raise ValueError("not a JSON object")
                    except ValueError as exc:
                        r = int(parents[i])
                        if not bad_rows[r]:
                            bad_rows[r] = True
                            fields[r] = (
                                origin[i].as_py().removesuffix(".content") + f".tool_calls[{j}].function.arguments"
                            )
                            texts[r] = f"arguments must be a JSON object ({exc})"
                        parsed = {}
                    row_calls.append(
                        {
                            "id": c.get("id"),
                            "name": c["function"]["name"],
                            "arguments": json.dumps(parsed, ensure_ascii=False),
                        }
                    )
                converted.append(row_calls)
            tool_calls = pa.array(converted, pa.list_(TOOL_CALL_TYPE))
        values = col.messages(
            pc.struct_field(flat, "role"),
            pc.struct_field(flat, "content"),
            reasoning=pc.struct_field(flat, "reasoning_content"),
            tool_calls=tool_calls,
            tool_call_id=pc.struct_field(flat, "tool_call_id"),
            name=pc.struct_field(flat, "name"),
        )
        messages, origins = col.conversations(n, [col.many(values, parents, origin)])
        tools, problems = canonical_tools(col.whole(raw["tools"]))
        for r, problem in problems.items():
            if not bad_rows[r]:
                bad_rows[r] = True
                fields[r], texts[r] = "tools", problem
        examples = assemble(raw, source, messages=messages, origins=origins, tools=tools)
        rejects = reject_rows(
            raw,
            bad_rows,
            reason="invalid_tool_call",
            field=pa.array(fields, pa.string()),
            message=pa.array(texts, pa.string()),
        )
        return split_rows(examples, bad_rows), rejects

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
                out.append(msg)
            record: dict[str, Any] = {"messages": out}
            if ex.get("tools"):
                record["tools"] = openai_tools(ex["tools"])
            add_metadata(record, ex.get("metadata"), self.shape.arrow.names, losses)
            records.append(record)
        return Written(records, losses)
