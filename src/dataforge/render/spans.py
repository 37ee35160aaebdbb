"""Which characters of a rendered conversation are trained: the assistant turns, located and checked.

Templates without `{% generation %}` markers do not say where assistant text is, so it is located by a second
render: the conversation with every message's content, reasoning and tool-call names replaced by unique
sentinel strings. Walking the two renders side by side maps each sentinel back to the characters the real
value occupies in the real rendering (`locate`), so each message's rendered region is known, whatever the
values contain (an end-of-turn string inside tool-call arguments cannot end a turn early).

For a trained assistant turn k:
- its span starts after the template's prompt tail (the end of a user turn plus the generation prompt, probed
  once per template: `prompt_tail`), found between the end of the messages before k and k's first rendered
  element; a generation prompt that history turns render only in part (DeepSeek-R1's `<think>\n`, Qwen3's
  empty think block with thinking off) matches as far as it goes. When no tail is there (a turn after
  Mistral's `[TOOL_RESULTS]`), the rendering of the conversation before k with the generation prompt must be a
  prefix of the whole; else the row is rejected `prefix_unstable`.
- it ends with the first end-of-turn token after k's own rendered elements (content, reasoning, tool calls)
  and before the next message's first element; a template that puts none there (GLM-4's last turn) ends the
  span with the turn's last element (`turn_without_end_token`).
- content the template does not render rejects the row (`content_not_rendered`); tool calls or reasoning it
  does not render reject it too (`tool_calls_not_rendered`, `reasoning_not_rendered`) unless the target's
  `unrendered:` policy keeps such turns, which are then trained as rendered and counted as a note.
What else templates do — Qwen3 rendering history unlike the latest turn, an empty `<think></think>`
injected — is recorded per row as a note, so the report can say so.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .locate import SENTINEL_PREFIXES, arguments_end, locate, substituted

Render = Callable[[list[dict[str, Any]], bool], str]  # (messages, add_generation_prompt) -> text

_PROBE = ("dfprobequestion", "dfprobeanswer", "dfprobefollowup")
KEEP_ALL = {"tool_calls": "keep", "reasoning": "keep"}
REJECT_ALL = {"tool_calls": "reject", "reasoning": "reject"}


class SpanError(Exception):
    """Spans cannot be established for a row; `reason` is the rejects-table code."""

    def __init__(self, reason: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.field = field  # the canonical path of the value at fault, when one is


@dataclass
class Spans:
    """A rendered conversation and the character ranges to train."""

    text: str
    trained: list[tuple[int, int]]
    notes: set[str] = field(default_factory=set)  # template checks that fired for this row
    turns: list[int] = field(default_factory=list)  # the message index of each span in `trained`


@dataclass(frozen=True)
class Tail:
    """What a template renders between the end of a user message's content and an assistant reply: the user
    turn's close then the generation prompt. A history turn must show at least `least` characters of it."""

    text: str
    least: int
    cuts: tuple[int, ...] = ()  # where a partial match may end: after a special token or a newline (else anywhere)


def end_of_turn(render: Render, special_tokens: list[str]) -> str | None:
    """The token a template puts right after an assistant turn's content (`<|im_end|>`, `<|eot_id|>`,
    `<end_of_turn>`, `</s>` …), or None when it puts none there."""
    question, answer, followup = _PROBE
    text = render(
        [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
            {"role": "user", "content": followup},
        ],
        False,
    )
    at = text.find(answer)
    if at < 0:
        return None
    rest = text[at + len(answer) :].lstrip(" ")  # Mistral v0.3's jinja file writes `6. </s>`
    matches = [t for t in special_tokens if t and rest.startswith(t)]
    return max(matches, key=len) if matches else None


