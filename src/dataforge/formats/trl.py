"""trl's dataset types: preference, unpaired preference (KTO), prompt-completion and language modelling.

Read, in trl's "standard" form (strings) or "conversational" form (lists of `{role, content}` messages):

- preference: `prompt` + `chosen` + `rejected`, or the implicit-prompt form with only `chosen` and
  `rejected` (full conversations: their shared leading messages become the prompt);
- unpaired preference (KTO): `prompt` + `completion` + boolean `label`;
- prompt-completion (SFT): `prompt` + `completion`;
- conversational language modelling (SFT): `messages`; standard language modelling: `text` (pretrain).

A standard prompt is read as one user message and a standard completion as one assistant message. Messages
are spelled as OpenAI's (`tool_calls`, `tool_call_id`, `name`, `reasoning_content`, with `thinking` read as
another spelling of it); tool-call arguments may be objects or JSON text. A `tools` column (function specs,
OpenAI-wrapped or bare, as an array or JSON text) is carried.

Written always in the conversational form, the one trl's trainers take without guessing at a template:
preference → `prompt`/`chosen`/`rejected` message lists (a pair without a prompt in the implicit form), KTO
→ `prompt`/`completion`/`label` (the completion is the last message), SFT → `messages`, pretrain → `text`;
tool-call arguments as objects (what Hugging Face chat templates expect), `tools` OpenAI-wrapped.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa

from ..readers import RowShape
from ..record import ROLES, Kind
from . import media
from .base import Written, add_metadata, count_media
from .openai import written_message
from .rowwise import Parsed, RowError, RowwiseFormat, message, parse_arguments
from .toolids import with_call_ids
from .tooling import openai_tools

CONVERSATIONS = ("prompt", "completion", "chosen", "rejected", "messages")
ARROW = pa.schema(
    [
        # Each of these is a string in one dataset and a list of messages in the next: stored as JSON text.
        *(pa.field(name, pa.string()) for name in CONVERSATIONS),
        pa.field("tools", pa.string()),
        pa.field("label", pa.bool_()),
        pa.field("text", pa.string()),
    ]
)
MESSAGE_KEYS = ("role", "content", "reasoning_content", "thinking", "tool_calls", "tool_call_id", "name", "weight")
KEPT_OUT = ("instruction", "conversations", "messages")  # columns of other formats: their records are theirs

_MESSAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["role"],
    # A key dataforge cannot carry would vanish inside the JSON-text column without a count: refused instead.
    "additionalProperties": False,
    "properties": {
        "role": {"type": "string", "description": "system, user, assistant or tool."},
        "content": {"type": ["string", "null"]},
        "reasoning_content": {"type": ["string", "null"]},
        "thinking": {"type": ["string", "null"], "description": "Read as reasoning_content."},
        "tool_calls": {
            "type": ["array", "null"],
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": ["string", "null"]},
                    "type": {"type": ["string", "null"]},
                    "function": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "arguments": {"type": ["object", "string", "null"]},
                        },
                    },
                    "name": {"type": "string", "description": "Unwrapped calls: {name, arguments}."},
                    "arguments": {"type": ["object", "string", "null"]},
                },
            },
        },
        "tool_call_id": {"type": ["string", "null"]},
        "name": {"type": ["string", "null"]},
        "weight": {"type": ["number", "null"]},
    },
}


def _text_or_messages(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "anyOf": [{"type": "null"}, {"type": "string"}, {"type": "array", "items": _MESSAGE_SCHEMA}],
    }


JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://dataforge.dev/schemas/formats/trl.schema.json",
    "title": "trl record",
    "description": "One of trl's dataset types, standard (strings) or conversational (message lists).",
    "type": "object",
    "properties": {
        "prompt": _text_or_messages("The prompt (preference, unpaired preference, prompt-completion)."),
        "completion": _text_or_messages("The completion (unpaired preference, prompt-completion)."),
        "chosen": _text_or_messages("Preference: the better completion (or whole conversation, implicit prompt)."),
        "rejected": _text_or_messages("Preference: the worse completion (or whole conversation, implicit prompt)."),
        "messages": {
            "description": "Conversational language modelling: the whole conversation.",
            "anyOf": [{"type": "null"}, {"type": "array", "items": _MESSAGE_SCHEMA}],
        },
        "label": {"type": ["boolean", "null"], "description": "Unpaired preference (KTO): is the completion good."},
        "text": {"type": ["string", "null"], "description": "Standard language modelling: plain text."},
        "tools": {"type": ["string", "array", "null"], "description": "Declared functions (OpenAI tools)."},
    },
}


def _coerce(record: dict[str, Any]) -> dict[str, Any]:
    """Content lists holding image, video or audio parts set aside (`media.lift_parts`): such a row is rejected
    as `multimodal_unsupported`, naming them, rather than as a schema violation."""
    return media.lift_parts(record, CONVERSATIONS)


class TrlFormat(RowwiseFormat):
    name = "trl"
    description = "trl dataset types: prompt/chosen/rejected, prompt/completion(/label), messages, text"
    shape = RowShape(ARROW, JSON_SCHEMA, _coerce, json_columns=frozenset({*CONVERSATIONS, "tools"}))
    signature = frozenset({"prompt"})
    specificity = 1

    def matches(self, record: dict[str, Any]) -> bool:
        if any(key in record for key in KEPT_OUT):
            return False
        prompt = record.get("prompt")
        if prompt is not None:
            return isinstance(prompt, str) or _is_conversation(prompt)
        chosen, rejected = record.get("chosen"), record.get("rejected")
        both_text = isinstance(chosen, str) and isinstance(rejected, str)
        return both_text or (_is_conversation(chosen) and _is_conversation(rejected))

    def example(self, record: dict[str, Any]) -> Parsed:
        has = {key for key, value in record.items() if value is not None}
        tools = record.get("tools")
        if has & {"chosen", "rejected"}:
            return _preference(record, has, tools)
        if "completion" in has:
            if "prompt" not in has:
                raise RowError("schema_violation", "prompt", "'prompt' is required beside 'completion'")
            prompt = _conversation(record["prompt"], "prompt", "user")
            completion = _conversation(record["completion"], "completion", "assistant")
            kind = Kind.KTO if "label" in has else Kind.SFT
            return _parsed(kind, prompt + completion, tools, label=record.get("label"))
        if "messages" in has:
            kind = Kind.KTO if "label" in has else Kind.SFT
            return _parsed(
                kind, _conversation(record["messages"], "messages", "user"), tools, label=record.get("label")
            )
        if "prompt" in has:
            raise RowError(
                "schema_violation",
                "completion",
                "a prompt-only row has no completion to train on; add 'completion' (or 'chosen'/'rejected')",
            )
        if "text" in has:
            return Parsed(messages=[], kind=Kind.PRETRAIN, origins=[], text=record["text"], tools=tools)
        raise RowError(
            "schema_violation",
            "(record)",
            "expected prompt + chosen/rejected, prompt + completion (+ label), messages, or text",
        )

    def from_examples(self, examples: list[dict[str, Any]]) -> Written:
        records: list[dict[str, Any]] = []
        losses: Counter[str] = Counter()
        for ex in examples:
            if count_media(ex, losses):
                continue
            ex = with_call_ids(ex)  # chat templates pair results with calls by id: give id-less calls stable ones
            record = _written(ex, losses)
            if record is None:
                continue
            if ex.get("tools"):
                record["tools"] = openai_tools(ex["tools"])
            add_metadata(record, ex.get("metadata"), self.shape.arrow.names, losses)
            records.append(record)
        return Written(records, losses)


Msg = tuple[dict[str, Any], str]  # a canonical message and the field it came from


def _parsed(kind: Kind, messages: list[Msg], tools: Any, **columns: Any) -> Parsed:
    return Parsed(
        messages=[m for m, _ in messages], kind=kind, origins=[o for _, o in messages], tools=tools, **columns
    )


def _preference(record: dict[str, Any], has: set[str], tools: Any) -> Parsed:
    for column in ("completion", "label"):
        if column in has:
            raise RowError(
                "schema_violation",
                column,
                f"a preference row (chosen/rejected) has no '{column}' "
                "(unpaired preference is prompt/completion/label)",
            )
    chosen = _conversation(record["chosen"], "chosen", "assistant") if "chosen" in has else []
    rejected = _conversation(record["rejected"], "rejected", "assistant") if "rejected" in has else []
    if "prompt" in has:
        prompt = _conversation(record["prompt"], "prompt", "user")
    elif chosen and rejected:
        # Implicit prompt: the leading messages both sides share, leaving each side at least its last message.
        shared = 0
        limit = min(len(chosen), len(rejected)) - 1
        while shared < limit and chosen[shared][0] == rejected[shared][0]:
            shared += 1
        prompt, chosen, rejected = chosen[:shared], chosen[shared:], rejected[shared:]
    else:
        prompt = []
    # A missing side stays empty: validation rejects the pair as `missing_preference`, naming the side.
    return _parsed(
        Kind.PREFERENCE,
        prompt,
        tools,
        chosen=[m for m, _ in chosen] or None,
        rejected=[m for m, _ in rejected] or None,
    )


def _is_conversation(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "role" in m for m in value)


def _conversation(value: Any, field: str, role: str) -> list[Msg]:
    """Messages of a column: a standard string is one message from `role`; a list is messages."""
    if isinstance(value, str):
        return [(message(role, value), field)]
    if not isinstance(value, list):
        raise RowError("schema_violation", field, "expected a string or a list of messages")
    return [(_message(m, f"{field}[{i}]"), f"{field}[{i}].content") for i, m in enumerate(value)]


def _message(m: Any, where: str) -> dict[str, Any]:
    if not isinstance(m, dict):
        raise RowError("schema_violation", where, "expected a message object")
    unknown = sorted(set(m) - set(MESSAGE_KEYS))
    if unknown:
        raise RowError("schema_violation", f"{where}.{unknown[0]}", f"unexpected key {unknown[0]!r} in a message")
    role = m.get("role")
    if role not in ROLES:
        raise RowError(
            "unknown_role", f"{where}.role", f"unknown role {role!r}; expected one of {', '.join(sorted(ROLES))}"
        )
    content = m.get("content")
    if content is not None and not isinstance(content, str):
        raise RowError("schema_violation", f"{where}.content", "content must be a string (content parts are not read)")
    reasoning, thinking = m.get("reasoning_content"), m.get("thinking")
    if reasoning is not None and thinking is not None and reasoning != thinking:
        raise RowError("schema_violation", f"{where}.thinking", "'thinking' and 'reasoning_content' differ; keep one")
    return message(
        role,
        content,
        reasoning=reasoning if reasoning is not None else thinking,
        tool_calls=[_call(c, f"{where}.tool_calls[{j}]") for j, c in enumerate(m.get("tool_calls") or ())],
        tool_call_id=m.get("tool_call_id"),
        name=m.get("name"),
        weight=m.get("weight"),
    )


def _call(call: Any, where: str) -> dict[str, Any]:
    """One tool call, OpenAI-wrapped (`{type, function: {name, arguments}}`) or bare (`{name, arguments}`)."""
    body = call.get("function") if isinstance(call, dict) and "function" in call else call
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise RowError("invalid_tool_call", where, "a tool call needs a `function` object with a string `name`")
    prefix = f"{where}.function" if body is not call else where
    arguments = parse_arguments(body.get("arguments"), f"{prefix}.arguments", body["name"])
    return {"id": call.get("id"), "name": body["name"], "arguments": arguments}


def _written(ex: dict[str, Any], losses: Counter[str]) -> dict[str, Any] | None:
    """One canonical row as a trl record of its kind (conversational), or None when it cannot be one."""
    kind = ex["kind"]
    if kind == Kind.PRETRAIN.value:
        return {"text": ex["text"]}
    msgs = [_out(m) for m in ex["messages"] or ()]
    if kind == Kind.SFT.value:
        return {"messages": msgs}
    if kind == Kind.KTO.value:
        if not msgs or msgs[-1]["role"] != "assistant":
            losses["kto rows not ending on an assistant turn (not written)"] += 1
            return None
        return {"prompt": msgs[:-1], "completion": msgs[-1:], "label": ex["label"]}
    chosen = [_out(m) for m in ex.get("chosen") or ()]
    rejected = [_out(m) for m in ex.get("rejected") or ()]
    if msgs:
        return {"prompt": msgs, "chosen": chosen, "rejected": rejected}
    # No prompt: trl's implicit-prompt form, as a prompt of no messages is not a conversation.
    if chosen and rejected and chosen[0] == rejected[0]:
        losses["preference rows without a prompt whose completions share a first turn (read back as prompt)"] += 1
    return {"chosen": chosen, "rejected": rejected}


def _out(m: dict[str, Any]) -> dict[str, Any]:
    return written_message(m, arguments_as_objects=True)
