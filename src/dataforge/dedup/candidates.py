"""Candidate pairs from MinHash signatures: documents that agree on every value of at least one band.

Two engines behind one function, `candidate_pairs`, giving the same pairs:

- `banded` (the default): every band of every signature reduced to one 64-bit key with array operations,
  rows grouped by (band, key) with one sort, and pairs taken inside each group. No index object: the groups
  could be formed by a distributed shuffle (e.g. a Ray Data groupby on the band key), which is the plan for
  data that does not fit one machine.
- `lsh`: datasketch's `MinHashLSH`, each signature inserted as `LeanMinHash(hashvalues=...)` and queried. It
  holds the index in memory, one Python object per indexed document (~50 µs each), so it suits up to a few
  million rows and is slower than `banded`.

The two agree pair for pair unless a bucket holds more than `LARGE_GROUP` rows: `banded` then pairs its rows
as a star and a chain (linear in the bucket) where a query of `lsh` returns all of them (quadratic).

Both start from the same vectorised band keys: a document none of whose band keys is shared with another
document has no candidates in either engine, so only documents with a shared key are put into datasketch's
index (the others could never be returned by a query).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from .signatures import U64, Signatures, distinct, mix64

Engine = Literal["lsh", "banded"]
# Candidates are verified before they count, so a false positive costs one comparison while a false
# negative is a duplicate never seen: the band shape is optimised with false negatives weighted 19:1
# (at 0.8 and 128 values: 16 bands of 8, candidate probability 0.95 at the threshold, 0.99 at 0.84).
FALSE_POSITIVE_WEIGHT, FALSE_NEGATIVE_WEIGHT = 0.05, 0.95
# Buckets with more rows than this are paired as a star and a chain, not all pairs (see _pairs_in_groups);
# decontamination compares a query with at most this many rows of one bucket.
LARGE_GROUP = 256


def band_shape(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) minimising datasketch's weighted false positive/negative areas at `threshold`."""
    from datasketch.lsh import _optimal_param

    b, r = _optimal_param(threshold, num_perm, FALSE_POSITIVE_WEIGHT, FALSE_NEGATIVE_WEIGHT)
    return int(b), int(r)


