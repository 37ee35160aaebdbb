"""The partitioned global steps of sharded deduplication: candidate pairs per band-key partition, and
verification of candidate pairs reading only the signatures (and texts) of the rows in them.

Both are shard functions (`fn(params, task)`) run through an executor. Row numbers are int64 positions: global
positions in the concatenated parts (band files), or indices into the survivors of the earlier steps (pairs),
which is the numbering `near.near_duplicates` uses on the table it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from .candidates import LARGE_GROUP, _pairs_in_groups
from .keys import pairs_path, read_rows, read_texts
from .near import NearSettings, similarities
from .signatures import Signatures, distinct

# Band-key entries per partition: partitions are sorted in memory one at a time (16 bytes an entry).
PARTITION_ENTRIES = 1_000_000
# Pairs verified per task: a task holds the signatures of the rows in its pairs (1 KB each at 128 values), two
# gathered copies per pair and their comparison, and the shingle sets of its unsure pairs' texts.
VERIFY_PAIRS = 20_000
# Pair codes the main process gathers before folding them into the distinct ones found so far: a pair is found in
# every band it shares, so the partitions' files hold several copies of most pairs.
MERGE_CODES = 4_000_000


def partition_count(entries: int) -> int:
    """How many band-key partitions for `entries` band keys (about PARTITION_ENTRIES each)."""
    return max(1, -(-entries // PARTITION_ENTRIES))


def unique_pairs(pairs: np.ndarray) -> np.ndarray:
    """The distinct rows of an int64 [m, 2] array, sorted (as `candidates._unique_pairs`)."""
    if len(pairs) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    width = int(pairs[:, 1].max()) + 1
    codes = distinct(pairs[:, 0] * width + pairs[:, 1])
    return np.stack((codes // width, codes % width), axis=1)


def _read_partition(files: list[tuple[Path, Path, Path]], p: int) -> tuple[np.ndarray, np.ndarray]:
    """(tagged keys, global positions) of partition `p` from every part's band files, in position order."""
    keys, pos = [], []
    for key_file, pos_file, off_file in files:
        off = np.load(off_file)
        lo, hi = int(off[p]), int(off[p + 1])
        if hi > lo:
            keys.append(np.load(key_file, mmap_mode="r")[lo:hi])
            pos.append(np.load(pos_file, mmap_mode="r")[lo:hi])
    if not keys:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    return np.concatenate(keys), np.concatenate(pos)


def _survivor_index(pos: np.ndarray, survivors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask of `pos` among `survivors` (sorted global positions), their indices into `survivors`)."""
    at = np.searchsorted(survivors, pos)
    ok = at < len(survivors)
    ok[ok] = survivors[at[ok]] == pos[ok]
    return ok, at


def _groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, starts, sizes) of the groups of equal `keys` with two or more entries."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1]))) if len(keys) else np.zeros(0, int)
    sizes = np.diff(np.concatenate((starts, [len(keys)])))
    shared = sizes > 1
    return order, starts[shared], sizes[shared]


def _all_pairs(members: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Every pair (i < j) within each group: what datasketch's MinHashLSH returns (engine `lsh`)."""
    out = [np.zeros((0, 2), np.int64)]
    for s, size in zip(starts.tolist(), sizes.tolist(), strict=True):
        i, j = np.triu_indices(size, 1)
        group = members[s : s + size]
        out.append(np.stack((group[i], group[j]), axis=1))
    pairs = np.sort(np.concatenate(out).astype(np.int64), axis=1)
    return unique_pairs(pairs[pairs[:, 0] != pairs[:, 1]])


@dataclass(frozen=True)
class PairParams:
    """Band files of every part, the survivors to pair (global positions, sorted), the engine, and the work
    folder the partitions' pair codes are written to (`keys.pairs_path`)."""

    files: list[tuple[Path, Path, Path]]
    survivors: Path  # .npy int64
    engine: str
    work: Path


