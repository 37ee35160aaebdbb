"""MinHash signatures for a column of texts, computed with array operations only.

Why not datasketch's `MinHash.update()`/`bulk()`: they apply `num_perm` affine permutations to every shingle,
`num_perm` multiply-adds per shingle in Python-sized batches. Here every shingle is hashed once and the
signature is a *one-permutation* MinHash (Li, Owen & Zhang 2012): the 64-bit shingle hash picks one of
`num_perm` bins with its high bits and competes for that bin's minimum with its low 32 bits. Empty bins are
filled by optimal densification (Shrivastava 2017, see `densify`), so two documents agree on a borrowed bin
with the same probability as on a real one. The fraction of equal bins estimates the Jaccard similarity of
the shingle sets, like a classic MinHash signature, and the signature is a plain `uint64[num_perm]` row that
datasketch's LSH indexes as `LeanMinHash(hashvalues=...)`.

Shingles: words (runs of bytes other than ASCII whitespace, hashed from their UTF-8 bytes) or characters
(Unicode code points), `ngram` consecutive units per shingle; a text shorter than `ngram` units is one
shingle of all its units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Unit = Literal["word", "char"]
U64 = np.uint64
MASK32 = U64(0xFFFFFFFF)
EMPTY = np.iinfo(np.uint64).max
_MUL = U64(0x100000001B3)  # FNV prime: byte-polynomial multiplier
_COMBINE = U64(0x9E3779B97F4A7C15)  # golden-ratio multiplier: n-gram combination


def distinct(values: np.ndarray) -> np.ndarray:
    """The sorted distinct values: a sort and a comparison (numpy 2's `np.unique` hashes instead, which is
    several times slower on large integer arrays)."""
    values = np.sort(values, axis=None)
    if len(values) == 0:
        return values
    return values[np.concatenate(([True], values[1:] != values[:-1]))]


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads every input bit over the whole 64-bit output (wrapping arithmetic)."""
    x = x ^ (x >> U64(30))
    np.multiply(x, U64(0xBF58476D1CE4E5B9), out=x)
    np.bitwise_xor(x, x >> U64(27), out=x)
    np.multiply(x, U64(0x94D049BB133111EB), out=x)
    np.bitwise_xor(x, x >> U64(31), out=x)
    return x


