"""Deduplication (and the split's validation decontamination) over Parquet parts, deciding on row-level keys.

Same result as `stages.dedup.deduplicate` on the concatenated parts, with memory bounded by one part plus a few
bytes per row (an alive flag, kind and source codes, the survivors' positions) and what is sparse (duplicates,
candidate pairs, the rows in clusters):

1. keys (per part, `keys.part_keys`): digests and rank keys by digest partition, kind/source codes, signatures,
   band keys by partition, each row's best match in every decontamination file;
2. exact (per digest partition, `partition.exact_partition`): digest groups, keeper = lowest (rank key, position);
3. decontamination (global): each surviving row's first matching file, from the rows with a match;
4. near (global): candidate pairs per band-key partition (`partition.self_pairs`), verified reading only the
   signatures (and texts) of the rows in pairs, connected components over the rows in verified pairs, keepers;
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
    exact_paths,
    fetch_ids,
    fetch_raw_text,
    key_path,
    key_values,
    local_rows,
    make_folders,
    pairs_path,
    part_keys,
    prepare_references,
    row_starts,
    sig_path,
    text_paths,
)
from .near import NearSettings
from .partition import (
    CrossParams,
    ExactParams,
    PairParams,
    SparseClusters,
    Store,
    VerifyParams,
    clusters_from_edges,
    cross_partition_pairs,
    exact_partition,
    merge_pairs,
    partition_count,
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


def _global_codes(infos: list[PartKeys], work: Path, starts: np.ndarray, name: str) -> tuple[np.ndarray, list[str]]:
    """One int32 code per row over all parts (first-seen order of values) from the parts' local codes."""
    values: dict[str, int] = {}
    out = np.zeros(int(starts[-1]), dtype=np.int32)
    for i, info in enumerate(infos):
        local = getattr(info, name + "s")
        if len(local):
            lookup = np.array([values.setdefault(v, len(values)) for v in local], dtype=np.int32)
            with np.load(key_path(work, i)) as keys:
                out[int(starts[i]) : int(starts[i + 1])] = lookup[keys[name]]
    return out, list(values)


def _first_seen(codes: np.ndarray) -> np.ndarray:
    """The distinct `codes` in the order they first appear (they come in long runs: a part holds one source)."""
    if len(codes) == 0:
        return codes
    runs = codes[np.concatenate(([True], codes[1:] != codes[:-1]))]
    present, first = np.unique(runs, return_index=True)
    return present[np.argsort(first)]