def self_pairs(params: PairParams, p: int) -> int:
    """Shard function: writes the candidate pairs (survivor indices i < j) of band-key partition `p` to
    `keys.pairs_path(params.work, p)` as sorted distinct int64 codes i * len(survivors) + j; returns how many.

    A partition holds whole (band, key) groups, so its pairs are `candidates.candidate_pairs` restricted to its
    groups: `banded` pairs large buckets as a star and a chain, `lsh` pairs every member. The pairs go to a file,
    not back to the caller, so the main process never holds every partition's copies at once (see `merge_pairs`)."""
    keys, pos = _read_partition(params.files, p)
    survivors = np.load(params.survivors, mmap_mode="r")
    ok, index = _survivor_index(pos, survivors)
    keys, index = keys[ok], index[ok]
    order, starts, sizes = _groups(keys)
    members = index[order]
    pairs = _all_pairs(members, starts, sizes) if params.engine == "lsh" else _pairs_in_groups(members, starts, sizes)
    np.save(pairs_path(params.work, p), pairs[:, 0] * len(survivors) + pairs[:, 1])
    return len(pairs)


def merge_pairs(paths: list[Path], width: int, fold: int = MERGE_CODES) -> np.ndarray:
    """The distinct pairs (int64 [m, 2], sorted) of the code files `paths` (codes i * width + j): equal to
    `unique_pairs` of all their pairs, folding `fold` codes at a time into the distinct ones so far, so memory
    is bounded by the distinct pairs, not by every band's copy of them."""
    merged = np.zeros(0, np.int64)
    pending: list[np.ndarray] = []
    size = 0
    for path in paths:
        codes = np.load(path)
        pending.append(codes)
        size += len(codes)
        if size >= fold:
            merged = distinct(np.concatenate([merged, *pending]))
            pending, size = [], 0
    if pending:
        merged = distinct(np.concatenate([merged, *pending]))
    return np.stack((merged // width, merged % width), axis=1)


@dataclass(frozen=True)
class CrossParams:
    """Band files of the queries' parts and of the references' parts."""

    queries: list[tuple[Path, Path, Path]]
    references: list[tuple[Path, Path, Path]]


def cross_partition_pairs(params: CrossParams, p: int) -> np.ndarray:
    """Shard function: (query, reference) global positions sharing a band key in partition `p`, each query
    paired with at most the first LARGE_GROUP references of a bucket, as `candidates.cross_pairs` does."""
    qk, qp = _read_partition(params.queries, p)
    rk, rp = _read_partition(params.references, p)
    order = np.lexsort((rp, rk))  # references of a bucket in position order: the first ones are kept
    sorted_ref = rk[order]
    lo = np.searchsorted(sorted_ref, qk, side="left")
    hi = np.searchsorted(sorted_ref, qk, side="right")
    hit = np.flatnonzero(hi > lo)
    counts = np.minimum(hi - lo, LARGE_GROUP)[hit]
    at = np.repeat(lo[hit] - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
    return unique_pairs(np.stack((np.repeat(qp[hit], counts), rp[order[at]]), axis=1))


@dataclass(frozen=True)
class Store:
    """Where one set of rows' signatures and texts are: per part, its first global position and files."""

    starts: list[int]  # global position of each part's first row, then the total
    signatures: list[Path]
    texts: list[tuple[Path, Path]]

    def part_of(self, rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(np.asarray(self.starts), rows, side="right") - 1

    def signatures_of(self, rows: np.ndarray) -> Signatures:
        """Signatures of `rows` (sorted global positions), reading only those rows of the part files (`empty` is
        left False: rows with empty signatures are never in a candidate pair)."""
        part = self.part_of(rows)
        values = [read_rows(self.signatures[k], rows[part == k] - self.starts[k]) for k in distinct(part).tolist()]
        return Signatures(np.concatenate(values), np.zeros(len(rows), bool))

    def texts_of(self, rows: np.ndarray) -> pa.Array:
        """Compared texts of `rows` (global positions, any order), reading one part's text file at a time."""
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        part = self.part_of(ordered)
        chunks = []
        for k in distinct(part).tolist():
            chunks.append(read_texts(self.texts[k], ordered[part == k] - self.starts[k]))
        joined = pa.concat_arrays(chunks) if chunks else pa.array([], pa.large_string())
        back = np.empty(len(rows), dtype=np.int64)
        back[order] = np.arange(len(rows))
        return joined.take(pa.array(back, pa.int64()))


class LazyTexts:
    """The compared texts of some rows, read from disk only if `similarities` asks (for unsure pairs): it
    calls `take` and nothing else, so this stands in for the text array it is normally given."""

    def __init__(self, store: Store, rows: np.ndarray) -> None:
        self.store, self.rows = store, rows

    def take(self, indices: pa.Array) -> pa.Array:
        return self.store.texts_of(self.rows[np.asarray(indices.to_numpy(zero_copy_only=False), dtype=np.int64)])


@dataclass(frozen=True)
class VerifyParams:
    settings: NearSettings
    left: Store
    right: Store | None  # None: pairs within `left` (self-join)


def verify_pairs(params: VerifyParams, pairs: np.ndarray) -> np.ndarray:
    """Shard function: `near.similarities` of `pairs` (global positions: left row, right row), loading only the
    signatures of the rows in them and, where verification compares exactly, their texts."""
    if len(pairs) == 0:
        return np.zeros(0)
    if params.right is None:
        rows = distinct(pairs.ravel())
        sigs = params.left.signatures_of(rows)
        local = np.searchsorted(rows, pairs)
        texts = LazyTexts(params.left, rows)
        return similarities(local, params.settings, sigs=(sigs, sigs), texts=(texts, texts))  # type: ignore[arg-type]
    lrows, rrows = distinct(pairs[:, 0]), distinct(pairs[:, 1])
    local = np.stack((np.searchsorted(lrows, pairs[:, 0]), np.searchsorted(rrows, pairs[:, 1])), axis=1)
    sigs = (params.left.signatures_of(lrows), params.right.signatures_of(rrows))
    texts = (LazyTexts(params.left, lrows), LazyTexts(params.right, rrows))
    return similarities(local, params.settings, sigs=sigs, texts=texts)  # type: ignore[arg-type]


def verify_all(executor, params: VerifyParams, pairs: np.ndarray, what: str) -> np.ndarray:
    """Similarity of every pair, VERIFY_PAIRS pairs per task, in order."""
    if len(pairs) == 0:
        return np.zeros(0)
    chunks = [pairs[i : i + VERIFY_PAIRS] for i in range(0, len(pairs), VERIFY_PAIRS)]
    results = executor.map(
        verify_pairs, params, chunks, describe=lambda i: f"{what}: pairs {i * VERIFY_PAIRS}–{(i + 1) * VERIFY_PAIRS}"
    )
    return np.concatenate(results)


# ---------------------------------------------------------------- decisions on id-level arrays


def keeper_similarity(dup, kept, edges, edge_sim, n: int, verify) -> np.ndarray:
    """Similarity of each removed row to its keeper: the verified edge's when they were compared, `verify`
    (pairs → similarities) otherwise. `near._to_keeper` with the comparison passed in (it could call this)."""
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
        out[rest] = verify(np.stack((dup[rest], kept[rest]), axis=1))
    return out


@dataclass(frozen=True)
class ExactParams:
    """Every part's `keys.exact_paths` files."""

    files: list[tuple[Path, Path, Path, Path]]


def exact_partition(params: ExactParams, p: int) -> np.ndarray:
    """Shard function: int64 [m, 2] (removed row, its keeper) global positions of digest partition `p`: in each
    group of equal digests the lowest (rank key, position) is kept, as `dedup_exact.exact_duplicates` keeps.

    A partition holds whole digest groups, so the partitions' answers together are the whole corpus's."""
    digest, key, pos = [], [], []
    for digest_file, key_file, pos_file, off_file in params.files:
        off = np.load(off_file)
        lo, hi = int(off[p]), int(off[p + 1])
        if hi > lo:
            digest.append(np.load(digest_file, mmap_mode="r")[lo:hi])
            key.append(np.load(key_file, mmap_mode="r")[lo:hi])
            pos.append(np.load(pos_file, mmap_mode="r")[lo:hi])
    if not digest:
        return np.zeros((0, 2), np.int64)
    halves = np.ascontiguousarray(np.concatenate(digest)).view(np.uint64).reshape(-1, 2)
    positions = np.concatenate(pos)
    order = np.lexsort((positions, np.concatenate(key), halves[:, 1], halves[:, 0]))
    ordered = halves[order]
    first = np.concatenate(([True], (ordered[1:] != ordered[:-1]).any(axis=1)))
    kept = positions[order][first][np.cumsum(first) - 1]
    return np.stack((positions[order][~first], kept[~first]), axis=1)


@dataclass
class SparseClusters:
    """Near-duplicate clusters over n rows, held for the rows in clusters only (`near.Clusters` keeps every row)."""

    n: int
    rows: np.ndarray  # int64 [m]: the rows in some cluster, sorted
    label: np.ndarray  # int64 [m]: cluster number (clusters numbered by keeper row)
    keeper: np.ndarray  # int64 [m]: the kept row of the row's cluster (the row itself when kept)
    similarity: np.ndarray  # float64 [m]: similarity to the keeper (1.0 for keepers)
    pairs: int  # candidate pairs examined
    edges: np.ndarray  # int64 [verified, 2]: the candidate pairs at or above the threshold (i < j)

    @property
    def verified(self) -> int:
        return len(self.edges)

    @property
    def removed(self) -> np.ndarray:
        """bool [m]: which of `rows` are removed (not their cluster's keeper)."""
        return self.keeper != self.rows

    def at(self, rows: np.ndarray) -> np.ndarray:
        """Indices into `self.rows` of `rows` (each in some cluster)."""
        return np.searchsorted(self.rows, rows)


def clusters_from_edges(n: int, edges: np.ndarray, edge_sim: np.ndarray, key_of, pairs: int, verify) -> SparseClusters:
    """Clusters from verified edges over n rows: components, keeper = lowest (key, row), clusters numbered by
    keeper row. The second half of `near.near_duplicates` (which could call this), on the rows in edges only:
    `key_of(rows)` gives the rank keys of some rows (sorted), so no array of n keys or labels is ever built."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if len(edges) == 0:
        empty = np.zeros(0, np.int64)
        return SparseClusters(n, empty, empty, empty, np.zeros(0), pairs, edges)
    rows = distinct(edges.ravel())
    local = np.searchsorted(rows, edges)
    m = len(rows)
    graph = coo_matrix((np.ones(len(edges)), (local[:, 0], local[:, 1])), shape=(m, m))
    _, comp = connected_components(graph, directed=False)
    # Ordering by (key, row) is ordering by `stages.dedup.keep_rank`'s rank: rows are positions in order.
    order = np.lexsort((rows, np.asarray(key_of(rows)), comp))
    first = np.concatenate(([True], comp[order][1:] != comp[order][:-1]))
    keeper_of = np.full(int(comp.max()) + 1, -1, dtype=np.int64)
    keeper_of[comp[order[first]]] = rows[order[first]]
    keeper = keeper_of[comp]
    label = np.searchsorted(np.sort(rows[order[first]]), keeper)
    similarity = np.ones(m)
    dup = keeper != rows
    similarity[dup] = keeper_similarity(rows[dup], keeper[dup], edges, edge_sim, n, verify)
    return SparseClusters(n, rows, label, keeper, similarity, pairs, edges)
