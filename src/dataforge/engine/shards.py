"""Shards as the unit of work (DESIGN.md seam 3): a sharded stage is one top-level function run per shard.

A sharded stage (`Stage.sharded`) says how to cut its work into `ShardTask`s (one per input part, or one per byte range
of a source file for `read`), the function that handles one task, and how the shards' stats merge into the stage's.
Each shard is cached on its own under `<cache>/<stage>/shards/<shard key>/`, its key the hash of what defines its
output: the stage's kind, version and shard config, the libraries it names, the sha256 of its input parts and the
task's own `meta` (a byte range and its digest, an offset). Appending rows to a source changes only the last shards'
keys, so a rebuild re-runs those (and the stages after them); a build killed midway keeps every shard it finished.

The function runs in this process or in a worker (`engine.executor`): it reads its input parts, writes one Parquet per
output table into `task.out` and returns its stats (JSON-able). The wrapper `run_shard` then writes `shard.json` (the
stats and each file's size and sha256) and renames the folder into place — in the worker, so a finished shard is
durable the moment it is done.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

ShardStats = dict[str, Any]


@dataclass(frozen=True)
class ShardTask:
    """One shard of a stage's work. Picklable: it crosses to worker processes and Ray tasks."""

    index: int
    inputs: dict[str, str]  # input name → the Parquet part it reads
    meta: dict[str, Any]  # JSON-able: what defines the shard besides its inputs (byte range, digest, offsets)
    describe: str  # for progress and errors: `data/a.jsonl bytes 0–33,554,432`, `part 3 of 12`
    out: str = ""  # set by the runner: the temporary folder the function writes its tables into
    final: str = ""  # set by the runner: where the folder is renamed to when the shard is done
    data: Any = None  # what the function needs that does not define the output (an absolute path): not in the key
    weight: int | None = None  # bytes of input, when not the input parts' sizes (a byte range of a source file)


@dataclass(frozen=True)
class Sharded:
    """How a stage runs over shards."""

    fn: Callable[[Any, ShardTask], ShardStats]  # top-level function: writes <out>/<table>.parquet, returns stats
    params: Any  # picklable settings shared by every shard
    tasks: Callable[[dict[str, Any]], list[ShardTask]]  # from the stage's inputs (StageInput by name)
    merge: Callable[[list[ShardStats]], dict[str, Any]]  # the stage's stats from its shards', in shard order
    # What of the stage's config defines a shard's output (default: all of it). `read` leaves out the file list, so
    # a file added to a source does not re-run the shards of the others.
    shard_config: dict[str, Any] | None = None
    # After every shard is done, in this process: the parts of each table (a shard's file, or a file `finish` wrote
    # into the scratch folder it is given) and each table's per-part metadata. Default: every shard's file, in order.
    finish: Callable[[list[ShardResult], Path], Finished] | None = None
    # The stage's last progress note, when it has something to say once done (read: the files a folder skipped).
    note: Callable[[], str] | None = None


class LazyParams:
    """Params known only when the stage runs (the read stage's format, told from the files): resolved once, in the
    parent, before any shard is handed out."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make

    def resolve(self) -> Any:
        return self._make()


@dataclass
class Finished:
    """What a sharded stage's `finish` decided: each table's parts, and metadata per part (offsets, say)."""

    parts: dict[str, list[Any]]  # table → ShardResult (its file) or Path (a new file), in row order
    meta: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    stats: dict[str, Any] | None = None  # the stage's stats, when they need what `finish` found (else `merge`'s)


@dataclass
class ShardResult:
    """A finished shard: where its files are, and its stats and file digests (from its shard.json)."""

    task: ShardTask
    key: str
    path: Path
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def stats(self) -> ShardStats:
        return self.info["stats"]

    def has(self, table: str) -> bool:
        return f"{table}.parquet" in self.info["outputs"]


def shard_key(base: dict[str, Any], input_digests: dict[str, str], meta: dict[str, Any]) -> str:
    """The content address of one shard."""
    from .cache import canonical_json

    text = canonical_json({"stage": base, "inputs": input_digests, "meta": meta})
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def run_shard(params: tuple[Callable[[Any, ShardTask], ShardStats], Any], task: ShardTask) -> dict[str, Any]:
    """Run one shard and make it durable: the function writes into `task.out`; here its shard.json is written and
    the folder renamed to `task.final`. Returns the shard.json content."""
    from .builddir import writing
    from .cache import file_sha256

    fn, inner = params
    out, final = Path(task.out), Path(task.final)
    try:
        with writing(out):  # a full disk or a read-only folder: a DataError naming the shard's folder
            return _run_shard(fn, inner, task, out, final, file_sha256)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise


def _run_shard(
    fn: Callable[[Any, ShardTask], ShardStats],
    inner: Any,
    task: ShardTask,
    out: Path,
    final: Path,
    file_sha256: Callable[[Path], str],
) -> dict[str, Any]:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    stats = fn(inner, task)
    import pyarrow.parquet as pq

    outputs, sizes, rows = {}, {}, 0
    for path in sorted(out.glob("*.parquet")):
        outputs[path.name] = file_sha256(path)
        sizes[path.name] = path.stat().st_size
        rows = max(rows, pq.ParquetFile(path).metadata.num_rows)  # the shard's main table: for rows/s
    info = {
        "stats": stats,
        "outputs": outputs,
        "sizes": sizes,
        "rows": rows,
        "meta": task.meta,
        "describe": task.describe,
    }
    (out / "shard.json").write_text(json.dumps(info, indent=1, sort_keys=True, ensure_ascii=False))
    if final.exists():  # another build finished the same shard first: identical by construction
        shutil.rmtree(out)
    else:
        os.replace(out, final)
    return info


def load_shard(path: Path) -> dict[str, Any] | None:
    """A finished shard's shard.json, or None when the folder is absent or not whole (a file missing, cut or
    altered: sizes first, then each file's sha256, memoised per file and mtime)."""
    from .cache import file_sha256

    try:
        info = json.loads((path / "shard.json").read_text(encoding="utf-8"))
        for name, size in info["sizes"].items():
            if (path / name).stat().st_size != size:
                return None
        for name, digest in info["outputs"].items():
            if file_sha256(path / name) != digest:
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return info


def with_paths(task: ShardTask, out: Path, final: Path) -> ShardTask:
    return replace(task, out=str(out), final=str(final))


def sum_stats(parts: list[ShardStats]) -> dict[str, Any]:
    """Shards' stats merged: numbers added, dicts merged key by key, equal values kept, lists joined.

    Dict keys keep the order of first appearance across the shards, in shard order."""
    merged: dict[str, Any] = {}
    for stats in parts:
        merged = _merge(merged, stats)
    return merged


def _merge(a: Any, b: Any) -> Any:
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = _merge(out[k], v) if k in out else v
        return out
    if isinstance(a, bool) or isinstance(b, bool):
        return a or b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a + b
    if isinstance(a, list) and isinstance(b, list):
        return a + b
    return a if a == b else b


def empty_parquet(schema: pa.Schema, path: Path) -> None:
    """A Parquet file of no rows (a shard that kept nothing still has its part, so parts line up with shards)."""
    from .cache import write_parquet

    write_parquet(schema.empty_table(), path)


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        shutil.rmtree(path)
