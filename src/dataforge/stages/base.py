"""What a stage is: a named function over tables, with the version and config that define its output.

A stage never reads global state: everything that changes its output is in `config`, its inputs, the
files it declares (`files`) or the library versions it names, so the cache key covers it (DESIGN.md seam 4).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa


@dataclass
class StageOutput:
    """Named tables and a JSON-serialisable stats dict.

    A table is a `pa.Table`, or the list of Parquet parts a stage wrote one shard at a time into its scratch
    folder (`RunContext.scratch`), in row order; the cache moves the parts into the entry."""

    tables: dict[str, pa.Table | list[Path] | None]
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunContext:
    """What a global stage (one that sets `Stage.context`) gets besides its inputs: the executor that runs shard
    functions (worker processes or Ray), and a scratch folder for the parts it writes (removed after the stage)."""

    executor: Any  # engine.executor.Executor
    scratch: Path


@dataclass
class StageInput:
    """One upstream stage's output as seen by a downstream stage (tables are loaded lazily).

    A table is stored as one or more Parquet parts (shards) in order; `table` concatenates them (for small
    outputs and tests), while `parts` and `iter_tables` let a stage read one shard at a time, so that memory
    is bounded by the shard size, not by the corpus."""

    name: str
    stats: dict[str, Any]
    _tables: dict[str, list[Path]]
    _digests: dict[str, str] = field(default_factory=dict)  # sha256 of each part, by path
    _meta: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # per-part metadata (read: offsets)

    def table(self, key: str, columns: list[str] | None = None) -> pa.Table:
        import pyarrow.parquet as pq

        parts = self._tables[key]
        if len(parts) == 1:
            return pq.read_table(parts[0], columns=columns)
        return pa.concat_tables([pq.read_table(p, columns=columns) for p in parts], promote_options="default")

    def parts(self, key: str) -> list[Path]:
        """The Parquet files holding table `key`, in row order (one per shard)."""
        return list(self._tables[key])

    def iter_tables(self, key: str, columns: list[str] | None = None) -> Iterator[pa.Table]:
        """Table `key` one shard at a time, in row order."""
        import pyarrow.parquet as pq

        for part in self._tables[key]:
            yield pq.read_table(part, columns=columns)

    def num_rows(self, key: str) -> int:
        """Rows of table `key`, from the parts' metadata (nothing is read)."""
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(p).metadata.num_rows for p in self._tables[key])

    def has(self, key: str) -> bool:
        return key in self._tables

    def part_meta(self, key: str) -> list[dict[str, Any]]:
        """Metadata of each part of table `key` (the read stage's row offsets), or {} per part when there is none."""
        return list(self._meta.get(key) or [{} for _ in self._tables[key]])

    def digest(self, part: Path) -> str:
        """The recorded sha256 of one of this input's parts."""
        return self._digests[str(part)]


Progress = Callable[[int, int, str], None]  # (done, total, what) for progress bars


@dataclass(frozen=True)
class Stage:
    """A node of the build graph."""

    name: str  # unique in the graph, e.g. `read:alpaca`
    kind: str  # what it does: read, convert, validate, filter, dedup, mix, split
    version: int  # bump when the code changes what the stage outputs
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]  # the tables it produces, e.g. ("examples", "rejects")
    config: dict[str, Any]
    # (inputs, progress) → output, or (inputs, progress, RunContext) with `context`; None for a sharded stage.
    run: Callable[..., StageOutput] | None
    # Files the stage reads from outside the graph; their sha256 joins the key.
    files: tuple[Path, ...] = ()
    # Libraries whose versions change the stage's output.
    libraries: tuple[str, ...] = ("pyarrow",)
    source: str | None = None  # the source this stage belongs to, for per-source stages
    # A stage run over shards (engine.shards.Sharded): `run` is then unused.
    sharded: Any = None
    # `run` takes a third argument, a RunContext (global stages that run shard functions or write parts).
    context: bool = False
