"""read: a source's files → one table of raw rows in its format, plus records that could not be read."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import formats
from ..errors import DataError
from ..formats.base import FILE, ORDINAL
from ..hub.lock import LockedSource, local_files
from ..hub.uris import HubRef, parse_uri, raw_dir
from ..readers import ReadResult, read_file, resolve_files, sample_records
from ..recipe import Source
from ..rejects import concat_rejects, with_source
from .base import Progress, StageInput, StageOutput

VERSION = 2  # 2: formats gained preference/KTO/pretrain columns; older cached reads lack them


def source_files(source: Source, root: Path, locked: LockedSource | None = None) -> list[Path]:
    """The files a source names; an error saying what matched nothing.

    A hub source (`hf://`, `ms://`) reads the files its lock entry lists, from data/raw/<source>/; the fetch
    step (`dataforge.hub.sync`) has put them there and checked them before the graph is built.
    """
    ref = parse_uri(source.from_)
    if ref is not None:
        return hub_source_files(source, ref, root, locked)
    files = resolve_files(source.from_, root)
    if not files:
        raise DataError(
            f"source {source.name!r}: `from: {source.from_}` matches no .jsonl, .json or .parquet file under {root}",
            hint="check the path; relative paths resolve against the recipe's `root`",
        )
    return files


def hub_source_files(source: Source, ref: HubRef, root: Path, locked: LockedSource | None) -> list[Path]:
    """The local copies of a hub source's locked files; an error naming what to fetch when any is missing."""
    if locked is None:
        raise DataError(
            f"source {source.name!r} ({ref.uri}) has not been fetched: the recipe's lock file has no entry for it",
            hint="`dataforge build RECIPE` fetches it (online) and writes the lock",
        )
    files = local_files(locked, raw_dir(root, source.name))
    missing = [display_path(f, root) for f in files if not f.is_file()]
    if missing:
        raise DataError(
            f"source {source.name!r} ({ref.uri}): {missing[0]} is missing"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
            hint="`dataforge build RECIPE` fetches it (online)",
        )
    return files


def display_path(path: Path, root: Path) -> str:
    """The path as recorded in provenance: relative to the recipe root when inside it (reproducible)."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def resolve_format(source: Source, files: list[Path], root: Path) -> str:
    """The source's format: as declared, or detected from the first records of its first file."""
    if source.format:
        return source.format
    sample: list[dict[str, Any]] = []
    for f in files:
        sample = sample_records(f)
        if sample:
            break
    inverse = {v: k for k, v in source.columns.items()}
    renamed = [{inverse.get(k, k): v for k, v in r.items()} for r in sample]
    return formats.detect(renamed, f"source {source.name!r} ({display_path(files[0], root)})").name


def read_source(source: Source, files: list[Path], root: Path, fmt: str, progress: Progress) -> StageOutput:
    """Every record of every file of `source` (up to `max_rows`), in file order."""
    shape = formats.get(fmt).shape
    tables: list[pa.Table] = []
    rejects: list[pa.Table] = []
    per_file: list[dict[str, Any]] = []
    dropped: Counter[str] = Counter()
    offset = 0
    for i, path in enumerate(files):
        progress(i, len(files), display_path(path, root))
        shown = display_path(path, root)
        result: ReadResult = read_file(path, shown, shape, source.columns)
        dropped.update(result.unmodelled)
        table = result.table
        table = table.append_column(FILE, pa.array(np.full(table.num_rows, shown, dtype=object), pa.string()))
        table = table.append_column(ORDINAL, pc.add(table["__row"], offset))
        file_rejects = result.rejects
        if file_rejects.num_rows:
            file_rejects = with_source(file_rejects, source.name)
        if source.max_rows is not None and offset + result.records > source.max_rows:
            keep = source.max_rows - offset
            table = table.filter(pc.less(table["__row"], keep))
            file_rejects = file_rejects.filter(pc.less(file_rejects["row"], keep))
            per_file.append({"file": shown, "records": keep, "truncated_by_max_rows": True})
            tables.append(table)
            rejects.append(file_rejects)
            offset += keep
            break
        per_file.append({"file": shown, "records": result.records})
        tables.append(table)
        rejects.append(file_rejects)
        offset += result.records
    progress(len(files), len(files), "")
    raw = pa.concat_tables(tables, promote_options="default") if tables else None
    return StageOutput(
        {"raw": raw, "rejects": concat_rejects(rejects)},
        {"format": fmt, "records": offset, "files": per_file, "unmodelled_fields": dict(sorted(dropped.items()))},
    )


def make_read(
    source: Source, root: Path, files: list[Path] | None = None
) -> Callable[[dict[str, StageInput], Progress], StageOutput]:
    """The read stage's function for `source` over `files` (default: resolved from `from` when it runs)."""

    def run(inputs: dict[str, StageInput], progress: Progress) -> StageOutput:
        chosen = files if files is not None else source_files(source, root)
        fmt = resolve_format(source, chosen, root)
        return read_source(source, chosen, root, fmt, progress)

    return run
