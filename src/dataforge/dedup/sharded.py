"""Deduplication (and the split's validation decontamination) over Parquet parts, deciding on row-level keys.

Same result as `stages.dedup.deduplicate` on the concatenated parts, with memory bounded by one part plus
id-level arrays (positions, digests, ranks, codes, candidate pairs):

1. keys (per part, `keys.part_keys`): digests, rank keys, kind/source codes, signatures, band keys by partition,
   each row's best match in every decontamination file;
2. exact (global): digest groups, keeper = lowest (rank key, position);
3. decontamination (global): each surviving row's first matching file, from the per-row matches;
4. near (global): candidate pairs per band-key partition (`partition.self_pairs`), verified reading only the
   signatures (and texts) of the rows in pairs, connected components over survivor indices, keepers;
5. apply (per part): the kept rows and the rejects of that part's rows, one file per step.

Rejects come back step by step (every part's exact rejects, then decontamination, then near), the order of
`deduplicate`'s rejects table.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from ..engine.executor import Executor
from ..recipe import Dedup, NearDedup
from ..stages.base import Progress
from ..stages.dedup import SAMPLE_CLUSTERS, SAMPLE_MEMBERS, _snippet, near_settings
from .candidates import band_shape
from .keys import (
    ApplyTask,
    KeyParams,
    KeyTask,
    PartKeys,
    RejectGroup,
    apply_part,
    band_paths,
    best_matches,
    fetch_ids,
    fetch_raw_text,
    key_path,
    local_rows,
    make_folders,
    part_keys,
    prepare_references,
    row_starts,
    sig_path,
    text_paths,
)
from .near import Clusters, NearSettings
from .partition import (
    CrossParams,
    PairParams,
    Store,
    VerifyParams,
    clusters_from_edges,
    cross_partition_pairs,
    exact_keepers,
    partition_count,
    rank_of,
    self_pairs,
    unique_pairs,
    verify_all,
)


@dataclass
class ShardedDedup:
    """Kept rows per input part (same order), rejects step by step, and `deduplicate`'s stats."""

    examples: list[Path]  # one Parquet per input part: its kept rows (possibly none)
    rejects: list[Path]  # exact rejects of part 0..n-1, then decontamination's, then near's (3 per part)
    stats: dict[str, Any]


# ---------------------------------------------------------------- dedup


def _global_codes(infos: list[PartKeys], keys: list, name: str) -> tuple[np.ndarray, list[str]]:
    """One int code per row over all parts (first-seen order of values) from the parts' local codes."""
    values: dict[str, int] = {}
    out = []
    for info, k in zip(infos, keys, strict=True):
        local = getattr(info, name)
        lookup = np.array([values.setdefault(v, len(values)) for v in local], dtype=np.int64)
        out.append(lookup[k[name[:-1]]] if len(local) else np.zeros(0, np.int64))
    return (np.concatenate(out) if out else np.zeros(0, np.int64)), list(values)


