"""Near-duplicate clusters: signatures → candidate pairs → verified pairs → connected components → keepers.

`near_duplicates` is the one entry point the dedup stage, the split stage's decontamination and the
`dataforge dedup` command share. Everything that changes its result is in `NearSettings`.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .candidates import Engine, candidate_pairs, cross_pairs
from .signatures import Signatures, Unit, distinct, shingle_hashes, signatures

MASK = np.uint64((1 << 40) - 1)
UNSURE = 4.0  # standard errors: `auto` verification computes the exact Jaccard within this distance
BATCH = 2048  # texts per signature batch: keeps the per-shingle arrays in cache (about 3x faster than one batch)
PARALLEL_FROM = 50_000  # below this many texts, starting worker processes costs more than it saves


@dataclass(frozen=True)
class NearSettings:
    """What makes two texts near-duplicates, and how they are found."""

    threshold: float = 0.8
    num_perm: int = 128
    ngram: int = 5
    shingle: Unit = "word"
    verify: str = "auto"  # exact | estimate | auto (see `similarities`)
    engine: Engine = "banded"
    seed: int = 1
    workers: int = field(default=1, compare=False)  # how fast, not what: not part of any cache key


def _batch(args: tuple[pa.Array, NearSettings]) -> tuple[np.ndarray, np.ndarray]:
    texts, s = args
    sig = signatures(texts, num_perm=s.num_perm, ngram=s.ngram, unit=s.shingle, seed=s.seed)
    return sig.values, sig.empty


def compute_signatures(texts: pa.Array, settings: NearSettings, *, parallel_from: int = PARALLEL_FROM) -> Signatures:
    """Signatures of `texts` in cache-sized batches, over `settings.workers` processes for large inputs."""
    texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    n = len(texts)
    if n == 0:
        return Signatures(np.zeros((0, settings.num_perm), np.uint64), np.zeros(0, bool))
    jobs = [(texts.slice(i, BATCH), settings) for i in range(0, n, BATCH)]
    workers = min(settings.workers, len(jobs), os.cpu_count() or 1)
    if workers > 1 and n >= parallel_from:
        # A slice pickles with its parent's whole buffer: send each worker a compact copy of its batch.
        jobs = [(pc.take(batch, pa.array(np.arange(len(batch)))), s) for batch, s in jobs]
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_batch, jobs, chunksize=4))
    else:
        parts = [_batch(job) for job in jobs]
    return Signatures(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


@dataclass(frozen=True)
class ShingleSets:
    """The distinct shingle hashes of some texts: text k's are `hashes[start[k]:start[k + 1]]`."""

    rows: np.ndarray  # the texts' indices, sorted
    hashes: np.ndarray
    start: np.ndarray

    def segment(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(start, length) of each of `rows` (which must be among `self.rows`)."""
        k = np.searchsorted(self.rows, rows)
        return self.start[k], self.start[k + 1] - self.start[k]


# Exact Jaccard packs (text or pair number, shingle hash) into one uint64 so that a plain sort groups them:
# 24 bits of number, the hash's low 40 bits. Two distinct shingles of one ~400-shingle pair collide in 40
# bits with probability ~1e-7, which would move that pair's Jaccard by 1/400.
HASH_BITS = 40
PACKED = 1 << (64 - HASH_BITS)  # pairs or texts per packed sort


def shingle_sets(texts: pa.Array, rows: np.ndarray, settings: NearSettings) -> ShingleSets:
    """The distinct shingle hashes (low 40 bits) of each text in `rows`, as flat arrays."""
    rows = distinct(rows)
    parts, starts, offset = [], [np.zeros(1, np.int64)], 0
    for lo in range(0, len(rows), PACKED):
        chunk = rows[lo : lo + PACKED]
        doc, hashes = shingle_hashes(
            texts.take(pa.array(chunk, pa.int64())), settings.ngram, settings.shingle, settings.seed
        )
        packed = distinct((doc.astype(np.uint64) << np.uint64(HASH_BITS)) | (hashes & MASK))
        parts.append(packed & MASK)
        starts.append(offset + np.searchsorted(packed >> np.uint64(HASH_BITS), np.arange(1, len(chunk) + 1)))
        offset += len(packed)
    return ShingleSets(rows, np.concatenate(parts), np.concatenate(starts))


def exact_jaccard(pairs: np.ndarray, left: ShingleSets, right: ShingleSets) -> np.ndarray:
    """float64 [m]: |A ∩ B| / |A ∪ B| of each pair's shingle sets, for all pairs at once.

    Both sets of a pair are laid side by side, each hash packed with the pair's number; a packed value seen
    twice is in the intersection. One sort replaces a Python loop over pairs.
    """
    out = np.zeros(len(pairs))
    for lo in range(0, len(pairs), PACKED):
        chunk = pairs[lo : lo + PACKED]
        m = len(chunk)
        ls, ll = left.segment(chunk[:, 0])
        rs, rl = right.segment(chunk[:, 1])
        at_l = np.repeat(ls - np.cumsum(ll) + ll, ll) + np.arange(int(ll.sum()))
        at_r = np.repeat(rs - np.cumsum(rl) + rl, rl) + np.arange(int(rl.sum()))
        tag = np.concatenate(
            (np.repeat(np.arange(m, dtype=np.uint64), ll), np.repeat(np.arange(m, dtype=np.uint64), rl))
        )
        values = np.sort((tag << np.uint64(HASH_BITS)) | np.concatenate((left.hashes[at_l], right.hashes[at_r])))
        twice = values[1:][values[1:] == values[:-1]]
        inter = np.bincount((twice >> np.uint64(HASH_BITS)).astype(np.int64), minlength=m)
        union = ll + rl - inter
        out[lo : lo + m] = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return out


def similarities(
    pairs: np.ndarray,
    settings: NearSettings,
    *,
    sigs: tuple[Signatures, Signatures],
    texts: tuple[pa.Array, pa.Array],
) -> np.ndarray:
    """float64 [m]: similarity of each pair (left index into the first set of texts, right into the second).

    `estimate`: the share of equal signature values. `exact`: the Jaccard similarity of the shingle sets.
    `auto`: the estimate where it is more than `UNSURE` standard errors from the threshold (a wrong side
    there has probability below 1e-4), the exact Jaccard for the pairs in between.
    """
    if len(pairs) == 0:
        return np.zeros(0)
    estimate = (sigs[0].values[pairs[:, 0]] == sigs[1].values[pairs[:, 1]]).mean(axis=1)
    if settings.verify == "estimate":
        return estimate
    if settings.verify == "exact":
        unsure = np.arange(len(pairs))
    else:
        t = settings.threshold
        error = UNSURE * np.sqrt(max(t * (1 - t), 0.01) / settings.num_perm)
        unsure = np.flatnonzero(np.abs(estimate - t) < error)
    if len(unsure):
        sub = pairs[unsure]
        if texts[1] is texts[0]:
            left = right = shingle_sets(texts[0], sub, settings)
        else:
            left = shingle_sets(texts[0], sub[:, 0], settings)
            right = shingle_sets(texts[1], sub[:, 1], settings)
        estimate = estimate.copy()
        estimate[unsure] = exact_jaccard(sub, left, right)
    return estimate


@dataclass
class Clusters:
    """Near-duplicate clusters over n rows: who is removed, which row each duplicates, and how similar."""

    label: np.ndarray  # int64 [n]: cluster number, -1 for rows in no cluster
    keeper: np.ndarray  # int64 [n]: the kept row of the row's cluster (the row itself when kept), -1 if none
    similarity: np.ndarray  # float64 [n]: similarity to the keeper (1.0 for keepers, nan outside clusters)
    pairs: int  # candidate pairs examined
    edges: np.ndarray  # int64 [verified, 2]: the candidate pairs at or above the threshold (i < j)

    @property
    def verified(self) -> int:
        return len(self.edges)

    @property
    def removed(self) -> np.ndarray:
        return (self.keeper >= 0) & (self.keeper != np.arange(len(self.keeper)))


def near_duplicates(
    texts: pa.Array, rank: np.ndarray, settings: NearSettings, groups: np.ndarray | None = None
) -> Clusters:
    """Clusters of near-duplicate `texts`; in each, the row with the lowest `rank` is kept (ties: first row).

    `groups` (an int per row, e.g. the row's kind) keeps rows of different groups apart: a candidate pair
    across groups is never compared, so a KTO row is never a duplicate of the DPO pair it was made from."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    n = len(texts)
    sigs = compute_signatures(texts, settings)
    pairs = candidate_pairs(sigs, threshold=settings.threshold, engine=settings.engine, seed=settings.seed)
    if groups is not None and len(pairs):
        pairs = pairs[groups[pairs[:, 0]] == groups[pairs[:, 1]]]
    sim = similarities(pairs, settings, sigs=(sigs, sigs), texts=(texts, texts))
    edges = pairs[sim >= settings.threshold]
    label = np.full(n, -1, dtype=np.int64)
    keeper = np.full(n, -1, dtype=np.int64)
    similarity = np.full(n, np.nan)
    if len(edges):
        graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
        _, comp = connected_components(graph, directed=False)
        in_cluster = np.zeros(n, dtype=bool)
        in_cluster[edges.ravel()] = True
        rows = np.flatnonzero(in_cluster)
        # The keeper of each component: lowest rank, then lowest row; components numbered by keeper row.
        order = np.lexsort((rows, rank[rows], comp[rows]))
        ordered = rows[order]
        first = np.concatenate(([True], comp[ordered][1:] != comp[ordered][:-1]))
        keeper_of_comp = dict(zip(comp[ordered[first]].tolist(), ordered[first].tolist(), strict=True))
        keeper[rows] = [keeper_of_comp[c] for c in comp[rows].tolist()]
        numbering = {k: i for i, k in enumerate(sorted(keeper_of_comp.values()))}
        label[rows] = [numbering[k] for k in keeper[rows].tolist()]
        similarity[rows] = 1.0
        dup = rows[keeper[rows] != rows]
        similarity[dup] = _to_keeper(dup, keeper[dup], edges, sim[sim >= settings.threshold], n, settings, sigs, texts)
    return Clusters(label, keeper, similarity, pairs=len(pairs), edges=edges)


def _to_keeper(
    dup: np.ndarray,
    kept: np.ndarray,
    edges: np.ndarray,
    edge_sim: np.ndarray,
    n: int,
    settings: NearSettings,
    sigs: Signatures,
    texts: pa.Array,
) -> np.ndarray:
    """Similarity of each removed row to its keeper: the verified pair's when they were compared (most
    clusters are pairs), computed otherwise."""
    lo, hi = np.minimum(dup, kept), np.maximum(dup, kept)
    codes = lo * n + hi
    edge_codes = edges[:, 0] * n + edges[:, 1]
    order = np.argsort(edge_codes)
    at = np.searchsorted(edge_codes[order], codes)
    known = (at < len(order)) & (edge_codes[order][np.minimum(at, len(order) - 1)] == codes)
    out = np.empty(len(dup))
    out[known] = edge_sim[order[at[known]]]
    rest = np.flatnonzero(~known)
    if len(rest):
        pairs = np.stack((dup[rest], kept[rest]), axis=1)
        out[rest] = similarities(pairs, settings, sigs=(sigs, sigs), texts=(texts, texts))
    return out


@dataclass
class Matches:
    """For each query text: the most similar reference at or above the threshold (-1 if none)."""

    reference: np.ndarray  # int64 [n_queries]
    similarity: np.ndarray  # float64 [n_queries], nan where no match


def near_matches(queries: pa.Array, references: pa.Array, settings: NearSettings) -> Matches:
    """Which `queries` have a near-copy among `references` (decontamination: a join, not a self-join)."""
    queries = queries.combine_chunks() if isinstance(queries, pa.ChunkedArray) else queries
    references = references.combine_chunks() if isinstance(references, pa.ChunkedArray) else references
    qs, rs = compute_signatures(queries, settings), compute_signatures(references, settings)
    pairs = cross_pairs(qs, rs, threshold=settings.threshold)
    sim = similarities(pairs, settings, sigs=(qs, rs), texts=(queries, references))
    reference = np.full(len(queries), -1, dtype=np.int64)
    best = np.full(len(queries), np.nan)
    hit = sim >= settings.threshold
    # Best reference per query: sort hits by (query, -similarity, reference) and take the first of each.
    p, s = pairs[hit], sim[hit]
    if len(p):
        order = np.lexsort((p[:, 1], -s, p[:, 0]))
        p, s = p[order], s[order]
        first = np.concatenate(([True], p[1:, 0] != p[:-1, 0]))
        reference[p[first, 0]] = p[first, 1]
        best[p[first, 0]] = s[first]
    return Matches(reference, best)
