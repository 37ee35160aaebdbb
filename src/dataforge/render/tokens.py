"""Rendered texts → token ids and a trained-token mask for a whole batch, with tiktoken where it is exact.

Two encoders give the same result: the tokenizer's own (`tokenizers`, with character offsets) and, for
byte-level BPE vocabularies, a tiktoken encoder (`fastbpe.py`, with byte offsets summed from token lengths).
The encoder is chosen once per tokenizer and process: tiktoken when it was built and reproduced the
tokenizer's ids on probe texts and on the first batch it sees, the tokenizer otherwise; which one and why is
`encoder_choice`. A token is trained by one rule in both (`labels.token_labels_flat`): it overlaps a
trained span and is not empty. A token that starts inside a multi-byte character counts from that
character's start, which is where the tokenizer's character offsets put it, so both masks agree.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from .fastbpe import FastBPE, build
from .labels import token_labels_batch, token_labels_flat

log = logging.getLogger(__name__)

Span = tuple[int, ...]  # (start, end) or (start, end, first non-whitespace character): `labels.token_labels`


@dataclass
class Tokenized:
    """A batch's token ids and trained mask, flat, with where each sequence starts in them (n + 1 entries)."""

    ids: np.ndarray  # int32
    mask: np.ndarray  # bool
    starts: np.ndarray  # int64
    straddled: np.ndarray | None = None  # bool, per token: trained though it starts before its span
    disagreed: int = 0
    # Per sequence, whether its ids decode back to exactly its text, where the encoder could say cheaply
    # (tiktoken: the tokens' bytes); None where the caller must decode.
    lossless: list[bool | None] | None = (
        None  # texts on which tiktoken was checked and found wrong (it is then not used again)
    )


@dataclass
class _Choice:
    fast: FastBPE | None
    why: str
    checked_on_data: bool = False


_CHOICES: dict[str, _Choice] = {}  # by tokenizer digest: built and checked once per process


def encoder_choice(tok: Any, key: str) -> tuple[str, str]:
    """("tiktoken" or "tokenizers", why) for the tokenizer whose digest is `key`, as this process decided."""
    choice = _choice(tok, key)
    return ("tiktoken" if choice.fast is not None else "tokenizers"), choice.why


def _choice(tok: Any, key: str) -> _Choice:
    key = f"{key}:{_pipeline(tok)}"
    if key not in _CHOICES:
        fast, why = build(tok)
        if fast is None:
            log.info("render: tokenizer %s… encodes with `tokenizers` (%s)", key[:12], why)
        _CHOICES[key] = _Choice(fast, why)
    return _CHOICES[key]


def _pipeline(tok: Any) -> int:
    """A fingerprint of the tokenizer's text pipeline (a few µs): the digest is taken at load, and a tokenizer
    whose normalizer or pre-tokenizer is replaced afterwards must not reuse an encoder checked before."""
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        return 0
    parts = (getattr(backend, name) for name in ("normalizer", "pre_tokenizer", "post_processor"))
    return hash((tuple(p.__getstate__() if p is not None else b"" for p in parts), backend.get_vocab_size(True)))


def tokenize(tok: Any, key: str, texts: Sequence[str], spans: Sequence[list[Span]], *, fast: bool = True) -> Tokenized:
    """Token ids of `texts` (no special tokens added) and which tokens lie in their trained character `spans`.

    `key` identifies the tokenizer (its digest); `fast=False` forces the tokenizer's own encoder.
    """
    if not texts:
        return Tokenized(np.zeros(0, np.int32), np.zeros(0, bool), np.zeros(1, np.int64), np.zeros(0, bool))
    choice = _choice(tok, key) if fast else None
    disagreed = 0
    if choice is not None and choice.fast is not None and not choice.checked_on_data:
        # The first batch of real texts is the verification sample, next to the probes `build` used.
        wrong = choice.fast.disagreements(tok, texts)
        choice.checked_on_data = True
        if wrong:
            disagreed = len(wrong)
            choice.fast = None
            choice.why = f"tiktoken's ids differed from the tokenizer's on {disagreed} rendered text(s)"
            log.warning("render: tokenizer %s…: %s; using `tokenizers`", key[:12], choice.why)
    out = None
    if choice is not None and choice.fast is not None:
        out = _with_tiktoken(choice.fast, tok, texts, spans)
        if out is None:  # tiktoken dropped or added bytes: text its regex does not cover (never seen so far)
            choice.fast = None
            choice.why = "tiktoken's tokens did not cover a rendered text byte for byte"
            log.warning("render: tokenizer %s…: %s; using `tokenizers`", key[:12], choice.why)
    if out is None:
        out = _with_tokenizer(tok, texts, spans)
    out.disagreed = disagreed
    return out


