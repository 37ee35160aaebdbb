"""What a stage is: a named function over tables, with the version and config that define its output.

A stage never reads global state: everything that changes its output is in `config`, its inputs, the
files it declares (`files`) or the library versions it names, so the cache key covers it (DESIGN.md seam 4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa


@dataclass
class StageOutput:
    """Named tables and a JSON-serialisable stats dict."""

    tables: dict[str, pa.Table]
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageInput:
    """One upstream stage's output as seen by a downstream stage (tables are loaded lazily)."""

    name: str
    stats: dict[str, Any]
    _tables: dict[str, Path]

    def table(self, key: str) -> pa.Table:
        import pyarrow.parquet as pq

        return pq.read_table(self._tables[key])

    def has(self, key: str) -> bool:
        return key in self._tables


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
    run: Callable[[dict[str, StageInput], Progress], StageOutput]
    # Files the stage reads from outside the graph; their sha256 joins the key.
    files: tuple[Path, ...] = ()
    # Libraries whose versions change the stage's output.
    libraries: tuple[str, ...] = ("pyarrow",)
    source: str | None = None  # the source this stage belongs to, for per-source stages
