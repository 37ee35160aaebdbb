"""convert: raw rows of one format → canonical Examples (EXAMPLE_SCHEMA + `__origin`), rejecting what cannot convert."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import formats, jsonsafe
from ..formats import media
from ..formats.base import RowProblems
from ..formats.columnar import ORIGIN, list_positions, whole
from ..readers import EXTRA
from ..reasoning import Policy, apply_policy
from ..rejects import Outcome, concat_rejects, empty_rejects, rejects_from_examples, with_source
from ..tables import keep_rows
from .base import Progress, StageOutput

# 3: rows with image, video or audio inputs are rejected (multimodal_unsupported)
# 4: NaN/infinite weights and metadata, and metadata nested too deep, are rejected (non_finite_number, too_deep);
#    tool-call JSON too deep, non-finite or with lone surrogates is rejected (too_deep, non_finite_number,
#    invalid_unicode)
VERSION = 4
BATCH_ROWS = 65_536  # bounds the memory of the intermediate arrays
BATCH_BYTES = 16 << 20  # a chunk at least this large is converted on its own, without copying it


def convert_raw(raw: pa.Table, fmt: str, source: str, progress: Progress, reasoning: Policy = "keep") -> StageOutput:
    """Examples for every convertible row of `raw`, in order, and rejects for the rest; then the source's
    reasoning policy (see `dataforge.reasoning`). Rows with image, video or audio inputs are rejected first
    (`multimodal_unsupported`, see `dataforge.formats.media`): the canonical record cannot carry them."""
    converter = formats.get(fmt)
    examples: list[pa.Table] = []
    rejects: list[pa.Table] = []
    total = raw.num_rows
    start = 0
    for batch in _batches(raw):
        progress(start, total, source)
        start += batch.num_rows
        multimodal, media_rejects = _multimodal(batch, converter.shape.json_columns)
        if media_rejects.num_rows:
            rejects.append(with_source(media_rejects, source))
            batch = keep_rows(batch, ~multimodal)
        converted = converter.to_examples(batch, source)
        if converted.rejects.num_rows:
            rejects.append(with_source(converted.rejects, source))
        kept, unsafe = _unsafe_values(converted.examples)
        if unsafe.num_rows:
            rejects.append(with_source(unsafe, source))
        examples.append(kept)
    progress(total, total, source)
    table = pa.concat_tables(examples).combine_chunks() if examples else None
    stats: dict = {"format": fmt}
    if table is not None and reasoning != "keep":
        table, moved, conflicts = apply_policy(table, reasoning)
        stats["reasoning"] = {"policy": reasoning, **dict(sorted(moved.items()))}
        if conflicts:
            table, conflicted = _split_off(table, conflicts)
            rejects.append(with_source(conflicted, source))
    return StageOutput({"examples": table, "rejects": concat_rejects(rejects)}, stats)


def _multimodal(raw: pa.Table, json_columns: frozenset[str]) -> tuple[np.ndarray, pa.Table]:
    """Rows of `raw` with image, video or audio inputs (a mask), and a convert-stage reject for each naming the
    field and the media, with the record as the file held it."""
    problems = RowProblems(raw.num_rows)
    extra = whole(raw[EXTRA])
    maybe = np.flatnonzero(media.candidates(extra))
    if not len(maybe):
        return problems.bad, problems.rejects(raw)
    data_columns = [c for c in raw.column_names if not c.startswith("__")]
    picked = raw.select(data_columns).take(pa.array(maybe)).to_pylist()
    records: dict[int, str] = {}
    for row, data, text in zip(maybe, picked, extra.take(pa.array(maybe)).to_pylist(), strict=True):
        try:
            unmodelled = jsonsafe.loads(text)
            for column in json_columns & data.keys():
                if data[column] is not None:
                    data[column] = jsonsafe.loads(data[column])
        except ValueError:
            continue  # too deep or not finite: rejected as such by the converter or `_unsafe_values`
        found, marks = media.of_record(data, unmodelled)
        if not found:
            continue
        first = found[0].field
        field = first if "." in first else first.split("[", 1)[0]  # a column (`images`), or a content part
        problems.add(int(row), media.REASON, field, media.describe(found, marks))
        records[int(row)] = json.dumps(media.original(data, unmodelled), ensure_ascii=False)  # a reject's raw text
    rejects = problems.rejects(raw)
    if records:
        raw_text = pa.array([records[int(r)] for r in np.flatnonzero(problems.bad)], pa.string())
        rejects = rejects.set_column(rejects.schema.get_field_index("raw"), "raw", raw_text)
    return problems.bad, rejects


def _unsafe_values(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """`table` without rows holding values no JSON writer may write, and convert-stage rejects for them:
    a NaN or infinite message weight (`non_finite_number`; a weight has no meaning for NaN, so it is not
    normalised), and metadata (the unmodelled columns, JSON text) holding NaN/Infinity or nested deeper than
    `jsonsafe.MAX_DEPTH` (`too_deep`). The formats check what they parse (tool calls, tools); this checks the
    values they pass through, vectorised, parsing only the metadata that may hold such a value."""
    problems: dict[int, tuple[str, str, str]] = {}
    for column in ("messages", "chosen", "rejected"):
        for row, turn in _non_finite_weights(whole(table[column])):
            where = f"{column}[{turn}].weight"
            problems.setdefault(row, ("non_finite_number", where, f"{where} is NaN or infinite, not a number"))
    metadata = whole(table["metadata"])
    if metadata.null_count < len(metadata):
        maybe = pc.fill_null(pc.match_substring_regex(metadata, _NON_FINITE), False)
        brackets = pc.add(pc.count_substring(metadata, "["), pc.count_substring(metadata, "{"))
        maybe = pc.or_(maybe, pc.fill_null(pc.greater(brackets, jsonsafe.MAX_DEPTH), False))
        for row in np.flatnonzero(maybe.to_numpy(zero_copy_only=False)):
            problem = _metadata_problem(metadata[int(row)].as_py())
            if problem is not None:
                problems.setdefault(int(row), problem)
    return _reject_rows(table, problems)


def _reject_rows(table: pa.Table, problems: dict[int, tuple[str, str, str]]) -> tuple[pa.Table, pa.Table]:
    """`table` without the rows in `problems`, and convert-stage rejects for them (row → reason, field, message)."""
    if not problems:
        return table, empty_rejects()
    rows = sorted(problems)
    bad = np.zeros(table.num_rows, dtype=bool)
    bad[rows] = True
    picked = table.take(pa.array(rows)).drop_columns([ORIGIN])
    rejects = rejects_from_examples(
        picked,
        stage="convert",
        outcome=Outcome.REJECTED,
        reason=pa.array([problems[r][0] for r in rows], pa.string()),
        field=pa.array([problems[r][1] for r in rows], pa.string()),
        message=pa.array([problems[r][2] for r in rows], pa.string()),
    )
    return keep_rows(table, ~bad), rejects


# Text that may hold a value Python parses and JSON cannot write: NaN, Infinity, or an exponent large enough
# to overflow to an infinity (1e999).
_NON_FINITE = r"NaN|Infinity|[eE]\+?[0-9]{3}"


def _non_finite_weights(messages: pa.Array) -> list[tuple[int, int]]:
    """(row, turn) of every message whose weight is NaN or infinite, in a list column of messages."""
    flat = pc.list_flatten(messages)
    if not len(flat):
        return []
    weights = pc.struct_field(flat, "weight")
    if weights.null_count == len(weights):
        return []
    bad = pc.fill_null(pc.invert(pc.is_finite(weights)), False).to_numpy(zero_copy_only=False)
    if not bad.any():
        return []
    parents = pc.list_parent_indices(messages).to_numpy(zero_copy_only=False)
    turns = list_positions(messages).to_numpy(zero_copy_only=False)
    return [(int(parents[i]), int(turns[i])) for i in np.flatnonzero(bad)]


def _metadata_problem(text: str) -> tuple[str, str, str] | None:
    """(reason, field, message) when metadata JSON text nests too deep or holds a non-finite number."""
    try:
        value = jsonsafe.loads(text, field="metadata")
        jsonsafe.dumps(value)
    except jsonsafe.JsonValueError as exc:
        return exc.reason, exc.field or "metadata", exc.message
    except ValueError:  # an exponent that overflows: Python reads 1e999 as an infinity
        return "non_finite_number", "metadata", "metadata holds a number too large for JSON (an infinity)"
    return None


def _split_off(table: pa.Table, conflicts: list[tuple[int, str, str]]) -> tuple[pa.Table, pa.Table]:
    """The table without the conflicting rows, and convert-stage rejects for them (first conflict per row)."""
    first: dict[int, tuple[str, str, str]] = {}
    for row, field, message in conflicts:
        first.setdefault(row, ("reasoning_conflict", field, message))
    return _reject_rows(table, first)


def _batches(raw: pa.Table) -> Iterator[pa.Table]:
    """Consecutive slices of `raw` (at least one) of at most BATCH_ROWS rows, every column in one chunk.

    Slices follow the table's own chunks (the reader's blocks, Parquet row groups), so a batch is usually a
    zero-copy view; only runs of small chunks are combined, which copies little. Slicing at fixed offsets
    instead made nearly every batch span two blocks, and combining them copied every string of the source.
    """
    group: list[pa.RecordBatch] = []
    rows = size = 0
    for batch in raw.to_batches(max_chunksize=BATCH_ROWS):
        if group and (rows + batch.num_rows > BATCH_ROWS or size >= BATCH_BYTES):
            yield _table(raw.schema, group)
            group, rows, size = [], 0, 0
        group.append(batch)
        rows += batch.num_rows
        size += batch.nbytes
    if group or not raw.num_rows:
        yield _table(raw.schema, group)


def _table(schema: pa.Schema, batches: list[pa.RecordBatch]) -> pa.Table:
    table = pa.Table.from_batches(batches, schema=schema)
    return table.combine_chunks() if len(batches) > 1 else table


def convert_table(raw: pa.Table, settings: dict[str, Any]) -> StageOutput:
    """One read shard converted (the shard function of `convert`): numbered as the whole source numbers its rows,
    converted, its reasoning policy applied and its placeholders filled."""
    from .sharding import quiet, with_ordinals
    from .substitute import substitute

    out = convert_raw(
        with_ordinals(raw, settings), settings["format"], settings["source"], quiet, settings["reasoning"]
    )
    fills = settings["fills"]
    table = out.tables["examples"]
    if not fills or table is None:
        return out
    table, stats = substitute(table, fills)
    return StageOutput({**out.tables, "examples": table}, {**out.stats, "substitute": stats})
