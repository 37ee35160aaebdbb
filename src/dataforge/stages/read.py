"""read: a source's files → one table of raw rows in its format, plus records that could not be read."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import formats
from ..engine.shards import Finished, LazyParams, Sharded, ShardResult, ShardTask
from ..errors import DataError
from ..formats.base import FILE, ORDINAL
from ..hub.lock import LockedSource, local_files
from ..hub.uris import HubRef, parse_uri, raw_dir
from ..readers import FileSet, ReadResult, column_names, files_problem, find_files, read_file, sample_records
from ..readers_files import shown
from ..recipe import Source
from ..rejects import concat_rejects, with_source
from .base import Progress, StageInput, StageOutput

# 2: formats gained preference/KTO/pretrain columns; older cached reads lack them. 3: stats list the files a
# folder's rule skipped (`skipped`); CSV/TSV, compressed, Arrow and column-oriented JSON files are read.
# 4: hardening: too-deep and NaN/Infinity records, unreadable files and mid-file BOMs become rejects (or are
# read); pandas index columns are dropped; raw excerpts are capped; files outside the root are refused.
# 5: read over shards: raw rows numbered within their shard (convert numbers them across the source).
VERSION = 5


def source_files(source: Source, root: Path, locked: LockedSource | None = None) -> list[Path]:
    """The files a source names; an error saying what matched nothing.

    A hub source (`hf://`, `ms://`) reads the files its lock entry lists, from data/raw/<source>/; the fetch
    step (`dataforge.hub.sync`) has put them there and checked them before the graph is built.
    """
    ref = parse_uri(source.from_)
    if ref is not None:
        return hub_source_files(source, ref, root, locked)
    return source_fileset(source, root).files


def source_fileset(source: Source, root: Path) -> FileSet:
    """What a local source's `from` names (files to read, files skipped); an error when a file found cannot be
    read or nothing readable is found, saying what was looked for."""
    found = find_files(source.from_, root, allow_outside_root=source.allow_outside_root)
    problem = files_problem(found, source.from_, root, what=f"source {source.name!r}")
    if problem is not None:
        raise problem
    return found


def skipped_files(source: Source, root: Path) -> list[dict[str, str]]:
    """The files a local source's folder or glob holds that are not data, each with why (none for hub sources)."""
    if parse_uri(source.from_) is not None:
        return []
    found = find_files(source.from_, root, allow_outside_root=source.allow_outside_root)
    return [{"file": shown(p, root), "why": why} for p, why in found.skipped]


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
    """The source's format: as declared, or detected from the first records of each file.

    A source reads one format. Each file is sampled: when files look like formats with different identifying
    columns (Alpaca next to ShareGPT), or one looks like no known format, the error names each file and what
    it looks like before any row is read. A declared `format:` is checked the same way: a file whose records
    have none of the format's identifying columns but are clearly another format is an error too.
    """
    inverse = {v: k for k, v in source.columns.items()}

    def sample(path: Path) -> list[dict[str, Any]]:
        records = sample_records(path, display=display_path(path, root))
        return [{inverse.get(k, k): v for k, v in r.items()} for r in records]

    if source.format:
        _check_declared(source, files, root, sample)
        return source.format
    looks = [(f, s, formats.candidates(s)) for f in files for s in [sample(f)] if s]
    if len(looks) <= 1:  # one file (or none with records): detect as always, naming that file
        f, s = (looks[0][0], looks[0][1]) if looks else (files[0], [])
        return formats.detect(s, f"source {source.name!r} ({display_path(f, root)})").name
    shared = frozenset.intersection(*(frozenset(c.signature for c in cands) for _, _, cands in looks))
    if shared:
        pooled = [r for _, s, _ in looks for r in s]
        try:
            chosen = formats.detect(pooled, f"source {source.name!r} (`from: {source.from_}`)")
        except DataError:
            chosen = None
        if chosen is not None and chosen.signature in shared:
            return chosen.name
    raise _mixed_formats(source, looks, root)


def _what_it_looks_like(sample: list[dict[str, Any]], cands: list[formats.Format]) -> str:
    if len(cands) == 1:
        return cands[0].name
    if cands:
        return " or ".join(c.name for c in cands)
    return f"no known format (columns {sorted({k for r in sample for k in r})})"


