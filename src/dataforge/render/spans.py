"""Which characters of a rendered conversation are trained: the assistant turns, derived and checked.

Templates without `{% generation %}` markers do not say where assistant text is, so it is derived by
rendering prefixes: for assistant turn k, the conversation before k with the generation prompt must be a
prefix of the whole rendered conversation (else the row is rejected: `prefix_unstable`); the trained span
starts where that prompt ends and runs through the template's end-of-turn token (found once per template
by rendering a probe conversation). The message's content must lie inside the span. What templates do to
history — Qwen3 dropping earlier reasoning, Phi-3 appending an end-of-text token, an empty `<think></think>`
injected — is recorded per row as a note, so the report can say so.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np

Render = Callable[[list[dict[str, Any]], bool], str]  # (messages, add_generation_prompt) -> text

_PROBE = ("dfprobequestion", "dfprobeanswer", "dfprobefollowup")


class SpanError(Exception):
    """Spans cannot be established for a row; `reason` is the rejects-table code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Spans:
    """A rendered conversation and the character ranges to train."""

    text: str
    trained: list[tuple[int, int]]
    notes: set[str] = field(default_factory=set)  # template checks that fired for this row


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
    rest = text[at + len(answer) :]
    matches = [t for t in special_tokens if t and rest.startswith(t)]
    return max(matches, key=len) if matches else None


def assistant_turns(
    messages: list[dict[str, Any]], train_on: str, first: int = 0, untrained: frozenset[int] = frozenset()
) -> list[int]:
    """Indices of the assistant messages to train (from index `first` on, leaving out `untrained`, the turns
    whose loss weight is 0): all of them, or the last only."""
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant" and i >= first and i not in untrained]
    return turns[-1:] if train_on == "last" else turns


def derive(
    render: Render,
    messages: list[dict[str, Any]],
    train_on: str,
    eot: str | None,
    first: int = 0,
    *,
    history_stable: bool | None = None,
    untrained: frozenset[int] = frozenset(),
) -> Spans:
    """The rendered text and trained character spans for `messages`, or SpanError saying why not.

    Only assistant turns at index `first` or later are trained (a preference completion after its prompt).
    `history_stable` is the template's answer to "does a conversation cut after an assistant turn render as a
    prefix of the whole?", probed once per template (`history_stable`): a row with more than one trained turn
    gets the `prefix_unstable_history` note when it is False. None probes this row instead (one more render).
    """
    text = render(messages, False)
    turns = assistant_turns(messages, train_on, first, untrained)
    starts = []
    for k in turns:
        prompt = render(messages[:k], True)
        if not text.startswith(prompt):
            raise SpanError(
                "prefix_unstable",
                f"the prompt before assistant turn {k} is not a prefix of the rendered conversation "
                "(a template that rewrites history, e.g. Qwen3 dropping earlier reasoning, needs `train_on: last`)",
            )
        starts.append(len(prompt))
    notes: set[str] = set()
    spans = []
    for n, (k, start) in enumerate(zip(turns, starts, strict=True)):
        limit = starts[n + 1] if n + 1 < len(starts) else len(text)
        end = _turn_end(text, start, limit, eot)
        if end is None:
            # No end-of-turn token where the template should put one: the turn ends where the conversation cut
            # after it stops agreeing with the whole. (Not at `limit`, the start of the next trained turn's
            # content: that would train the user and tool turns in between.)
            end = _agreed_end(render(messages[: k + 1], False), text, limit)
            notes.add("turn_without_end_token")
        body = text[start:end]
        message = messages[k]
        content = (message.get("content") or "").strip()
        if content and content not in body:
            raise SpanError(
                "content_not_rendered", f"the content of assistant turn {k} is not where the template puts it"
            )
        reasoning = (message.get("reasoning_content") or "").strip()
        if reasoning and reasoning not in body:
            notes.add("reasoning_not_rendered")
        calls = message.get("tool_calls") or ()
        if any(c["function"]["name"] not in body for c in calls):
            notes.add("tool_calls_not_rendered")
        if not reasoning and "<think>" in body and "<think>" not in content:
            notes.add("empty_think_injected")
        if end <= start:
            raise SpanError("empty_assistant_span", f"assistant turn {k} renders to no text")
        spans.append((start, end))
    if len(turns) > 1:
        stable = _closed_prefix_stable(render, messages, text, turns) if history_stable is None else history_stable
        if not stable:
            notes.add("prefix_unstable_history")
    return Spans(text, spans, notes)


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


def _turn_end(text: str, start: int, limit: int, eot: str | None) -> int | None:
    """End of the first end-of-turn token after `start` and before `limit` (None when there is none)."""
    if eot is None:
        return None
    at = text.find(eot, start, limit)
    return None if at < 0 else at + len(eot)


