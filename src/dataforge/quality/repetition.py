"""Repetition signals (the Gopher rules, Rae et al. 2021, appendix A, table A1), vectorised over a string array.

Definitions (the plain-Python reference, `repetition_reference.py`, computes the same from the same words):

- `dup_line_share`: lines that repeat an earlier line of the same text / lines (non-blank, stripped);
- `dup_line_char_share`: characters of those repeated lines / characters of the text;
- `dup_para_share`, `dup_para_char_share`: the same for paragraphs (separated by blank lines);
- `top_{n}gram_share`, n = 2, 3, 4: of the word n-grams that occur at least twice, the most frequent one (ties:
  the one with the most characters); its count × its characters / all word characters, at most 1. Counting
  word characters (not spaces) follows RedPajama-V2's `rps_doc_frac_chars_top_{n}gram`; 0 when nothing repeats;
- `dup_{n}gram_share`, n = 5 … 10: characters of the words covered by any occurrence of an n-gram that occurs at
  least twice / all word characters; words covered by overlapping n-grams count once (Gopher's wording;
  RedPajama-V2's `rps_doc_frac_chars_dupe_{n}grams`);
- `lrs_share`: the longest repeated word sequence — the repeated n-gram (any n up to `LRS_MAX_WORDS`, occurrences
  may overlap) with the most characters — / all word characters. Capped at `LRS_MAX_WORDS` words so the cost
  stays bounded on degenerate text ("the the the …" reports the capped length).

How: words get dense ids per (row, word) — Arrow's dictionary encoding of the chunk's words, then a stable radix
sort of those ids (rows stay in order) to split them by row; the n-gram at position i is the pair (id of its
(n-1)-gram, id of word i+n-1), re-encoded densely by Arrow's hash table, so ids are exact (no hash collisions). An
n-gram can occur twice only where both its (n-1)-grams do, so each level looks only at the positions whose
(n-1)-gram repeated, and every array of a level is indexed by those positions, not by all words: on ordinary text
the candidates vanish after a few levels, and later levels cost what the degenerate rows cost.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .words import Pieces, split_lines, split_paragraphs, split_words

TOP_NGRAMS = (2, 3, 4)
DUP_NGRAMS = (5, 6, 7, 8, 9, 10)
LRS_MAX_WORDS = 64
CHUNK_ROWS = 8192
SIGNALS = (
    "dup_line_share",
    "dup_line_char_share",
    "dup_para_share",
    "dup_para_char_share",
    *(f"top_{n}gram_share" for n in TOP_NGRAMS),
    *(f"dup_{n}gram_share" for n in DUP_NGRAMS),
    "lrs_share",
)
COUNTS = ("words",)  # also returned: the number of words, for words per turn


def _np(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False)


def _dense(keys: np.ndarray) -> np.ndarray:
    """Dense ids 0, 1, … for equal keys, in order of first occurrence: Arrow's hash table (`dictionary_encode`), from
    1.4 times (50,000 keys) to 10 times (3,000) faster than a numpy sort at the level sizes here, measured."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    return _np(pc.dictionary_encode(pa.array(keys)).indices).astype(np.int64)


def _by_value_then_row(ids: np.ndarray, n_ids: int, rows: np.ndarray, n_rows: int) -> np.ndarray:
    """An order of the pieces by (value id, row, position): `rows` is non-decreasing, so a stable sort on the id
    alone keeps each value's pieces in row and text order. With fewer than 65,536 distinct values (a chunk of chat
    turns has a few thousand words) the ids fit in 16 bits, where numpy's stable sort is a radix sort: several
    times faster than sorting (id, row) keys."""
    if n_ids <= 1 << 16:
        return np.argsort(ids.astype(np.uint16), kind="stable")
    return np.argsort(ids * n_rows + rows, kind="stable")


