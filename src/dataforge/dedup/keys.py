"""Per-shard keys for sharded deduplication: what the global steps decide on, computed one part at a time.

`part_keys` is a shard function (`fn(params, task)`): it reads ONE Parquet part of canonical Example rows and
writes into the work folder, for every row, the keys the global steps need and nothing more:

- `keys/<i>.npz`: kind and source codes (local to the part; the part's dictionaries are returned), the near
  step's rank key for the keep policy, the signature's `empty` flag, and the part's best match in each
  decontamination file (reference row, similarity); each is read alone, when a global step needs it;
- `exact/<i>.{digest,key,pos,off}.npy`: every row's exact digest (16 bytes), its rank key for the keep policy and
  its global position, ordered by digest partition (first 8 digest bytes % P); `off` gives each partition's
  slice, so the exact step runs partition by partition and no process holds every digest;
- `sig/<i>.npy`: the MinHash signatures (uint64 [rows, num_perm]), read later row by row (`read_rows`) for
  the rows of candidate pairs only;
- `text/<i>.{bytes,off}.npy`: the normalised compared texts (UTF-8 bytes and offsets), read later for the
  rows `verify` compares exactly only;
- `bands/<i>.{keys,pos,off}.npy`: every usable row's band keys tagged with their band, with their global row
  position, ordered by partition (`tagged key % P`); `off` gives each partition's slice.

Every value here depends only on the row itself (signatures, digests, lengths, a row's matches in a reference
file), which is why the global steps can decide from them exactly as `stages.dedup.deduplicate` does on the
concatenated table.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..engine.cache import write_parquet
from ..recipe import NearDedup
from ..rejects import Outcome, location, rejects_from_examples
from ..stages.dedup import _quality, compared_text, normalised
from ..stages.dedup_exact import digests, row_text
from ..tables import keep_rows
from .candidates import band_keys, cross_pairs
from .near import NearSettings, compute_signatures, similarities
from .signatures import U64, Signatures, mix64
from .text import field_text

BAND_TAG = U64(0x5BD1E995)


def rank_key(examples: pa.Table, policy: str, quality_field: str, lengths: np.ndarray | None = None) -> np.ndarray:
    """float64 key per row for `policy` (lower is kept; ties go to the earlier row).

    `stages.dedup.keep_rank` is `lexsort((position, rank_key(...)))` turned into ranks, but a key depends on the
    row only, so keys of separate parts concatenate (keep_rank could be written as that). Integer keys (lengths,
    0/1) are exact in float64 below 2**53."""
    n = examples.num_rows
    if policy == "first" or n == 0:
        return np.zeros(n)
    if policy == "longest":
        if lengths is None:
            lengths = pc.utf8_length(field_text(examples, "conversation")).to_numpy(zero_copy_only=False)
        return -np.asarray(lengths, dtype=np.int64).astype(np.float64)
    if policy == "quality":
        return -_quality(examples["metadata"].to_pylist(), quality_field)
    return pc.not_equal(examples["source"], policy).to_numpy(zero_copy_only=False).astype(np.float64)


def tagged_band_keys(keys: np.ndarray) -> np.ndarray:
    """uint64 [n, bands]: each band key tagged with its band, so equal keys of different bands never meet
    (the tag `candidates._groups` applies before its one sort; it could call this)."""
    return keys ^ mix64(np.arange(keys.shape[1], dtype=U64) + BAND_TAG)


@dataclass(frozen=True)
class Reference:
    """A decontamination file prepared in the work folder: signatures and compared texts of its records."""

    signatures: Path  # .npy uint64 [rows, num_perm]
    empty: Path  # .npy bool [rows]
    texts: tuple[Path, Path]  # `write_texts` files


@dataclass(frozen=True)
class KeyParams:
    """What every part's keys depend on (shared by all tasks of one map)."""

    exact: bool  # digests and exact rank keys
    keep: str
    quality_field: str
    near: NearDedup  # the compared text's fields and normalisation
    settings: NearSettings | None  # signatures (None: neither near dedup nor decontamination)
    band_shape: tuple[int, int] | None  # (bands, rows per band): band keys for near dedup (None: none)
    near_rank: bool  # a rank key for the near step (its `longest` measures the compared fields)
    partitions: int  # band-key partitions
    exact_partitions: int = 1  # digest partitions
    references: tuple[Reference, ...] = ()