def band_keys(values: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """uint64 [n, bands]: one key per band, equal for equal bands (and, with probability 2**-64, otherwise)."""
    n = values.shape[0]
    multipliers = mix64(np.arange(1, rows + 1, dtype=U64)) | U64(1)  # odd: a bijection modulo 2**64
    keys = np.empty((n, bands), dtype=U64)
    for b in range(bands):
        block = values[:, b * rows : (b + 1) * rows]
        keys[:, b] = mix64((block * multipliers).sum(axis=1, dtype=U64) + U64(b))
    return keys


def _groups(keys: np.ndarray, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows grouped by (band, key), all bands in one sort: (rows in group order, group starts, group sizes),
    for groups of two or more rows only."""
    n, bands = keys.shape
    rows = np.flatnonzero(usable)
    # Tag each key with its band so equal keys of different bands never meet, then sort once.
    tagged = (keys[rows] ^ mix64(np.arange(bands, dtype=U64) + U64(0x5BD1E995))).ravel()
    order = np.argsort(tagged)  # members of a group come out in any order: pairs are sorted afterwards
    ordered = tagged[order]
    new_group = np.concatenate(([True], ordered[1:] != ordered[:-1]))
    starts = np.flatnonzero(new_group)
    sizes = np.diff(np.concatenate((starts, [len(ordered)])))
    members = rows[order // bands]
    shared = sizes > 1
    return members, starts[shared], sizes[shared]


def _pairs_in_groups(members: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """int64 [m, 2] sorted unique pairs (i < j) of rows in the same group."""
    out = []
    twos = starts[sizes == 2]  # the common case, vectorised
    if len(twos):
        out.append(np.stack((members[twos], members[twos + 1]), axis=1))
    middle = (sizes > 2) & (sizes <= LARGE_GROUP)
    for s, size in zip(starts[middle].tolist(), sizes[middle].tolist(), strict=True):
        group = members[s : s + size]
        i, j = np.triu_indices(size, 1)
        out.append(np.stack((group[i], group[j]), axis=1))
    for s, size in zip(starts[sizes > LARGE_GROUP].tolist(), sizes[sizes > LARGE_GROUP].tolist(), strict=True):
        # A huge bucket (thousands of templated rows) would give millions of pairs: pair each member with
        # the bucket's first row and with the next row instead, which keeps a truly similar bucket connected.
        group = np.sort(members[s : s + size])
        out.append(np.stack((np.full(size - 1, group[0]), group[1:]), axis=1))
        out.append(np.stack((group[1:-1], group[2:]), axis=1))
    if not out:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.sort(np.concatenate(out).astype(np.int64), axis=1)
    return _unique_pairs(pairs[pairs[:, 0] != pairs[:, 1]])


def _unique_pairs(pairs: np.ndarray) -> np.ndarray:
    """The distinct rows of an int64 [m, 2] array, sorted (one integer sort, not a row-wise one)."""
    if len(pairs) == 0:
        return pairs.reshape(0, 2).astype(np.int64)
    width = int(pairs[:, 1].max()) + 1
    codes = distinct(pairs[:, 0] * width + pairs[:, 1])
    return np.stack((codes // width, codes % width), axis=1)


def shared_key_rows(keys: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """Rows (among `usable`) with at least one band key that another usable row also has."""
    members, starts, sizes = _groups(keys, usable)
    shared = np.zeros(len(usable), dtype=bool)
    if len(starts):
        shared[members[np.repeat(starts - np.cumsum(sizes) + sizes, sizes) + np.arange(int(sizes.sum()))]] = True
    return shared


def candidate_pairs_banded(sigs: Signatures, bands: int, rows: int) -> np.ndarray:
    """Pairs (i < j) sharing a band key, found by one sort of every band's keys."""
    keys = band_keys(sigs.values, bands, rows)
    return _pairs_in_groups(*_groups(keys, ~sigs.empty))


def candidate_pairs_lsh(sigs: Signatures, bands: int, rows: int, seed: int) -> np.ndarray:
    """Pairs (i < j) returned by datasketch's MinHashLSH for the documents that share a band key."""
    from datasketch import LeanMinHash, MinHashLSH

    keys = band_keys(sigs.values, bands, rows)
    members = np.flatnonzero(shared_key_rows(keys, ~sigs.empty))
    lsh = MinHashLSH(num_perm=bands * rows, params=(bands, rows))
    hashes = {}
    for i in members.tolist():
        # `scheme` names the storage (uint64 values over the full range); LSH only bands the raw values, and
        # every signature in this index comes from the same one-permutation scheme, so they compare.
        hashes[i] = LeanMinHash(seed=seed, hashvalues=sigs.values[i, : bands * rows], scheme="affine64")
        lsh.insert(i, hashes[i], check_duplication=False)
    found = [(i, j) for i in members.tolist() for j in lsh.query(hashes[i]) if i < j]
    return _unique_pairs(np.array(found, dtype=np.int64).reshape(-1, 2))


def candidate_pairs(sigs: Signatures, *, threshold: float, engine: Engine, seed: int) -> np.ndarray:
    """int64 [m, 2] sorted unique pairs (i < j) of documents whose signatures share a band."""
    bands, rows = band_shape(threshold, sigs.num_perm)
    if engine == "lsh":
        return candidate_pairs_lsh(sigs, bands, rows, seed)
    return candidate_pairs_banded(sigs, bands, rows)


def cross_pairs(queries: Signatures, references: Signatures, *, threshold: float) -> np.ndarray:
    """int64 [m, 2] pairs (query, reference) sharing a band key: a join of two sets, for decontamination."""
    bands, rows = band_shape(threshold, queries.num_perm)
    qk = band_keys(queries.values, bands, rows)
    rk = band_keys(references.values, bands, rows)
    q_ok = np.flatnonzero(~queries.empty)
    r_ok = np.flatnonzero(~references.empty)
    found = []
    for b in range(bands):
        ref_keys = rk[r_ok, b]
        order = np.argsort(ref_keys, kind="stable")
        sorted_ref = ref_keys[order]
        qb = qk[q_ok, b]
        lo = np.searchsorted(sorted_ref, qb, side="left")
        hi = np.searchsorted(sorted_ref, qb, side="right")
        hit = np.flatnonzero(hi > lo)
        counts = np.minimum(hi - lo, LARGE_GROUP)[hit]  # the first rows of a huge bucket are enough to match
        at = np.repeat(lo[hit] - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
        found.append(np.stack((np.repeat(q_ok[hit], counts), r_ok[order[at]]), axis=1))
    return _unique_pairs(np.concatenate(found) if found else np.zeros((0, 2), np.int64))