def _with_tokenizer(tok: Any, texts: Sequence[str], spans: Sequence[list[Span]]) -> Tokenized:
    # No attention mask: it would be built only to be thrown away (a tenth of the encode call's time).
    encoded = tok(list(texts), add_special_tokens=False, return_offsets_mapping=True, return_attention_mask=False)
    mask, starts, straddled = token_labels_batch(encoded["offset_mapping"], list(spans), [len(t) for t in texts])
    ids = np.fromiter(chain.from_iterable(encoded["input_ids"]), np.int32, int(starts[-1]))
    return Tokenized(ids, mask, starts, straddled)


def _with_tiktoken(fast: FastBPE, tok: Any, texts: Sequence[str], spans: Sequence[list[Span]]) -> Tokenized | None:
    """Ids from tiktoken, positions in UTF-8 bytes; texts it does not take go to the tokenizer (characters).

    None when tiktoken's tokens do not stand for exactly the bytes of a text.
    """
    n = len(texts)
    arrays: list[np.ndarray] = []
    by_tokenizer: list[int] = []
    for i, text in enumerate(texts):
        if fast.takes(text):
            arrays.append(fast.encode(text))
        else:
            arrays.append(np.zeros(0, np.uint32))
            by_tokenizer.append(i)
    offsets: dict[int, list[Span]] = {}
    if by_tokenizer:
        encoded = tok([texts[i] for i in by_tokenizer], add_special_tokens=False, return_offsets_mapping=True)
        for i, ids, offs in zip(by_tokenizer, encoded["input_ids"], encoded["offset_mapping"], strict=True):
            arrays[i] = np.asarray(ids, np.uint32)
            offsets[i] = offs
    lengths = np.fromiter(map(len, arrays), np.int64, n)
    ids = np.concatenate(arrays).astype(np.int32)
    # Byte offsets: a running sum of token lengths over the batch, less where each sequence begins.
    ends = np.cumsum(fast.token_bytes[ids])
    starts = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=starts[1:])
    running = np.concatenate(([0], ends))
    begin = running[starts[:-1]]
    token_end = ends - np.repeat(begin, lengths)
    token_start = token_end - fast.token_bytes[ids]
    written = running[starts[1:]] - begin  # bytes the tokens of each sequence stand for
    units: list[list[Span]] = []
    sizes: list[int] = []
    for i, text in enumerate(texts):
        if i in offsets:
            flat = np.asarray(offsets[i], np.int64).reshape(-1, 2)
            token_start[starts[i] : starts[i + 1]] = flat[:, 0]
            token_end[starts[i] : starts[i + 1]] = flat[:, 1]
            units.append(spans[i])
            sizes.append(len(text))
        elif text.isascii():
            units.append(spans[i])
            sizes.append(len(text))
        else:
            units.append([tuple(len(text[:x].encode()) for x in span) for span in spans[i]])
            sizes.append(len(text.encode()))
        if i not in offsets and written[i] != sizes[i]:
            return None
    mask, starts, straddled = token_labels_flat(token_start, token_end, lengths, units, sizes)
    lossless: list[bool | None] = [
        None if i in offsets else fast.encoding.decode_bytes(arrays[i].tolist()) == text.encode()
        for i, text in enumerate(texts)
    ]
    return Tokenized(ids, mask, starts, straddled, lossless=lossless)
