"""OpenAI chat messages: `messages` of `{role, content}` (system, user, assistant, tool), as in OpenAI's
fine-tuning JSONL, with `tool_calls`, `tool_call_id`, `reasoning_content` and a `tools` column.

`thinking` is read as another spelling of `reasoning_content` (written back as `reasoning_content`).
Preference rows add `chosen` and `rejected`, each a list of messages or one message object (kind
preference: `messages` is the prompt; written back as lists); a boolean `label` (trl's KTO spelling, as in
LLaMA-Factory's kto demo) makes a row a KTO example whose completion is its last message.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import jsonsafe
from ..readers import RowShape
from ..record import ROLES, TOOL_CALL_TYPE
from . import columnar as col
from . import media
from .base import (
    INVALID_UNICODE,
    Converted,
    Format,
    RowProblems,
    Written,
    add_metadata,
    count_media,
    finish,
    first_per_row,
    lone_surrogate,
    unicode_problem,
)
from .preference import completion_lists, count_pretrain, present, row_kinds
from .toolids import with_call_ids
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
        pa.field("thinking", pa.string()),
        pa.field("weight", pa.float64()),
    ]
)
ARROW = pa.schema(
    [
        pa.field("messages", pa.list_(MESSAGE)),
        pa.field("tools", pa.string()),
        pa.field("chosen", pa.list_(MESSAGE)),
        pa.field("rejected", pa.list_(MESSAGE)),
        pa.field("label", pa.bool_()),
    ]
)
SIDES = ("chosen", "rejected")
_ROLES = pa.array(sorted(ROLES), pa.string())

_MESSAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"type": "string", "description": "system, user, assistant or tool."},
        "content": {"type": ["string", "null"]},
        "name": {"type": ["string", "null"]},
        "reasoning_content": {"type": ["string", "null"]},
        "thinking": {"type": ["string", "null"], "description": "Read as reasoning_content."},
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
}


def _completion_schema(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "anyOf": [{"type": "null"}, _MESSAGE_SCHEMA, {"type": "array", "items": _MESSAGE_SCHEMA}],
    }


JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://dataforge.dev/schemas/formats/openai.schema.json",
    "title": "OpenAI chat record",
    "type": "object",
    "required": ["messages"],
    "properties": {
        "messages": {"type": "array", "items": _MESSAGE_SCHEMA},
        "tools": {"type": ["string", "array", "null"], "description": "Declared functions (OpenAI tools)."},
        "chosen": _completion_schema("Preference: the better completion, messages (or one message)."),
        "rejected": _completion_schema("Preference: the worse completion, messages (or one message)."),
        "label": {"type": ["boolean", "null"], "description": "KTO: whether the last message is desirable."},
    },
}


def _coerce(record: dict[str, Any]) -> dict[str, Any]:
    """Accept arguments given as objects and tools given as arrays (both common); store them as JSON text.
    A completion given as one message object becomes a list of one. A content list holding image or audio
    parts is set aside (`media.lift_parts`): the row is rejected as `multimodal_unsupported`, naming them."""
    out = dict(record)
    if isinstance(out.get("tools"), list):
        out["tools"] = json.dumps(out["tools"], ensure_ascii=False)
    for side in SIDES:
        if isinstance(out.get(side), dict):
            out[side] = [out[side]]
    out = dict(media.lift_parts(out, ("messages", *SIDES)))
    for column in ("messages", *SIDES):
        msgs = out.get(column)
        if isinstance(msgs, list):
            out[column] = [_calls_as_text(m) for m in msgs]
    return out


def _calls_as_text(m: Any) -> Any:
    calls = m.get("tool_calls") if isinstance(m, dict) else None
    if isinstance(calls, list) and any(
        isinstance(c, dict) and isinstance(c.get("function"), dict) and isinstance(c["function"].get("arguments"), dict)
        for c in calls
    ):
        return {**m, "tool_calls": [_args_as_text(c) for c in calls]}
    return m


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
        messages, origins = col.conversations(n, [_messages(msgs, "messages", problems)])
        sides = {}
        for side in SIDES:
            column = col.whole(raw[side])
            # Completions are rare next to SFT rows, and null in them: converting a column of nulls is cheap.
            sides[side] = completion_lists(n, [_messages(column, side, problems)], present(column))
        labels = col.whole(raw["label"])
        paired = present(sides["chosen"]) | present(sides["rejected"])
        kinds = row_kinds(paired, present(labels), problems, "label")
        return finish(raw, source, problems, messages=messages, origins=origins, kind=kinds, label=labels, **sides)

    def from_examples(self, examples: list[dict[str, Any]]) -> Written:
        records: list[dict[str, Any]] = []
        losses: Counter[str] = Counter()
        for ex in examples:
            if count_media(ex, losses):
                continue
            if count_pretrain(ex, losses):
                continue
            ex = with_call_ids(ex)  # OpenAI pairs results with calls by id: give id-less calls stable ones
            record: dict[str, Any] = {"messages": [written_message(m) for m in ex["messages"] or ()]}
            if ex["kind"] == "preference":
                for side in SIDES:
                    record[side] = [written_message(m) for m in ex.get(side) or ()]
            elif ex["kind"] == "kto":
                record["label"] = ex["label"]
            if ex.get("tools"):
                record["tools"] = openai_tools(ex["tools"])
            add_metadata(record, ex.get("metadata"), self.shape.arrow.names, losses)
            records.append(record)
        return Written(records, losses)


def written_message(m: dict[str, Any], *, arguments_as_objects: bool = False) -> dict[str, Any]:
    """One canonical message in OpenAI's spelling. Tool-call arguments are JSON text, as OpenAI writes them,
    or objects when asked (Hugging Face chat templates expect objects)."""
    msg: dict[str, Any] = {"role": m["role"], "content": m.get("content")}
    if m.get("reasoning") is not None:
        msg["reasoning_content"] = m["reasoning"]
    if m.get("tool_calls"):
        msg["tool_calls"] = [
            {
                "id": c.get("id"),
                "type": "function",
                "function": {
                    "name": c["name"],
                    "arguments": jsonsafe.loads(c["arguments"]) if arguments_as_objects else c["arguments"],
                },
            }
            for c in m["tool_calls"]
        ]
    if m.get("tool_call_id") is not None:
        msg["tool_call_id"] = m["tool_call_id"]
    if m.get("name") is not None:
        msg["name"] = m["name"]
    if m.get("weight") is not None:
        msg["weight"] = _number(m["weight"])
    return msg


def _messages(column: pa.Array, field: str, problems: RowProblems) -> col.Part:
    """Canonical messages for every message of a list column (`messages`, `chosen`, `rejected`); unknown
    roles, unreadable tool calls and two differing reasoning spellings are problems naming the message."""
    flat = pc.list_flatten(column)
    parents = pc.list_parent_indices(column).to_numpy(zero_copy_only=False)
    origin = col.indexed_origin(field, column, ".content")
    roles = pc.struct_field(flat, "role")
    for r, i in first_per_row(col.is_null(pc.index_in(roles, value_set=_ROLES)), parents).items():
        message = f"unknown role {roles[i].as_py()!r}; expected one of {', '.join(sorted(ROLES))}"
        problems.add(r, "unknown_role", origin[i].as_py().removesuffix(".content") + ".role", message)
    reasoning = pc.struct_field(flat, "reasoning_content")
    thinking = pc.struct_field(flat, "thinking")
    if thinking.null_count < len(thinking):
        clash = pc.fill_null(pc.not_equal(reasoning, thinking), False).to_numpy(zero_copy_only=False)
        for r, i in first_per_row(clash, parents).items():
            where = origin[i].as_py().removesuffix(".content") + ".thinking"
            problems.add(r, "schema_violation", where, "'thinking' and 'reasoning_content' differ; keep one")
        reasoning = pc.coalesce(reasoning, thinking)
    calls = pc.struct_field(flat, "tool_calls")
    if calls.null_count == len(calls):
        tool_calls = pa.nulls(len(flat), pa.list_(TOOL_CALL_TYPE))
    else:
        tool_calls = _tool_calls(calls, parents, origin, problems)
    values = col.messages(
        roles,
        pc.struct_field(flat, "content"),
        reasoning=reasoning,
        tool_calls=tool_calls,
        tool_call_id=pc.struct_field(flat, "tool_call_id"),
        name=pc.struct_field(flat, "name"),
        weight=pc.struct_field(flat, "weight"),
    )
    return col.many(values, parents, origin)


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
            where = f"{call_at}.function.arguments"
            try:
                parsed = jsonsafe.loads(args, field=where) if args else {}
                if not isinstance(parsed, dict):
                    raise ValueError(f"found {type(parsed).__name__}")
                text = jsonsafe.dumps(parsed, ensure_ascii=False)
                if lone_surrogate(text):
                    problems.add(int(parents[i]), INVALID_UNICODE, where, unicode_problem(where))
                    text = "{}"
            except jsonsafe.JsonValueError as exc:
                problems.add(int(parents[i]), exc.reason, where, exc.message)
                text = "{}"
            except ValueError as exc:
                reason, message = "invalid_tool_call", f"arguments must be a JSON object ({exc})"
                if str(exc).startswith("Out of range float"):  # 1e999 parses as an infinity
                    reason, message = "non_finite_number", f"{where} holds an infinity (e.g. 1e999), not a JSON number"
                problems.add(int(parents[i]), reason, where, message)
                text = "{}"
            row_calls.append({"id": c.get("id"), "name": function["name"], "arguments": text})
        converted.append(row_calls)
    return pa.array(converted, pa.list_(TOOL_CALL_TYPE))


def _number(value: float) -> int | float:
    """A weight as written by people: 0 and 1, not 0.0 and 1.0."""
    return int(value) if float(value).is_integer() else value