def prompt_tail(render: Render, special_tokens: list[str] = ()) -> Tail | None:
    """The template's prompt tail (see `Tail`), probed on a one-message conversation; None when the template
    refuses it or does not render the message."""
    question = _PROBE[0]
    try:
        closed = render([{"role": "user", "content": question}], False)
        opened = render([{"role": "user", "content": question}], True)
    except SpanError:
        return None
    at = opened.rfind(question)
    if at < 0:
        return None
    tail = opened[at + len(question) :]
    generation = opened[len(closed) :] if opened.startswith(closed) else ""
    close = len(tail) - len(generation)
    if not generation:
        return Tail(tail, len(tail), (len(tail),))
    # A history turn may show the generation prompt only in part, cut where a token must end: after a special
    # token or a newline (never inside `<tool_call>`), and at least its first piece.
    cuts = []
    at = 0
    while at < len(generation):
        lead = [t for t in special_tokens if t and generation.startswith(t, at)]
        if lead:
            at += len(max(lead, key=len))
        else:
            newline = generation.find("\n", at)
            at = len(generation) if newline < 0 else newline + 1
            while at < len(generation) and generation[at] == "\n":
                at += 1
        cuts.append(at)
    # Not inside a block the prompt opens and closes (`<think>\n\n</think>`): a turn that renders the block
    # with its own reasoning must start before its opening tag, which is its own text then.
    blocks = [
        (m.end(), close_at)
        for m in re.finditer(r"<([A-Za-z_]+)>", generation)
        if (close_at := generation.find(f"</{m.group(1)}>", m.end())) >= 0
    ]
    cuts = [c for c in cuts if not any(a <= c <= b for a, b in blocks)]
    cuts = [close + c for c in cuts]
    return Tail(tail, cuts[0], tuple(cuts))


def assistant_turns(
    messages: list[dict[str, Any]],
    train_on: str,
    first: int = 0,
    untrained: frozenset[int] = frozenset(),
    first_n: int | None = None,
) -> list[int]:
    """Indices of the assistant messages to train, counting assistant turns from index `first` on (a preference
    row's completion starts there):

    - `all` and `weighted`: every one of them but the `untrained` ones (loss weight 0);
    - `last`: the last one, unless it is untrained (then none: `last` never moves to an earlier turn);
    - `first_n`: the first `first_n` of them, less the untrained ones. A turn of weight 0 still counts as one
      of the N (it is the N-th reply of the conversation whether it trains or not), so the trained set never
      reaches past the N-th turn.
    """
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant" and i >= first]
    if train_on == "last":
        turns = turns[-1:]
    elif train_on == "first_n":
        if first_n is None or first_n < 1:
            raise ValueError("train_on: first_n needs first_n >= 1")
        turns = turns[:first_n]
    elif train_on not in ("all", "weighted"):
        raise ValueError(f"unknown train_on {train_on!r}")
    return [i for i in turns if i not in untrained]


# ── locating each message's rendered elements ────────────────────────────────────────────────────────────


