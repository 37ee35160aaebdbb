"""The per-source stages (convert, validate, filter, quality) as functions over one shard each.

Each is a top-level function `fn(params, task)` (see `engine.shards`): it reads its one input part, runs the stage's
table function on it, and writes the stage's output tables into `task.out`. Their shards line up one to one with the
upstream's parts, so a source of twelve read shards has twelve convert, validate and filter shards.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
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


# --- global stages: decide on id-level arrays, then apply the decision part by part -------------------------


def conformed(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` in `schema` (a superset of its columns): a column it lacks is all nulls, as `concat_tables`'
    promotion makes it — e.g. the `quality` struct of rows from a source no quality stage measured."""
    present = set(table.column_names)
    columns = [table[f.name] if f.name in present else pa.nulls(table.num_rows, f.type) for f in schema]
    fields = [table.schema.field(f.name) if f.name in present else f for f in schema]
    # Cast last: a column the union promoted (a null-typed one made typed) takes the union's type.
    return pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata=schema.metadata)).cast(schema)


def conform_parts(parts: list[Path]) -> list[Path]:
    """Rewrite, in place, every part whose schema is not the union of all the parts' schemas, so the table the
    parts make has one schema (the extra columns of some sources null in the others'). `parts`, for chaining.

    Parts that already share one schema — every build whose sources all went through the same stages — are only
    read for their footers."""
    from ..engine.cache import write_parquet
    from ..streams import parts_schema

    schema = parts_schema(parts)
    if schema is None:
        return parts
    for part in parts:
        if not pq.read_schema(part).equals(schema, check_metadata=True):
            table = pq.read_table(part)
            write_parquet(conformed(table, schema), part)
    return parts


def source_codes(upstream: StageInput, table: str, sources: list[str]) -> tuple[np.ndarray, list[int]]:
    """int16 [rows]: each row's source as its index in `sources` (-1 for none of them), over every part of `table`,
    reading only the `source` column one part at a time; and the rows of each part."""
    codes, sizes = [], []
    lookup = pa.array(sources, pa.string())
    for part in upstream.iter_tables(table, columns=["source"]):
        index = pc.index_in(part["source"], value_set=lookup)
        codes.append(pc.fill_null(index, -1).to_numpy(zero_copy_only=False).astype(np.int16))
        sizes.append(part.num_rows)
    return (np.concatenate(codes) if codes else np.zeros(0, np.int16)), sizes


@dataclass(frozen=True)
class MaskTask:
    """One part to split by a row mask: rows where `mask` holds go to `chosen`, the others to `rest`."""

    part: str
    mask: np.ndarray
    chosen: str  # path for the rows the mask picks ("" to drop them)
    rest: str  # path for the others ("" to drop them)
    rejects: str  # path for the rejects of the rows named by `reject_chosen` (the chosen rows when True)
    reject_chosen: bool


@dataclass(frozen=True)
class RejectSpec:
    """How a global stage's dropped rows are recorded (`rejects.rejects_from_examples`'s arguments)."""

    stage: str
    outcome: str
    reason: str
    message: str


def mask_part(spec: RejectSpec | None, task: MaskTask) -> int:
    """Split one part by its mask, writing the two sides and the rejects of the dropped side; rows read."""
    from ..engine.cache import write_parquet
    from ..rejects import Outcome, concat_rejects, rejects_from_examples
    from ..tables import keep_rows

    mask = np.asarray(task.mask, dtype=bool)
    if mask.all() and task.chosen and not task.rest and not (task.rejects and task.reject_chosen):
        # Every row stays: the part itself is the output (a hard link, when the filesystem allows one).
        try:
            os.link(task.part, task.chosen)
        except OSError:
            shutil.copyfile(task.part, task.chosen)
        if task.rejects:
            write_parquet(concat_rejects([]), Path(task.rejects))
        return len(mask)
    table = pq.read_table(task.part)
    if task.chosen:
        write_parquet(keep_rows(table, mask), Path(task.chosen))
    if task.rest:
        write_parquet(keep_rows(table, ~mask), Path(task.rest))
    if task.rejects:
        dropped = keep_rows(table, mask if task.reject_chosen else ~mask)
        rejects = (
            rejects_from_examples(
                dropped, stage=spec.stage, outcome=Outcome(spec.outcome), reason=spec.reason, message=spec.message
            )
            if spec is not None
            else None
        )
        write_parquet(concat_rejects([rejects] if rejects is not None else []), Path(task.rejects))
    return table.num_rows


def split_parts(
    upstream: StageInput,
    table: str,
    mask: np.ndarray,
    sizes: list[int],
    scratch: Path,
    executor: Any,
    *,
    chosen: str | None,
    rest: str | None,
    rejects: RejectSpec | None,
    reject_chosen: bool = False,
    label: str,
) -> dict[str, list[Path]]:
    """Every part of `upstream`'s `table` split by its slice of `mask` (over the concatenated rows), in the
    executor's workers: the parts of `chosen`, of `rest` and of their rejects, each in part order."""
    tasks, out = [], {name: [] for name in (chosen, rest) if name} | ({"rejects": []} if rejects else {})
    start = 0
    for i, (part, n) in enumerate(zip(upstream.parts(table), sizes, strict=True)):
        paths = {}
        for name in out:
            paths[name] = scratch / f"{name}-{i:05d}.parquet"
            out[name].append(paths[name])
        tasks.append(
            MaskTask(
                str(part),
                mask[start : start + n],
                str(paths[chosen]) if chosen else "",
                str(paths[rest]) if rest else "",
                str(paths["rejects"]) if rejects else "",
                reject_chosen,
            )
        )
        start += n
    from ..engine.runner import parallel_bytes

    big = len(tasks) > 1 and sum(os.path.getsize(t.part) for t in tasks) >= parallel_bytes()
    executor.map(mask_part, rejects, tasks, describe=lambda i: f"{label} part {i + 1} of {len(tasks)}", parallel=big)
    return out
