"""dedup: duplicates removed across all sources — exact copies, then near-copies of eval files, then
near-duplicates (MinHash LSH) — each removed row naming the row (or eval record) it repeats and how similar.

Which row of a group stays is the recipe's `keep` policy, turned into one rank per row (lower wins, ties go
to the earlier row in recipe order), so every choice is deterministic.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import jsonsafe
from ..dedup.near import NearSettings, near_duplicates, near_matches
from ..dedup.text import dedup_text, field_text, normalise
from ..recipe import Dedup, NearDedup
from ..rejects import Outcome, concat_rejects, location, rejects_from_examples
from ..tables import keep_rows
from .base import Progress, RunContext, StageInput, StageOutput
from .dedup_exact import exact_duplicates, exact_rejects

# 4: stats without the redundant exact_duplicates (it is exact.removed)
# 5: near duplicates are only looked for among rows of the same kind (a KTO row is no copy of a DPO pair)
VERSION = 5
SAMPLE_CLUSTERS = 5
SAMPLE_MEMBERS = 5
SAMPLE_CHARS = 300


def near_settings(near: NearDedup | None, seed: int) -> NearSettings:
    """The dedup engine's settings from the recipe's `dedup.near` (its defaults when absent)."""
    near = near or NearDedup()
    return NearSettings(
        threshold=near.threshold,
        num_perm=near.num_perm,
        ngram=near.ngram,
        shingle=near.shingle,
        verify=near.verify,
        engine=near.engine,
        seed=seed,
        workers=near.workers or min(os.cpu_count() or 1, 8),
    )


def compared_text(examples: pa.Table, near: NearDedup | None) -> pa.Array:
    """The normalised text near deduplication and decontamination compare."""
    near = near or NearDedup()
    return dedup_text(examples, near.fields, near.normalise, words=near.shingle == "word")


def normalised(raw: pa.Array, near: NearDedup) -> pa.Array:
    """`raw` field text normalised as `near` says (whitespace runs left to the word splitter for words)."""
    return normalise(raw, near.normalise, words=near.shingle == "word")


def keep_rank(examples: pa.Table, policy: str, quality_field: str, lengths: np.ndarray | None = None) -> np.ndarray:
    """int64 rank per row (lower is kept) for `policy`: first | longest | quality | a source's name."""
    n = examples.num_rows
    position = np.arange(n, dtype=np.int64)
    if policy == "first" or n == 0:
        return position
    if policy == "longest":
        if lengths is None:
            lengths = pc.utf8_length(field_text(examples, "conversation")).to_numpy(zero_copy_only=False)
        key = -np.asarray(lengths, dtype=np.int64)
    elif policy == "quality":
        key = -_quality(examples["metadata"].to_pylist(), quality_field)
    else:  # a source's name: its rows first
        key = pc.not_equal(examples["source"], policy).to_numpy(zero_copy_only=False).astype(np.int64)
    order = np.lexsort((position, key))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = position
    return rank


def _quality(metadata: list[str | None], field: str) -> np.ndarray:
    """The numeric `field` of each row's metadata JSON; -inf where absent or not a number."""
    out = np.full(len(metadata), -np.inf)
    for i, text in enumerate(metadata):
        if text:
            try:
                value = jsonsafe.loads(text, field="metadata").get(field)
            except ValueError:  # convert rejects such metadata; a row that has it anyway ranks last
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[i] = float(value)
    return out


