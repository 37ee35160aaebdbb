"""ShareGPT: `conversations` of `{from, value}` turns (human, gpt, system), with an optional `system` column.

LLaMA-Factory's tool-calling flavour is read too: `function_call` turns hold `{"name", "arguments"}` JSON
(or a list of them), `observation` turns hold tool results, and a `tools` column holds the declared
functions as JSON text.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..readers import RowShape
from ..record import TOOL_CALL_TYPE
from . import columnar as col
from .base import Converted, Format, Written, add_metadata, assemble, reject_rows, split_rows
from .tooling import canonical_tools, tools_text

TURN = pa.struct([pa.field("from", pa.string()), pa.field("value", pa.string())])
ARROW = pa.schema(
    [
        pa.field("conversations", pa.list_(TURN)),
        pa.field("system", pa.string()),
        pa.field("tools", pa.string()),
    ]
)

# Spellings seen in the wild for each canonical role; `function_call` is an assistant turn holding calls.
ROLE_OF = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "system": "system",
    "observation": "tool",
    "tool": "tool",
    "function_call": "assistant",
}
_SPELLINGS = pa.array(list(ROLE_OF), pa.string())
_ROLES = pa.array(list(ROLE_OF.values()), pa.string())
WRITE_FROM = {"user": "human", "assistant": "gpt", "system": "system", "tool": "observation"}

JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://dataforge.dev/schemas/formats/sharegpt.schema.json",
    "title": "ShareGPT record",
    "type": "object",
    "required": ["conversations"],
    "properties": {
        "conversations": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["from", "value"],
                "properties": {
                    "from": {"type": "string", "description": f"One of {', '.join(ROLE_OF)}."},
                    "value": {"type": "string"},
                },
            },
        },
        "system": {"type": ["string", "null"], "description": "Optional system prompt."},
        "tools": {
            "type": ["string", "array", "null"],
            "description": "Declared functions: JSON text (LLaMA-Factory) or an array of function specs.",
        },
    },
}


def _coerce(record: dict[str, Any]) -> dict[str, Any]:
    if isinstance(record.get("tools"), list):
        return {**record, "tools": json.dumps(record["tools"], ensure_ascii=False)}
    return record


class ShareGPTFormat(Format):
    name = "sharegpt"
    description = "conversations of {from, value} turns: human/gpt/system (+ function_call/observation tools)"
    shape = RowShape(ARROW, JSON_SCHEMA, _coerce)
    signature = frozenset({"conversations"})

    def matches(self, record: dict[str, Any]) -> bool:
        conv = record.get("conversations")
        return isinstance(conv, list) and all(isinstance(t, dict) and "from" in t for t in conv)

    def to_examples(self, raw: pa.Table, source: str) -> Converted:
        rejects = []
        conv = col.whole(raw["conversations"])
        bad = col.is_null(conv)
        rejects.append(
            reject_rows(
                raw,
                bad,
                reason="schema_violation",
                field="conversations",
                message="'conversations' is required but missing",
            )
        )
        turns = pc.list_flatten(conv)
        parents = pc.list_parent_indices(conv).to_numpy(zero_copy_only=False)
        spelled = pc.struct_field(turns, "from")
        lookup = pc.index_in(spelled, value_set=_SPELLINGS)
        origin = col.indexed_origin("conversations", conv)
        unknown = col.is_null(lookup)
        if unknown.any():
            row_bad = np.zeros(raw.num_rows, dtype=bool)
            first = {}
            for i in np.flatnonzero(unknown):
                first.setdefault(int(parents[i]), i)
            row_bad[list(first)] = True
            row_bad &= ~bad
            fields = [None] * raw.num_rows
            messages = [None] * raw.num_rows
            for r, i in first.items():
                fields[r] = f"{origin[i].as_py()}.from"
                messages[r] = f"unknown role {spelled[i].as_py()!r}; expected one of {', '.join(ROLE_OF)}"
            rejects.append(
                reject_rows(
                    raw,
                    row_bad,
                    reason="unknown_role",
                    field=pa.array(fields, pa.string()),
                    message=pa.array(messages, pa.string()),
                )
            )
            bad |= row_bad
        missing_value = col.is_null(pc.struct_field(turns, "value"))
        if missing_value.any():
            row_bad = np.zeros(raw.num_rows, dtype=bool)
            row_bad[parents[missing_value]] = True
            row_bad &= ~bad
            rejects.append(
                reject_rows(
                    raw,
                    row_bad,
                    reason="schema_violation",
                    field="conversations[].value",
                    message="every turn needs a string 'value'",
                )
            )
            bad |= row_bad
        good = split_rows(raw, bad)
        examples, call_rejects = self._convert(good, source)
        rejects.append(call_rejects)
        return Converted(examples, pa.concat_tables(rejects))

    def _convert(self, raw: pa.Table, source: str) -> tuple[pa.Table, pa.Table]:
        n = raw.num_rows
        conv = col.whole(raw["conversations"])
        turns = pc.list_flatten(conv)
        parents = pc.list_parent_indices(conv).to_numpy(zero_copy_only=False)
        spelled = pc.struct_field(turns, "from")
        roles = pc.take(_ROLES, pc.index_in(spelled, value_set=_SPELLINGS))
        content = pc.struct_field(turns, "value")
        origin = col.indexed_origin("conversations", conv, ".value")
        is_call = pc.fill_null(pc.equal(spelled, "function_call"), False).to_numpy(zero_copy_only=False)
        tool_calls = pa.nulls(len(turns), pa.list_(TOOL_CALL_TYPE))
        bad_rows = np.zeros(n, dtype=bool)
        call_fields: list[str | None] = [None] * n
        call_messages: list[str | None] = [None] * n
        if is_call.any():
            # Only function_call turns are parsed in Python; they are a small share of any dataset.
            calls: list[list[dict[str, Any]] | None] = [None] * len(turns)
            texts = content.to_pylist()
            for i in np.flatnonzero(is_call):
                parsed, problem = parse_calls(texts[i])
                r = int(parents[i])
                if problem is not None and not bad_rows[r]:
                    bad_rows[r] = True
                    call_fields[r] = origin[i].as_py()
                    call_messages[r] = problem
                calls[i] = parsed
            tool_calls = pa.array(calls, pa.list_(TOOL_CALL_TYPE))
            content = pc.if_else(pa.array(is_call), pa.nulls(len(turns), pa.string()), content)
        parts = [
            col.single(
                col.messages("system", col.whole(raw["system"])), col.non_empty(col.whole(raw["system"])), "system"
            ),
            col.many(col.messages(roles, content, tool_calls=tool_calls), parents, origin),
        ]
        messages, origins = col.conversations(n, parts)
        tools, tool_problems = canonical_tools(col.whole(raw["tools"]))
        for r, problem in tool_problems.items():
            if not bad_rows[r]:
                bad_rows[r] = True
                call_fields[r], call_messages[r] = "tools", problem
        examples = assemble(raw, source, messages=messages, origins=origins, tools=tools)
        rejects = reject_rows(
            raw,
            bad_rows,
            reason="invalid_tool_call",
            field=pa.array(call_fields, pa.string()),
            message=pa.array(call_messages, pa.string()),
        )
        return split_rows(examples, bad_rows), rejects

    def from_examples(self, examples: list[dict[str, Any]]) -> Written:
        records: list[dict[str, Any]] = []
        losses: Counter[str] = Counter()
        for ex in examples:
            turns = []
            for m in ex["messages"] or ():
                if m.get("reasoning"):
                    losses["reasoning"] += 1
                # ShareGPT turns have no place for these; they were dropped without a count before.
                if m.get("name"):
                    losses["message names"] += 1
                if m.get("tool_call_id"):
                    losses["tool result ids"] += 1
                if m.get("tool_calls"):
                    if m.get("content"):
                        losses["assistant text beside tool calls"] += 1
                    calls = [{"name": c["name"], "arguments": json.loads(c["arguments"])} for c in m["tool_calls"]]
                    if any(c.get("id") for c in m["tool_calls"]):
                        losses["tool call ids"] += 1
                    value = json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False)
                    turns.append({"from": "function_call", "value": value})
                    continue
                turns.append({"from": WRITE_FROM[m["role"]], "value": m.get("content") or ""})
            record: dict[str, Any] = {"conversations": turns}
            if ex.get("tools"):
                record["tools"] = tools_text(ex["tools"])
            add_metadata(record, ex.get("metadata"), self.shape.arrow.names, losses)
            records.append(record)
        return Written(records, losses)


def parse_calls(text: str | None) -> tuple[list[dict[str, Any]] | None, str | None]:
    """Tool calls from a `function_call` turn's JSON text, or (None, what is wrong)."""
    try:
        value = json.loads(text or "")
    except ValueError as exc:
        return None, f"function_call value is not valid JSON ({exc})"
    items = value if isinstance(value, list) else [value]
    calls = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            return None, 'function_call value must be {"name": ..., "arguments": {...}} (or a list of them)'
        args = item.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                return None, f"arguments of {item['name']!r} are a string that is not valid JSON"
        if not isinstance(args, dict):
            return None, f"arguments of {item['name']!r} must be a JSON object"
        calls.append({"id": item.get("id"), "name": item["name"], "arguments": json.dumps(args, ensure_ascii=False)})
    return calls, None
