"""Reading source files (JSONL, JSON, CSV/TSV, Parquet, Arrow) into Arrow tables of raw rows, with provenance.

The fast path hands the whole file to Arrow's C++ readers with the format's explicit schema. When Arrow
refuses the file (broken JSON, invalid UTF-8, a value of the wrong type, a scalar where an object belongs),
the file is read again record by record: every record that matches the format's JSON Schema is kept, every
other becomes a reject naming its line and field. Nothing is skipped silently: blank lines are the only
thing not counted, because they hold no record.

Compressed text files (`.jsonl.gz`, `.json.zst`, `.csv.bz2`, …) are decompressed in memory first, so lines
are lines of the decompressed text. Which files a path, folder or glob names is `readers_files`; CSV and TSV
are `readers_csv`.

Hardening: every file is read into memory once (never memory-mapped: a file cut while mapped kills the process
with SIGBUS) and the sha256 of those bytes is returned, so the read stage can tell a file that changed after the
build hashed it. JSON nesting is bounded before any parser sees it (`jsonsafe`; Arrow's reader segfaults past
~10,000 levels), NaN/Infinity are rejected, and a file that cannot be read at all (not UTF-8, empty, a cut
Parquet footer, a broken gzip stream) is one `unreadable_file` reject instead of an error for the whole source.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq

from . import jsonsafe, unmodelled
from .errors import DataError
from .readers_files import COMPRESSION, SUFFIXES, FileSet, FileType, file_kind, file_type, files_problem, find_files
from .readers_json import (
    Record,
    UnreadableFile,
    _Broken,
    _json_array_records,
    _json_text_records,
    _jsonl_records,
    excerpt,
    strip_boms,
)
from .rejects import Outcome, empty_rejects, rejects_from_rows

__all__ = [
    "SUFFIXES",
    "FileSet",
    "column_names",
    "file_kind",
    "file_type",
    "files_problem",
    "find_files",
    "read_file",
    "resolve_files",
    "sample_records",
]
ROW = "__row"
LINE = "__line"
EXTRA = "__extra"  # JSON object text of columns the format does not model

# Arrow's JSON reader needs every record to fit in one block; rows of long conversations can be large.
BLOCK_SIZE = 32 << 20
_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[[0x20, 0x09, 0x0D, 0x0A]] = True


@dataclass(frozen=True)
class RowShape:
    """What a format expects of one raw record: Arrow types, JSON Schema, and an optional normaliser."""

    arrow: pa.Schema
    json_schema: dict[str, Any]
    # Turns accepted spellings into the canonical one before validation (e.g. arguments given as an
    # object where a JSON string is expected). Returns the record unchanged when there is nothing to do.
    coerce: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    # Columns whose values vary in type from row to row (a trl `prompt` is a string or a list of messages):
    # the schema types them as strings and each value is stored as its JSON text, decoded by the format.
    # Files of such a shape are always read record by record (the JSON Schema still checks the real value).
    json_columns: frozenset[str] = frozenset()


@dataclass
class ReadResult:
    """Raw rows of one file (format columns + `__row`, `__line`, `__extra`) and the records rejected."""

    table: pa.Table
    rejects: pa.Table
    records: int  # records found in the file: rows kept + rows rejected
    # Nested fields the format does not model, by path (e.g. `messages[].weight`): values dropped, counted.
    unmodelled: dict[str, int] = field(default_factory=dict)
    sha256: str | None = None  # of the file's bytes as read (compressed files: before decompression)


def resolve_files(pattern: str, root: Path) -> list[Path]:
    """Files named by a path, a folder (every data file below it) or a glob, sorted (`readers_files`' rule).

    [] when nothing matches; a DataError naming them when some matched files cannot be read.
    """
    found = find_files(pattern, root)
    if found.unreadable or found.outside:
        problem = files_problem(found, pattern, root, key=None)
        assert problem is not None
        raise problem
    return found.files


def read_file(path: Path, display: str, shape: RowShape, column_map: dict[str, str] | None = None) -> ReadResult:
    """Every record of `path` as a raw-row table conforming to `shape`, plus rejects for the rest.

    `column_map` maps the format's column names to the names used in this file. `display` is the path
    recorded in provenance (relative to the recipe root, so builds are reproducible across checkouts).
    """
    ftype = file_type(path)
    file_shape = _renamed(shape, column_map or {})
    raw = _read_bytes(path, display)
    digest = hashlib.sha256(raw).hexdigest()
    try:
        result = _read_buffer(raw, ftype, display, file_shape)
    except UnreadableFile as exc:
        result = _unreadable_result(display, file_shape, exc.message)
    result.sha256 = digest
    if column_map:
        inverse = {v: k for k, v in column_map.items()}
        result.table = result.table.rename_columns([inverse.get(c, c) for c in result.table.column_names])
    return result


def _read_buffer(raw: pa.Buffer, ftype: FileType, display: str, shape: RowShape) -> ReadResult:
    """The records of one file's bytes, by its type."""
    kind = ftype.kind
    if kind == "parquet":
        return _read_table(_parquet_table(raw, display), display, shape)
    if kind == "arrow":
        return _read_table(_arrow_table(raw, display, ftype), display, shape)
    data = _decompressed(raw, ftype, display)
    if kind in ("csv", "tsv"):
        from .readers_csv import read_csv

        return read_csv(data, display, shape, "\t" if kind == "tsv" else ",")
    data = strip_boms(data)
    fast = kind == "jsonl" and not shape.json_columns
    result = _read_jsonl_fast(data, shape) if fast else None
    if result is None:
        text = bytes(data)
        records = _jsonl_records(text) if kind == "jsonl" else _json_array_records(text, display)
        result = _from_records(records, display, shape)
    return result


def _unreadable_result(display: str, shape: RowShape, message: str) -> ReadResult:
    """One `unreadable_file` reject for a whole file (counted as one record, so the ledger still balances)."""
    prefix = f"{display}: "
    why = message[len(prefix) :] if message.startswith(prefix) else message
    reject = {
        "file": display,
        "row": None,
        "line": None,
        "stage": "read",
        "outcome": Outcome.REJECTED.value,
        "reason": "unreadable_file",
        "field": None,
        "message": f"the file cannot be read: {why}",
        "raw": None,
    }
    return ReadResult(_with_provenance(shape.arrow.empty_table(), [], []), rejects_from_rows([reject]), 1)


def _renamed(shape: RowShape, column_map: dict[str, str]) -> RowShape:
    """`shape` with top-level columns renamed as the file names them (`column_map`: format name → file name)."""
    if not column_map:
        return shape
    arrow = pa.schema([f.with_name(column_map.get(f.name, f.name)) for f in shape.arrow])
    js = dict(shape.json_schema)
    js["properties"] = {column_map.get(k, k): v for k, v in shape.json_schema.get("properties", {}).items()}
    js["required"] = [column_map.get(k, k) for k in shape.json_schema.get("required", [])]
    json_columns = frozenset(column_map.get(c, c) for c in shape.json_columns)
    coerce = shape.coerce
    if coerce is not None:
        inverse = {v: k for k, v in column_map.items()}

        def coerce_renamed(record: dict[str, Any]) -> dict[str, Any]:
            fixed = coerce({inverse.get(k, k): v for k, v in record.items()})
            return {column_map.get(k, k): v for k, v in fixed.items()}

        return RowShape(arrow, js, coerce_renamed, json_columns)
    return RowShape(arrow, js, None, json_columns)


_HEAD = 1 << 16  # bytes read from a text file's head to sample it; 8× more while its first records do not fit


def sample_records(path: Path, n: int = 20, display: str | None = None) -> list[dict[str, Any]]:
    """Up to `n` records from the head of `path` (the readable ones), for format detection.

    `display` names the file in errors (a file named .jsonl that is gzip data, column-oriented JSON whose
    columns differ in length)."""
    display = display or str(path)
    ftype = file_type(path)
    kind = ftype.kind
    if kind in ("parquet", "arrow"):
        # A file that cannot be read gives no sample: reading it later makes it one `unreadable_file` reject.
        try:
            raw = _read_bytes(path, display)
            table = _parquet_table(raw, display) if kind == "parquet" else _arrow_table(raw, display, ftype)
        except DataError:
            return []
        return _drop_pandas_index(table).slice(0, n).to_pylist()
    size = _HEAD
    while True:
        try:
            head, whole = _head_bytes(path, display, ftype, size)
        except UnreadableFile:
            return []
        head = strip_boms(head)
        if ftype.compression is None:
            try:
                _check_not_compressed(head[:8], display, ftype)
            except UnreadableFile:  # reading it makes it one reject that says how to fix it
                return []
        if kind in ("csv", "tsv"):
            from .readers_csv import sample_csv

            out = sample_csv(head, whole, "\t" if kind == "tsv" else ",", n)
        elif kind == "jsonl":
            lines = head.split(b"\n") if whole else head.split(b"\n")[:-1]  # the last may be cut short
            out = []
            for raw in lines:
                try:
                    obj = jsonsafe.loads(raw)  # depth bounded first: a deep line raised RecursionError here
                except (ValueError, UnicodeDecodeError):
                    continue
                if isinstance(obj, dict):
                    out.append(obj)
                if len(out) >= n:
                    break
        else:
            text = head.decode("utf-8-sig", errors="replace")
            out = []
            try:
                for _, _, value in _json_text_records(text, display):
                    if isinstance(value, dict):
                        out.append(value)
                    if len(out) >= n:
                        break
            except UnreadableFile:
                return out
        if whole or len(out) >= n:
            return out[:n]
        size *= 8


def column_names(path: Path) -> list[str] | None:
    """The columns of a Parquet or Arrow file from its schema alone; None for other kinds (or unreadable)."""
    kind = file_type(path).kind
    try:
        if kind == "parquet":
            return pq.read_schema(path).names
        if kind == "arrow" and path.suffix.lower() == ".arrow":
            # Read, not memory-mapped: a mapped file cut meanwhile kills the process (SIGBUS).
            source = pa.BufferReader(_read_bytes(path, str(path)))
            try:
                return pa.ipc.open_stream(source).schema.names
            except pa.ArrowInvalid:
                source.seek(0)
                return pa.ipc.open_file(source).schema.names
    except (pa.ArrowInvalid, OSError, DataError):
        return None
    return None


def _head_bytes(path: Path, display: str, ftype: FileType, size: int) -> tuple[bytes, bool]:
    """Up to `size` bytes from the head of the (decompressed) file, and whether that is all of it."""
    try:
        with pa.input_stream(str(path), compression=ftype.compression) as stream:
            head = stream.read(size)
            whole = len(head) < size or not stream.read(1)
    except (OSError, pa.ArrowInvalid) as exc:
        raise _unreadable_compressed(path, display, ftype, exc) from None
    return head, whole


def _read_bytes(path: Path, display: str) -> pa.Buffer:
    """The file's bytes, read once into memory.

    Not memory-mapped (it was, to save a copy): a mapped file that is truncated while it is read kills the
    process with SIGBUS; a read returns the bytes there were, which the caller hashes.
    """
    try:
        with pa.OSFile(str(path), "r") as fh:
            return fh.read_buffer()
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(
            f"{display}: cannot be read ({exc})", hint="check that the file exists and may be read"
        ) from None


def _decompressed(raw: pa.Buffer, ftype: FileType, display: str) -> memoryview:
    """A text file's bytes, decompressed when its name says it is compressed."""
    if ftype.compression is None:
        _check_not_compressed(raw[:8].to_pybytes(), display, ftype)
        return memoryview(raw).cast("B")  # unsigned bytes: a pa.Buffer's view is signed, so BOM checks never matched
    try:
        with pa.input_stream(raw, compression=ftype.compression) as stream:
            return memoryview(stream.read_buffer()).cast("B")
    except (OSError, pa.ArrowInvalid) as exc:
        raise _unreadable_compressed(Path(display), display, ftype, exc) from None


def _unreadable_compressed(path: Path, display: str, ftype: FileType, exc: Exception) -> DataError:
    if ftype.compression is None:
        return DataError(f"{display}: cannot be read ({exc})", hint="check that the file exists and may be read")
    return UnreadableFile(
        f"{display}: not readable as {ftype.compression}-compressed data ({exc})",
        hint=f"check that the file is complete and really {ftype.compression} (its name says so)",
    )


_MAGIC = {b"\x1f\x8b": ".gz", b"\x28\xb5\x2f\xfd": ".zst", b"BZh": ".bz2", b"PK\x03\x04": ".zip", b"PAR1": ".parquet"}


def _check_not_compressed(head: bytes | memoryview, display: str, ftype: FileType) -> None:
    """A DataError when a text file's first bytes say it is compressed or binary (read, it would be garbage)."""
    head = bytes(head)
    name = Path(display).name
    for magic, suffix in _MAGIC.items():
        if head.startswith(magic):
            if suffix == ".parquet":
                what, fix = "a Parquet file", f"rename it to {Path(name).stem}.parquet"
            elif suffix == ".zip":
                what, fix = "a zip archive", "extract it and point `from:` at the folder"
            else:
                what, fix = f"{COMPRESSION[suffix]}-compressed", f"rename it to {name}{suffix}"
            # The file is data under the wrong name: one `unreadable_file` reject that says how to fix it.
            raise UnreadableFile(f"{display}: named like a {ftype.kind} file, but it is {what}; {fix}")


# --- fast paths ---------------------------------------------------------------------------------


def _read_jsonl_fast(data: bytes | memoryview, shape: RowShape) -> ReadResult | None:
    """The whole file through Arrow's JSON reader, or None when Arrow refuses it."""
    if data[:3] == b"\xef\xbb\xbf":
        data = data[3:]  # Arrow reads a BOM, but the check below looks at each line's first byte
    lines, first = _record_lines(data)
    if len(lines) == 0:  # empty, or only whitespace
        return ReadResult(_with_provenance(shape.arrow.empty_table(), [], []), empty_rejects(), 0)
    # Only files whose every record opens an object go to Arrow: a `null` first line crashes pyarrow's
    # reader (segfault, pyarrow 26), and a later `null` line becomes an all-null row instead of a reject.
    if not (first == ord("{")).all():
        return None
    # Arrow's reader segfaults on JSON nested ~10,000 deep: a file with a line nested deeper than the limit goes
    # record by record, where that line becomes a `too_deep` reject.
    if _too_deep_lines(data, lines):
        return None
    try:
        table = pajson.read_json(
            pa.BufferReader(data),  # zero-copy; through io.BytesIO Arrow copied the file out block by block
            read_options=pajson.ReadOptions(block_size=BLOCK_SIZE),
            parse_options=pajson.ParseOptions(explicit_schema=shape.arrow, unexpected_field_behavior="infer"),
        )
        # Arrow's JSON reader does not check that strings are valid UTF-8; the full validation does, so
        # a line with invalid bytes becomes a reject on the careful path instead of a corrupt table.
        table.validate(full=True)
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None
    if len(lines) != table.num_rows:  # Arrow saw records differently from our line scan: be careful
        return None
    extras = [f for f in table.schema if f.name not in shape.arrow.names]
    # Extra columns become metadata JSON from Arrow's inferred types; where inference changes the values
    # (ISO dates become timestamps, objects gain the keys of other rows as nulls) read them carefully.
    if not all(_json_faithful(f.type) for f in extras):
        return None
    # Arrow reads `NaN`/`Infinity` as floats; they are not JSON: record by record they become rejects.
    if _has_non_finite(table):
        return None
    missing = [f.name for f in shape.arrow if f.name not in table.column_names]
    for name in missing:
        table = table.append_column(name, pa.nulls(table.num_rows, shape.arrow.field(name).type))
    return ReadResult(
        _finish(table, shape, np.arange(len(lines)), lines),
        empty_rejects(),
        table.num_rows,
        dict(unmodelled.in_arrays(table, shape.arrow)),
    )


def _too_deep_lines(data: bytes | memoryview, lines: np.ndarray) -> bool:
    """Whether some line of a JSON Lines buffer nests deeper than `jsonsafe.MAX_DEPTH`.

    Cheap: a line with fewer opening brackets than the limit cannot be too deep (brackets are found with one
    vectorised pass per bracket); only lines holding more are scanned exactly (`jsonsafe.depth`).
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    opens = np.concatenate((_newlines(buf, ord("[")), _newlines(buf, ord("{"))))
    if len(opens) <= jsonsafe.MAX_DEPTH:
        return False
    newlines = _newlines(buf)
    per_line = np.bincount(np.searchsorted(newlines, opens), minlength=len(newlines) + 1)
    starts = np.concatenate(([0], newlines + 1))
    ends = np.concatenate((newlines, [len(buf)]))
    for i in np.flatnonzero(per_line > jsonsafe.MAX_DEPTH):
        if jsonsafe.depth(data[starts[i] : ends[i]]) > jsonsafe.MAX_DEPTH:
            return True
    return False


def _has_non_finite(table: pa.Table) -> bool:
    """Whether any floating-point value anywhere in the table (nested too) is NaN or ±Infinity."""
    return any(_array_non_finite(col) for col in table.columns)


def _array_non_finite(arr: pa.Array | pa.ChunkedArray) -> bool:
    typ = arr.type
    if pa.types.is_floating(typ):
        return pc.any(pc.invert(pc.is_finite(arr))).as_py() or False
    if isinstance(arr, pa.ChunkedArray):
        return any(_array_non_finite(chunk) for chunk in arr.chunks)
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        return _array_non_finite(arr.flatten())
    if pa.types.is_struct(typ):
        return any(_array_non_finite(arr.field(i)) for i in range(typ.num_fields))
    return False


def _json_faithful(typ: pa.DataType) -> bool:
    """Whether values of this inferred type convert back to the JSON values they were read from."""
    if pa.types.is_list(typ):
        return _json_faithful(typ.value_type)
    return any(
        check(typ)
        for check in (
            pa.types.is_null,
            pa.types.is_boolean,
            pa.types.is_integer,
            pa.types.is_floating,
            pa.types.is_string,
        )
    )


def _record_lines(data: bytes | memoryview) -> tuple[np.ndarray, np.ndarray]:
    """1-based numbers of the lines that hold something other than whitespace, and the first such byte of
    each (vectorised).

    The work is per line, not per byte: a line whose first byte is not whitespace holds something and that
    byte is its first; only empty lines and lines opening with whitespace (rare in JSONL) are looked at
    further. A per-byte pass (mask + int64 cumsum over the whole file) cost ~16 s and ~10× the file's size
    in memory on a 370 MiB file; this costs ~0.2 s and a few arrays of one entry per line.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    newlines = _newlines(buf)
    starts = np.concatenate(([0], newlines + 1))
    ends = np.concatenate((newlines, [len(buf)]))
    nonblank = ends > starts
    first = np.zeros(len(starts), dtype=np.uint8)
    first[nonblank] = buf[starts[nonblank]]
    nonblank &= ~_WHITESPACE[first]
    for i in np.flatnonzero((ends > starts) & ~nonblank):  # lines that are empty or open with whitespace
        rest = bytes(data[starts[i] : ends[i]]).lstrip(b" \t\r\n")
        if rest:
            nonblank[i] = True
            first[i] = rest[0]
    return np.flatnonzero(nonblank) + 1, first[nonblank]


_SCAN = 1 << 22


def _newlines(buf: np.ndarray, byte: int = 0x0A) -> np.ndarray:
    """Offsets of the newline bytes (or `byte`) in `buf`, scanned in blocks so the temporary mask stays small
    (a mask the size of the file is a fresh allocation whose page faults alone cost ~1 s per 400 MiB)."""
    if len(buf) <= _SCAN:
        return np.flatnonzero(buf == byte)
    mask = np.empty(_SCAN, dtype=bool)
    found = []
    for start in range(0, len(buf), _SCAN):
        block = buf[start : start + _SCAN]
        np.equal(block, byte, out=mask[: len(block)])
        found.append(np.flatnonzero(mask[: len(block)]) + start)
    return np.concatenate(found)


def _parquet_table(raw: pa.Buffer, display: str) -> pa.Table:
    """A Parquet file's table from its bytes; an UnreadableFile saying what is wrong otherwise."""
    try:
        return _drop_pandas_index(pq.read_table(pa.BufferReader(raw)))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        if raw.size < 12 or raw[raw.size - 4 :].to_pybytes() != b"PAR1":
            why = f"Parquet footer missing or cut (file ends at byte {raw.size})"
        else:
            why = f"not a readable Parquet file ({exc})"
        raise UnreadableFile(f"{display}: {why}", hint="write the file again, completely") from None


_PANDAS_INDEX = re.compile(r"__index_level_\d+__")


def _drop_pandas_index(table: pa.Table) -> pa.Table:
    """The table without the index columns pandas writes (`__index_level_0__`, or an unnamed index it lists in
    its `pandas` schema metadata): they are row numbers, not data, and leaked into converted output."""
    drop = {name for name in table.column_names if _PANDAS_INDEX.fullmatch(name)}
    meta = (table.schema.metadata or {}).get(b"pandas")
    if meta:
        try:
            info = json.loads(meta)
            named = {c.get("field_name"): c.get("name") for c in info.get("columns", []) if isinstance(c, dict)}
            for col in info.get("index_columns", []):
                # An index with a name (`df.set_index("id")`) is real data; an unnamed one is row numbers.
                if isinstance(col, str) and named.get(col) is None:
                    drop.add(col)
        except (ValueError, AttributeError):
            pass  # metadata that is not pandas': nothing to drop by it
    drop &= set(table.column_names)
    return table.drop_columns(sorted(drop)) if drop else table


def _arrow_table(raw: pa.Buffer, display: str, ftype: FileType | None = None) -> pa.Table:
    """An Arrow IPC stream (`datasets` writes these: data-00000-of-00001.arrow), IPC file or Feather file."""
    try:
        try:
            table = pa.ipc.open_stream(pa.BufferReader(raw)).read_all()
        except pa.ArrowInvalid:
            try:
                table = pa.ipc.open_file(pa.BufferReader(raw)).read_all()
            except pa.ArrowInvalid:
                import pyarrow.feather as feather  # Feather v1 (v2 is the IPC file format)

                table = feather.read_table(pa.BufferReader(raw))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise UnreadableFile(
            f"{display}: not a readable Arrow IPC (stream or file) or Feather file ({exc})",
            hint="`datasets.Dataset.save_to_disk` folders are read as they are; other .arrow files must be Arrow IPC",
        ) from None
    return _drop_pandas_index(table)


def _read_table(
    table: pa.Table, display: str, shape: RowShape, rows: np.ndarray | None = None, lines: np.ndarray | None = None
) -> ReadResult:
    """Raw rows from a table already typed by its file (Parquet, Arrow, CSV): cast when the values fit the
    format's types unchanged, else record by record. `rows`/`lines`: each table row's provenance (default:
    its position, no line)."""
    n = table.num_rows
    rows = np.arange(n) if rows is None else rows
    line_list = [None] * n if lines is None else [int(x) for x in lines]
    # Nesting needs no check here: Parquet refuses schemas deeper than 100 levels and Arrow IPC deeper than ~64
    # (that file is one `unreadable_file` reject), both below jsonsafe.MAX_DEPTH.
    table = _missing_floats_as_null(table, shape)
    if _has_non_finite(table):  # NaN/Infinity have no JSON spelling: those rows become rejects, one by one
        records = list(zip(rows.tolist(), line_list, table.to_pylist(), strict=True))
        return _validated_records(records, display, shape, check_numbers=True)
    if shape.json_columns:
        return _from_records(zip(rows.tolist(), line_list, table.to_pylist(), strict=True), display, shape)
    try:
        columns = {}
        for f in shape.arrow:
            if f.name in table.column_names and not _castable(table.schema.field(f.name).type, f.type):
                raise pa.ArrowTypeError(f"{f.name}: {table.schema.field(f.name).type} is not {f.type}")
            columns[f.name] = table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(n, f.type)
        extras = [c for c in table.column_names if c not in columns]
        fitted = pa.table({**columns, **{c: table[c] for c in extras}})
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return _from_records(zip(rows.tolist(), line_list, table.to_pylist(), strict=True), display, shape)
    return ReadResult(
        _finish(fitted, shape, rows, lines), empty_rejects(), n, dict(unmodelled.in_arrays(table, shape.arrow))
    )


def _missing_floats_as_null(table: pa.Table, shape: RowShape) -> pa.Table:
    """`table` with NaN in top-level float columns the format does not model read as null.

    pandas writes a missing value in a float column as NaN, so a Parquet file saved from a DataFrame holds NaN
    wherever a `score` or `rating` was absent: that is a missing value, carried as JSON null, not a bad row. A
    NaN or infinity in a column the format models (a `weight`), or nested inside one, still rejects the row."""
    modelled = set(shape.arrow.names)
    for i, f in enumerate(table.schema):
        if f.name not in modelled and pa.types.is_floating(f.type):
            column = table.column(i)
            if pc.any(pc.is_nan(column)).as_py():
                table = table.set_column(i, f, pc.if_else(pc.is_nan(column), pa.scalar(None, f.type), column))
    return table


def _castable(source: pa.DataType, target: pa.DataType) -> bool:
    """Whether a Parquet column of type `source` holds values of `target` without changing them.

    Strings of any width, lists of any width and structs (missing fields become null; extra ones are
    counted as unmodelled) qualify; a number where a string belongs does not, so such files take the
    record-by-record path and those rows are rejected as they would be from JSON.
    """
    text = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)
    if pa.types.is_null(source) or source == target:
        return True
    if any(t(target) for t in text):
        return any(t(source) for t in text)
    lists = (pa.types.is_list, pa.types.is_large_list, pa.types.is_list_view)
    if any(t(target) for t in lists):
        return any(t(source) for t in lists) and _castable(source.value_type, target.value_type)
    if pa.types.is_struct(target):
        if not pa.types.is_struct(source):
            return False
        have = {source.field(i).name: source.field(i).type for i in range(source.num_fields)}
        return all(
            _castable(have[target.field(i).name], target.field(i).type)
            for i in range(target.num_fields)
            if target.field(i).name in have
        )
    return False