def _mixed_formats(source: Source, looks, root: Path, most: int = 6) -> DataError:
    groups: dict[str, list[str]] = {}
    for f, s, cands in looks:
        groups.setdefault(_what_it_looks_like(s, cands), []).append(display_path(f, root))
    parts = []
    for what, names in groups.items():
        more = f" and {len(names) - most} more" if len(names) > most else ""
        parts.append(f"{what}: {', '.join(names[:most])}{more}")
    return DataError(
        f"source {source.name!r}: the files of `from: {source.from_}` are not all in one format; they look like "
        + "; ".join(parts),
        hint="a source reads one format: give each format its own source (`from:` one file, or a glob that "
        "matches only that format's files), or set `format:` if detection chose wrongly",
    )


def _check_declared(source: Source, files: list[Path], root: Path, sample) -> None:
    """A DataError when a file clearly holds another format than the declared one: its records have none of
    the declared format's identifying columns, and they match exactly one other format, whose identifying
    columns the declared format does not read."""
    declared = formats.get(source.format)
    modelled = set(declared.shape.arrow.names)
    inverse = {v: k for k, v in source.columns.items()}
    wrong: list[tuple[str, str]] = []
    for f in files:
        names = column_names(f)  # Parquet/Arrow: the schema alone settles most files
        if names is not None and declared.signature & {inverse.get(n, n) for n in names}:
            continue
        records = sample(f)
        if not records or any(k in r for r in records for k in declared.signature):
            continue
        cands = formats.candidates(records)
        # Another format's columns that the declared one also models are its own too (trl reads `messages`,
        # hermes reads `conversations`): only a format whose identifying columns it does not model is wrong.
        if len(cands) == 1 and not cands[0].signature & modelled:
            wrong.append((display_path(f, root), cands[0].name))
    if not wrong:
        return
    columns = ", ".join(sorted(declared.signature))
    listed = ", ".join(f"{f} looks like {name}" for f, name in wrong[:6])
    more = f" (and {len(wrong) - 6} more)" if len(wrong) > 6 else ""
    raise DataError(
        f"source {source.name!r} declares `format: {declared.name}`, but {listed}{more}: "
        f"{'its' if len(wrong) == 1 else 'their'} records have none of {declared.name}'s columns ({columns})",
        hint="a source reads one format: give those files their own source, or correct `format:`",
    )


def read_source(
    source: Source,
    files: list[Path],
    root: Path,
    fmt: str,
    progress: Progress,
    skipped: list[dict[str, str]] | None = None,
    recorded: dict[Path, str] | None = None,
) -> StageOutput:
    """Every record of every file of `source` (up to `max_rows`), in file order.

    `skipped`: the files the folder rule passed over (`skipped_files`), recorded in the stats and shown as the
    stage's last progress note, so that they are named wherever the read is reported. `recorded`: each file's
    sha256 as the build hashed it for the cache key; a file whose bytes read differ fails the source."""
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
        _check_unchanged(source, path, shown, result, recorded)
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
            # A whole-file reject has no row: it is the file's one record (kept when the file's first counts).
            file_rejects = file_rejects.filter(pc.fill_null(pc.less(file_rejects["row"], keep), keep > 0))
            per_file.append({"file": shown, "records": keep, "truncated_by_max_rows": True})
            tables.append(table)
            rejects.append(file_rejects)
            offset += keep
            break
        per_file.append({"file": shown, "records": result.records})
        tables.append(table)
        rejects.append(file_rejects)
        offset += result.records
    skipped = skipped or []
    progress(len(files), len(files), skipped_note(skipped))
    raw = pa.concat_tables(tables, promote_options="default") if tables else None
    return StageOutput(
        {"raw": raw, "rejects": concat_rejects(rejects)},
        {
            "format": fmt,
            "records": offset,
            "files": per_file,
            "skipped": skipped,
            "unmodelled_fields": dict(sorted(dropped.items())),
        },
    )


def _check_unchanged(
    source: Source, path: Path, shown: str, result: ReadResult, recorded: dict[Path, str] | None
) -> None:
    """A DataError when the bytes read are not the ones the build hashed into the cache key (the file was
    appended to or rewritten meanwhile): the manifest would otherwise claim a hash covering other records."""
    if recorded is None or result.sha256 is None or path not in recorded:
        return
    if recorded[path] != result.sha256:
        raise DataError(
            f"source {source.name!r}: {shown} changed while the build read it (its sha256 when the build started was "
            f"{recorded[path][:12]}…, the bytes read hash to {result.sha256[:12]}…); rerun when it is stable",
            hint="wait until whatever writes the file has finished, then build again",
        )


def recorded_digests(files: list[Path]) -> dict[Path, str]:
    """Each file's sha256 as the cache key takes it (`engine.cache.file_sha256`, memoised per size and mtime,
    so the key computed next reuses it): what the read stage compares the bytes it reads with."""
    from ..engine.cache import file_sha256  # here: engine imports this module

    return {f: file_sha256(f) for f in files if f.is_file()}


