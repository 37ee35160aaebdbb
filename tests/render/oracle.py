"""An oracle for render fidelity that does not share the engine's method.

The engine derives trained spans by rendering prefixes (the conversation before assistant turn k, with the
generation prompt, must be a prefix of the whole). This oracle instead locates each message in the real
rendering by **sentinel alignment**:

1. Render the conversation as given (`T`), and a copy in which every variable field of every message — content,
   reasoning, each tool call's name and every string inside its arguments — is replaced by a unique sentinel
   word (`zqx3c0zqx`: message 3, field 0) that no template treats specially (`S`).
2. `S` split at its sentinels is a list of fixed template text pieces. Those pieces, escaped, joined by lazy
   groups, must match the whole of `T` (`re.fullmatch`): then every fixed piece and every field has a known
   place in `T`, even when the template trims, escapes (`tojson`) or reorders the fields. A sentinel that is
   missing from `S` is a field the template drops (Phi-3 dropping tool calls, Qwen3 dropping earlier
   reasoning); a rendering that does not match means the template renders the real text differently from the
   sentinels (e.g. it parses `</think>` out of content), and the oracle says it cannot align.
3. A trained assistant turn starts after its header and ends after its end-of-turn token, both found in the
   fixed text of `S` around the turn's fields: the header is the generation prompt the template appends to the
   conversation before the turn, when that text is there (so a generation prompt that ends in an empty think
   block keeps that block in the prompt), else the family's assistant header written out in `FAMILIES`, else
   (a generation prompt that adds nothing, as Mistral v0.3's after tool results) where the rendering of the
   conversation before the turn stops agreeing with the sentinel rendering; the
   end is the first of the family's stop tokens (written out in `FAMILIES`: the tokens generation stops at)
   after the turn's last field and before the next message's first field, or, with none there, the end of the
   rendering less trailing whitespace when nothing follows (GLM-4's last turn).

The oracle knows nothing of the engine's spans, eot probe or prefix checks; it only shares
`engine.chat_messages` (record → template dicts), which (a) checks directly against `apply_chat_template`.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from typing import Any

SENTINEL = re.compile(r"zqx(\d+)([a-z])(\d+)zqx")


@dataclass(frozen=True)
class Family:
    """What the oracle is told about a family: the assistant header and the tokens that end a turn."""

    header: str
    stops: tuple[str, ...]


CHATML = Family("<|im_start|>assistant\n", ("<|im_end|>",))
FAMILIES: dict[str, Family] = {
    "qwen2.5-instruct": CHATML,
    "qwen3": CHATML,
    "smollm2-instruct": CHATML,
    "smollm3": CHATML,
    "llama-3.1-instruct": Family("<|start_header_id|>assistant<|end_header_id|>\n\n", ("<|eot_id|>", "<|eom_id|>")),
    "phi-3-mini-4k-instruct": Family("<|assistant|>\n", ("<|end|>",)),
    "phi-4-mini-instruct": Family("<|assistant|>", ("<|end|>",)),
    # GLM-4 stops generating on the next role's token (generation_config.json eos_token_id).
    "glm-4-9b-chat": Family("<|assistant|>", ("<|user|>", "<|observation|>", "<|endoftext|>")),
    "mistral-7b-instruct-v0.2": Family("[/INST]", ("</s>",)),
    "mistral-7b-instruct-v0.3": Family("[/INST]", ("</s>",)),
    "gemma-2-it": Family("<start_of_turn>model\n", ("<end_of_turn>",)),
    "gemma-3-it": Family("<start_of_turn>model\n", ("<end_of_turn>",)),
    "deepseek-r1-distill-qwen": Family("<｜Assistant｜>", ("<｜end▁of▁sentence｜>",)),
}


@dataclass
class Truth:
    """What a faithful render of one sequence is: its text and, per trained turn, the trained text; or why the
    oracle cannot say (`unaligned`), and which trained fields the template drops (`dropped`: e.g. "tool_calls")."""

    text: str
    regions: list[tuple[int, int]] = field(default_factory=list)
    dropped: set[str] = field(default_factory=set)
    unaligned: str | None = None

    @property
    def trained(self) -> list[str]:
        return [self.text[a:b] for a, b in self.regions]


def _sentinel(i: int, kind: str, n: int) -> str:
    return f"zqx{i}{kind}{n}zqx"


def _swap_args(value: Any, i: int, counter: list[int]) -> Any:
    if isinstance(value, str):
        counter[0] += 1
        return _sentinel(i, "a", counter[0])
    if isinstance(value, dict):
        return {k: _swap_args(v, i, counter) for k, v in value.items()}
    if isinstance(value, list):
        return [_swap_args(v, i, counter) for v in value]
    return value


def sentinelled(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy of `messages` whose variable fields are sentinels (content c, reasoning r, tool name n, args a)."""
    out = copy.deepcopy(messages)
    for i, m in enumerate(out):
        if m.get("content"):
            m["content"] = _sentinel(i, "c", 0)
        if m.get("reasoning_content"):
            m["reasoning_content"] = _sentinel(i, "r", 0)
        counter = [0]
        for j, call in enumerate(m.get("tool_calls") or ()):
            call["function"]["name"] = _sentinel(i, "n", j)
            call["function"]["arguments"] = _swap_args(call["function"]["arguments"], i, counter)
    return out