def _finish(table: pa.Table, shape: RowShape, rows: np.ndarray, lines: np.ndarray | None) -> pa.Table:
    """Format columns in schema order + provenance + extras (as JSON text) for a table read fast."""
    extras = [c for c in table.column_names if c not in shape.arrow.names]
    extra_json: list[str | None] | None = None
    if extras:
        extra_rows = table.select(extras).to_pylist()
        extra_json = [_extra_text(r) for r in extra_rows]
    base = table.select(shape.arrow.names).cast(shape.arrow)
    return _with_provenance(base, rows, lines, extra_json)


def _extra_text(extra: dict[str, Any]) -> str | None:
    kept = {k: v for k, v in extra.items() if v is not None}
    # default=str: Parquet/Arrow extras may hold dates or bytes, which JSON has no type for
    return json.dumps(kept, ensure_ascii=False, sort_keys=True, default=str) if kept else None


def _with_provenance(table: pa.Table, rows, lines, extra_json: list[str | None] | None = None) -> pa.Table:
    n = table.num_rows
    table = table.append_column(ROW, pa.array(np.asarray(rows, dtype=np.int64), pa.int64()))
    if lines is None:
        table = table.append_column(LINE, pa.nulls(n, pa.int64()))
    else:
        table = table.append_column(LINE, pa.array(np.asarray(lines, dtype=np.int64), pa.int64()))
    extra = pa.array(extra_json, pa.string()) if extra_json is not None else pa.nulls(n, pa.string())
    return table.append_column(EXTRA, extra)


