"""Hermes / Qwen tool calling written inside the text of the turns.

Records hold `messages` of `{role, content}` (or, as NousResearch's hermes-function-calling-v1 does,
ShareGPT `conversations` of `{from, value}`), and the tool structure is spelled in the text (see `inline`):
the system prompt declares functions in a `<tools>` block, assistant turns call them in `<tool_call>` blocks,
and results come back in `<tool_response>` blocks, either as `tool` turns or as a user turn holding nothing
but such blocks (Qwen's templates group consecutive results into one user turn).

Reading lifts the markup into structure: `tools`, assistant `tool_calls`, one `tool` message per result,
and a `<think>` block heading an assistant turn into `reasoning`. The dialect has no call ids, so
`tool_call_id`s stay null.

Writing spells the structure back: `messages` with role/content only, the tools block appended to the
system prompt as Qwen's templates word it, calls as `<tool_call>` blocks, each result as a `tool` turn
wrapped in `<tool_response>`, and reasoning as a `<think>` head (Qwen3's spelling). What the text has no
place for (call ids, result ids, message names, loss weights) is counted in the losses; rows of other
kinds than sft are not written, and counted.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa

from .. import jsonsafe
from ..readers import RowShape
from ..record import Kind
from . import inline
from .base import Written, add_metadata, count_media, count_unwritable
from .rowwise import Parsed, RowError, RowwiseFormat, message
from .sharegpt import ROLE_OF

MESSAGE = pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())])
TURN = pa.struct([pa.field("from", pa.string()), pa.field("value", pa.string())])
ARROW = pa.schema([pa.field("messages", pa.list_(MESSAGE)), pa.field("conversations", pa.list_(TURN))])

ROLES = ("system", "user", "assistant", "tool")
# ShareGPT spellings, except `function_call`: in this dialect calls live in assistant text.
FROM = {spelled: role for spelled, role in ROLE_OF.items() if spelled != "function_call"}

JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://dataforge.dev/schemas/formats/hermes.schema.json",
    "title": "Hermes / Qwen inline tool-calling record",
    "description": (
        "Tools declared in a <tools> block of the system prompt, calls in <tool_call> blocks of assistant "
        "turns, results in <tool_response> blocks; reasoning in a <think> block heading an assistant turn."
    ),
    "type": "object",
    "anyOf": [{"required": ["messages"]}, {"required": ["conversations"]}],
    "properties": {
        "messages": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["role", "content"],
                "properties": {
                    "role": {"type": "string", "description": f"One of {', '.join(ROLES)}."},
                    "content": {"type": "string"},
                },
            },
        },
        "conversations": {
            "type": "array",
            "description": "ShareGPT spelling (hermes-function-calling-v1): turns of {from, value}.",
            "items": {
                "type": "object",
                "required": ["from", "value"],
                "properties": {
                    "from": {"type": "string", "description": f"One of {', '.join(FROM)}."},
                    "value": {"type": "string"},
                },
            },
        },
    },
}


class HermesFormat(RowwiseFormat):
    name = "hermes"
    description = "messages whose text carries <tools>, <tool_call>, <tool_response> (and <think>) markup"
    shape = RowShape(ARROW, JSON_SCHEMA)
    signature = frozenset({"messages"})
    specificity = 1  # a dialect inside OpenAI messages or ShareGPT conversations

    def matches(self, record: dict[str, Any]) -> bool:
        turns, role_key, text_key = _turns(record)
        if not isinstance(turns, list) or not all(isinstance(t, dict) and role_key in t for t in turns):
            return False
        # Plain chat stays openai/sharegpt: only the tags make a record this dialect.
        return any(inline.has_tool_tags(t.get(text_key)) for t in turns)

    def example(self, record: dict[str, Any]) -> Parsed:
        turns, role_key, text_key = _turns(record)
        field = "messages" if role_key == "role" else "conversations"
        if turns is None:
            raise RowError("schema_violation", "messages", "'messages' (or 'conversations') is required but missing")
        messages: list[dict[str, Any]] = []
        origins: list[str] = []
        tools = None
        for i, turn in enumerate(turns):
            at = f"{field}[{i}].{text_key}"
            if not isinstance(turn, dict):  # a null turn (Arrow reads one as null, not as a type error)
                raise RowError("schema_violation", f"{field}[{i}]", "every turn must be an object, found null")
            role = turn[role_key] if role_key == "role" else FROM.get(turn[role_key])
            if role not in ROLES:
                raise RowError("unknown_role", f"{field}[{i}].{role_key}", f"unknown role {turn[role_key]!r}")
            text = turn[text_key]
            if text is None:
                raise RowError("schema_violation", at, f"every turn needs a string {text_key!r}")
            try:
                lifted, declared = _lift(role, text, first=i == 0)
            except inline.InlineProblem as exc:
                raise RowError(exc.reason, at, exc.message) from None
            if declared is not None:
                tools = declared
            messages += lifted
            origins += [at] * len(lifted)
        return Parsed(messages, origins=origins, tools=tools, tools_field=f"{field}[0].{text_key}")

    def from_examples(self, examples: list[dict[str, Any]]) -> Written:
        records: list[dict[str, Any]] = []
        losses: Counter[str] = Counter()
        for ex in examples:
            if count_media(ex, losses):
                continue
            if ex["kind"] != Kind.SFT.value:
                losses[f"{ex['kind']} rows (hermes holds sft only; not written)"] += 1
                continue
            record: dict[str, Any] = {"messages": _written(ex, losses)}
            add_metadata(record, ex.get("metadata"), self.shape.arrow.names, losses)
            records.append(record)
        return Written(records, losses)


def _turns(record: dict[str, Any]) -> tuple[Any, str, str]:
    """The record's turns and the keys naming role and text in them."""
    if record.get("messages") is not None or record.get("conversations") is None:
        return record.get("messages"), "role", "content"
    return record["conversations"], "from", "value"