def decontaminate_files(
    examples: pa.Table, texts: pa.Array, files: list[Path], root: Path, near: NearDedup | None, seed: int
) -> tuple[np.ndarray, pa.Table, dict[str, Any]]:
    """(rows to remove, their rejects, stats): rows with a near-copy in any of `files` (e.g. eval sets)."""
    from ..checking import check_files
    from .read import display_path

    settings = near_settings(near, seed)
    hit = np.zeros(examples.num_rows, dtype=bool)
    origin = np.full(examples.num_rows, None, dtype=object)
    sim = np.full(examples.num_rows, np.nan)
    per_file: dict[str, int] = {}
    for path in files:
        shown = display_path(path, root)
        reference = check_files(str(path), root=root).examples
        ref_text = compared_text(reference, near)
        matches = near_matches(texts, ref_text, settings)
        new = (matches.reference >= 0) & ~hit
        where = [location(r) for r in reference.select(["file", "row", "line"]).to_pylist()]
        origin[new] = [where[j] for j in matches.reference[new].tolist()]
        sim[new] = matches.similarity[new]
        hit |= new
        per_file[shown] = int(new.sum())
    rejects = rejects_from_examples(
        examples.filter(pa.array(hit)),
        stage="dedup",
        outcome=Outcome.DEDUPLICATED,
        reason="eval_contamination",
        message=pa.array([f"near-copy ({s:.2f}) of an eval record" for s in sim[hit]], pa.string()),
        duplicate_of=pa.array(origin[hit].tolist(), pa.string()),
        similarity=pa.array(sim[hit]),
    )
    return hit, rejects, {"files": per_file, "removed": int(hit.sum())}


def cluster_stats(
    examples: pa.Table, clusters, raw_text: pa.Array, settings: NearSettings, bands: tuple[int, int]
) -> dict[str, Any]:
    """Cluster counts and sizes, duplicate rate per source, cross-source clusters, a sample side by side."""
    sources = examples["source"].to_numpy(zero_copy_only=False)
    ids = examples["id"].to_numpy(zero_copy_only=False)
    label = clusters.label
    removed = clusters.removed
    in_cluster = label >= 0
    sizes = np.bincount(label[in_cluster]) if in_cluster.any() else np.zeros(0, np.int64)
    cross = 0
    if in_cluster.any():
        pairs = {(int(c), s) for c, s in zip(label[in_cluster].tolist(), sources[in_cluster].tolist(), strict=True)}
        cross = sum(n > 1 for n in Counter(c for c, _ in pairs).values())
    gone = np.flatnonzero(removed)
    cross_removed = int((sources[gone] != sources[clusters.keeper[gone]]).sum()) if len(gone) else 0
    by_source = {}
    for s in dict.fromkeys(sources.tolist()):
        mine = sources == s
        rows, gone = int(mine.sum()), int((removed & mine).sum())
        by_source[s] = {"rows": rows, "removed": gone, "rate": round(gone / rows, 6) if rows else 0.0}
    samples = []
    # Largest clusters first, then by the keeper's position: a stable, informative sample.
    for c in sorted(range(len(sizes)), key=lambda c: (-sizes[c], c))[:SAMPLE_CLUSTERS]:
        members = np.flatnonzero(label == c)
        keeper = clusters.keeper[members[0]]
        shown = [keeper, *[m for m in members.tolist() if m != keeper]][:SAMPLE_MEMBERS]
        samples.append(
            {
                "cluster": str(ids[keeper]),
                "size": int(sizes[c]),
                "members": [
                    {
                        "id": str(ids[m]),
                        "source": str(sources[m]),
                        "kept": bool(m == keeper),
                        "similarity": round(float(clusters.similarity[m]), 4),
                        "text": _snippet(raw_text[m].as_py()),
                    }
                    for m in shown
                ],
            }
        )
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
        "rows_compared": examples.num_rows,
        "candidate_pairs": clusters.pairs,
        "verified_pairs": clusters.verified,
        "removed": int(removed.sum()),
        "clusters": int(len(sizes)),
        "cluster_sizes": {str(k): int(v) for k, v in sorted(Counter(sizes.tolist()).items())},
        "cross_source_clusters": int(cross),
        "cross_source_removed": cross_removed,  # removed rows whose kept row is from another source
        "by_source": by_source,
        "samples": samples,
    }


