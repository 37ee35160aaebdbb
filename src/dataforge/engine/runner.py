"""The local engine: runs the graph in topological order, reusing every stage whose key is cached."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..recipe import LoadedRecipe
from ..stages.base import Progress, RunContext, Stage, StageInput
from .builddir import Claim, build_dir_lock, writing
from .cache import Cache, Entry
from .executor import Executor, LocalExecutor
from .graph import build_graph
from .shards import (
    LazyParams,
    Sharded,
    ShardResult,
    ShardTask,
    load_shard,
    remove_quietly,
    run_shard,
    shard_key,
    with_paths,
)


@dataclass
class StageStatus:
    """Whether a stage can be reused, and why not when it cannot."""

    name: str
    state: str  # cached | stale | new
    reason: str
    key: str | None = None
    inputs: tuple[str, ...] = ()


@dataclass
class RunResult:
    stages: list[Stage]
    entries: dict[str, Entry]
    statuses: list[StageStatus] = field(default_factory=list)
    # Things the person should know that did not stop the build (a damaged cache entry recomputed, …).
    warnings: list[str] = field(default_factory=list)

    @property
    def ran(self) -> list[str]:
        return [s.name for s in self.statuses if s.state != "cached"]


def cache_for(loaded: LoadedRecipe) -> Cache:
    return Cache(loaded.build_dir / ".cache")


def explain(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """Why a stage's key changed since its last run, in words."""
    if old is None:
        return "never built"
    reasons = []
    if old.get("version") != new["version"]:
        reasons.append(f"stage code version {old.get('version')} → {new['version']}")
    if old.get("config") != new["config"]:
        changed = sorted(
            k
            for k in set(old.get("config", {})) | set(new["config"])
            if old.get("config", {}).get(k) != new["config"].get(k)
        )
        reasons.append(f"config changed: {', '.join(changed)}")
    old_files, new_files = old.get("files", {}), new["files"]
    for f in sorted(set(old_files) | set(new_files)):
        if f not in old_files:
            reasons.append(f"new file {f}")
        elif f not in new_files:
            reasons.append(f"file gone {f}")
        elif old_files[f] != new_files[f]:
            reasons.append(f"file changed {f}")
    changed_inputs = sorted(k for k in new["inputs"] if old.get("inputs", {}).get(k) != new["inputs"][k])
    if changed_inputs:
        reasons.append(f"input changed: {', '.join(changed_inputs)}")
    if old.get("libraries") != new["libraries"]:
        diff = sorted(k for k in new["libraries"] if old.get("libraries", {}).get(k) != new["libraries"][k])
        reasons.append(f"library version changed: {', '.join(diff)}")
    return "; ".join(reasons) or "cache entry missing"


def plan(loaded: LoadedRecipe, stages: list[Stage] | None = None) -> list[StageStatus]:
    """What a build would do now: for each stage, cached or stale and why — without running anything."""
    stages = stages or build_graph(loaded)
    cache = cache_for(loaded)
    entries: dict[str, Entry] = {}
    out: list[StageStatus] = []
    for stage in stages:
        pending = [i for i in stage.inputs if i not in entries]
        if pending:
            out.append(StageStatus(stage.name, "stale", f"after {', '.join(pending)} re-runs", None, stage.inputs))
            continue
        parts = cache.key_parts(stage, entries, loaded.root)
        key = cache.key(parts)
        entry, damaged = cache.check(stage.name, key)
        if entry is not None:
            entries[stage.name] = entry
            out.append(StageStatus(stage.name, "cached", "key matches", key, stage.inputs))
        elif damaged is not None:
            out.append(StageStatus(stage.name, "stale", f"cache entry damaged: {damaged}", key, stage.inputs))
        else:
            latest = cache.latest(stage.name)
            state = "new" if latest is None else "stale"
            out.append(
                StageStatus(
                    stage.name, state, explain(latest.manifest["parts"] if latest else None, parts), key, stage.inputs
                )
            )
    return out


StageProgress = Callable[[Stage, StageStatus], Progress]


def run(loaded: LoadedRecipe, on_stage: StageProgress | None = None) -> RunResult:
    """Run every stage that is not cached, in topological order; return all entries.

    Holds the build directory's lock meanwhile (re-entrant: the CLI holds it around the write stage too). A
    damaged cache entry is removed and its stage recomputed, with a warning in `RunResult.warnings`."""
    with build_dir_lock(loaded) as claim:
        return _run(loaded, on_stage, claim)