@dataclass(frozen=True)
class KeyTask:
    index: int
    part: Path
    start: int  # global position of the part's first row
    work: Path  # where its key files go


@dataclass(frozen=True)
class PartKeys:
    """What `part_keys` returns: the row count and the dictionaries its codes index."""

    rows: int
    kinds: list[str]
    sources: list[str]


def key_path(work: Path, index: int) -> Path:
    return work / "keys" / f"{index}.npz"


def sig_path(work: Path, index: int) -> Path:
    return work / "sig" / f"{index}.npy"


def text_paths(work: Path, index: int) -> tuple[Path, Path]:
    """(UTF-8 bytes, int64 offsets) of a part's compared texts."""
    return work / "text" / f"{index}.bytes.npy", work / "text" / f"{index}.off.npy"


def mapped(path: Path) -> np.ndarray:
    """The array in `path`, memory-mapped (read lazily) when it has any data."""
    try:
        return np.load(path, mmap_mode="r")
    except ValueError:  # an empty array cannot be mapped
        return np.load(path)


# Byte ranges this close are read in one call (a 1 KB signature's neighbour rows: one read, at most twice the bytes).
READ_GAP = 1024


def _npy_layout(handle) -> tuple[int, np.dtype, tuple[int, ...]]:
    """(offset of the data, dtype, shape) of the .npy file open in `handle` (C order, as np.save writes)."""
    version = np.lib.format.read_magic(handle)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(handle)
    if fortran:
        raise ValueError(f"{handle.name}: a Fortran-ordered array (dedup writes C order)")
    return handle.tell(), dtype, shape


def _pread_into(fd: int, buffer: memoryview, offset: int) -> None:
    """Fill `buffer` from the file at `offset` (a positioned read can return fewer bytes: read on until full)."""
    done = 0
    while done < len(buffer):
        got = os.preadv(fd, [buffer[done:]], offset + done)
        if got == 0:
            raise OSError(f"file ended {len(buffer) - done} bytes short of offset {offset + len(buffer)}")
        done += got