def _groups(ids: np.ndarray, n_ids: int, rows: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Per piece: a dense id of its (row, value) group, and whether an earlier piece of its row has its value."""
    order = _by_value_then_row(ids, n_ids, rows, n_rows)
    ordered_ids, ordered_rows = ids[order], rows[order]
    same = np.zeros(len(ids), dtype=bool)
    same[1:] = (ordered_ids[1:] == ordered_ids[:-1]) & (ordered_rows[1:] == ordered_rows[:-1])
    group = np.empty(len(ids), dtype=np.int64)
    group[order] = np.cumsum(~same) - 1
    repeated = np.empty(len(ids), dtype=bool)
    repeated[order] = same
    return group, repeated


def _share(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros(len(numerator), dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _row_max(rows: np.ndarray, values: np.ndarray, n_rows: int) -> np.ndarray:
    """Per row, the max of `values` (0 where a row has none); `rows` must be non-decreasing."""
    out = np.zeros(n_rows, dtype=values.dtype if len(values) else np.int64)
    if len(values):
        first = np.flatnonzero(np.concatenate(([True], rows[1:] != rows[:-1])))
        out[rows[first]] = np.maximum.reduceat(values, first)
    return out


def _encode(values: pa.Array) -> tuple[np.ndarray, int]:
    """Dense ids of equal strings (Arrow's hash table over the chunk) and how many distinct ones there are."""
    encoded = pc.dictionary_encode(values)
    return _np(encoded.indices).astype(np.int64), len(encoded.dictionary)


def _repeats_earlier(pieces: Pieces, n_rows: int) -> np.ndarray:
    """Per piece: does the same piece occur earlier in its row."""
    if len(pieces.values) == 0:
        return np.zeros(0, dtype=bool)
    ids, n_ids = _encode(pieces.values)
    return _groups(ids, n_ids, pieces.rows, n_rows)[1]


def _duplicate_pieces(pieces: Pieces, text_chars: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    repeated = _repeats_earlier(pieces, n_rows)
    total = np.bincount(pieces.rows, minlength=n_rows)
    dup = np.bincount(pieces.rows[repeated], minlength=n_rows)
    dup_chars = np.bincount(pieces.rows[repeated], weights=pieces.lengths[repeated], minlength=n_rows)
    return _share(dup, total), _share(dup_chars, text_chars)


def _ngram_signals(words: Pieces, n_rows: int) -> dict[str, np.ndarray]:
    n_words = len(words.values)
    lens = words.lengths
    rows = words.rows
    total = np.bincount(rows, weights=lens, minlength=n_rows)
    out: dict[str, np.ndarray] = {f"top_{n}gram_share": np.zeros(n_rows) for n in TOP_NGRAMS}
    out.update({f"dup_{n}gram_share": np.zeros(n_rows) for n in DUP_NGRAMS})
    lrs_chars = np.zeros(n_rows, dtype=np.int64)
    out["words"] = np.bincount(rows, minlength=n_rows).astype(np.int64)
    if n_words == 0:
        out["lrs_share"] = np.zeros(n_rows)
        return out
    cum = np.concatenate(([0], np.cumsum(lens)))
    remaining = words.starts[rows + 1] - np.arange(n_words)  # words from i to the end of its row, i included
    word_ids, n_ids = _encode(words.values)
    uid = _groups(word_ids, n_ids, rows, n_rows)[0]  # one id per (row, word): counting stays within a row
    vocab = int(uid.max()) + 1
    # Every array below is indexed by the candidate positions `pos` (sorted), never by all words: past the first
    # levels only the degenerate rows have candidates left, and a level then costs what they cost.
    alive = np.zeros(n_words + 1, dtype=bool)  # scratch: the previous level's repeated positions, reset after use
    pos = np.arange(n_words)
    gid = uid
    for n in range(1, LRS_MAX_WORDS + 1):
        if n > 1:
            alive[pos] = True
            keep = alive[pos + 1] & (remaining[pos] >= n)
            alive[pos] = False
            pos = pos[keep]
            if len(pos) == 0:
                break
            gid = _dense(gid[keep] * vocab + uid[pos + n - 1])  # (id of the (n-1)-gram at i, word i+n-1)
        counts = np.bincount(gid)[gid]
        repeated = counts >= 2
        pos, counts, gid = pos[repeated], counts[repeated], gid[repeated]
        if len(pos) == 0:
            break
        chars = cum[pos + n] - cum[pos]
        rows_at = rows[pos]
        lrs_chars = np.maximum(lrs_chars, _row_max(rows_at, chars, n_rows))
        if n in TOP_NGRAMS:
            best = _row_max(rows_at, (counts << 32) | chars, n_rows)
            out[f"top_{n}gram_share"] = np.minimum(_share((best >> 32) * (best & 0xFFFFFFFF), total), 1.0)
        if n in DUP_NGRAMS:
            # The union of the windows [p, p+n): sorted and of one length, window p adds the words up to the next
            # window's start. A window never crosses its row's end (remaining >= n), so neither does the union.
            ends = np.minimum(pos + n, np.append(pos[1:], n_words))
            out[f"dup_{n}gram_share"] = _share(
                np.bincount(rows_at, weights=cum[ends] - cum[pos], minlength=n_rows), total
            )
    out["lrs_share"] = _share(lrs_chars, total)
    return out


def repetition_signals(texts: pa.Array | pa.ChunkedArray) -> dict[str, np.ndarray]:
    """Every repetition signal (`SIGNALS`, float64) and the word count (`COUNTS`) per text (null counts as empty).

    Works through `CHUNK_ROWS` rows at a time, which bounds the memory of the n-gram levels. 8,192 rather than the
    2,048 it was: past the first levels a level costs a fixed ~20 numpy calls per chunk (the degenerate rows keep
    candidates up to `LRS_MAX_WORDS`), so fewer, larger chunks are faster (measured on the benchmark's rows,
    best of 3: 2,048 → 35 µs a row, 8,192 → 30 µs; 16,384 no better).
    """
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    parts = [_chunk_signals(texts.slice(s, CHUNK_ROWS)) for s in range(0, len(texts), CHUNK_ROWS)]
    if not parts:
        return {name: np.zeros(0) for name in SIGNALS + COUNTS}
    return {name: np.concatenate([p[name] for p in parts]) for name in SIGNALS + COUNTS}


def _chunk_signals(texts: pa.Array) -> dict[str, np.ndarray]:
    n_rows = len(texts)
    text_chars = _np(pc.fill_null(pc.utf8_length(texts), 0)).astype(np.int64)
    out: dict[str, np.ndarray] = {}
    out["dup_line_share"], out["dup_line_char_share"] = _duplicate_pieces(split_lines(texts), text_chars, n_rows)
    out["dup_para_share"], out["dup_para_char_share"] = _duplicate_pieces(split_paragraphs(texts), text_chars, n_rows)
    out.update(_ngram_signals(split_words(texts), n_rows))
    return {name: out[name] for name in SIGNALS + COUNTS}