def derive(
    render: Render,
    messages: list[dict[str, Any]],
    train_on: str,
    eot: str | None,
    first: int = 0,
    *,
    history_stable: bool | None = None,
    untrained: frozenset[int] = frozenset(),
    tail: Tail | None = None,
    unrendered: dict[str, str] | None = None,
    first_n: int | None = None,
) -> Spans:
    """The rendered text and trained character spans for `messages`, or SpanError saying why not.

    Only assistant turns at index `first` or later are trained (a preference completion after its prompt).
    `tail` is the template's prompt tail (`prompt_tail`; None probes it here: two more renders). `unrendered`
    says what to do with a trained turn whose tool calls or reasoning the template does not render: "reject"
    (the default) or "keep" (train what is rendered, with a note). `history_stable` is the template's answer to
    "does a conversation cut after an assistant turn render as a prefix of the whole?", probed once per
    template (`history_stable`): a row with more than one trained turn gets the `prefix_unstable_history` note
    when it is False. None probes this row instead (more renders). `train_on` and `first_n` choose the turns
    (`assistant_turns`); `Spans.turns` says which message each trained span is.
    """
    policy = {**REJECT_ALL, **(unrendered or {})}
    text = render(messages, False)
    turns = assistant_turns(messages, train_on, first, untrained, first_n)
    if not turns:
        some = any(m["role"] == "assistant" and i >= first for i, m in enumerate(messages))
        if some and train_on == "last":
            raise SpanError("no_trained_tokens", "train_on: last and the last assistant turn has loss weight 0")
        if some and train_on == "first_n":
            raise SpanError(
                "no_trained_tokens", f"train_on: first_n and the first {first_n} assistant turn(s) have loss weight 0"
            )
        return Spans(text, [], set())
    if tail is None:
        tail = prompt_tail(render)
    lowered = text.lower()
    prefix = next((p for p in SENTINEL_PREFIXES if p not in lowered), None)
    if prefix is None:
        raise SpanError("template_error", "the conversation contains every sentinel string dataforge could use")
    swapped, values = substituted(messages, prefix)
    located = locate(text, render(swapped, False), prefix, values)
    if located is None:
        raise SpanError(
            "content_dependent_template",
            "the template renders the conversation differently when message contents change, so the assistant "
            "turns cannot be located",
        )
    where, changed = located
    # Each message's rendered elements: (start, end) in `text`, by element ("content", "reasoning", "call0" …).
    elements: dict[int, dict[str, tuple[int, int]]] = {}
    regions_of: dict[int, list[tuple[int, int]]] = {}  # every place each message is written (some twice)
    for index, regions in where.items():
        msg, element, raw = values[index]
        if index in changed and messages[msg]["role"] == "assistant" and msg >= first:
            what = "tool call" if element.startswith("call") else element
            reason = {"content": "content_not_rendered", "reasoning": "reasoning_not_rendered"}
            raise SpanError(
                reason.get(element, "tool_calls_not_rendered"),
                f"the template renders the {what} of assistant turn {msg} changed, not as written",
            )
        lo, hi = min(a for a, _ in regions), max(b for _, b in regions)
        if element.startswith("call"):
            end = arguments_end(text, hi, raw[1])
            hi = end if end is not None else hi
        elements.setdefault(msg, {})[element] = (lo, hi)
        regions_of.setdefault(msg, []).extend([*regions[:-1], (regions[-1][0], max(hi, regions[-1][1]))])
    expected: dict[int, set[str]] = {}
    for msg, element, _ in values:
        expected.setdefault(msg, set()).add(element)
    notes: set[str] = set()
    spans = []
    owners = []
    for k in turns:
        start, end = _turn_span(
            render, messages, text, k, elements, regions_of, expected.get(k, set()), eot, tail, policy, notes
        )
        if start is not None:
            spans.append((start, end))
            owners.append(k)
    if len(spans) > 1:
        stable = _closed_prefix_stable(render, messages, text, turns) if history_stable is None else history_stable
        if not stable:
            notes.add("prefix_unstable_history")
    return Spans(text, spans, notes, owners)


