"""convert: raw rows of one format → canonical Examples (EXAMPLE_SCHEMA + `__origin`), rejecting what cannot convert."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from .. import formats
from ..rejects import concat_rejects, with_source
from .base import Progress, StageInput, StageOutput

VERSION = 1
BATCH_ROWS = 65_536  # bounds the memory of the intermediate arrays
BATCH_BYTES = 16 << 20  # a chunk at least this large is converted on its own, without copying it


def convert_raw(raw: pa.Table, fmt: str, source: str, progress: Progress) -> StageOutput:
    """Examples for every convertible row of `raw`, in order, and rejects for the rest."""
    converter = formats.get(fmt)
    examples: list[pa.Table] = []
    rejects: list[pa.Table] = []
    total = raw.num_rows
    start = 0
    for batch in _batches(raw):
        progress(start, total, source)
        start += batch.num_rows
        converted = converter.to_examples(batch, source)
        examples.append(converted.examples)
        if converted.rejects.num_rows:
            rejects.append(with_source(converted.rejects, source))
    progress(total, total, source)
    table = pa.concat_tables(examples).combine_chunks() if examples else None
    return StageOutput({"examples": table, "rejects": concat_rejects(rejects)}, {"format": fmt})


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


def make_convert(source: str, read_stage: str):
    def run(inputs: dict[str, StageInput], progress: Progress) -> StageOutput:
        upstream = inputs[read_stage]
        return convert_raw(upstream.table("raw"), upstream.stats["format"], source, progress)

    return run
