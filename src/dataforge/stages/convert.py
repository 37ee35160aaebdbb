"""convert: raw rows of one format → canonical Examples (EXAMPLE_SCHEMA + `__origin`), rejecting what cannot convert."""

from __future__ import annotations

import pyarrow as pa

from .. import formats
from ..rejects import concat_rejects
from .base import Progress, StageInput, StageOutput
from .read import _with_source

VERSION = 1
BATCH_ROWS = 65_536  # bounds the memory of the intermediate arrays


def convert_raw(raw: pa.Table, fmt: str, source: str, progress: Progress) -> StageOutput:
    """Examples for every convertible row of `raw`, in order, and rejects for the rest."""
    converter = formats.get(fmt)
    examples: list[pa.Table] = []
    rejects: list[pa.Table] = []
    total = raw.num_rows
    for start in range(0, max(total, 1), BATCH_ROWS):
        progress(start, total, source)
        # One chunk per column (a batch spans several of the reader's blocks): converters then read each
        # column without copying it. Table.combine_chunks copies only the columns that have several chunks.
        batch = raw.slice(start, BATCH_ROWS).combine_chunks()
        converted = converter.to_examples(batch, source)
        examples.append(converted.examples)
        if converted.rejects.num_rows:
            rejects.append(_with_source(converted.rejects, source))
    progress(total, total, source)
    table = pa.concat_tables(examples).combine_chunks() if examples else None
    return StageOutput({"examples": table, "rejects": concat_rejects(rejects)}, {"format": fmt})


def make_convert(source: str, read_stage: str):
    def run(inputs: dict[str, StageInput], progress: Progress) -> StageOutput:
        upstream = inputs[read_stage]
        return convert_raw(upstream.table("raw"), upstream.stats["format"], source, progress)

    return run