def _snippet(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= SAMPLE_CHARS else text[: SAMPLE_CHARS - 1] + "…"


def deduplicate(
    examples: pa.Table, policy: Dedup, *, root: Path, files: list[Path], seed: int, progress: Progress
) -> StageOutput:
    """Exact duplicates, then eval-file near-copies, then near-duplicates, removed from `examples`."""
    from ..dedup.candidates import band_shape

    n = examples.num_rows
    rejects: list[pa.Table] = []
    stats: dict[str, Any] = {"exact": {"removed": 0}, "near": {"enabled": False}, "decontamination": {}}
    progress(0, 3, "exact")
    if policy.exact and n:
        rank = keep_rank(examples, policy.keep, policy.quality_field)
        dup, keeper = exact_duplicates(examples, rank)
        rejects.append(exact_rejects(examples, dup, keeper))
        examples = keep_rows(examples, ~dup)
        stats["exact"]["removed"] = int(dup.sum())
    progress(1, 3, "decontaminate")
    # Both later steps compare the same text: extract and normalise it once, then keep it in step with the rows.
    near = policy.near or NearDedup()
    raw = field_text(examples, near.fields) if (files or policy.near) and examples.num_rows else None
    texts = normalised(raw, near) if raw is not None else None
    if files and examples.num_rows:
        hit, bad, stats["decontamination"] = decontaminate_files(examples, texts, files, root, policy.near, seed)
        rejects.append(bad)
        examples = keep_rows(examples, ~hit)
        raw, texts = raw.filter(pa.array(~hit)), texts.filter(pa.array(~hit))
    progress(2, 3, "near")
    if policy.near is not None and examples.num_rows:
        settings = near_settings(policy.near, seed)
        lengths = pc.utf8_length(raw).to_numpy(zero_copy_only=False)
        rank = keep_rank(examples, policy.keep, policy.quality_field, lengths)
        kinds = pc.dictionary_encode(examples["kind"].combine_chunks()).indices.to_numpy(zero_copy_only=False)
        clusters = near_duplicates(texts, rank, settings, groups=kinds)
        gone = clusters.removed
        ids = examples["id"].combine_chunks()
        sim = clusters.similarity[gone]
        rejects.append(
            rejects_from_examples(
                examples.filter(pa.array(gone)),
                stage="dedup",
                outcome=Outcome.DEDUPLICATED,
                reason="near_duplicate",
                message=pa.array([f"{s:.2f} similar to the kept row" for s in sim], pa.string()),
                duplicate_of=ids.take(pa.array(clusters.keeper[gone])),
                similarity=pa.array(sim),
            )
        )
        bands = band_shape(settings.threshold, settings.num_perm)
        stats["near"] = cluster_stats(examples, clusters, raw, settings, bands)
        examples = keep_rows(examples, ~gone)
    progress(3, 3, "")
    return StageOutput({"examples": examples, "rejects": concat_rejects(rejects)}, stats)


def make_sharded_dedup(filter_stages: list[str], policy: Dedup, root: Path, files: list[Path], seed: int):
    """The dedup stage over parts: keys per part in the executor's workers, decisions on id-level arrays, then each
    part cut by them (`dedup.sharded`); the same rows, rejects and stats as `deduplicate` on the whole table."""
    from ..dedup.sharded import deduplicate_sharded
    from ..engine.executor import hinted_for
    from .sharding import conform_parts

    def run(inputs: dict[str, StageInput], progress: Progress, ctx: RunContext) -> StageOutput:
        parts = [part for s in filter_stages for part in inputs[s].parts("examples")]
        done = deduplicate_sharded(
            parts,
            policy,
            root=root,
            files=files,
            seed=seed,
            executor=hinted_for(ctx.executor, parts),
            work=ctx.scratch / "work",
            progress=progress,
        )
        # Sources meet here: from now on their rows share one schema (mix and split keep it; write needs it).
        return StageOutput({"examples": conform_parts(done.examples), "rejects": done.rejects}, done.stats)

    return run