def _near_stats(clusters: Clusters, source: np.ndarray, names: list[str], settings, bands, shown) -> dict[str, Any]:
    """`stages.dedup.cluster_stats` from codes: `source` is each compared row's source code, `shown(rows)`
    gives (id, raw text) of the few rows the samples show."""
    label, removed, keeper = clusters.label, clusters.removed, clusters.keeper
    in_cluster = label >= 0
    sizes = np.bincount(label[in_cluster]) if in_cluster.any() else np.zeros(0, np.int64)
    cross = 0
    if in_cluster.any():
        combos = np.unique(label[in_cluster] * max(len(names), 1) + source[in_cluster])
        cross = int((np.bincount(combos // max(len(names), 1)) > 1).sum())
    gone = np.flatnonzero(removed)
    cross_removed = int((source[gone] != source[keeper[gone]]).sum()) if len(gone) else 0
    by_source = {}
    present, first = np.unique(source, return_index=True)
    rows_of = np.bincount(source, minlength=len(names))
    gone_of = np.bincount(source[gone], minlength=len(names))
    for s in present[np.argsort(first)].tolist():
        rows, g = int(rows_of[s]), int(gone_of[s])
        by_source[names[s]] = {"rows": rows, "removed": g, "rate": round(g / rows, 6) if rows else 0.0}
    picked = []
    for c in sorted(range(len(sizes)), key=lambda c: (-sizes[c], c))[:SAMPLE_CLUSTERS]:
        members = np.flatnonzero(label == c)
        k = int(keeper[members[0]])
        picked.append((c, k, [k, *[m for m in members.tolist() if m != k]][:SAMPLE_MEMBERS]))
    info = shown(np.array([m for _, _, ms in picked for m in ms], dtype=np.int64))
    samples = [
        {
            "cluster": info[k][0],
            "size": int(sizes[c]),
            "members": [
                {
                    "id": info[m][0],
                    "source": names[source[m]],
                    "kept": bool(m == k),
                    "similarity": round(float(clusters.similarity[m]), 4),
                    "text": _snippet(info[m][1]),
                }
                for m in ms
            ],
        }
        for c, k, ms in picked
    ]
    return {
        "enabled": True,
        "threshold": settings.threshold,
        "num_perm": settings.num_perm,
        "ngram": settings.ngram,
        "shingle": settings.shingle,
        "engine": settings.engine,
        "verify": settings.verify,
        "bands": bands[0],
        "rows_per_band": bands[1],
        "rows_compared": len(label),
        "candidate_pairs": clusters.pairs,
        "verified_pairs": clusters.verified,
        "removed": int(removed.sum()),
        "clusters": int(len(sizes)),
        "cluster_sizes": {str(k): int(v) for k, v in sorted(Counter(sizes.tolist()).items())},
        "cross_source_clusters": int(cross),
        "cross_source_removed": cross_removed,
        "by_source": by_source,
        "samples": samples,
    }


@dataclass
class _Keys:
    """The id-level state of one sharded dedup: row counts, per-part key arrays, global codes."""

    parts: list[Path]
    starts: np.ndarray  # global position of each part's first row, then the total
    work: Path
    arrays: list[dict[str, np.ndarray]]
    kind: np.ndarray  # int64 code per row
    source: np.ndarray  # int64 code per row
    source_names: list[str]

    @property
    def n(self) -> int:
        return int(self.starts[-1])

    def column(self, name: str) -> np.ndarray:
        return np.concatenate([a[name] for a in self.arrays], axis=-1)


@dataclass
class _Removed:
    """Global positions removed by one step (sorted), what each duplicates, and how similar."""

    rows: np.ndarray
    duplicate_of: list[str]
    similarity: np.ndarray


def _near_step(keys: _Keys, policy: Dedup, alive: np.ndarray, settings: NearSettings, shape, partitions: int, executor):
    """(removed rows, their keeper positions, similarities, stats) of near deduplication among `alive` rows."""
    work, parts = keys.work, keys.parts
    survivors = np.flatnonzero(alive)
    np.save(work / "survivors.npy", survivors)
    band_files = [band_paths(work, i) for i in range(len(parts))]
    found = executor.map(
        self_pairs,
        PairParams(band_files, work / "survivors.npy", settings.engine),
        list(range(partitions)),
        describe=lambda p: f"dedup: band-key partition {p} of {partitions}",
    )
    pairs = unique_pairs(np.concatenate(found))
    groups = keys.kind[survivors]  # rows of different kinds are never compared
    pairs = pairs[groups[pairs[:, 0]] == groups[pairs[:, 1]]]
    store = Store(
        keys.starts.tolist(),
        [sig_path(work, i) for i in range(len(parts))],
        [text_paths(work, i) for i in range(len(parts))],
    )
    vparams = VerifyParams(settings, store, None)

    def verify(p: np.ndarray) -> np.ndarray:
        return verify_all(executor, vparams, survivors[p], "dedup verify")

    sim = verify(pairs)
    strong = sim >= settings.threshold
    rank = rank_of(keys.column("near_key")[survivors])
    clusters = clusters_from_edges(len(survivors), pairs[strong], sim[strong], rank, len(pairs), verify)
    near = policy.near or NearDedup()

    def shown(rows: np.ndarray) -> dict[int, tuple[str, str]]:
        at = survivors[rows]
        ids, texts = fetch_ids(parts, keys.starts, at), fetch_raw_text(parts, keys.starts, at, near)
        return {int(c): (ids[int(r)], texts[int(r)]) for c, r in zip(rows.tolist(), at.tolist(), strict=True)}

    stats = _near_stats(clusters, keys.source[survivors], keys.source_names, settings, shape, shown)
    gone = clusters.removed
    return survivors[gone], survivors[clusters.keeper[gone]], clusters.similarity[gone], stats


def _decontamination_step(keys: _Keys, alive: np.ndarray, shown: list[str], where: list[list[str]]):
    """(removed mask, stats) and the removed rows' origins: rows whose first matching eval file (in order)
    holds a near-copy, among the `alive` rows."""
    hit = np.zeros(keys.n, dtype=bool)
    ref, sim = keys.column("decon_ref"), keys.column("decon_sim")
    similarity = np.full(keys.n, np.nan)
    origin: dict[int, str] = {}
    per_file: dict[str, int] = {}
    for f in range(len(shown)):
        new = (ref[f] >= 0) & alive & ~hit
        at = np.flatnonzero(new)
        origin.update(zip(at.tolist(), [where[f][j] for j in ref[f][at].tolist()], strict=True))
        similarity[new] = sim[f][new]
        hit |= new
        per_file[shown[f]] = int(new.sum())
    rows = np.flatnonzero(hit)
    removed = _Removed(rows, [origin[r] for r in rows.tolist()], similarity[rows])
    return removed, {"files": per_file, "removed": len(rows)}


def _apply(keys: _Keys, exact: _Removed, decon: _Removed, near: _Removed, executor) -> tuple[list[Path], list[Path]]:
    """Per part, its kept rows and its rejects of each step; (examples, rejects step by step)."""
    out = keys.work / "out"
    steps = [
        ("exact", exact, "exact_duplicate", lambda s: "same normalised text as the kept row"),
        ("decontamination", decon, "eval_contamination", lambda s: f"near-copy ({s:.2f}) of an eval record"),
        ("near", near, "near_duplicate", lambda s: f"{s:.2f} similar to the kept row"),
    ]
    tasks = []
    for i, part in enumerate(keys.parts):
        lo, hi = int(keys.starts[i]), int(keys.starts[i + 1])
        groups = []
        for name, removed, reason, message in steps:
            at = slice(int(np.searchsorted(removed.rows, lo)), int(np.searchsorted(removed.rows, hi)))
            sim = removed.similarity[at]
            text = message(1.0) if name == "exact" else [message(s) for s in sim.tolist()]
            path = out / f"{name}-{i}.parquet"
            groups.append(
                RejectGroup(path, removed.rows[at] - lo, "dedup", reason, text, removed.duplicate_of[at], sim)
            )
        tasks.append(ApplyTask(part, out / f"examples-{i}.parquet", groups))
    executor.map(apply_part, None, tasks, describe=lambda i: f"dedup: applying decisions to {keys.parts[i]}")
    return [t.examples for t in tasks], [t.groups[g].path for g in range(len(steps)) for t in tasks]


def deduplicate_sharded(
    parts: list[Path],
    policy: Dedup,
    *,
    root: Path,
    files: list[Path],
    seed: int,
    executor: Executor,
    work: Path,
    progress: Progress,
) -> ShardedDedup:
    """`stages.dedup.deduplicate` of the concatenated `parts`, one part (or id-level arrays) in memory at a time."""
    make_folders(work)
    starts = row_starts([pq.ParquetFile(p).metadata.num_rows for p in parts])
    n = int(starts[-1])
    stats: dict[str, Any] = {"exact": {"removed": 0}, "near": {"enabled": False}, "decontamination": {}}
    progress(0, 3, "exact")
    settings = near_settings(policy.near, seed) if n and (files or policy.near) else None
    shape = band_shape(settings.threshold, settings.num_perm) if settings is not None and policy.near else None
    refs, shown, where = prepare_references(files, root, policy.near, settings, work) if files and n else ((), [], [])
    params = KeyParams(
        exact=policy.exact,
        keep=policy.keep,
        quality_field=policy.quality_field,
        near=policy.near or NearDedup(),
        settings=settings,
        band_shape=shape,
        near_rank=policy.near is not None,
        partitions=_partitions(executor, n * shape[0]) if shape else 1,
        references=refs,
    )
    tasks = [KeyTask(i, p, int(starts[i]), work) for i, p in enumerate(parts)]
    infos = executor.map(part_keys, params, tasks, describe=lambda i: f"dedup: keys of {parts[i]}")
    arrays = [dict(np.load(key_path(work, i))) for i in range(len(parts))]
    kind, _ = _global_codes(infos, arrays, "kinds")
    source, source_names = _global_codes(infos, arrays, "sources")
    keys = _Keys(parts, starts, work, arrays, kind, source, source_names)

    alive = np.ones(n, dtype=bool)
    exact_keeper = np.arange(n)
    if policy.exact and n:
        exact_keeper = exact_keepers(keys.column("digest"), keys.column("exact_key"))
        alive = exact_keeper == np.arange(n)
        stats["exact"]["removed"] = int((~alive).sum())
    progress(1, 3, "decontaminate")
    decon = _Removed(np.zeros(0, np.int64), [], np.zeros(0))
    if files and alive.any():
        decon, stats["decontamination"] = _decontamination_step(keys, alive, shown, where)
        alive[decon.rows] = False
    progress(2, 3, "near")
    near_rows, near_keeper, near_sim = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    if policy.near is not None and alive.any():
        assert settings is not None and shape is not None
        near_rows, near_keeper, near_sim, stats["near"] = _near_step(
            keys, policy, alive, settings, shape, params.partitions, executor
        )
    progress(3, 3, "")
    exact_rows = np.flatnonzero(exact_keeper != np.arange(n))
    ids = fetch_ids(parts, starts, np.concatenate((exact_keeper[exact_rows], near_keeper)))
    exact = _Removed(exact_rows, [ids[k] for k in exact_keeper[exact_rows].tolist()], np.ones(len(exact_rows)))
    near = _Removed(near_rows, [ids[k] for k in near_keeper.tolist()], near_sim)
    examples, rejects = _apply(keys, exact, decon, near, executor)
    return ShardedDedup(examples, rejects, stats)


# ---------------------------------------------------------------- split: validation rows near-copying train rows


def decontaminate_validation_sharded(
    train_parts: list[Path],
    val_parts: list[Path],
    near: NearDedup | None,
    seed: int,
    *,
    executor: Executor,
    work: Path,
) -> tuple[list[Path], list[Path], dict[str, Any]]:
    """`stages.split.decontaminate_validation` over parts: (val parts without near-copies of train rows, one
    rejects file per val part, stats), joining band keys partition by partition."""
    settings = near_settings(near, seed)
    shape = band_shape(settings.threshold, settings.num_perm)
    vstarts = row_starts([pq.ParquetFile(p).metadata.num_rows for p in val_parts])
    tstarts = row_starts([pq.ParquetFile(p).metadata.num_rows for p in train_parts])
    partitions = _partitions(executor, int(vstarts[-1] + tstarts[-1]) * shape[0])
    params = KeyParams(
        exact=False,
        keep="first",
        quality_field="quality",
        near=near or NearDedup(),
        settings=settings,
        band_shape=shape,
        near_rank=False,
        partitions=partitions,
    )
    sides = {"val": (val_parts, vstarts), "train": (train_parts, tstarts)}
    tasks = []
    for side, (paths, starts) in sides.items():
        make_folders(work / side)
        tasks += [KeyTask(i, p, int(starts[i]), work / side) for i, p in enumerate(paths)]
    executor.map(part_keys, params, tasks, describe=lambda i: f"split keys of {tasks[i].part}")

    def files(side: str) -> list:
        return [band_paths(work / side, i) for i in range(len(sides[side][0]))]

    def store(side: str) -> Store:
        paths, starts = sides[side]
        w = work / side
        return Store(
            starts.tolist(), [sig_path(w, i) for i in range(len(paths))], [text_paths(w, i) for i in range(len(paths))]
        )

    found = executor.map(
        cross_partition_pairs,
        CrossParams(files("val"), files("train")),
        list(range(partitions)),
        describe=lambda p: f"split band partition {p}",
    )
    pairs = unique_pairs(np.concatenate(found)) if found else np.zeros((0, 2), np.int64)
    sim = verify_all(executor, VerifyParams(settings, store("val"), store("train")), pairs, "split verify")
    reference, best = best_matches(pairs, sim, int(vstarts[-1]), settings.threshold)
    gone = np.flatnonzero(reference >= 0)
    ids = fetch_ids(train_parts, tstarts, reference[gone])
    out = work / "out"
    out.mkdir(parents=True, exist_ok=True)
    apply = []
    for i, part in enumerate(val_parts):
        rows = local_rows(gone, int(vstarts[i]), int(vstarts[i + 1]))
        at = rows + int(vstarts[i])
        group = RejectGroup(
            out / f"val-rejects-{i}.parquet",
            rows,
            "split",
            "val_near_train",
            [f"validation row {s:.2f} similar to a training row" for s in best[at]],
            [ids[int(r)] for r in reference[at]],
            best[at],
        )
        apply.append(ApplyTask(part, out / f"val-{i}.parquet", [group]))
    removed = executor.map(apply_part, None, apply, describe=lambda i: f"split apply to {val_parts[i]}")
    by_source: Counter[str] = Counter()
    for counts in removed:
        by_source.update(counts[0])
    stats = {
        "enabled": True,
        "threshold": settings.threshold,
        "val_removed": len(gone),
        "by_source": dict(sorted(by_source.items())),
    }
    return [t.examples for t in apply], [t.groups[0].path for t in apply], stats


def _partitions(executor: Executor, entries: int) -> int:
    """The band-key shuffle's partitions: the engine's `num_partitions` when the recipe sets it, else from the number
    of band-key entries. Either way the pairs found, and so the outputs, are the same."""
    return getattr(executor, "num_partitions", None) or partition_count(entries)