def _compute(
    stage: Stage,
    key: str,
    parts: dict[str, Any],
    inputs: dict[str, StageInput],
    cache: Cache,
    executor: Executor,
    progress: Progress,
) -> Entry:
    """Run one stage that is not cached and store its entry."""
    if stage.sharded is not None:
        return run_sharded(stage, key, parts, inputs, cache, executor, progress)
    if not stage.context:
        return cache.store(stage, key, parts, stage.run(inputs, progress))
    scratch = cache.scratch(stage.name)
    try:
        with writing(scratch):
            output = stage.run(inputs, progress, RunContext(executor, scratch))
        return cache.store(stage, key, parts, output)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_sharded(
    stage: Stage,
    key: str,
    parts: dict[str, Any],
    inputs: dict[str, StageInput],
    cache: Cache,
    executor: Executor,
    progress: Progress,
) -> Entry:
    """Run the shards of `stage` that are not cached (in the executor's workers), then write its entry.

    Each shard is keyed by its own content (engine.shards): a shard another build of this stage finished, or this
    build finished before it was killed, is reused."""
    spec: Sharded = stage.sharded
    tasks = spec.tasks(inputs)
    base = {
        "stage": stage.kind,
        "version": stage.version,
        "config": spec.shard_config if spec.shard_config is not None else parts["config"],
        "libraries": parts["libraries"],
    }
    digests: dict[str, str] = {}
    for upstream in inputs.values():
        digests.update(upstream._digests)
    results: list[ShardResult] = []
    todo: list[ShardTask] = []
    waiting: dict[str, list[int]] = {}  # shard key → the results waiting for it (equal shards are run once)
    for task in tasks:
        k = shard_key(base, {name: digests[path] for name, path in sorted(task.inputs.items())}, task.meta)
        final = cache.shard_dir(stage.name, k)
        info = None if k in waiting else load_shard(final)
        if info is None:
            if k not in waiting:
                remove_quietly(final)  # a folder that is not whole (cut by a full disk, say): computed again
                todo.append(with_paths(task, cache.shard_tmp(stage.name, k), final))
                waiting[k] = []
            waiting[k].append(len(results))
        results.append(ShardResult(task, k, final, info or {}))
    total, done = len(tasks), sum(1 for r in results if r.info)
    progress(done, total, f"{done}/{total} shards cached" if done else "")

    started, rows = time.monotonic(), 0

    def finished(i: int, info: dict[str, Any]) -> None:
        nonlocal done, rows
        for at in waiting[shard_key_of[i]]:
            results[at].info = info
            done += 1
        rows += info.get("rows", 0)
        rate = rows / max(time.monotonic() - started, 1e-6)
        progress(done, total, f"{done}/{total} shards, {rate:,.0f} rows/s")

    shard_key_of = [Path(t.final).name for t in todo]

    if todo:
        (cache.shard_dir(stage.name, "x")).parent.mkdir(parents=True, exist_ok=True)
        params = spec.params.resolve() if isinstance(spec.params, LazyParams) else spec.params
        executor.map(
            run_shard, (spec.fn, params), todo, describe=lambda i: f"{stage.name} {todo[i].describe}", on_done=finished
        )
    progress(total, total, spec.note() if spec.note else "")
    stats = spec.merge([r.stats for r in results])
    if spec.finish is None:
        return cache.store_sharded(stage, key, parts, results, stats)
    scratch = cache.scratch(stage.name)
    try:
        with writing(scratch):
            finished = spec.finish(results, scratch)
        if finished.stats is not None:
            stats = finished.stats
        return cache.store_sharded(stage, key, parts, results, stats, finished)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# Below this much input, starting worker processes (about a second each: import, unpickle) costs more than it saves.
PARALLEL_BYTES = 8 << 20


def parallel_bytes() -> int:
    """PARALLEL_BYTES, or DATAFORGE_PARALLEL_BYTES (tests set 0 to run tiny builds in workers). Where work runs never
    changes what is built, so this is not part of any key."""
    return int(os.environ.get("DATAFORGE_PARALLEL_BYTES", PARALLEL_BYTES))


def worth_processes(tasks: list[ShardTask]) -> bool:
    """Whether these shards are big enough together to run in worker processes."""
    if len(tasks) < 2:
        return False
    total = 0
    for task in tasks:
        total += task.weight if task.weight is not None else sum(os.path.getsize(p) for p in task.inputs.values())
    return total >= parallel_bytes()


def executor_for(loaded: LoadedRecipe) -> Executor:
    """The recipe's engine: `local` worker processes (default: every core) or a Ray cluster."""
    engine = loaded.recipe.engine
    if engine.name == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(address=engine.address, workers=engine.workers, num_partitions=engine.num_partitions)
    return LocalExecutor(engine.workers, engine.num_partitions)


def _run(loaded: LoadedRecipe, on_stage: StageProgress | None, claim: Claim) -> RunResult:
    executor = executor_for(loaded)
    try:
        return _run_stages(loaded, on_stage, claim, executor)
    finally:
        close = getattr(executor, "close", None)
        if close is not None:
            close()


def _run_stages(loaded: LoadedRecipe, on_stage: StageProgress | None, claim: Claim, executor: Executor) -> RunResult:
    stages = build_graph(loaded)
    cache = cache_for(loaded)
    entries: dict[str, Entry] = {}
    statuses: list[StageStatus] = []
    warnings: list[str] = []
    for stage in stages:
        parts = cache.key_parts(stage, entries, loaded.root)
        key = cache.key(parts)
        entry, damaged = cache.check(stage.name, key)
        if entry is not None:
            status = StageStatus(stage.name, "cached", "key matches", key, stage.inputs)
            if claim.writable:  # LATEST only explains staleness later: a read-only cached build still runs
                cache.mark_latest(stage.name, key)
        elif damaged is not None:
            # Why: serving it would fail every later build (or silently feed cut data downstream).
            warnings.append(f"cache entry of {stage.name} was damaged ({damaged}); removed and recomputed")
            cache.discard(stage.name, key)
            status = StageStatus(stage.name, "stale", f"cache entry damaged: {damaged}", key, stage.inputs)
        else:
            latest = cache.latest(stage.name)
            status = StageStatus(
                stage.name,
                "new" if latest is None else "stale",
                explain(latest.manifest["parts"] if latest else None, parts),
                key,
                stage.inputs,
            )
        progress: Progress = on_stage(stage, status) if on_stage else (lambda done, total, what: None)
        if entry is None:
            claim.refuse_writes()  # a read-only build dir: said once, naming the folder, before any work
            inputs = {name: entries[name].as_input() for name in stage.inputs}
            entry = _compute(stage, key, parts, inputs, cache, executor, progress)
        entries[stage.name] = entry
        statuses.append(status)
    return RunResult(stages, entries, statuses, warnings)
