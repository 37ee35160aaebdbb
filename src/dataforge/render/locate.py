"""Where each message's values lie in a rendered conversation, found by a second render with sentinels.

`substituted` swaps every message's content, reasoning and tool-call names (and an inline `<think>` block's
two halves) for unique sentinel strings; `locate` walks the real and the sentinel renderings side by side and
maps each sentinel back to the characters its value occupies in the real text, so a value is located whatever
it contains. `arguments_end` finds where a tool call's JSON arguments end in the text.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .. import jsonsafe

SENTINEL_PREFIXES = ("zqdfsent", "zqdfmark", "zqdfslot")


def substituted(messages: list[dict[str, Any]], prefix: str):
    """The messages with every non-empty content, reasoning and tool-call name replaced by a sentinel, and the
    values: (message index, element, raw value)."""
    values: list[tuple[int, str, Any]] = []
    out = []

    def sentinel(index: int, element: str, raw: Any) -> str:
        values.append((index, element, raw))
        return f"{prefix}{len(values) - 1}x"

    for i, m in enumerate(messages):
        msg = dict(m)
        content = m.get("content")
        inline = _INLINE_THINK.match(content) if isinstance(content, str) and m["role"] == "assistant" else None
        if inline:
            # Reasoning written inline (`<think>…</think>answer`): templates take it apart (Qwen3 renders it as
            # the reasoning, DeepSeek-R1 drops it), so each part gets its own sentinel, the tags kept.
            head, reasoning, mid, answer, end = inline.groups()
            msg["content"] = (
                head
                + (sentinel(i, "reasoning", reasoning) if reasoning else "")
                + mid
                + (sentinel(i, "content", answer) if answer else "")
                + end
            )
        elif isinstance(content, str) and content:
            msg["content"] = sentinel(i, "content", content)
        if m.get("reasoning_content"):
            msg["reasoning_content"] = sentinel(i, "reasoning", m["reasoning_content"])
        if m.get("tool_calls"):
            calls = []
            for j, call in enumerate(m["tool_calls"]):
                fn = dict(call["function"])
                fn["name"] = sentinel(i, f"call{j}", (fn["name"], fn.get("arguments")))
                calls.append({**call, "function": fn})
            msg["tool_calls"] = calls
        out.append(msg)
    return out, values


_INLINE_THINK = re.compile(r"(\s*<think>\s*)(.*?)(\s*</think>\s*)(.*?)(\s*)\Z", re.S)


def _candidates(raw: str):
    """How a template may write a value, most likely first: as it is, trimmed, or JSON-escaped (Llama 3.1's
    tool results); generated lazily, since the first one nearly always fits."""
    yield raw
    seen = {raw}
    for c in (raw.strip(), raw.strip("\n"), raw.lstrip(), raw.rstrip()):
        if c not in seen:
            seen.add(c)
            yield c
    for c in (json.dumps(raw, ensure_ascii=False)[1:-1], json.dumps(raw.strip(), ensure_ascii=False)[1:-1]):
        if c not in seen:
            seen.add(c)
            yield c


def locate(text: str, sentinel_text: str, prefix: str, values: list[tuple[int, str, Any]]):
    """Where each sentinel's real value lies in `text`: ({value index: [(start, end), …]} (a template may write a
    value more than once), the indices of values written changed (not as they are, trimmed or JSON-escaped:
    upper-cased, cut)), or None when the two renderings do not line up outside the sentinels."""
    changed: set[int] = set()
    found = list(re.finditer(re.escape(prefix) + r"(\d+)x", sentinel_text, re.I))  # `| upper` too
    where: dict[int, list[tuple[int, int]]] = {}
    at = 0  # position in `text`
    last = 0  # position in `sentinel_text`
    for n, hit in enumerate(found):
        literal = sentinel_text[last : hit.start()]
        if not text.startswith(literal, at):
            return None
        at += len(literal)
        index = int(hit.group(1))
        if index >= len(values):
            return None
        after = sentinel_text[hit.end() : found[n + 1].start() if n + 1 < len(found) else len(sentinel_text)]
        raw = values[index][2]
        raw = raw[0] if isinstance(raw, tuple) else raw
        end = None
        for c in _candidates(raw):
            if text.startswith(c, at) and (
                text.startswith(after, at + len(c)) if n + 1 < len(found) else text[at + len(c) :] == after
            ):
                end = at + len(c)
                break
        if end is None:
            if not after:
                return None
            q = text.find(after, at) if n + 1 < len(found) else (len(text) - len(after))
            if q < at:
                return None
            if raw.strip() not in text[at:q]:
                changed.add(index)
            end = q
        where.setdefault(index, []).append((at, end))
        at = end
        last = hit.end()
    if text[at:] != sentinel_text[last:]:
        return None
    return where, changed


def arguments_end(text: str, at: int, arguments: Any) -> int | None:
    """End of a tool call's arguments written as JSON shortly after `at` (the end of its name), or None."""
    if arguments is None:
        return None
    try:
        want = jsonsafe.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError:  # not JSON (or too deep): nothing to find
        return None
    decoder = json.JSONDecoder()
    window = text[at : at + 64]
    for offset, ch in enumerate(window):
        if ch == "{" or (ch == "[" and isinstance(want, list)):
            try:
                value, end = decoder.raw_decode(text, at + offset)
            except (ValueError, RecursionError):
                # RecursionError: a bracket opening deeply nested text (the data's, not these arguments, which
                # are depth-bounded); the C scanner counts its depth and raises cleanly, the stack is safe.
                continue
            if value == want:
                return end
    return None
