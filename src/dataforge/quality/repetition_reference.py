"""The repetition rules in plain Python, one text at a time: the definitions `repetition.py` vectorises.

Slow and obvious on purpose; the property tests compare the two on generated texts.
"""

from __future__ import annotations

from collections import Counter

from .repetition import COUNTS, DUP_NGRAMS, LRS_MAX_WORDS, SIGNALS, TOP_NGRAMS
from .words import lines_of, paragraphs_of, words_of


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else 0.0


def duplicate_pieces(pieces: list[str], text_chars: int) -> tuple[float, float]:
    """(share of pieces that repeat an earlier one, their characters / `text_chars`)."""
    seen: set[str] = set()
    dup = dup_chars = 0
    for piece in pieces:
        if piece in seen:
            dup += 1
            dup_chars += len(piece)
        seen.add(piece)
    return _ratio(dup, len(pieces)), _ratio(dup_chars, text_chars)


def ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def top_ngram_share(words: list[str], n: int) -> float:
    total = sum(map(len, words))
    counts = Counter(ngrams(words, n))
    repeated = [(c, sum(map(len, g))) for g, c in counts.items() if c >= 2]
    if not repeated:
        return 0.0
    count, chars = max(repeated)
    return min(_ratio(count * chars, total), 1.0)


def dup_ngram_share(words: list[str], n: int) -> float:
    total = sum(map(len, words))
    grams = ngrams(words, n)
    counts = Counter(grams)
    covered = [False] * len(words)
    for i, gram in enumerate(grams):
        if counts[gram] >= 2:
            covered[i : i + n] = [True] * n
    return _ratio(sum(len(w) for w, c in zip(words, covered, strict=True) if c), total)


def lrs_share(words: list[str]) -> float:
    total = sum(map(len, words))
    best = 0
    for n in range(1, min(len(words), LRS_MAX_WORDS) + 1):
        counts = Counter(ngrams(words, n))
        best = max([best, *(sum(map(len, g)) for g, c in counts.items() if c >= 2)])
    return _ratio(best, total)


def repetition_signals(text: str) -> dict[str, float]:
    """Every signal of `repetition.SIGNALS` and the word count for one text."""
    out: dict[str, float] = {}
    out["dup_line_share"], out["dup_line_char_share"] = duplicate_pieces(lines_of(text), len(text))
    out["dup_para_share"], out["dup_para_char_share"] = duplicate_pieces(paragraphs_of(text), len(text))
    words = words_of(text)
    for n in TOP_NGRAMS:
        out[f"top_{n}gram_share"] = top_ngram_share(words, n)
    for n in DUP_NGRAMS:
        out[f"dup_{n}gram_share"] = dup_ngram_share(words, n)
    out["lrs_share"] = lrs_share(words)
    out["words"] = len(words)
    return {name: out[name] for name in SIGNALS + COUNTS}
