"""Tool-call ids for writers whose format pairs calls and results by id (OpenAI messages, trl, axolotl).

Many formats carry no ids (ShareGPT function_call turns, Hermes tags, ms-swift, typed parts): their calls reach
the canonical record without one, and their results without `tool_call_id`. A format that needs ids gets them
here, when it is written: each call without an id gets `call_id` (stable: from the example's id and the call's
place, so the same data always gets the same ids, in every export); each result without `tool_call_id` answers
the earliest call not yet answered, in order (the convention of every id-less format); results beyond the calls
stay unlinked. Ids the source gave are kept.

Why at write time and not in the convert stage: the canonical record keeps what the source said, so an id-less
format written back to itself reports no ids lost and round-trips exactly, while every writer that carries ids
derives the same ones from the same row.
"""

from __future__ import annotations

import hashlib
from typing import Any

SIDES = ("messages", "chosen", "rejected")


def call_id(example_id: str, column: str, turn: int, index: int) -> str:
    """`call_` + 8 hex digits of sha256("<example id>:<turn>:<index>") (the column too when not `messages`)."""
    where = f"{example_id}:{turn}:{index}" if column == "messages" else f"{example_id}:{column}:{turn}:{index}"
    return "call_" + hashlib.sha256(where.encode("utf-8")).hexdigest()[:8]


def with_call_ids(example: dict[str, Any]) -> dict[str, Any]:
    """A canonical row (EXAMPLE_SCHEMA dict) with an id on every tool call and its tool results linked; the row
    itself when nothing is missing. A completion (chosen, rejected) answers the prompt's calls on its own."""
    if not any(_missing(example.get(side)) for side in SIDES):
        return example
    out = dict(example)
    pending: list[str] = []
    out["messages"] = _linked(example.get("messages"), example["id"], "messages", pending)
    for side in ("chosen", "rejected"):
        out[side] = _linked(example.get(side), example["id"], side, list(pending))
    return out


def _missing(messages: list[dict[str, Any]] | None) -> bool:
    for m in messages or ():
        if any(not c.get("id") for c in m.get("tool_calls") or ()):
            return True
        if m.get("role") == "tool" and not m.get("tool_call_id"):
            return True
    return False


def _linked(
    messages: list[dict[str, Any]] | None, example_id: str, column: str, pending: list[str]
) -> list[dict[str, Any]] | None:
    """`messages` with call ids filled and results linked; `pending` (calls not yet answered) updated in place."""
    if not messages:
        return messages
    out = []
    for turn, m in enumerate(messages):
        m = dict(m)
        if m.get("tool_calls"):
            calls = []
            for index, c in enumerate(m["tool_calls"]):
                c = {**c, "id": c.get("id") or call_id(example_id, column, turn, index)}
                pending.append(c["id"])
                calls.append(c)
            m["tool_calls"] = calls
        if m.get("role") == "tool":
            if m.get("tool_call_id"):
                if m["tool_call_id"] in pending:
                    pending.remove(m["tool_call_id"])
            elif pending:
                m["tool_call_id"] = pending.pop(0)
        out.append(m)
    return out
