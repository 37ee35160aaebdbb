"""ms-swift's standard dataset format (its "Custom dataset" docs): `messages` of `{role, content}`.

Besides system/user/assistant, agent data uses `tool_call` turns (content: JSON `{"name", "arguments"}`)
and `tool_response` (or `tool`) turns, with the declared functions in `tools` (a JSON string of
OpenAI-wrapped specs). Assistant reasoning is inline, as a `<think>` block heading the content.
`rejected_response` (a string) makes a DPO pair whose chosen side is the final assistant turn; `label`
(true/false) makes a KTO example.

Reading: an assistant turn and the `tool_call` turns right after it are one canonical assistant message
(ms-swift concatenates them the same way); `tool_call` turns with no assistant text before them make an
assistant message of calls alone. The format has no call ids, so `tool_call_id`s stay null.

Writing produces exactly the documented shape: `tools` as a JSON string, calls as `tool_call` turns after
the assistant's text (text and reasoning first, as a `<think>` head; no assistant turn when there is
neither), results as `tool_response` turns, `rejected_response` for preference pairs whose sides are one
plain assistant turn each, and `label` for KTO. Pretraining text becomes a single assistant turn, as the
docs spell pretraining data (it reads back as sft: counted). Ids, names and loss weights are counted.

`SwiftTrainerFormat` (the ms-swift trainer export's writer) also carries each assistant turn's weight in
ms-swift's per-message fields (ms-swift 4.x `loss_scale/base.py` reads both off a response): `"loss": false`
for weight 0 (the turn does not train), nothing for 1 (the default: ms-swift's `--loss_scale` strategy decides,
as dataforge's `train_on` does; an explicit `"loss": true` would override `last_round`), `"loss_scale": w` for
any other weight (each of the turn's tokens' loss times w); its `tool_call` turns get the same field, as
ms-swift itself copies it onto them. A weight on a non-assistant turn has no place (ms-swift weighs responses
only): counted.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pyarrow as pa

from .. import jsonsafe
from ..readers import RowShape
from ..record import Kind
from . import inline
from .base import Written, add_metadata, count_media, count_unwritable
from .rowwise import Parsed, RowError, RowwiseFormat, message, parse_arguments
from .tooling import openai_tools

MESSAGE = pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())])
ARROW = pa.schema(
    [
        pa.field("messages", pa.list_(MESSAGE)),
        pa.field("tools", pa.string()),
        pa.field("rejected_response", pa.string()),
        pa.field("label", pa.bool_()),
    ]
)
ROLES = ("system", "user", "assistant", "tool_call", "tool_response", "tool")

JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://dataforge.dev/schemas/formats/swift.schema.json",
    "title": "ms-swift standard record",
    "type": "object",
    "required": ["messages"],
    "properties": {
        "messages": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["role", "content"],
                "properties": {
                    "role": {"type": "string", "description": f"One of {', '.join(ROLES)}."},
                    "content": {
                        "type": "string",
                        "description": 'tool_call turns: JSON {"name", "arguments"}; assistant: may open with <think>.',
                    },
                },
            },
        },
        "tools": {"type": ["string", "array", "null"], "description": "Declared functions, as a JSON string."},
        "rejected_response": {"type": ["string", "null"], "description": "DPO: the rejected final response."},
        "label": {"type": ["boolean", "null"], "description": "KTO: whether the final response is desirable."},
    },
}


def _coerce(record: dict[str, Any]) -> dict[str, Any]:
    """Accept `tools` given as an array and tool_call contents given as objects; store them as JSON text."""
    out = dict(record)
    if isinstance(out.get("tools"), list):
        out["tools"] = json.dumps(out["tools"], ensure_ascii=False)
    msgs = out.get("messages")
    if isinstance(msgs, list) and any(isinstance(m, dict) and isinstance(m.get("content"), dict) for m in msgs):
        out["messages"] = [
            {**m, "content": json.dumps(m["content"], ensure_ascii=False)}
            if isinstance(m, dict) and m.get("role") == "tool_call" and isinstance(m.get("content"), dict)
            else m
            for m in msgs
        ]
    return out


class SwiftFormat(RowwiseFormat):
    name = "swift"
    description = "ms-swift messages: tool_call/tool_response roles, JSON-string tools, rejected_response, label"
    shape = RowShape(ARROW, JSON_SCHEMA, _coerce)
    signature = frozenset({"messages"})
    specificity = 1  # a dialect of OpenAI-style messages

    def matches(self, record: dict[str, Any]) -> bool:
        msgs = record.get("messages")
        if not isinstance(msgs, list) or not all(isinstance(m, dict) and "role" in m for m in msgs):
            return False
        # Plain messages stay openai: only ms-swift's own roles or columns make a record this format.
        return record.get("rejected_response") is not None or any(
            m["role"] in ("tool_call", "tool_response") for m in msgs
        )

    def example(self, record: dict[str, Any]) -> Parsed:
        msgs = record.get("messages")
        if msgs is None:
            raise RowError("schema_violation", "messages", "'messages' is required but missing")
        messages, origins = _messages(msgs)
        rejected_text, label = record.get("rejected_response"), record.get("label")
        if rejected_text is not None and label is not None:
            raise RowError(
                "schema_violation", "label", "a record has `rejected_response` (DPO) or `label` (KTO), not both"
            )
        if label is not None:
            return Parsed(messages, kind=Kind.KTO, origins=origins, tools=record.get("tools"), label=label)
        if rejected_text is None:
            return Parsed(messages, origins=origins, tools=record.get("tools"))
        if not msgs or msgs[-1]["role"] != "assistant":
            raise RowError(
                "schema_violation",
                "messages",
                "with `rejected_response`, the last turn must be the chosen assistant response",
            )
        try:
            reasoning, content = inline.split_think(rejected_text)
        except inline.InlineProblem as exc:
            raise RowError(exc.reason, "rejected_response", exc.message) from None
        return Parsed(
            messages[:-1],
            kind=Kind.PREFERENCE,
            origins=origins[:-1],
            tools=record.get("tools"),
            chosen=messages[-1:],
            rejected=[message("assistant", content, reasoning=reasoning)],
        )

    turn_loss = False  # write assistant weights as ms-swift's per-message `loss` (SwiftTrainerFormat)

    def from_examples(self, examples: list[dict[str, Any]]) -> Written:
        records: list[dict[str, Any]] = []
        losses: Counter[str] = Counter()
        for ex in examples:
            if count_media(ex, losses):
                continue
            record = _record(ex, losses, self.turn_loss)
            if record is None:
                continue
            if ex.get("tools"):
                record["tools"] = json.dumps(openai_tools(ex["tools"]), ensure_ascii=False)
            add_metadata(record, ex.get("metadata"), self.shape.arrow.names, losses)
            records.append(record)
        return Written(records, losses)


class SwiftTrainerFormat(SwiftFormat):
    """The `swift` writer with assistant weights as the per-message `loss` field (not registered: the
    ms-swift trainer export writes through it; reading stays `swift`'s)."""

    turn_loss = True


def turn_loss_fields(weight: float | None) -> dict[str, Any]:
    """ms-swift's per-message loss fields for an assistant turn of `weight` (none for no weight)."""
    if weight is None or weight == 1:
        return {}
    if weight == 0:
        return {"loss": False}
    return {"loss_scale": float(weight)}


def _messages(msgs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Canonical messages (tool_call turns folded into the assistant turn before them) and their origins."""
    turns: list[tuple[str, str | None, str | None, list[dict[str, Any]]]] = []  # role, content, reasoning, calls
    origins: list[str] = []
    previous = None
    for i, m in enumerate(msgs):
        at = f"messages[{i}].content"
        role, text = m["role"], m["content"]
        if role not in ROLES:
            expected = ", ".join(ROLES)
            raise RowError("unknown_role", f"messages[{i}].role", f"unknown role {role!r}; expected one of {expected}")
        if text is None:
            raise RowError("schema_violation", at, "every turn needs a string 'content'")
        if role == "tool_call":
            if previous not in ("assistant", "tool_call"):
                turns.append(("assistant", None, None, []))
                origins.append(at)
            turns[-1][3].append(_call(text, at))
        elif role == "assistant":
            try:
                reasoning, content = inline.split_think(text)
            except inline.InlineProblem as exc:
                raise RowError(exc.reason, at, exc.message) from None
            turns.append(("assistant", content, reasoning, []))
            origins.append(at)
        else:
            turns.append(("tool" if role == "tool_response" else role, text, None, []))
            origins.append(at)
        previous = role
    # Reasoning alone before calls leaves empty text: the calls are the turn's content.
    out = [
        message(role, None if calls and content == "" else content, reasoning=reasoning, tool_calls=calls)
        for role, content, reasoning, calls in turns
    ]
    return out, origins


def _call(text: str, at: str) -> dict[str, Any]:
    try:
        value = jsonsafe.loads(text, field=at)
    except jsonsafe.JsonValueError as exc:
        raise RowError(exc.reason, at, exc.message) from None
    except ValueError as exc:
        raise RowError("invalid_tool_call", at, f"a tool_call turn must hold JSON ({exc})") from None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise RowError("invalid_tool_call", at, 'a tool_call turn must hold {"name": ..., "arguments": {...}}')
    return {"name": value["name"], "arguments": parse_arguments(value.get("arguments"), at, value["name"])}


def _record(ex: dict[str, Any], losses: Counter[str], turn_loss: bool = False) -> dict[str, Any] | None:
    """The ms-swift record for one canonical row, or None (counted) when it cannot be written."""
    kind = ex["kind"]
    if kind == Kind.PRETRAIN.value:
        losses["pretrain rows (written as one assistant turn; read back as sft)"] += 1
        return {"messages": [{"role": "assistant", "content": ex.get("text") or ""}]}
    msgs = list(ex["messages"] or ())
    if kind == Kind.PREFERENCE.value:
        chosen, rejected = ex.get("chosen") or [], ex.get("rejected") or []
        if not (_single_answer(chosen) and _single_answer(rejected)):
            losses["preference pairs whose sides are not one plain assistant turn (not written)"] += 1
            return None
        count_unwritable(rejected[0], losses)
        out = {
            "messages": _written(msgs + chosen, losses),
            "rejected_response": inline.join_think(rejected[0].get("reasoning"), rejected[0].get("content")),
        }
        return out
    record: dict[str, Any] = {"messages": _written(msgs, losses, turn_loss)}
    if kind == Kind.KTO.value:
        record["label"] = ex.get("label")
    return record


def _single_answer(side: list[dict[str, Any]]) -> bool:
    return len(side) == 1 and side[0]["role"] == "assistant" and not side[0].get("tool_calls")


def _written(msgs: list[dict[str, Any]], losses: Counter[str], turn_loss: bool = False) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    previous_role = None
    for m in msgs:
        role = m["role"]
        weight = m.get("weight") if role == "assistant" and turn_loss else None
        # A weight this writer carries (as `loss`) is not counted as lost.
        count_unwritable(m if weight is None else {**m, "weight": None}, losses)
        if role == "assistant":
            calls = m.get("tool_calls") or ()
            if m.get("reasoning") is None and inline.reads_as_think(m.get("content")):
                losses["assistant text opening with <think> (reads back as reasoning)"] += 1
            text = inline.join_think(m.get("reasoning"), m.get("content"))
            fields = turn_loss_fields(weight)
            if text or not calls:
                out.append({"role": "assistant", "content": text, **fields})
            elif previous_role == "assistant":
                losses["tool calls after an assistant turn (read back merged into it)"] += 1
            for c in calls:
                value = {"name": c["name"], "arguments": jsonsafe.loads(c["arguments"])}
                out.append({"role": "tool_call", "content": json.dumps(value, ensure_ascii=False), **fields})
        else:
            out.append({"role": "tool_response" if role == "tool" else role, "content": m.get("content") or ""})
        previous_role = role
    return out