def _turn_span(
    render, messages, text, k, elements, regions_of, expected, eot, tail, policy, notes
) -> tuple[int | None, int]:
    message = messages[k]
    own = elements.get(k, {})
    content = message.get("content") or ""
    if "content" in expected and "content" not in own and content.strip():
        raise SpanError("content_not_rendered", f"the content of assistant turn {k} is not rendered by the template")
    if any(e.startswith("call") and e not in own for e in expected):
        if policy["tool_calls"] != "keep":
            raise SpanError(
                "tool_calls_not_rendered",
                f"the template does not render the tool calls of assistant turn {k}: the trained reply would not "
                "be the one in the data (set the target's `unrendered: {tool_calls: keep}` to train it anyway)",
            )
        notes.add("tool_calls_not_rendered")
    if "reasoning" in expected and "reasoning" not in own:
        if policy["reasoning"] != "keep":
            raise SpanError(
                "reasoning_not_rendered",
                f"the template does not render the reasoning of assistant turn {k} (set the target's "
                "`reasoning: strip` to train the answers without it, or `unrendered: {reasoning: keep}`)",
            )
        notes.add("reasoning_not_rendered")
    others = [r for i, found in regions_of.items() if i != k for r in found]
    if own:
        head = min(a for a, _ in own.values())
        last = max(b for _, b in own.values())
        # Templates may move a message (Mistral v0.3 writes the system prompt into the last user turn): what
        # bounds the turn is what is rendered next to it, and nothing of another message may lie inside it.
        low = max((b for a, b in others if a < head), default=0)
        limit = min((a for a, _ in others if a >= last), default=len(text))
        if any(a < last and b > head for a, b in others):
            raise SpanError("prefix_unstable", f"the template renders another message inside assistant turn {k}")
    else:
        head = last = None
        before = [b for i in range(k) for _, b in regions_of.get(i, ())]
        low = max(before, default=0)
        limit = min((a for a, _ in others if a >= low), default=len(text))
    # A turn with nothing of its own rendered (tool calls dropped, no content) starts at the first prompt tail
    # after the messages before it; the last one before `limit` may be a later turn's.
    start = _turn_start(render, messages, text, k, tail, low, limit if head is None else head, head is not None)
    if start is None:
        if head is None:  # nothing of the turn is rendered (GLM-4 drops a turn without content)
            return None, 0
        raise SpanError(
            "prefix_unstable",
            f"the start of assistant turn {k} cannot be found: neither the template's generation prompt nor the "
            "rendering of the conversation before it is there",
        )
    last = start if last is None else last
    at = text.find(eot, last, limit) if eot is not None else -1
    if at >= 0:
        end = at + len(eot)
    else:
        end = last
        notes.add("turn_without_end_token")
    if end <= start:
        raise SpanError("empty_assistant_span", f"assistant turn {k} renders to no text")
    if "reasoning" not in expected and "<think>" in text[start:end] and "<think>" not in content:
        notes.add("empty_think_injected")
    return start, end


def _turn_start(render, messages, text, k, tail: Tail | None, low: int, high: int, last: bool = True) -> int | None:
    """Where assistant turn k's trained span starts: after the prompt tail between `low` (the end of the messages
    before it) and `high` (its first rendered element; the last tail there, or the first when `last` is False),
    else after the rendered prompt if that is a prefix of the whole."""
    if tail is not None and tail.text:
        cuts = tail.cuts or range(len(tail.text), max(tail.least, 1) - 1, -1)
        for n in sorted((c for c in cuts if c >= max(tail.least, 1)), reverse=True):
            at = text.rfind(tail.text[:n], low, high) if last else text.find(tail.text[:n], low, high)
            if at >= 0:
                return at + n
    prompt = render(messages[:k], True)
    if text.startswith(prompt) and low <= len(prompt) <= high:
        return len(prompt)
    return None


def history_stable(render: Render) -> bool | None:
    """Whether the template renders a two-turn probe conversation, cut after its first assistant turn, as a
    prefix of the whole: a property of the template (Qwen3 and Phi-3 render history unlike the latest turn).
    None when the template refuses the probe."""
    question, answer, followup = _PROBE
    messages = [
        {"role": "user", "content": question},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": followup},
        {"role": "assistant", "content": answer + "2"},
    ]
    try:
        return _closed_prefix_stable(render, messages, render(messages, False), [1, 3])
    except SpanError:
        return None


def _closed_prefix_stable(render: Render, messages: list[dict[str, Any]], text: str, turns: list[int]) -> bool:
    """Whether each conversation cut after a trained assistant turn renders as a prefix of the whole.

    Not needed for the spans (they are found in the whole text) but a template property worth reporting:
    when it fails the template renders history differently from the latest turn (Qwen3, Phi-3).
    """
    for k in turns[:-1]:
        if not text.startswith(render(messages[: k + 1], False).rstrip()):
            return False
    return True