# --- the careful path: record by record ---------------------------------------------------------


def _from_records(records, display: str, shape: RowShape) -> ReadResult:
    """Records already parsed in Python (JSON arrays, or files Arrow refused) as a raw-row table.

    When every record is an object whose values Arrow accepts for the format's types, the table is built in
    one call; otherwise each record is validated against the format's JSON Schema and the bad ones rejected.
    """
    records = list(records)
    if not shape.json_columns and all(isinstance(value, dict) for _, _, value in records):
        known = set(shape.arrow.names)
        try:
            table = pa.Table.from_pylist([v for _, _, v in records], schema=shape.arrow)
            extras = [_extra_text({k: x for k, x in v.items() if k not in known}) for _, _, v in records]
            has_lines = any(line is not None for _, line, _ in records)
            table = _with_provenance(
                table,
                [r for r, _, _ in records],
                [line for _, line, _ in records] if has_lines else None,
                extras,
            )
        # UnicodeEncodeError: a string with a lone surrogate (`"\ud800"` parses in Python, not in Arrow)
        # escaped as a traceback before; record by record it becomes a reject.
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, UnicodeEncodeError):
            pass
        else:
            found: Counter[str] = Counter()
            for _, _, value in records:
                unmodelled.in_record(value, shape.arrow, found)
            return ReadResult(table, empty_rejects(), len(records), dict(found))
    return _validated_records(records, display, shape)


