"""MiniMind's chat files (jingyaogong/minimind: `sft_*.jsonl`, `r1_mix_*.jsonl`): `conversations` of
`{role, content}` turns (system, user, assistant).

Its reasoning data writes each assistant turn as `<think>\\n…\\n</think>\\n<answer>\\n…\\n</answer>`; reading
splits that into `reasoning` and the answer (see `inline.split_answer`), and plain assistant text passes
through. Writing wraps in think/answer blocks only the turns that have reasoning, so plain SFT data stays
plain as MiniMind's own SFT files are. Tool calls, tool results and declared tools have no spelling here:
rows holding them are not written (a conversation with its calls cut out would teach the wrong thing), and
are counted, as are message names and loss weights; rows of other kinds than sft are not written either.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa

from ..readers import RowShape
from ..record import Kind
from . import inline
from .base import Written, add_metadata, count_media
from .rowwise import Parsed, RowError, RowwiseFormat, message

TURN = pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())])
ARROW = pa.schema([pa.field("conversations", pa.list_(TURN))])
ROLES = ("system", "user", "assistant")

JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://dataforge.dev/schemas/formats/minimind.schema.json",
    "title": "MiniMind chat record",
    "type": "object",
    "required": ["conversations"],
    "properties": {
        "conversations": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["role", "content"],
                "properties": {
                    "role": {"type": "string", "description": f"One of {', '.join(ROLES)}."},
                    "content": {
                        "type": "string",
                        "description": "Assistant turns may be <think>\\n…\\n</think>\\n<answer>\\n…\\n</answer>.",
                    },
                },
            },
        },
    },
}


class MiniMindFormat(RowwiseFormat):
    name = "minimind"
    description = "MiniMind conversations of {role, content}; <think>…</think><answer>…</answer> reasoning"
    shape = RowShape(ARROW, JSON_SCHEMA)
    signature = frozenset({"conversations"})

    def matches(self, record: dict[str, Any]) -> bool:
        # `conversations` of {role, ...} turns: ShareGPT's are {from, value}, so the two never both match.
        conv = record.get("conversations")
        return isinstance(conv, list) and bool(conv) and all(isinstance(t, dict) and "role" in t for t in conv)

    def example(self, record: dict[str, Any]) -> Parsed:
        conv = record.get("conversations")
        if conv is None:
            raise RowError("schema_violation", "conversations", "'conversations' is required but missing")
        messages = []
        for i, turn in enumerate(conv):
            at = f"conversations[{i}]"
            if turn["role"] not in ROLES:
                message_ = f"unknown role {turn['role']!r}; expected one of {', '.join(ROLES)}"
                raise RowError("unknown_role", f"{at}.role", message_)
            if turn["content"] is None:
                raise RowError("schema_violation", f"{at}.content", "every turn needs a string 'content'")
            reasoning, content = None, turn["content"]
            if turn["role"] == "assistant":
                try:
                    reasoning, content = inline.split_answer(content)
                except inline.InlineProblem as exc:
                    raise RowError(exc.reason, f"{at}.content", exc.message) from None
            messages.append(message(turn["role"], content, reasoning=reasoning))
        return Parsed(messages, origins=[f"conversations[{i}].content" for i in range(len(conv))])

    def from_examples(self, examples: list[dict[str, Any]]) -> Written:
        records: list[dict[str, Any]] = []
        losses: Counter[str] = Counter()
        for ex in examples:
            if count_media(ex, losses):
                continue
            msgs = ex["messages"] or []
            if ex["kind"] != Kind.SFT.value:
                losses[f"{ex['kind']} rows (minimind holds sft only; not written)"] += 1
                continue
            if ex.get("tools") or any(m["role"] == "tool" or m.get("tool_calls") for m in msgs):
                losses["rows with tools, tool calls or results (not written)"] += 1
                continue
            turns = []
            for m in msgs:
                if m.get("name"):
                    losses["message names"] += 1
                if m.get("weight") is not None:
                    losses["message weights"] += 1
                if m["role"] == "assistant":
                    if m.get("reasoning") is None and inline.reads_as_think(m.get("content")):
                        losses["assistant text opening with <think> (reads back as reasoning)"] += 1
                    content = inline.join_answer(m.get("reasoning"), m.get("content"))
                else:
                    if m.get("reasoning") is not None:
                        losses["reasoning on non-assistant turns"] += 1
                    content = m.get("content") or ""
                turns.append({"role": m["role"], "content": content})
            record: dict[str, Any] = {"conversations": turns}
            add_metadata(record, ex.get("metadata"), self.shape.arrow.names, losses)
            records.append(record)
        return Written(records, losses)
