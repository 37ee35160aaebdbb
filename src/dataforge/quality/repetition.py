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

How: words get dense ids per (row, word); the n-gram at position i is the pair (id of its (n-1)-gram, id of word
i+n-1), re-encoded densely by a sort, so ids are exact (no hash collisions). An
n-gram can occur twice only where both its (n-1)-grams do, so each level looks only at the positions whose
(n-1)-gram repeated: on ordinary text the candidates vanish after a few levels.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .words import Pieces, split_lines, split_paragraphs, split_words

TOP_NGRAMS = (2, 3, 4)
DUP_NGRAMS = (5, 6, 7, 8, 9, 10)
LRS_MAX_WORDS = 64
CHUNK_ROWS = 2048
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
    """Dense ids 0, 1, … for equal keys (in key order). A sort: with one distinct key per element or so, Arrow's
    hash table (`dictionary_encode`) is several times slower than numpy's sort."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(keys)  # equal keys get one id whatever their order: no need for a stable sort
    ordered = keys[order]
    ids = np.empty(len(keys), dtype=np.int64)
    ids[order] = np.cumsum(np.concatenate(([0], ordered[1:] != ordered[:-1])))
    return ids


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


def _repeats_earlier(pieces: Pieces, n_rows: int) -> np.ndarray:
    """Per piece: does the same piece occur earlier in its row."""
    if len(pieces.values) == 0:
        return np.zeros(0, dtype=bool)
    ids = _np(pc.dictionary_encode(pieces.values).indices).astype(np.int64)
    keys = ids * n_rows + pieces.rows
    # A stable sort keeps equal pieces in text order: all but the first of each run repeat an earlier one.
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    repeated = np.empty(len(keys), dtype=bool)
    repeated[order] = np.concatenate(([False], ordered[1:] == ordered[:-1]))
    return repeated


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
    word_ids = _np(pc.dictionary_encode(words.values).indices).astype(np.int64)
    uid = _dense(word_ids * n_rows + rows)  # one id per (row, word): counting stays within a row
    vocab = int(uid.max()) + 1
    gid_full = uid.copy()
    pos = np.arange(n_words)
    gid = uid
    for n in range(1, LRS_MAX_WORDS + 1):
        if n > 1:
            prev_dup = np.zeros(n_words + 1, dtype=bool)
            prev_dup[pos] = True
            pos = pos[prev_dup[pos + 1] & (remaining[pos] >= n)]
            if len(pos) == 0:
                break
            gid = _dense(gid_full[pos] * vocab + uid[pos + n - 1])
            gid_full[pos] = gid
        counts = np.bincount(gid)[gid]
        repeated = counts >= 2
        pos, counts = pos[repeated], counts[repeated]
        gid = gid[repeated]
        if len(pos) == 0:
            break
        chars = cum[pos + n] - cum[pos]
        rows_at = rows[pos]
        lrs_chars = np.maximum(lrs_chars, _row_max(rows_at, chars, n_rows))
        if n in TOP_NGRAMS:
            best = _row_max(rows_at, (counts << 32) | chars, n_rows)
            out[f"top_{n}gram_share"] = np.minimum(_share((best >> 32) * (best & 0xFFFFFFFF), total), 1.0)
        if n in DUP_NGRAMS:
            edges = np.zeros(n_words + 1, dtype=np.int64)
            edges[pos] += 1  # positions are distinct, so plain fancy-index updates are exact
            np.subtract.at(edges, pos + n, 1)
            covered = np.cumsum(edges[:-1]) > 0
            out[f"dup_{n}gram_share"] = _share(
                np.bincount(rows[covered], weights=lens[covered], minlength=n_rows), total
            )
    out["lrs_share"] = _share(lrs_chars, total)
    return out


def repetition_signals(texts: pa.Array | pa.ChunkedArray) -> dict[str, np.ndarray]:
    """Every repetition signal (`SIGNALS`, float64) and the word count (`COUNTS`) per text (null counts as empty).

    Works through `CHUNK_ROWS` rows at a time: the hash tables of a few thousand rows stay in the CPU cache,
    which is several times faster than one table over a whole shard.
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