def _short(why: str) -> str:
    """The head of a skip reason (`dataset metadata`, `hidden file`), for one-line notes."""
    for stop in (":", ";", " ("):
        why = why.split(stop)[0]
    return why


def skipped_note(skipped: list[dict[str, str]], most: int = 4) -> str:
    """`skipped 2 files that are not data: README.md (documentation), …`, or "" when none were."""
    if not skipped:
        return ""
    listed = ", ".join(f"{s['file']} ({_short(s['why'])})" for s in skipped[:most])
    more = f" and {len(skipped) - most} more" if len(skipped) > most else ""
    noun = "file that is" if len(skipped) == 1 else "files that are"
    return f"skipped {len(skipped)} {noun} not data: {listed}{more}"


def make_read(
    source: Source, root: Path, files: list[Path] | None = None
) -> Callable[[dict[str, StageInput], Progress], StageOutput]:
    """The read stage's function for `source` over `files` (default: resolved from `from` when it runs)."""

    # Hashed now, when the graph (and so the cache key) is made: a file changed before it is read is caught.
    recorded = recorded_digests(files) if files is not None else None

    def run(inputs: dict[str, StageInput], progress: Progress) -> StageOutput:
        chosen = files if files is not None else source_files(source, root)
        fmt = resolve_format(source, chosen, root)
        return read_source(source, chosen, root, fmt, progress, skipped_files(source, root), recorded)

    return run


# --- the read stage over shards (DESIGN.md seam 3) --------------------------------------------------------------


@dataclass(frozen=True)
class ReadParams:
    """What every read shard of a source shares (picklable: it crosses to worker processes)."""

    source: str
    fmt: str
    columns: dict[str, str]


def read_shard_fn(params: ReadParams, task: ShardTask) -> dict[str, Any]:
    """Read one shard (a whole file, or a byte range / row groups of one): raw rows numbered from 0 within the
    shard, the file's name on each, and the records rejected; stats say how many records the shard held."""
    from ..engine.cache import write_parquet
    from ..readers_shards import read_shard

    meta = task.meta
    shape = formats.get(params.fmt).shape
    shown = meta["file"]
    if meta["kind"] == "whole":
        path = Path(task.data)
        result = read_file(path, shown, shape, params.columns)
        if result.sha256 is not None and result.sha256 != meta["digest"]:
            raise DataError(
                f"source {params.source!r}: {shown} changed while the build read it (its sha256 when the build "
                f"started was {meta['digest'][:12]}…, the bytes read hash to {result.sha256[:12]}…); rerun when it "
                "is stable",
                hint="wait until whatever writes the file has finished, then build again",
            )
    else:
        result = read_shard(task.data, shape, params.columns)
    table = result.table
    table = table.append_column(FILE, pa.array(np.full(table.num_rows, shown, dtype=object), pa.string()))
    rejects = result.rejects
    if rejects.num_rows:
        rejects = with_source(rejects, params.source)
    out = Path(task.out)
    write_parquet(table, out / "raw.parquet")
    write_parquet(concat_rejects([rejects]), out / "rejects.parquet")
    return {"file": shown, "records": result.records, "unmodelled": dict(sorted(result.unmodelled.items()))}


def plan_read(source: Source, root: Path, files: list[Path], recorded: dict[Path, str] | None, shard_bytes: int):
    """The read stage's task list: a shard per byte range of a JSONL file or row groups of a Parquet file (see
    `readers_shards`), a whole file otherwise."""
    from ..readers_shards import plan_shards

    def tasks(inputs: dict[str, StageInput]) -> list[ShardTask]:
        from ..engine.cache import file_sha256

        out: list[ShardTask] = []
        for path in files:
            shown = display_path(path, root)
            # Each shard's own digest is checked when it is read; here the file as a whole, against the sha256 the
            # build's key took (memoised by size and mtime, so an unchanged file is not hashed again).
            if recorded and path in recorded and file_sha256(path) != recorded[path]:
                raise DataError(
                    f"source {source.name!r}: {shown} changed while the build read it (its sha256 when the build "
                    f"started was {recorded[path][:12]}…, now {file_sha256(path)[:12]}…); rerun when it is stable",
                    hint="wait until whatever writes the file has finished, then build again",
                )
            for shard in plan_shards(path, shown, shard_bytes):
                if shard.kind == "whole":
                    digest = (recorded or {}).get(path) or shard.digest
                    meta = {"file": shown, "kind": "whole", "digest": digest}
                    data: Any = str(path)
                    what = shown
                else:
                    meta = {
                        "file": shown,
                        "kind": shard.kind,
                        "start": shard.start,
                        "end": shard.end,
                        "first_line": shard.first_line,
                        "digest": shard.digest,
                    }
                    data = shard
                    what = shard.describe()
                weight = shard.end - shard.start if shard.kind == "bytes" else path.stat().st_size
                out.append(ShardTask(len(out), {}, meta, what, data=data, weight=weight))
        return out

    return tasks


