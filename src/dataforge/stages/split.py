"""split: hold out a share of each source for validation, reproducibly (seeded by seed and source name)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..recipe import Split
from .base import Progress, StageInput, StageOutput
from .mix import rng_for

VERSION = 1


def split(examples: pa.Table, sources: list[str], policy: Split, seed: int, progress: Progress) -> StageOutput:
    """(train, val): per source, round(n × validation) rows chosen at random go to val; order is kept."""
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
    progress(n, n, "")
    return StageOutput(
        {"train": examples.filter(pa.array(~val)), "val": examples.filter(pa.array(val))}, {"per_source": counts}
    )


def make_split(mix_stage: str, sources: list[str], policy: Split, seed: int):
    def run(inputs: dict[str, StageInput], progress: Progress) -> StageOutput:
        return split(inputs[mix_stage].table("examples"), sources, policy, seed, progress)

    return run