def _lift(role: str, text: str, *, first: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """Canonical messages for one turn, and the tools it declares (a first system turn only)."""
    if role == "system" and first:
        specs, system = inline.split_tools(text)
        return ([message("system", system)] if system is not None else []), specs
    if role == "assistant":
        reasoning, rest = inline.split_think(text)
        calls, content = inline.split_tool_calls(rest)
        if not calls:
            content = rest
        return [message("assistant", content, reasoning=reasoning, tool_calls=calls)], None
    results = inline.split_tool_responses(text)
    if results is not None and role in ("user", "tool"):
        return [message("tool", r) for r in results], None
    return [message(role, text)], None


def _written(ex: dict[str, Any], losses: Counter[str]) -> list[dict[str, str]]:
    msgs = list(ex["messages"] or ())
    specs = jsonsafe.loads(ex["tools"], field="tools") if ex.get("tools") else None
    out: list[dict[str, str]] = []
    if specs and not (msgs and msgs[0]["role"] == "system"):
        out.append({"role": "system", "content": inline.join_tools(None, specs)})
    for i, m in enumerate(msgs):
        count_unwritable(m, losses)
        role, content = m["role"], m.get("content")
        if role == "system" and i == 0 and specs:
            text = inline.join_tools(content, specs)
        elif role == "assistant":
            calls = [
                {"name": c["name"], "arguments": jsonsafe.loads(c["arguments"])} for c in m.get("tool_calls") or ()
            ]
            if m.get("reasoning") is None and inline.reads_as_think(content):
                losses["assistant text opening with <think> (reads back as reasoning)"] += 1
            text = inline.join_think(m.get("reasoning"), inline.join_tool_calls(content, calls) if calls else content)
        elif role == "tool":
            text = inline.wrap_tool_response(content)
        else:
            if role == "user" and inline.split_tool_responses(content) is not None:
                losses["user turns made of <tool_response> blocks (read back as tool results)"] += 1
            text = content or ""
        out.append({"role": role, "content": text})
    return out