def _string_buffers(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(UTF-8 bytes, int64 offsets) of a string array, without copying the bytes."""
    if strings.type not in (pa.string(), pa.large_string()):
        strings = strings.cast(pa.large_string())
    _, offsets_buf, data_buf = strings.buffers()
    width = np.int64 if strings.type == pa.large_string() else np.int32
    offsets = np.frombuffer(offsets_buf, dtype=width)[strings.offset : strings.offset + len(strings) + 1]
    offsets = offsets.astype(np.int64)
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    return data, offsets


def _byte_hashes(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """A 64-bit polynomial hash of each non-empty [offsets[i], offsets[i+1]) byte range."""
    starts = offsets[:-1]
    if len(starts) == 0:
        return np.zeros(0, U64)
    lengths = np.diff(offsets)
    total = int(lengths.sum())
    longest = int(lengths.max())
    powers = np.ones(longest, U64)
    powers[1:] = np.cumprod(np.full(longest - 1, _MUL, U64))  # wraps modulo 2**64, as intended
    flat_starts = np.cumsum(lengths) - lengths
    byte_at = np.arange(total, dtype=np.int64) + np.repeat(starts - flat_starts, lengths)
    from_end = np.repeat(flat_starts + lengths - 1, lengths) - np.arange(total, dtype=np.int64)
    terms = (data[byte_at].astype(U64) + U64(1)) * powers[from_end]
    return mix64(np.add.reduceat(terms, flat_starts) ^ lengths.astype(U64))


ASCII_SPACE = np.zeros(256, dtype=bool)
ASCII_SPACE[[9, 10, 11, 12, 13, 32]] = True  # \t \n \v \f \r and space


def _words(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(hash of every word, how many words each text has); words are runs of non-(ASCII-)whitespace.

    Words are found in the UTF-8 buffer itself: a word starts at a non-space byte that follows a space or
    starts a text. From one start to the next is a contiguous byte range, so the words (each with the spaces
    that follow it) form an Arrow string array over the same buffer, built without copying. Arrow's
    dictionary encoding finds the distinct words; only those are trimmed and hashed byte by byte.
    """
    data, offsets = _string_buffers(texts)
    base, end = int(offsets[0]), int(offsets[-1])
    space = ASCII_SPACE[data[base:end]]
    after = np.empty(len(space), dtype=bool)  # the byte before is a space, or this byte starts a text
    if len(space):
        after[0] = True
        after[1:] = space[:-1]
        text_starts = offsets[:-1] - base
        after[text_starts[text_starts < len(space)]] = True
    starts = np.flatnonzero(after & ~space) + base
    counts = np.diff(np.searchsorted(starts, offsets)).astype(np.int64)
    word_offsets = np.concatenate((starts, [end])).astype(np.int64)
    words = pa.LargeStringArray.from_buffers(len(starts), pa.py_buffer(word_offsets), texts.buffers()[2])
    encoded = pc.dictionary_encode(words)
    distinct, distinct_offsets = _string_buffers(pc.ascii_rtrim_whitespace(encoded.dictionary))
    hashes = _byte_hashes(distinct, distinct_offsets)[encoded.indices.to_numpy(zero_copy_only=False)]
    return hashes, counts


def _units(texts: pa.Array, unit: Unit) -> tuple[np.ndarray, np.ndarray]:
    """(hash of every unit, how many units each text has), units in text order."""
    if unit == "word":
        return _words(texts)
    counts = pc.utf8_length(texts).to_numpy(zero_copy_only=False).astype(np.int64)
    joined = "".join(texts.to_pylist())
    points = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(U64)
    return mix64(points + U64(0x51ED270B)), counts


def shingle_hashes(texts: pa.Array, ngram: int, unit: Unit, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(text index of every shingle, its 64-bit hash). Texts without units have no shingles."""
    hashes, counts = _units(texts, unit)
    total = len(hashes)
    ends = np.cumsum(counts)
    starts = ends - counts
    # Full n-grams: every start whose n-th unit is still in the same text. They are computed for every
    # position with contiguous slices (cheap), then the ones that straddle two texts are masked out.
    m = max(total - ngram + 1, 0)
    sh = hashes[:m].copy()
    for k in range(1, ngram):  # in place: these arrays are the stage's largest
        np.multiply(sh, _COMBINE, out=sh)
        np.add(sh, hashes[k : k + m], out=sh)
    # The last ngram-1 starts of each text run past its end: mask them out (n × (ngram-1) writes; for a text
    # shorter than ngram they reach into the previous text's last starts, which are masked anyway).
    full = np.ones(m, dtype=bool)
    if ngram > 1 and m:
        tails = (ends[:, None] - np.arange(1, ngram)).ravel()
        full[tails[(tails >= 0) & (tails < m)]] = False
    per_text = np.maximum(counts - ngram + 1, 0)
    doc_of = np.repeat(np.arange(len(counts), dtype=np.int64), per_text)
    sh = sh[full]
    # Short texts (1 ≤ units < ngram): one shingle of all their units.
    short = np.flatnonzero((counts > 0) & (counts < ngram))
    if len(short):
        s0 = starts[short]
        sh_short = hashes[s0].copy()
        for k in range(1, ngram - 1):
            take = k < counts[short]
            nxt = hashes[np.minimum(s0 + k, total - 1)]
            sh_short = np.where(take, sh_short * _COMBINE + nxt, sh_short)
        j_doc = np.concatenate((doc_of, short))
        sh = np.concatenate((sh, sh_short))
        order = np.argsort(j_doc, kind="stable")
        doc_of, sh = j_doc[order], sh[order]
    np.bitwise_xor(sh, mix64(np.full(1, seed, U64)), out=sh)
    return doc_of, mix64(sh)


@dataclass(frozen=True)
class Signatures:
    """One MinHash row per text; `empty` marks texts with no shingles (they never match anything)."""

    values: np.ndarray  # uint64 [n, num_perm]
    empty: np.ndarray  # bool [n]

    @property
    def num_perm(self) -> int:
        return int(self.values.shape[1])


def signatures(texts: pa.Array, *, num_perm: int, ngram: int, unit: Unit, seed: int) -> Signatures:
    """One-permutation MinHash signatures (densified) of every text in `texts`."""
    n = len(texts)
    doc, h = shingle_hashes(texts, ngram, unit, seed)
    if num_perm & (num_perm - 1) == 0:  # a power of two: the top bits choose the bin
        bins = (h >> U64(64 - num_perm.bit_length() + 1)).astype(np.int64)
    else:  # multiply-shift maps the high 32 bits onto [0, num_perm)
        bins = (((h >> U64(32)) * U64(num_perm)) >> U64(32)).astype(np.int64)
    np.multiply(doc, num_perm, out=doc)
    np.add(bins, doc, out=bins)
    sig = np.full(n * num_perm, EMPTY, dtype=U64)
    np.minimum.at(sig, bins, h & MASK32)
    np.floor_divide(doc, num_perm, out=doc)
    sig = sig.reshape(n, num_perm)
    empty = np.bincount(doc, minlength=n) == 0
    return Signatures(densify(sig), empty)


MAX_PROBES = 4096  # densification attempts per empty bin before the fallback (never reached in practice)


def _probe_table(k: int, attempts: int) -> np.ndarray:
    """int64 [attempts, k]: the bin an empty bin looks at on each attempt; the same for every document."""
    grid = np.arange(attempts, dtype=U64)[:, None] * U64(k) + np.arange(k, dtype=U64)[None, :]
    return ((mix64(grid + U64(0xD1B54A32D192ED03)) >> U64(32)) * U64(k) >> U64(32)).astype(np.int64)


def densify(sig: np.ndarray) -> np.ndarray:
    """Fill each row's empty bins by optimal densification (Shrivastava 2017).

    An empty bin j probes bins h(j, 1), h(j, 2), ... with a hash fixed for all documents, and takes the value
    of the first filled one. Two documents then agree on bin j with probability equal to their Jaccard
    similarity, and, unlike borrowing from the neighbouring bin, different empty bins borrow from different,
    random bins, so a short text (few shingles, most bins empty) does not repeat one value across a whole
    LSH band. Rows with no filled bin stay empty.
    """
    n, k = sig.shape
    filled = sig != EMPTY
    if n == 0 or filled.all():
        return sig
    out = sig.copy()
    has_any = filled.any(axis=1)
    rows, cols = np.nonzero(~filled & has_any[:, None])
    table = _probe_table(k, 64)
    attempt = 0
    while len(rows) and attempt < MAX_PROBES:
        if attempt >= len(table):
            table = _probe_table(k, 2 * len(table))
        probe = table[attempt, cols]
        hit = filled[rows, probe]
        out[rows[hit], cols[hit]] = sig[rows[hit], probe[hit]]
        rows, cols = rows[~hit], cols[~hit]
        attempt += 1
    if len(rows):  # astronomically unlikely: take the row's first filled bin
        out[rows, cols] = sig[rows, filled[rows].argmax(axis=1)]
    return out