def _fields(message: dict[str, Any], i: int) -> dict[str, list[str]]:
    """The sentinels message `i` has, by field."""
    fields: dict[str, list[str]] = {}
    if message.get("content"):
        fields["content"] = [_sentinel(i, "c", 0)]
    if message.get("reasoning_content"):
        fields["reasoning"] = [_sentinel(i, "r", 0)]
    calls = message.get("tool_calls") or ()
    if calls:
        names = [_sentinel(i, "n", j) for j in range(len(calls))]
        fields["tool_calls"] = names
    return fields


def truth(render, messages: list[dict[str, Any]], trained: list[int], family: Family) -> Truth:
    """The faithful trained text of `messages` for turns `trained`, by sentinel alignment (see the module).

    `render(messages, add_generation_prompt) -> str` is the template (the caller's `apply_chat_template`)."""
    text = render(messages, False)
    swapped = sentinelled(messages)
    s = render(swapped, False)
    pieces = SENTINEL.split(s)  # fixed, (i, kind, n), fixed, …
    fixed = pieces[0::4]
    names = ["zqx{}{}{}zqx".format(*pieces[j : j + 3]) for j in range(1, len(pieces), 4)]
    pattern, seen = [], set()
    for j, piece in enumerate(fixed):
        pattern.append(f"(?P<f{j}>{re.escape(piece)})")
        if j < len(names):
            name = names[j].replace("zqx", "")
            pattern.append(f"(?P=s{name})" if name in seen else f"(?P<s{name}>.*?)")
            seen.add(name)
    match = re.fullmatch("".join(pattern), text, re.DOTALL)
    if match is None:
        return Truth(text, unaligned="the real rendering does not match the sentinel rendering's fixed text")
    # where each sentinel occurrence is in S
    occurrences: list[tuple[int, int, str]] = [(m.start(), m.end(), m.group(0)) for m in SENTINEL.finditer(s)]
    fixed_starts_s = []
    at = 0
    for j, piece in enumerate(fixed):
        fixed_starts_s.append(at)
        at += len(piece) + (len(names[j]) if j < len(names) else 0)

    def to_text(pos: int) -> int:
        """A position inside fixed text of S, in T."""
        for j in range(len(fixed) - 1, -1, -1):
            if fixed_starts_s[j] <= pos <= fixed_starts_s[j] + len(fixed[j]):
                return match.start(f"f{j}") + pos - fixed_starts_s[j]
        raise ValueError(f"position {pos} is inside a sentinel")

    result = Truth(text)
    for k in trained:
        fields = _fields(messages[k], k)
        present = {occ[2] for occ in occurrences}
        for name, sentinels in fields.items():
            if any(x not in present for x in sentinels):
                result.dropped.add(name)
        own = [occ for occ in occurrences if SENTINEL.fullmatch(occ[2]).group(1) == str(k)]
        if not own:
            result.unaligned = f"assistant turn {k} renders none of its fields"
            return result
        first, last = own[0], own[-1]
        before = [occ for occ in occurrences if occ[1] <= first[0] and occ not in own]
        segment_from = before[-1][1] if before else 0
        segment = s[segment_from : first[0]]
        generation = render(swapped[:k], True)
        closed = render(swapped[:k], False)
        prompt_tail = generation[len(os.path.commonprefix([generation, closed])) :]
        start = None
        for head in (prompt_tail, family.header):
            at = segment.rfind(head) if head else -1
            if at >= 0:
                start = segment_from + at + len(head)
                break
        if start is None and not prompt_tail:
            # The template's generation prompt adds nothing here (Mistral v0.3 after tool results): the turn
            # starts where the rendering of the conversation before it stops agreeing with the whole.
            shared = len(os.path.commonprefix([generation, s]))
            if segment_from <= shared <= first[0]:
                start = shared
        if start is None:
            result.unaligned = f"no assistant header before turn {k}"
            return result
        after = [occ for occ in occurrences if occ[0] >= last[1] and occ not in own]
        segment_to = after[0][0] if after else len(s)
        tail = s[last[1] : segment_to]
        hits = [(tail.find(t), t) for t in family.stops if tail.find(t) >= 0]
        if hits:
            at, stop = min(hits)
            end = last[1] + at + len(stop)
        elif not after:
            end = last[1] + len(tail.rstrip())
        else:
            result.unaligned = f"no end-of-turn token after turn {k}"
            return result
        result.regions.append((to_text(start), to_text(end)))
    return result