def _read_ranges(fd: int, base: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The bytes [lo, hi) of each range (relative to `base`), concatenated in the given order, as uint8.

    Ranges are sorted and merged into spans (no more than READ_GAP apart), each span read with one positioned
    read into one buffer. Why not a memory map: every page a map touches counts in the process's RSS while it
    is mapped, and the kernel maps up to 16 pages around each one faulted in, so gathering 100,000 scattered
    1 KB signatures from ten million rows' files held gigabytes of file pages; read into a buffer, the process
    holds what it asked for (and at most READ_GAP bytes between two ranges)."""
    lengths = hi - lo
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.uint8)
    order = np.argsort(lo, kind="stable")
    slo, shi = lo[order], hi[order]
    reach = np.maximum.accumulate(shi)
    new = np.concatenate(([True], slo[1:] > reach[:-1] + READ_GAP))
    first = np.flatnonzero(new)
    span_lo, span_hi = slo[first], np.maximum.reduceat(shi, first)
    span_at = np.concatenate(([0], np.cumsum(span_hi - span_lo)))
    buffer = np.empty(int(span_at[-1]), np.uint8)
    view = memoryview(buffer)
    for a, b, at in zip(span_lo.tolist(), span_hi.tolist(), span_at.tolist(), strict=False):
        _pread_into(fd, view[at : at + b - a], base + a)
    span_of = np.cumsum(new) - 1
    where = np.empty(len(lo), np.int64)
    where[order] = span_at[span_of] + (slo - span_lo[span_of])  # each range's first byte in `buffer`
    out = np.concatenate(([0], np.cumsum(lengths)))
    at = np.repeat(where - out[:-1], lengths) + np.arange(total)
    return buffer[at]


def read_rows(path: Path, rows: np.ndarray) -> np.ndarray:
    """Rows `rows` (any order) of the .npy array in `path`, reading only their bytes (see `_read_ranges`)."""
    rows = np.asarray(rows, dtype=np.int64)
    with open(path, "rb") as handle:
        base, dtype, shape = _npy_layout(handle)
        width = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        if len(rows) and (rows.min() < 0 or rows.max() >= shape[0]):
            raise IndexError(f"{path}: row {int(rows.max())} of {shape[0]}")
        lo = rows * width
        data = _read_ranges(handle.fileno(), base, lo, lo + width)
    return data.view(dtype).reshape((len(rows), *shape[1:]))


def write_texts(texts: pa.Array, paths: tuple[Path, Path]) -> None:
    """`texts` as a bytes file and an offsets file, so that a few rows can be read back without the rest."""
    texts = texts.cast(pa.large_string())
    _, offsets_buf, data_buf = texts.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[texts.offset : texts.offset + len(texts) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    np.save(paths[0], data[offsets[0] : offsets[-1]])
    np.save(paths[1], offsets - offsets[0])


def read_texts(paths: tuple[Path, Path], rows: np.ndarray) -> pa.Array:
    """The texts of `rows` (local, any order) from `write_texts`'s files, reading only their bytes."""
    rows = np.asarray(rows, dtype=np.int64)
    ends = read_rows(paths[1], np.concatenate((rows, rows + 1))).astype(np.int64)
    lo, hi = ends[: len(rows)], ends[len(rows) :]
    out = np.concatenate(([0], np.cumsum(hi - lo))).astype(np.int64)
    with open(paths[0], "rb") as handle:
        base, _, _ = _npy_layout(handle)
        data = _read_ranges(handle.fileno(), base, lo, hi)
    return pa.LargeStringArray.from_buffers(len(rows), pa.py_buffer(out), pa.py_buffer(np.ascontiguousarray(data)))


def exact_paths(work: Path, index: int) -> tuple[Path, Path, Path, Path]:
    """(digests, rank keys, global positions, partition offsets) of a part's rows, ordered by digest partition."""
    folder = work / "exact"
    return tuple(folder / f"{index}.{name}.npy" for name in ("digest", "key", "pos", "off"))  # type: ignore[return-value]


def write_exact_keys(digest: np.ndarray, key: np.ndarray, start: int, paths, parts: int) -> None:
    """Digests (S16), rank keys and global positions ordered by digest partition (stable: a partition's rows stay
    in position order), and each partition's offsets."""
    head = np.ascontiguousarray(digest).view(U64).reshape(-1, 2)[:, 0] if len(digest) else np.zeros(0, U64)
    partition = (head % U64(parts)).astype(np.int64)
    order = np.argsort(partition, kind="stable")
    offsets = np.searchsorted(partition[order], np.arange(parts + 1))
    pos = np.arange(len(digest), dtype=np.int64) + start
    for path, array in zip(paths, (digest[order], key[order], pos[order], offsets), strict=True):
        np.save(path, array)


def pairs_path(work: Path, partition: int) -> Path:
    """Where band-key partition `partition` writes its candidate pairs' codes (`partition.self_pairs`)."""
    return work / "pairs" / f"{partition}.npy"


def band_paths(work: Path, index: int) -> tuple[Path, Path, Path]:
    folder = work / "bands"
    return folder / f"{index}.keys.npy", folder / f"{index}.pos.npy", folder / f"{index}.off.npy"


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    encoded = pc.dictionary_encode(column.combine_chunks())
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32), encoded.dictionary.to_pylist()


def write_band_keys(values: np.ndarray, usable: np.ndarray, start: int, shape: tuple[int, int], paths, parts: int):
    """Tagged band keys of the `usable` rows with their global positions, ordered by partition (stable, so a
    partition's entries stay in position order), and each partition's offsets."""
    rows = np.flatnonzero(usable)
    tagged = tagged_band_keys(band_keys(values[rows], *shape)).ravel()
    pos = np.repeat(rows.astype(np.int64) + start, shape[0])
    partition = (tagged % U64(parts)).astype(np.int64)
    order = np.argsort(partition, kind="stable")
    offsets = np.searchsorted(partition[order], np.arange(parts + 1))
    for path, array in zip(paths, (tagged[order], pos[order], offsets), strict=True):
        np.save(path, array)


