"""split: hold out a share of each source for validation, reproducibly (seeded by seed and source name), then
remove validation rows that have a near-copy in train (decontamination), so validation loss measures
generalisation rather than recall of training rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..recipe import NearDedup, Split
from ..rejects import Outcome, concat_rejects, rejects_from_examples
from ..tables import keep_rows
from .base import Progress, RunContext, StageInput, StageOutput
from .mix import rng_for

VERSION = 2


def split(
    examples: pa.Table,
    sources: list[str],
    policy: Split,
    seed: int,
    progress: Progress,
    near: NearDedup | None = None,
) -> StageOutput:
    """(train, val, rejects): per source, round(n × validation) rows chosen at random go to val (order kept);
    with `policy.decontaminate`, val rows with a near-copy in train are then removed."""
    n = examples.num_rows
    progress(0, n, "")
    source_col = examples["source"].combine_chunks().to_numpy(zero_copy_only=False)
    val = np.zeros(n, dtype=bool)
    counts = {}
    for s in sources:
        rows = np.flatnonzero(source_col == s)
        k = int(round(len(rows) * policy.validation))
        if k:
            val[rows[rng_for(seed, s, salt=1).choice(len(rows), size=k, replace=False)]] = True
        counts[s] = {"train": len(rows) - k, "val": k}
    train_t, val_t = examples.filter(pa.array(~val)), examples.filter(pa.array(val))
    rejects = concat_rejects([])
    decon: dict[str, Any] = {"enabled": bool(policy.decontaminate and val.any()), "val_removed": 0}
    if decon["enabled"] and train_t.num_rows:
        val_t, rejects, decon = decontaminate_validation(train_t, val_t, near, seed)
        for s in sources:
            counts[s]["val_removed"] = decon["by_source"].get(s, 0)
            counts[s]["val"] -= counts[s]["val_removed"]
    progress(n, n, "")
    return StageOutput(
        {"train": train_t, "val": val_t, "rejects": rejects}, {"per_source": counts, "decontamination": decon}
    )


def decontaminate_validation(
    train: pa.Table, val: pa.Table, near: NearDedup | None, seed: int
) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    """(val without near-copies of train rows, their rejects, stats)."""
    from ..dedup.near import near_matches
    from .dedup import compared_text, near_settings

    settings = near_settings(near, seed)
    matches = near_matches(compared_text(val, near), compared_text(train, near), settings)
    hit = matches.reference >= 0
    ids = train["id"].combine_chunks()
    sim = matches.similarity[hit]
    removed = val.filter(pa.array(hit))
    rejects = rejects_from_examples(
        removed,
        stage="split",
        outcome=Outcome.DEDUPLICATED,
        reason="val_near_train",
        message=pa.array([f"validation row {s:.2f} similar to a training row" for s in sim], pa.string()),
        duplicate_of=ids.take(pa.array(matches.reference[hit])),
        similarity=pa.array(sim),
    )
    by_source: dict[str, int] = {}
    for s in removed["source"].to_pylist():
        by_source[s] = by_source.get(s, 0) + 1
    stats = {
        "enabled": True,
        "threshold": settings.threshold,
        "val_removed": int(hit.sum()),
        "by_source": dict(sorted(by_source.items())),
    }
    return keep_rows(val, ~hit), rejects, stats


def val_mask(source_codes: np.ndarray, sources: list[str], policy: Split, seed: int) -> tuple[np.ndarray, dict]:
    """Which rows go to validation, decided on each row's source alone (the choice `split` makes), and the
    per-source counts."""
    val = np.zeros(len(source_codes), dtype=bool)
    counts = {}
    for i, s in enumerate(sources):
        rows = np.flatnonzero(source_codes == i)
        k = int(round(len(rows) * policy.validation))
        if k:
            val[rows[rng_for(seed, s, salt=1).choice(len(rows), size=k, replace=False)]] = True
        counts[s] = {"train": len(rows) - k, "val": k}
    return val, counts


def make_sharded_split(mix_stage: str, sources: list[str], policy: Split, seed: int, near: NearDedup | None = None):
    """The split over parts: validation rows chosen on the rows' sources, each part cut in the executor's workers;
    with `decontaminate`, validation rows with a near-copy in train are then removed (`dedup.sharded`)."""
    from .sharding import source_codes, split_parts

    def run(inputs: dict[str, StageInput], progress: Progress, ctx: RunContext) -> StageOutput:
        upstream = inputs[mix_stage]
        codes, sizes = source_codes(upstream, "examples", sources)
        n = len(codes)
        progress(0, n, "")
        val, counts = val_mask(codes, sources, policy, seed)
        parts = split_parts(
            upstream,
            "examples",
            val,
            sizes,
            ctx.scratch,
            ctx.executor,
            chosen="val",
            rest="train",
            rejects=None,
            label="split",
        )
        train, vals = parts["train"], parts["val"]
        rejects: list[Path] | pa.Table = concat_rejects([])
        decon: dict[str, Any] = {"enabled": bool(policy.decontaminate and val.any()), "val_removed": 0}
        if decon["enabled"] and int((~val).sum()):
            vals, rejects, decon = decontaminate_parts(train, vals, near, seed, ctx)
            for s in sources:
                counts[s]["val_removed"] = decon["by_source"].get(s, 0)
                counts[s]["val"] -= counts[s]["val_removed"]
        progress(n, n, "")
        return StageOutput(
            {"train": train, "val": vals, "rejects": rejects}, {"per_source": counts, "decontamination": decon}
        )

    return run


def decontaminate_parts(
    train: list[Path], val: list[Path], near: NearDedup | None, seed: int, ctx: RunContext
) -> tuple[list[Path], list[Path] | pa.Table, dict[str, Any]]:
    """Validation parts without near-copies of training rows, their rejects, and stats."""
    from ..dedup.sharded import decontaminate_validation_sharded
    from ..engine.executor import hinted_for

    executor = hinted_for(ctx.executor, train + val)
    return decontaminate_validation_sharded(train, val, near, seed, executor=executor, work=ctx.scratch / "decon")
