"""mix: sample each source to its share of the final set, exactly and reproducibly.

`natural` keeps every row. `ratio` normalises the weights to shares, takes the largest total the shares
allow without repeating a row (or `total`, when given and feasible), splits it by largest remainder so the
counts are exact, and picks each source's rows with a generator seeded by (seed, source name). Rows left
out are counted as `downsampled`.
"""

from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa

from ..errors import DataError
from ..recipe import Mix
from ..rejects import Outcome, concat_rejects, rejects_from_examples
from .base import Progress, RunContext, StageInput, StageOutput

VERSION = 1


def rng_for(seed: int, name: str, salt: int = 0) -> np.random.Generator:
    """A generator that depends only on the seed, a name and a salt (never on run order)."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8")), salt])


def targets(available: dict[str, int], weights: dict[str, float], total: int | None) -> dict[str, int]:
    """Rows to take from each source so shares match the weights exactly (largest remainder)."""
    norm = sum(weights.values())
    shares = {s: weights.get(s, 0.0) / norm for s in available}
    empty = [s for s in available if shares[s] > 0 and available[s] == 0]
    if empty:
        raise DataError(
            f"mix: source {empty[0]!r} has no rows left after validation, filtering and dedup, "
            f"so no mix can give it a share of {shares[empty[0]]:.0%}",
            hint="fix the source (see rejects.parquet) or give it weight 0",
        )
    feasible = min(int(np.floor(available[s] / shares[s] + 1e-9)) for s in available if shares[s] > 0)
    if total is None:
        total = feasible
    elif total > feasible:
        limiting = min((s for s in available if shares[s] > 0), key=lambda s: available[s] / shares[s])
        raise DataError(
            f"mix: total={total} needs {int(np.ceil(total * shares[limiting]))} rows from {limiting!r}, "
            f"which has {available[limiting]} after filtering and dedup",
            hint=f"lower `total` to at most {feasible}, or lower the weight of {limiting!r}",
        )
    exact = {s: total * shares[s] for s in available}
    counts = {s: int(np.floor(v)) for s, v in exact.items()}
    remainder = total - sum(counts.values())
    by_fraction = sorted(available, key=lambda s: (-(exact[s] - counts[s]), list(available).index(s)))
    for s in by_fraction[:remainder]:
        counts[s] += 1
    return counts


def mix(examples: pa.Table, sources: list[str], policy: Mix, seed: int, progress: Progress) -> StageOutput:
    n = examples.num_rows
    progress(0, n, "")
    source_col = examples["source"].combine_chunks().to_numpy(zero_copy_only=False)
    available = {s: int((source_col == s).sum()) for s in sources}
    if policy.strategy == "natural":
        progress(n, n, "")  # every row is kept
        return StageOutput(
            {"examples": examples, "rejects": concat_rejects([])},
            {"strategy": "natural", "available": available, "taken": available},
        )
    want = targets(available, policy.ratios, policy.total)
    keep = np.zeros(n, dtype=bool)
    for s in sources:
        rows = np.flatnonzero(source_col == s)
        chosen = rng_for(seed, s).choice(len(rows), size=want[s], replace=False) if want[s] else []
        keep[rows[np.sort(np.asarray(chosen, dtype=np.int64))]] = True
    dropped = examples.filter(pa.array(~keep))
    rejects = rejects_from_examples(
        dropped,
        stage="mix",
        outcome=Outcome.DOWNSAMPLED,
        reason="downsampled",
        message="left out to meet the mix ratios",
    )
    progress(n, n, "")
    return StageOutput(
        {"examples": examples.filter(pa.array(keep)), "rejects": rejects},
        {
            "strategy": "ratio",
            "available": available,
            "taken": want,
            "shares": {s: round(want[s] / max(sum(want.values()), 1), 6) for s in sources},
        },
    )


def mix_keep(source_codes: np.ndarray, sources: list[str], policy: Mix, seed: int) -> tuple[np.ndarray, dict]:
    """Which rows the mix keeps, decided on each row's source alone (an int16 code per row: its index in
    `sources`), and the stage's stats. The same choice `mix` makes on the whole table."""
    n = len(source_codes)
    available = {s: int((source_codes == i).sum()) for i, s in enumerate(sources)}
    if policy.strategy == "natural":
        return np.ones(n, dtype=bool), {"strategy": "natural", "available": available, "taken": available}
    want = targets(available, policy.ratios, policy.total)
    keep = np.zeros(n, dtype=bool)
    for i, s in enumerate(sources):
        rows = np.flatnonzero(source_codes == i)
        chosen = rng_for(seed, s).choice(len(rows), size=want[s], replace=False) if want[s] else []
        keep[rows[np.sort(np.asarray(chosen, dtype=np.int64))]] = True
    stats = {
        "strategy": "ratio",
        "available": available,
        "taken": want,
        "shares": {s: round(want[s] / max(sum(want.values()), 1), 6) for s in sources},
    }
    return keep, stats


def make_sharded_mix(dedup_stage: str, sources: list[str], policy: Mix, seed: int):
    """The mix stage over parts: the choice is made on the rows' sources (read one column at a time), then each
    part is cut by its slice of the choice in the executor's workers."""
    from .sharding import RejectSpec, source_codes, split_parts

    def run(inputs: dict[str, StageInput], progress: Progress, ctx: RunContext) -> StageOutput:
        upstream = inputs[dedup_stage]
        codes, sizes = source_codes(upstream, "examples", sources)
        n = len(codes)
        progress(0, n, "")
        keep, stats = mix_keep(codes, sources, policy, seed)
        spec = RejectSpec("mix", Outcome.DOWNSAMPLED.value, "downsampled", "left out to meet the mix ratios")
        parts = split_parts(
            upstream,
            "examples",
            keep,
            sizes,
            ctx.scratch,
            ctx.executor,
            chosen="examples",
            rest=None,
            rejects=spec,
            label="mix",
        )
        progress(n, n, "")
        return StageOutput({"examples": parts["examples"], "rejects": parts["rejects"]}, stats)

    return run