def _validated_records(records: list[Record], display: str, shape: RowShape, check_numbers: bool = False) -> ReadResult:
    """Validate records one by one against the format's JSON Schema; keep the good, reject the rest.

    `check_numbers`: look for NaN/Infinity floats in each record (records from Parquet/Arrow; parsed JSON
    cannot hold them, `jsonsafe` refused them)."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(shape.json_schema)
    good: list[dict[str, Any]] = []
    rows: list[int] = []
    lines: list[int | None] = []
    extras: list[str | None] = []
    bad: list[dict[str, Any]] = []
    known = set(shape.arrow.names)
    found: Counter[str] = Counter()
    count = 0
    for row, line, value in records:
        count += 1
        problem = _record_problem(value, validator, shape, check_numbers)
        if problem is not None:
            reason, field, message, raw = problem
            bad.append(
                {
                    "file": display,
                    "row": row,
                    "line": line,
                    "stage": "read",
                    "outcome": Outcome.REJECTED.value,
                    "reason": reason,
                    "field": field,
                    "message": message,
                    "raw": raw,
                }
            )
            continue
        if shape.coerce is not None:
            value = shape.coerce(value)
        kept = {k: v for k, v in value.items() if k in known}
        for name in shape.json_columns & kept.keys():
            kept[name] = json.dumps(kept[name], ensure_ascii=False) if kept[name] is not None else None
        good.append(kept)
        unmodelled.in_record(value, shape.arrow, found)
        extras.append(_extra_text({k: v for k, v in value.items() if k not in known}))
        rows.append(row)
        lines.append(line)
    table = pa.Table.from_pylist(good, schema=shape.arrow)
    has_lines = any(x is not None for x in lines) or not lines
    table = _with_provenance(table, rows, lines if has_lines else None, extras)
    return ReadResult(table, rejects_from_rows(bad) if bad else empty_rejects(), count, dict(found))


def _record_problem(
    value: Any, validator, shape: RowShape, check_numbers: bool = False
) -> tuple[str, str | None, str, str | None] | None:
    """(reason, field, message, raw) when a parsed record cannot be used, else None.

    Nesting needs no check here: parsed records went through `jsonsafe` and Parquet/Arrow values nest at most
    100 levels (their readers' limits), below `jsonsafe.MAX_DEPTH`."""
    if isinstance(value, _Broken):
        return value.reason, value.field, value.message, excerpt(value.raw)
    constant = _non_finite_path(value) if check_numbers else None
    if constant is not None:
        where, number = constant
        bad = jsonsafe.NonFinite(number, _field_path(where))
        return bad.reason, bad.field, bad.message, excerpt(json.dumps(value, ensure_ascii=False, default=str))
    full = json.dumps(value, ensure_ascii=False, default=str)
    raw = excerpt(full)  # capped: a huge bad record must not land whole in the report
    try:
        full.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate escape: no Arrow string can hold it
        return (
            "invalid_unicode",
            None,
            f"a string holds a lone surrogate ({full[exc.start]!r}), which is not valid Unicode; fix the escape",
            excerpt(json.dumps(value, default=str)),
        )
    if not isinstance(value, dict):
        return "not_an_object", None, f"expected a JSON object per record, found {_json_type(value)}", raw
    if shape.coerce is not None:
        value = shape.coerce(value)
    error = next(iter(sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))), None)
    if error is None:
        return None
    path = list(error.absolute_path)
    if error.validator == "required":  # name the missing field itself, as the fast path does
        missing = [k for k in error.validator_value if k not in error.instance and repr(k) in error.message]
        path += missing[:1]
    return "schema_violation", _field_path(path), _schema_message(error), raw


def _non_finite_path(value: Any) -> tuple[list[Any], str] | None:
    """(path, `NaN`/`Infinity`/`-Infinity`) of the first non-finite float in a Python value, else None."""
    stack: list[tuple[Any, list[Any]]] = [(value, [])]
    while stack:
        item, where = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return where, "NaN" if math.isnan(item) else ("Infinity" if item > 0 else "-Infinity")
        if isinstance(item, dict):
            stack.extend((v, [*where, k]) for k, v in reversed(list(item.items())))
        elif isinstance(item, (list, tuple)):
            stack.extend((v, [*where, i]) for i, v in reversed(list(enumerate(item))))
    return None


def _json_type(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _field_path(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(record)"


def _schema_message(error) -> str:
    if error.validator == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return f"expected {expected}, found {_json_type(error.instance)}"
    if error.validator == "required":
        return error.message.replace("is a required property", "is required but missing")
    return error.message
