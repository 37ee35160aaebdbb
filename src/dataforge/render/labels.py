"""Which tokens are trained, from the trained character spans of each rendered row.

One rule for every encoder (`tokens.py` uses it for the tokenizer's offsets and for tiktoken's byte offsets): a
token is trained when it overlaps a span; a token that starts in the prompt and runs into the answer is a
boundary token, trained and counted (see `token_labels`).
"""

from __future__ import annotations

from itertools import chain

import numpy as np


def token_labels(offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[bool]:
    """For each token (by character offsets), whether it overlaps a trained span (and is not empty).

    A token that starts inside a span is trained even when it runs past it (Phi-3's `<|end|>` covers
    `<|end|>\n`). A token that starts before a span and runs into it is trained too: it is the token the model
    must emit to produce the span's first characters (Mistral's `[/INST]` merging with an answer's opening
    `(` into `](`), so leaving it out would lose them; it then also carries prompt text (`]`), which is
    counted per row as `boundary_token_trained`.
    """
    trained = []
    j = 0
    for start, end in offsets:
        while j < len(spans) and spans[j][1] <= start:
            j += 1
        trained.append(j < len(spans) and end > start and (spans[j][0] <= start or _solid(spans[j]) < end))
    return trained


def _solid(span: tuple[int, ...]) -> int:
    """Where a boundary token must reach to be trained: a span's optional third field (its first character
    that is not whitespace, so a header token that swallows the whitespace opening an answer — Phi-3's
    `<|assistant|>` — stays untrained), else its start."""
    return span[2] if len(span) > 2 else span[0]


def token_straddles(offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[bool]:
    """For each token, whether it is trained (`token_labels`) but starts before its span: a boundary token."""
    out = []
    j = 0
    for start, end in offsets:
        while j < len(spans) and spans[j][1] <= start:
            j += 1
        out.append(j < len(spans) and start < spans[j][0] < end and _solid(spans[j]) < end)
    return out


def token_labels_batch(
    offsets: list[list[tuple[int, int]]], spans: list[list[tuple[int, int]]], sizes: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`token_labels` for a whole tokenized batch at once: (flat trained mask, where each sequence starts in it,
    flat boundary-token mask).

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
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`token_labels` for a batch given as flat arrays: (flat trained mask, where each sequence starts in it,
    flat mask of the trained tokens that start before their span: `token_straddles`).

    `token_start`/`token_end` hold every token's position within its own sequence, sequence after sequence,
    `lengths` the number of tokens of each; positions, `spans` and `sizes` (the sequences' lengths) share one
    unit per sequence, characters or UTF-8 bytes. The sequences are laid end to end on one axis, so a single
    `searchsorted` finds, for every token of the batch, the first span ending after the token's start, and a
    running maximum makes that index only move forward, as `token_labels`' loop does: a token is trained when
    that span is its own sequence's, starts before the token ends, and the token is not empty. The few
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
    span_solid: list[int] = []
    before = np.zeros(n + 1, np.int64)  # spans of the sequences before each one
    odd: list[int] = []
    for r, row_spans in enumerate(spans):
        ends = [span[1] for span in row_spans]
        limit = int(size[r])
        unordered = any(a > b for a, b in zip(ends, ends[1:], strict=False))
        if outside[r] or unordered or any(not 0 <= e < limit for e in ends):
            odd.append(r)
        else:
            at = int(base[r])
            for span in row_spans:
                span_start.append(at + span[0])
                span_end.append(at + span[1])
                span_solid.append(at + _solid(span))
        before[r + 1] = len(span_start)
    mask = np.zeros(total, dtype=bool)
    straddled = np.zeros(total, dtype=bool)
    if span_start:
        at = token_start + base[:-1][row]
        for r in odd:  # their tokens sit at their sequence's first position, before any later span ends
            at[starts[r] : starts[r + 1]] = base[r]
        at_end = at + (token_end - token_start)
        j = np.maximum.accumulate(np.searchsorted(np.array(span_end, np.int64), at, side="right"))
        inside = j < before[1:][row]
        j = np.minimum(j, len(span_start) - 1)
        first = np.array(span_start, np.int64)[j]
        solid = np.array(span_solid, np.int64)[j]
        mask = inside & ((first <= at) | (solid < at_end)) & (token_end > token_start)
        straddled = mask & (first > at)
    for r in odd:
        lo, hi = starts[r], starts[r + 1]
        offsets = list(zip(token_start[lo:hi].tolist(), token_end[lo:hi].tolist(), strict=True))
        mask[lo:hi] = token_labels(offsets, spans[r])
        straddled[lo:hi] = token_straddles(offsets, spans[r])
    return mask, starts, straddled