def _agreed_end(closed: str, text: str, limit: int) -> int:
    """End of the text that `closed` (a conversation cut after one turn) shares with `text`, before `limit`,
    less trailing whitespace."""
    shared = os.path.commonprefix([closed, text[:limit]])
    return len(shared.rstrip())


def _closed_prefix_stable(render: Render, messages: list[dict[str, Any]], text: str, turns: list[int]) -> bool:
    """Whether each conversation cut after a trained assistant turn renders as a prefix of the whole.

    Not needed for the spans (they are found in the whole text) but a template property worth reporting:
    when it fails the template renders history differently from the latest turn (Qwen3, Phi-3).
    """
    for k in turns[:-1]:
        if not text.startswith(render(messages[: k + 1], False).rstrip()):
            return False
    return True


def token_labels(offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[bool]:
    """For each token (by character offsets), whether it starts inside a trained span.

    A token belongs to where it starts: special tokens that absorb the whitespace after them (Phi-3's
    `<|end|>` covers `<|end|>\n`) still count as the turn's end, while a token that began in the prompt is
    never trained.
    """
    trained = []
    j = 0
    for start, end in offsets:
        while j < len(spans) and spans[j][1] <= start:
            j += 1
        trained.append(j < len(spans) and spans[j][0] <= start and end > start)
    return trained


def token_labels_batch(
    offsets: list[list[tuple[int, int]]], spans: list[list[tuple[int, int]]], sizes: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """`token_labels` for a whole tokenized batch at once: (flat trained mask, where each sequence starts in it).

    `offsets` are each sequence's (start, end) per token and `sizes` the sequences' lengths, in characters.
    """
    lengths = np.fromiter(map(len, offsets), np.int64, len(offsets))
    total = int(lengths.sum())
    flat = np.fromiter(chain.from_iterable(chain.from_iterable(offsets)), np.int64, 2 * total)
    return token_labels_flat(flat[0::2], flat[1::2], lengths, spans, sizes)


def token_labels_flat(
    token_start: np.ndarray,
    token_end: np.ndarray,
    lengths: np.ndarray,
    spans: list[list[tuple[int, int]]],
    sizes: list[int],
) -> tuple[np.ndarray, np.ndarray]:
    """`token_labels` for a batch given as flat arrays: (flat trained mask, where each sequence starts in it).

    `token_start`/`token_end` hold every token's position within its own sequence, sequence after sequence,
    `lengths` the number of tokens of each; positions, `spans` and `sizes` (the sequences' lengths) share one
    unit per sequence, characters or UTF-8 bytes. The sequences are laid end to end on one axis, so a single
    `searchsorted` finds, for every token of the batch, the first span ending after the token's start, and a
    running maximum makes that index only move forward, as `token_labels`' loop does: a token is trained when
    that span is its own sequence's, starts at or before the token, and the token is not empty. The few
    sequences that do not fit this (spans not ending in increasing order, offsets past the text) go through
    `token_labels` itself, so the result is the same, token for token.
    """
    n = len(lengths)
    starts = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=starts[1:])
    total = int(starts[-1])
    size = np.fromiter(sizes, np.int64, n) + 1
    base = np.zeros(n + 1, np.int64)  # where each sequence begins on the shared axis
    np.cumsum(size, out=base[1:])
    row = np.repeat(np.arange(n), lengths)
    outside = np.zeros(n, dtype=bool)
    outside[row[(token_start >= size[row]) | (token_end >= size[row]) | (token_start < 0)]] = True
    span_start: list[int] = []
    span_end: list[int] = []
    before = np.zeros(n + 1, np.int64)  # spans of the sequences before each one
    odd: list[int] = []
    for r, row_spans in enumerate(spans):
        ends = [e for _, e in row_spans]
        limit = int(size[r])
        unordered = any(a > b for a, b in zip(ends, ends[1:], strict=False))
        if outside[r] or unordered or any(not 0 <= e < limit for e in ends):
            odd.append(r)
        else:
            at = int(base[r])
            for s, e in row_spans:
                span_start.append(at + s)
                span_end.append(at + e)
        before[r + 1] = len(span_start)
    mask = np.zeros(total, dtype=bool)
    if span_start:
        at = token_start + base[:-1][row]
        for r in odd:  # their tokens sit at their sequence's first position, before any later span ends
            at[starts[r] : starts[r + 1]] = base[r]
        j = np.maximum.accumulate(np.searchsorted(np.array(span_end, np.int64), at, side="right"))
        inside = j < before[1:][row]
        j = np.minimum(j, len(span_start) - 1)
        mask = inside & (np.array(span_start, np.int64)[j] <= at) & (token_end > token_start)
    for r in odd:
        lo, hi = starts[r], starts[r + 1]
        offsets = list(zip(token_start[lo:hi].tolist(), token_end[lo:hi].tolist(), strict=True))
        mask[lo:hi] = token_labels(offsets, spans[r])
    return mask, starts
