"""LLaMA-Factory's typed-content JSONL (its v1 data): each message's `content` is a list of typed parts.

    {"messages": [{"role": "assistant",
                   "content": [{"type": "reasoning", "value": "..."},
                               {"type": "tool_call", "value": "{\\"name\\": ..., \\"arguments\\": {...}}"}],
                   "loss_weight": 1.0}],
     "tools": "[{\\"type\\": \\"function\\", \\"function\\": {...}}]"}

Parts: `text` (joined, in order, into the content), `reasoning` (joined into `reasoning`), `tool_call`
(JSON `{name, arguments}`: one call each). `loss_weight` is the canonical `weight`; `tools` is a JSON string
(or array) of function specs. Preference data holds two whole conversations, `chosen_messages` and
`rejected_messages`: the leading messages they share are the prompt, the rest are the two completions.

A `tool` message may answer several parallel calls at once (its text is then a JSON list of results): it is
kept as one tool message, as written; the format has no call ids and none are invented.

Writing reproduces the same structure, parts in LLaMA-Factory's order (reasoning, then text, then calls),
`loss_weight` only where a weight is set, and `tools` as a JSON string of OpenAI-wrapped specs. Ids and
message names are counted as lost; kto and pretrain rows are not written (counted).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pyarrow as pa

from .. import jsonsafe
from ..readers import RowShape
from ..record import Kind
from . import media
from .base import Written, add_metadata, count_media
from .rowwise import Parsed, RowError, RowwiseFormat, message, parse_arguments
from .tooling import openai_tools

PART = pa.struct([pa.field("type", pa.string()), pa.field("value", pa.string())])
MESSAGE = pa.struct(
    [pa.field("role", pa.string()), pa.field("content", pa.list_(PART)), pa.field("loss_weight", pa.float64())]
)
ARROW = pa.schema(
    [
        pa.field("messages", pa.list_(MESSAGE)),
        pa.field("chosen_messages", pa.list_(MESSAGE)),
        pa.field("rejected_messages", pa.list_(MESSAGE)),
        pa.field("tools", pa.string()),
    ]
)
ROLES = ("system", "user", "assistant", "tool")
PART_TYPES = ("text", "reasoning", "tool_call")

_MESSAGES_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"type": "string", "description": f"One of {', '.join(ROLES)}."},
            "content": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["type", "value"],
                    "properties": {
                        "type": {"type": "string", "description": f"One of {', '.join(PART_TYPES)}."},
                        "value": {
                            "type": "string",
                            "description": 'tool_call parts: JSON {"name": ..., "arguments": {...}}.',
                        },
                    },
                },
            },
            "loss_weight": {"type": ["number", "null"], "description": "How much the turn counts in the loss."},
        },
    },
}

JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://dataforge.dev/schemas/formats/typed.schema.json",
    "title": "LLaMA-Factory typed-content record",
    "type": "object",
    "anyOf": [{"required": ["messages"]}, {"required": ["chosen_messages", "rejected_messages"]}],
    "properties": {
        "messages": _MESSAGES_SCHEMA,
        "chosen_messages": _MESSAGES_SCHEMA,
        "rejected_messages": _MESSAGES_SCHEMA,
        "tools": {"type": ["string", "array", "null"], "description": "Declared functions (JSON text or array)."},
    },
}


def _coerce(record: dict[str, Any]) -> dict[str, Any]:
    if isinstance(record.get("tools"), list):
        return {**record, "tools": json.dumps(record["tools"], ensure_ascii=False)}
    return record


class TypedFormat(RowwiseFormat):
    name = "typed"
    description = "LLaMA-Factory typed content: parts of {type: text|reasoning|tool_call, value}, loss_weight"
    shape = RowShape(ARROW, JSON_SCHEMA, _coerce)
    signature = frozenset({"messages"})
    specificity = 1  # OpenAI's matcher accepts these messages too (they have roles)

    def matches(self, record: dict[str, Any]) -> bool:
        sides = [record.get(k) for k in ("messages", "chosen_messages", "rejected_messages")]
        msgs = [m for side in sides if isinstance(side, list) for m in side]
        return bool(msgs) and all(
            isinstance(m, dict)
            and isinstance(m.get("content"), list)
            and all(isinstance(p, dict) and "type" in p and "value" in p for p in m["content"])
            for m in msgs
        )

    def example(self, record: dict[str, Any]) -> Parsed:
        _refuse_media(record)
        tools = record.get("tools")
        if record.get("messages") is not None:
            if record.get("chosen_messages") is not None or record.get("rejected_messages") is not None:
                raise RowError(
                    "schema_violation", "messages", "a record has `messages` or a chosen/rejected pair, not both"
                )
            messages = _messages(record["messages"], "messages")
            return Parsed(messages, origins=_origins("messages", len(messages)), tools=tools)
        for side in ("chosen_messages", "rejected_messages"):
            if record.get(side) is None:
                raise RowError("schema_violation", side, f"'{side}' is required but missing")
        chosen = _messages(record["chosen_messages"], "chosen_messages")
        rejected = _messages(record["rejected_messages"], "rejected_messages")
        shared = 0
        while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
            shared += 1
        return Parsed(
            chosen[:shared],
            kind=Kind.PREFERENCE,
            origins=_origins("chosen_messages", shared),
            tools=tools,
            chosen=chosen[shared:],
            rejected=rejected[shared:],
        )

    def from_examples(self, examples: list[dict[str, Any]]) -> Written:
        records: list[dict[str, Any]] = []
        losses: Counter[str] = Counter()
        for ex in examples:
            if count_media(ex, losses):
                continue
            kind = ex["kind"]
            prompt = list(ex["messages"] or ())
            if kind == Kind.SFT.value:
                record: dict[str, Any] = {"messages": _written(prompt, losses)}
            elif kind == Kind.PREFERENCE.value:
                record = {
                    "chosen_messages": _written(prompt + list(ex.get("chosen") or ()), losses),
                    "rejected_messages": _written(prompt + list(ex.get("rejected") or ()), losses),
                }
            else:
                losses[f"{kind} rows (typed content holds sft and preference; not written)"] += 1
                continue
            if ex.get("tools"):
                record["tools"] = json.dumps(openai_tools(ex["tools"]), ensure_ascii=False)
            add_metadata(record, ex.get("metadata"), self.shape.arrow.names, losses)
            records.append(record)
        return Written(records, losses)


def _refuse_media(record: dict[str, Any]) -> None:
    """RowError (`multimodal_unsupported`) naming the image, video or audio parts of a record, if it has any."""
    found: list[media.Medium] = []
    marks: Counter[str] = Counter()
    for side in ("messages", "chosen_messages", "rejected_messages"):
        for i, m in enumerate(record.get(side) or ()):
            parts, valueless = media.in_parts(m["content"] or [], f"{side}[{i}].content")
            found += parts
            marks.update(valueless)
            media.placeholders([p["value"] for p in m["content"] or () if p["type"] == "text"], marks)
    if found:
        raise RowError(media.REASON, found[0].field, media.describe(found, marks))


def _origins(side: str, n: int) -> list[str]:
    return [f"{side}[{i}].content" for i in range(n)]


def _messages(msgs: list[dict[str, Any]], side: str) -> list[dict[str, Any]]:
    """Canonical messages from typed-content messages; RowError naming the part at fault."""
    out = []
    for i, m in enumerate(msgs):
        at = f"{side}[{i}]"
        if m["role"] not in ROLES:
            raise RowError(
                "unknown_role", f"{at}.role", f"unknown role {m['role']!r}; expected one of {', '.join(ROLES)}"
            )
        texts: list[str] = []
        thoughts: list[str] = []
        calls: list[dict[str, Any]] = []
        for j, part in enumerate(m["content"] or ()):
            where = f"{at}.content[{j}]"
            if part["type"] not in PART_TYPES or part["value"] is None:
                raise RowError(
                    "schema_violation", where, f"a content part needs a string value and a type among {PART_TYPES}"
                )
            if part["type"] == "text":
                texts.append(part["value"])
            elif part["type"] == "reasoning":
                thoughts.append(part["value"])
            else:
                calls.append(_call(part["value"], f"{where}.value"))
        out.append(
            message(
                m["role"],
                "".join(texts) if texts else None,
                reasoning="".join(thoughts) if thoughts else None,
                tool_calls=calls,
                weight=m.get("loss_weight"),
            )
        )
    return out


def _call(text: str, at: str) -> dict[str, Any]:
    try:
        value = jsonsafe.loads(text, field=at)
    except jsonsafe.JsonValueError as exc:
        raise RowError(exc.reason, at, exc.message) from None
    except ValueError as exc:
        raise RowError("invalid_tool_call", at, f"a tool_call part must hold JSON ({exc})") from None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise RowError("invalid_tool_call", at, 'a tool_call part must hold {"name": ..., "arguments": {...}}')
    return {"name": value["name"], "arguments": parse_arguments(value.get("arguments"), at, value["name"])}


def _written(msgs: list[dict[str, Any]], losses: Counter[str]) -> list[dict[str, Any]]:
    out = []
    for m in msgs:
        parts = []
        if m.get("reasoning") is not None:
            parts.append({"type": "reasoning", "value": m["reasoning"]})
        if m.get("content") is not None:
            parts.append({"type": "text", "value": m["content"]})
        for c in m.get("tool_calls") or ():
            if c.get("id"):
                losses["tool call ids"] += 1
            value = {"name": c["name"], "arguments": jsonsafe.loads(c["arguments"])}
            parts.append({"type": "tool_call", "value": json.dumps(value, ensure_ascii=False)})
        if m.get("tool_call_id"):
            losses["tool result ids"] += 1
        if m.get("name"):
            losses["message names"] += 1
        written: dict[str, Any] = {"role": m["role"], "content": parts}
        if m.get("weight") is not None:
            written["loss_weight"] = m["weight"]
        out.append(written)
    return out