def read_finish(source: Source, fmt_of: Callable[[], str]):
    """After every shard is read: the row offsets that number the source's records across shards and files (given
    to convert with each part), `max_rows` applied, and the shards' rejects as one part with file-level rows."""

    def finish(results: list[ShardResult], scratch: Path) -> Finished:
        import pyarrow.parquet as pq

        fmt = fmt_of()
        raw, meta, rejects = [], [], []
        in_file: Counter[str] = Counter()
        ordinal = 0
        for r in results:
            records, shown = r.stats["records"], r.stats["file"]
            if source.max_rows is not None and ordinal >= source.max_rows:
                break
            keep = None
            if source.max_rows is not None and ordinal + records > source.max_rows:
                keep = source.max_rows - ordinal
            row_offset = in_file[shown]
            raw.append(r)
            meta.append({"row_offset": row_offset, "ordinal_offset": ordinal, "keep": keep, "format": fmt})
            part = pq.read_table(r.path / "rejects.parquet")
            if part.num_rows:
                local = part["row"]
                if keep is not None:  # a whole-file reject has no row: it is the file's one record
                    part = part.filter(pc.fill_null(pc.less(local, keep), keep > 0))
                    local = part["row"]
                part = part.set_column(part.schema.get_field_index("row"), "row", pc.add(local, row_offset))
                rejects.append(part)
            in_file[shown] += records
            ordinal += records if keep is None else keep
        from ..engine.cache import write_parquet

        path = scratch / "rejects.parquet"
        write_parquet(concat_rejects(rejects), path)
        return Finished({"raw": raw, "rejects": [path]}, {"raw": meta})

    return finish


def read_merge(source: Source, fmt_of: Callable[[], str], skipped_of: Callable[[], list[dict[str, str]]]):
    """The read stage's stats from its shards' (the same as a whole-source read reports)."""

    def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
        per_file: dict[str, dict[str, Any]] = {}
        dropped: Counter[str] = Counter()
        ordinal = 0
        for stats in parts:
            if source.max_rows is not None and ordinal >= source.max_rows:
                # The files after the one max_rows ends in are not reported (the whole-source read never opened them).
                if stats["file"] not in per_file:
                    continue
            shown = stats["file"]
            entry = per_file.setdefault(shown, {"file": shown, "records": 0})
            dropped.update(stats["unmodelled"])
            records = stats["records"]
            if source.max_rows is not None and ordinal + records > source.max_rows:
                records = max(source.max_rows - ordinal, 0)
                entry["truncated_by_max_rows"] = True
            entry["records"] += records
            ordinal += records
        files = list(per_file.values())
        return {
            "format": fmt_of(),
            "records": ordinal,
            "files": files,
            "skipped": skipped_of(),
            "unmodelled_fields": dict(sorted(dropped.items())),
        }

    return merge


def sharded_read(
    source: Source, root: Path, files: list[Path], shard_bytes: int, shard_config: dict[str, Any] | None = None
) -> Sharded:
    """The read stage of `source` over shards."""
    recorded = recorded_digests(files)
    memo: dict[str, Any] = {}

    def fmt_of() -> str:
        if "fmt" not in memo:
            memo["fmt"] = resolve_format(source, files, root)
        return memo["fmt"]

    def skipped_of() -> list[dict[str, str]]:
        if "skipped" not in memo:
            memo["skipped"] = skipped_files(source, root)
        return memo["skipped"]

    plan = plan_read(source, root, files, recorded, shard_bytes)

    def tasks(inputs: dict[str, StageInput]) -> list[ShardTask]:
        fmt_of()  # a source whose format cannot be told fails here, before any shard is read
        return plan(inputs)

    return Sharded(
        read_shard_fn,
        # Resolved when the stage runs (the format is told from the files then), not when the graph is made.
        LazyParams(lambda: ReadParams(source.name, fmt_of(), dict(source.columns))),
        tasks,
        read_merge(source, fmt_of, skipped_of),
        shard_config=shard_config,
        finish=read_finish(source, fmt_of),
        note=lambda: skipped_note(skipped_of()),
    )