def best_matches(pairs: np.ndarray, sim: np.ndarray, n: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(reference, similarity) per query: the most similar reference at or above `threshold` (ties: the lowest
    reference), -1 / nan where none. The tail of `near.near_matches`, which could call it."""
    reference = np.full(n, -1, dtype=np.int64)
    best = np.full(n, np.nan)
    hit = sim >= threshold
    p, s = pairs[hit], sim[hit]
    if len(p):
        order = np.lexsort((p[:, 1], -s, p[:, 0]))
        p, s = p[order], s[order]
        first = np.concatenate(([True], p[1:, 0] != p[:-1, 0]))
        reference[p[first, 0]] = p[first, 1]
        best[p[first, 0]] = s[first]
    return reference, best


def _decontamination(texts: pa.Array, sigs: Signatures, params: KeyParams) -> tuple[np.ndarray, np.ndarray]:
    """int64/float64 [files, rows]: each row's best match in each reference file (a row's match does not
    depend on the other rows, so this equals `near_matches` over the whole table, row for row)."""
    n = len(texts)
    refs = np.full((len(params.references), n), -1, dtype=np.int64)
    sims = np.full((len(params.references), n), np.nan)
    settings = params.settings
    assert settings is not None
    for f, ref in enumerate(params.references):
        rs = Signatures(np.load(ref.signatures), np.load(ref.empty))  # eval files: small, read whole
        ref_texts = read_texts(ref.texts, np.arange(len(rs.empty)))
        pairs = cross_pairs(sigs, rs, threshold=settings.threshold)
        sim = similarities(pairs, settings, sigs=(sigs, rs), texts=(texts, ref_texts))
        refs[f], sims[f] = best_matches(pairs, sim, n, settings.threshold)
    return refs, sims


def part_keys(params: KeyParams, task: KeyTask) -> PartKeys:
    """Shard function: the keys of one part's rows, written under `task.work` (see the module docstring)."""
    table = pq.read_table(task.part)
    n = table.num_rows
    kind, kinds = _codes(table["kind"])
    source, sources = _codes(table["source"])
    out: dict[str, np.ndarray] = {"kind": kind, "source": source}
    if params.exact:
        digest = digests(row_text(table)) if n else np.zeros(0, "S16")
        key = rank_key(table, params.keep, params.quality_field)
        write_exact_keys(digest, key, task.start, exact_paths(task.work, task.index), params.exact_partitions)
    if params.settings is not None:
        raw = field_text(table, params.near.fields) if n else pa.array([], pa.string())
        texts = normalised(raw, params.near) if n else raw
        if params.near_rank:
            lengths = pc.utf8_length(raw).to_numpy(zero_copy_only=False)
            out["near_key"] = rank_key(table, params.keep, params.quality_field, lengths)
        # Nested process pools are not allowed in executor workers (and the executor is the parallelism).
        sigs = compute_signatures(texts, replace(params.settings, workers=1))
        out["empty"] = sigs.empty
        np.save(sig_path(task.work, task.index), sigs.values)
        write_texts(texts, text_paths(task.work, task.index))
        if params.references:
            out["decon_ref"], out["decon_sim"] = _decontamination(texts, sigs, params)
        if params.band_shape is not None:
            paths = band_paths(task.work, task.index)
            write_band_keys(sigs.values, ~sigs.empty, task.start, params.band_shape, paths, params.partitions)
    np.savez(key_path(task.work, task.index), **out)
    return PartKeys(n, kinds, sources)


def prepare_references(files, root, near: NearDedup | None, settings: NearSettings, work: Path):
    """Each decontamination file's signatures and compared texts written to `work`; (references, the display
    name of each file, each file's record locations)."""
    from ..checking import check_files
    from ..stages.read import display_path

    refs, shown, where = [], [], []
    for k, path in enumerate(files):
        reference = check_files(str(path), root=root).examples
        texts = compared_text(reference, near)
        sigs = compute_signatures(texts, settings)
        folder = work / "refs"
        folder.mkdir(parents=True, exist_ok=True)
        texts_at = (folder / f"{k}.bytes.npy", folder / f"{k}.off.npy")
        ref = Reference(folder / f"{k}.sig.npy", folder / f"{k}.empty.npy", texts_at)
        np.save(ref.signatures, sigs.values)
        np.save(ref.empty, sigs.empty)
        write_texts(texts, ref.texts)
        refs.append(ref)
        shown.append(display_path(path, root))
        where.append([location(r) for r in reference.select(["file", "row", "line"]).to_pylist()])
    return tuple(refs), shown, where