def _near_stats(clusters: SparseClusters, source, names: list[str], settings, bands, shown) -> dict[str, Any]:
    """`stages.dedup.cluster_stats` from codes: `source` is each compared row's source code, `shown(rows)`
    gives (id, raw text) of the few rows the samples show."""
    rows, label, keeper = clusters.rows, clusters.label, clusters.keeper
    sizes = np.bincount(label) if len(label) else np.zeros(0, np.int64)
    cross = 0
    if len(rows):
        width = max(len(names), 1)
        combos = np.unique(label * width + source[rows])
        cross = int((np.bincount(combos // width) > 1).sum())
    removed = clusters.removed
    gone, gone_keeper = rows[removed], keeper[removed]
    cross_removed = int((source[gone] != source[gone_keeper]).sum()) if len(gone) else 0
    by_source = {}
    rows_of = np.bincount(source, minlength=len(names))
    gone_of = np.bincount(source[gone], minlength=len(names))
    for s in _first_seen(source).tolist():
        count, g = int(rows_of[s]), int(gone_of[s])
        by_source[names[s]] = {"rows": count, "removed": g, "rate": round(g / count, 6) if count else 0.0}
    picked = []
    for c in np.lexsort((np.arange(len(sizes)), -sizes))[:SAMPLE_CLUSTERS].tolist():
        members = rows[label == c]
        k = int(keeper[label == c][0])
        picked.append((c, k, [k, *[m for m in members.tolist() if m != k]][:SAMPLE_MEMBERS]))
    info = shown(np.array([m for _, _, ms in picked for m in ms], dtype=np.int64))
    similarity = clusters.similarity
    samples = [
        {
            "cluster": info[k][0],
            "size": int(sizes[c]),
            "members": [
                {
                    "id": info[m][0],
                    "source": names[source[m]],
                    "kept": bool(m == k),
                    "similarity": round(float(similarity[clusters.at(np.array([m]))[0]]), 4),
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
        "rows_compared": clusters.n,
        "candidate_pairs": clusters.pairs,
        "verified_pairs": clusters.verified,
        "removed": len(gone),
        "clusters": int(len(sizes)),
        "cluster_sizes": {str(k): int(v) for k, v in sorted(Counter(sizes.tolist()).items())},
        "cross_source_clusters": int(cross),
        "cross_source_removed": cross_removed,
        "by_source": by_source,
        "samples": samples,
    }


@dataclass
class _Keys:
    """The id-level state of one sharded dedup: row counts, global codes; the rest stays in the parts' key files."""

    parts: list[Path]
    starts: np.ndarray  # global position of each part's first row, then the total
    work: Path
    kind: np.ndarray  # int32 code per row
    source: np.ndarray  # int32 code per row
    source_names: list[str]

    @property
    def n(self) -> int:
        return int(self.starts[-1])

    def at(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Key `name` of `rows` (sorted global positions), read part by part."""
        return key_values(self.work, self.starts, name, rows)


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
    executor.map(
        self_pairs,
        PairParams(band_files, work / "survivors.npy", settings.engine, work),
        list(range(partitions)),
        describe=lambda p: f"dedup: band-key partition {p} of {partitions}",
    )
    pairs = merge_pairs([pairs_path(work, p) for p in range(partitions)], len(survivors))
    kinds = keys.kind[survivors[pairs]]  # rows of different kinds are never compared
    pairs = pairs[kinds[:, 0] == kinds[:, 1]]
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

    def key_of(rows: np.ndarray) -> np.ndarray:
        return keys.at("near_key", survivors[rows])

    clusters = clusters_from_edges(len(survivors), pairs[strong], sim[strong], key_of, len(pairs), verify)
    near = policy.near or NearDedup()

    def shown(rows: np.ndarray) -> dict[int, tuple[str, str]]:
        at = survivors[rows]
        ids, texts = fetch_ids(parts, keys.starts, at), fetch_raw_text(parts, keys.starts, at, near)
        return {int(c): (ids[int(r)], texts[int(r)]) for c, r in zip(rows.tolist(), at.tolist(), strict=True)}

    stats = _near_stats(clusters, keys.source[survivors], keys.source_names, settings, shape, shown)
    gone = clusters.removed
    return survivors[clusters.rows[gone]], survivors[clusters.keeper[gone]], clusters.similarity[gone], stats


def _decontamination_step(keys: _Keys, alive: np.ndarray, shown: list[str], where: list[list[str]]):
    """(removed rows, stats) and the removed rows' origins: rows whose first matching eval file (in order)
    holds a near-copy, among the `alive` rows. Only the rows with some match are gathered, part by part."""
    at, refs, sims = [], [], []
    for i in range(len(keys.parts)):
        with np.load(key_path(keys.work, i)) as part:
            ref, sim = part["decon_ref"], part["decon_sim"]
        lo = int(keys.starts[i])
        hit = np.flatnonzero((ref >= 0).any(axis=0) & alive[lo : int(keys.starts[i + 1])])
        at.append(hit + lo)
        refs.append(ref[:, hit])
        sims.append(sim[:, hit])
    rows = np.concatenate(at)
    ref, sim = np.concatenate(refs, axis=1), np.concatenate(sims, axis=1)
    taken = np.full(len(rows), -1)  # the file each row is removed for
    per_file: dict[str, int] = {}
    for f in range(len(shown)):
        new = (ref[f] >= 0) & (taken < 0)
        taken[new] = f
        per_file[shown[f]] = int(new.sum())
    j = np.arange(len(rows))
    origin = [where[f][r] for f, r in zip(taken.tolist(), ref[taken, j].tolist(), strict=True)]
    removed = _Removed(rows, origin, sim[taken, j])
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
    exact_partitions = partition_count(n)
    params = KeyParams(
        exact=policy.exact,
        keep=policy.keep,
        quality_field=policy.quality_field,
        near=policy.near or NearDedup(),
        settings=settings,
        band_shape=shape,
        near_rank=policy.near is not None,
        partitions=_partitions(executor, n * shape[0]) if shape else 1,
        exact_partitions=exact_partitions,
        references=refs,
    )
    tasks = [KeyTask(i, p, int(starts[i]), work) for i, p in enumerate(parts)]
    infos = executor.map(part_keys, params, tasks, describe=lambda i: f"dedup: keys of {parts[i]}")
    kind, _ = _global_codes(infos, work, starts, "kind")
    source, source_names = _global_codes(infos, work, starts, "source")
    keys = _Keys(parts, starts, work, kind, source, source_names)

    alive = np.ones(n, dtype=bool)
    exact_rows, exact_keeper = np.zeros(0, np.int64), np.zeros(0, np.int64)
    if policy.exact and n:
        found = executor.map(
            exact_partition,
            ExactParams([exact_paths(work, i) for i in range(len(parts))]),
            list(range(exact_partitions)),
            describe=lambda p: f"dedup: digest partition {p} of {exact_partitions}",
        )
        pairs = np.concatenate(found)
        order = np.argsort(pairs[:, 0])
        exact_rows, exact_keeper = pairs[order, 0], pairs[order, 1]
        alive[exact_rows] = False
        stats["exact"]["removed"] = len(exact_rows)
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
    ids = fetch_ids(parts, starts, np.concatenate((exact_keeper, near_keeper)))
    exact = _Removed(exact_rows, [ids[k] for k in exact_keeper.tolist()], np.ones(len(exact_rows)))
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
