"""The rejects table: every row that leaves the flow, with why, where it came from, and which stage dropped it."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


class Outcome(StrEnum):
    """Why a row left the flow, in the ledger's terms (DESIGN.md seam 5)."""

    REJECTED = "rejected"  # bad data: unreadable, not convertible, invalid
    FILTERED = "filtered"  # valid, removed by a recipe filter
    DEDUPLICATED = "deduplicated"  # a copy of a row that was kept
    DOWNSAMPLED = "downsampled"  # valid and unique, left out to meet the mix ratios


REJECTS_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string()),
        pa.field("file", pa.string()),
        pa.field("row", pa.int64()),
        pa.field("line", pa.int64()),
        pa.field("example_id", pa.string()),
        pa.field("stage", pa.string()),
        pa.field("outcome", pa.string()),
        pa.field("reason", pa.string()),  # short stable code, e.g. `invalid_json`, `empty_content`
        pa.field("field", pa.string()),  # path of the offending field in the source row, when known
        pa.field("message", pa.string()),  # what was expected, what was found
        pa.field("duplicate_of", pa.string()),  # dedup: id of the kept row
        pa.field("similarity", pa.float64()),  # near dedup: estimated or exact Jaccard with `duplicate_of`
        pa.field("raw", pa.string()),  # the source record (JSON text) for rejected rows
    ]
)


def location(row: dict[str, Any]) -> str:
    """Where a record came from, for people: `file:line`, or `file#row` for files without lines (just `file` for a
    reject of a whole file, `unreadable_file`, which has neither)."""
    if row["line"] is not None:
        return f"{row['file']}:{row['line']}"
    return f"{row['file']}#{row['row']}" if row["row"] is not None else str(row["file"])


def empty_rejects() -> pa.Table:
    return REJECTS_SCHEMA.empty_table()


# Characters of a rejected record's source text kept in `raw` (and so in the reports): a huge bad line must not
# land whole in rejects.parquet, report.json and report.html. The readers cut at the same limit.
RAW_LIMIT = 2000


def capped_raw(table: pa.Table) -> pa.Table:
    """`table` (in REJECTS_SCHEMA) with every `raw` longer than RAW_LIMIT cut, saying how much was left out."""
    raw = table["raw"]
    if table.num_rows == 0 or raw.null_count == table.num_rows:
        return table
    longest = pc.max(pc.utf8_length(raw)).as_py()
    if longest is None or longest <= RAW_LIMIT + 40:  # an excerpt already cut by a reader stays as it is
        return table
    cut = [
        t if t is None or len(t) <= RAW_LIMIT + 40 else f"{t[:RAW_LIMIT]}… [{len(t) - RAW_LIMIT} more characters]"
        for t in raw.to_pylist()
    ]
    return table.set_column(table.schema.get_field_index("raw"), "raw", pa.array(cut, pa.string()))


def rejects_from_rows(rows: list[dict[str, Any]]) -> pa.Table:
    """A rejects table from dicts holding any subset of REJECTS_SCHEMA's fields (`raw` capped)."""
    return capped_raw(pa.Table.from_pylist(rows, schema=REJECTS_SCHEMA))


def rejects_from_examples(
    examples: pa.Table,
    *,
    stage: str,
    outcome: Outcome,
    reason: pa.Array | str,
    message: pa.Array | str | None = None,
    field: pa.Array | str | None = None,
    duplicate_of: pa.Array | None = None,
    similarity: pa.Array | None = None,
) -> pa.Table:
    """Rejects for whole rows of an EXAMPLE_SCHEMA table, built column-wise (no per-row Python)."""
    n = examples.num_rows

    def column(value: pa.Array | str | None) -> pa.Array:
        if value is None:
            return pa.nulls(n, pa.string())
        if isinstance(value, str):
            return pa.array([value] * n, pa.string())
        return value.cast(pa.string())

    return pa.table(
        {
            "source": examples["source"],
            "file": examples["file"],
            "row": examples["row"],
            "line": examples["line"],
            "example_id": examples["id"],
            "stage": column(stage),
            "outcome": column(outcome.value),
            "reason": column(reason),
            "field": column(field),
            "message": column(message),
            "duplicate_of": column(duplicate_of),
            "similarity": similarity if similarity is not None else pa.nulls(n, pa.float64()),
            "raw": pa.nulls(n, pa.string()),
        },
        schema=REJECTS_SCHEMA,
    )


def concat_rejects(tables: list[pa.Table]) -> pa.Table:
    """All rejects in one table, in the order given."""
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return empty_rejects()
    return capped_raw(pa.concat_tables([_conform(t) for t in tables]).combine_chunks())


def _conform(table: pa.Table) -> pa.Table:
    """`table` in REJECTS_SCHEMA; columns it lacks (written before they existed) are null."""
    columns = {
        f.name: table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
        for f in REJECTS_SCHEMA
    }
    return pa.table(columns, schema=REJECTS_SCHEMA)


def count_by(table: pa.Table, *keys: str) -> list[dict[str, Any]]:
    """Row counts grouped by `keys`, sorted by the keys for stable reports."""
    if table.num_rows == 0:
        return []
    grouped = table.group_by(list(keys)).aggregate([([], "count_all")])
    rows = [{**{k: r[k] for k in keys}, "count": r["count_all"]} for r in grouped.to_pylist()]
    return sorted(rows, key=lambda r: tuple(str(r[k]) for k in keys))


def with_source(rejects: pa.Table, name: str) -> pa.Table:
    """`rejects` with every row's `source` set to `name` (stages that read a source's files know it)."""
    i = rejects.schema.get_field_index("source")
    return rejects.set_column(i, "source", pa.array([name] * rejects.num_rows, pa.string()))