def make_folders(work: Path) -> None:
    """The work folder's subfolders (key files, signatures, texts, band keys, candidate pairs, outputs)."""
    for name in ("keys", "exact", "sig", "text", "bands", "pairs", "out"):
        (work / name).mkdir(parents=True, exist_ok=True)


# ---------------------------------------------------------------- reading a few rows back


def row_starts(counts: list[int]) -> np.ndarray:
    """int64 [parts + 1]: the global position of each part's first row, then the total."""
    return np.concatenate(([0], np.cumsum(counts))).astype(np.int64)


def _rows_by_part(rows: np.ndarray, starts: np.ndarray):
    """(part, local rows, where they sit in `rows`) for every part holding some of `rows` (sorted)."""
    part = np.searchsorted(starts, rows, side="right") - 1
    for k in np.unique(part).tolist():
        at = np.flatnonzero(part == k)
        yield k, rows[at] - starts[k], at


def key_values(work: Path, starts: np.ndarray, name: str, rows: np.ndarray) -> np.ndarray:
    """Member `name` of the parts' key files at `rows` (sorted global positions; the last axis is rows), reading one
    part's member at a time."""
    chunks = []
    for k, local, _ in _rows_by_part(rows, starts):
        with np.load(key_path(work, k)) as keys:
            chunks.append(keys[name][..., local])
    return np.concatenate(chunks, axis=-1) if chunks else np.zeros(0)


def fetch_ids(parts: list[Path], starts: np.ndarray, rows: np.ndarray) -> dict[int, str]:
    """The `id` of each of `rows` (global positions), reading only the id column of the parts holding them."""
    rows = np.unique(rows)
    out: dict[int, str] = {}
    for k, local, at in _rows_by_part(rows, starts):
        ids = pq.read_table(parts[k], columns=["id"])["id"].combine_chunks().take(pa.array(local, pa.int64()))
        out.update(zip(rows[at].tolist(), ids.to_pylist(), strict=True))
    return out


def fetch_raw_text(parts: list[Path], starts: np.ndarray, rows: np.ndarray, near: NearDedup) -> dict[int, str]:
    """The raw compared text (`field_text`) of each of `rows`, reading one holding part at a time."""
    rows = np.unique(rows)
    out: dict[int, str] = {}
    for k, local, at in _rows_by_part(rows, starts):
        table = pq.read_table(parts[k]).take(pa.array(local, pa.int64()))
        out.update(zip(rows[at].tolist(), field_text(table, near.fields).to_pylist(), strict=True))
    return out


# ---------------------------------------------------------------- applying the decisions


@dataclass(frozen=True)
class RejectGroup:
    """Rejects of one step for one part's rows (local, sorted)."""

    path: Path
    rows: np.ndarray
    stage: str
    reason: str
    message: list[str] | str
    duplicate_of: list[str]
    similarity: np.ndarray


@dataclass(frozen=True)
class ApplyTask:
    part: Path
    examples: Path  # where the kept rows go
    groups: list[RejectGroup] = field(default_factory=list)


def apply_part(params: None, task: ApplyTask) -> list[dict[str, int]]:
    """Shard function: write the part's kept rows and one rejects file per group; per group, removed rows by
    source (in first-seen order)."""
    table = pq.read_table(task.part)
    keep = np.ones(table.num_rows, dtype=bool)
    counts = []
    for g in task.groups:
        removed = table.take(pa.array(g.rows, pa.int64()))
        message = g.message if isinstance(g.message, str) else pa.array(g.message, pa.string())
        rejects = rejects_from_examples(
            removed,
            stage=g.stage,
            outcome=Outcome.DEDUPLICATED,
            reason=g.reason,
            message=message,
            duplicate_of=pa.array(g.duplicate_of, pa.string()),
            similarity=pa.array(np.asarray(g.similarity, dtype=np.float64)),
        )
        write_parquet(rejects, g.path)
        keep[g.rows] = False
        counts.append(dict(Counter(removed["source"].to_pylist())))
    write_parquet(keep_rows(table, keep), task.examples)
    return counts


def local_rows(rows: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """The global `rows` (sorted) within [lo, hi), as local rows."""
    return rows[np.searchsorted(rows, lo) : np.searchsorted(rows, hi)] - lo
