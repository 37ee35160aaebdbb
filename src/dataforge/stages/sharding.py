"""The per-source stages (convert, validate, filter, quality) as functions over one shard each.

Each is a top-level function `fn(params, task)` (see `engine.shards`): it reads its one input part, runs the stage's
table function on it, and writes the stage's output tables into `task.out`. Their shards line up one to one with the
upstream's parts, so a source of twelve read shards has twelve convert, validate and filter shards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..engine.shards import Sharded, ShardTask, sum_stats
from .base import StageInput, StageOutput

TableFn = Callable[[pa.Table, dict[str, Any]], StageOutput]


def quiet(done: int, total: int, what: str) -> None:
    """Progress inside a shard goes nowhere: the runner reports shards done."""


def write_outputs(output: StageOutput, out: Path) -> None:
    """Each table of `output` as `<out>/<name>.parquet` (a list of parts is not expected from a shard)."""
    from ..engine.cache import write_parquet

    for name, table in output.tables.items():
        if table is None:
            continue
        write_parquet(table, out / f"{name}.parquet")


@dataclass(frozen=True)
class TableShard:
    """Params of a one-to-one shard stage: the top-level table function, its settings, and the input table name."""

    fn: TableFn
    settings: dict[str, Any]
    table: str


def table_shard(params: TableShard, task: ShardTask) -> dict[str, Any]:
    """Run `params.fn` on the one part `task` reads; write its outputs; return its stats."""
    table = pq.read_table(task.inputs["in"])
    output = params.fn(table, {**params.settings, **task.meta})
    write_outputs(output, Path(task.out))
    return output.stats


def one_per_part(upstream: str, table: str, meta: Callable[[int, dict[str, Any]], dict[str, Any]] | None = None):
    """The task list of a one-to-one stage: a shard per part of `upstream`'s `table`."""

    def tasks(inputs: dict[str, StageInput]) -> list[ShardTask]:
        source = inputs[upstream]
        parts = source.parts(table)
        metas = source.part_meta(table)
        return [
            ShardTask(
                i,
                {"in": str(part)},
                meta(i, metas[i]) if meta else {},
                f"part {i + 1} of {len(parts)}",
            )
            for i, part in enumerate(parts)
        ]

    return tasks


def per_part_stage(
    upstream: str,
    table: str,
    fn: TableFn,
    settings: dict[str, Any],
    merge: Callable[[list[dict[str, Any]]], dict[str, Any]] = sum_stats,
    meta: Callable[[int, dict[str, Any]], dict[str, Any]] | None = None,
) -> Sharded:
    """A stage that maps each part of `upstream`'s `table` through `fn` (a top-level function)."""
    return Sharded(table_shard, TableShard(fn, settings, table), one_per_part(upstream, table, meta), merge)


def with_ordinals(raw: pa.Table, meta: dict[str, Any]) -> pa.Table:
    """A read shard's rows as the whole source numbers them: `__row` counted from the file's first record and the
    source ordinal (`formats.base.ORDINAL`) from the source's, cut at `max_rows` (`keep`)."""
    from ..formats.base import ORDINAL
    from ..readers import ROW

    keep = meta.get("keep")
    if keep is not None:
        raw = raw.filter(pc.less(raw[ROW], keep))
    local = raw[ROW]
    raw = raw.set_column(raw.schema.get_field_index(ROW), ROW, pc.add(local, meta.get("row_offset", 0)))
    return raw.append_column(ORDINAL, pc.add(local, meta.get("ordinal_offset", 0)))
