"""Reading source files (JSONL, JSON arrays, Parquet) into Arrow tables of raw rows, with provenance.

The fast path hands the whole file to Arrow's C++ readers with the format's explicit schema. When Arrow
refuses the file (broken JSON, invalid UTF-8, a value of the wrong type, a scalar where an object belongs),
the file is read again record by record: every record that matches the format's JSON Schema is kept, every
other becomes a reject naming its line and field. Nothing is skipped silently: blank lines are the only
thing not counted, because they hold no record.
"""

from __future__ import annotations

import glob
import json
import mmap
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.json as pajson
import pyarrow.parquet as pq

from . import unmodelled
from .errors import DataError
from .rejects import Outcome, empty_rejects, rejects_from_rows

SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet"}
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


def resolve_files(pattern: str, root: Path) -> list[Path]:
    """Files named by a path, a directory (every supported file inside, recursively) or a glob, sorted."""
    base = Path(pattern)
    path = base if base.is_absolute() else root / base
    if path.is_dir():
        found = [p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()]
    elif any(ch in pattern for ch in "*?["):
        found = [Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).suffix in SUFFIXES]
    elif path.is_file():
        found = [path]
    else:
        found = []
    return sorted(found)


def file_kind(path: Path) -> str:
    """`jsonl`, `json` or `parquet`, from the file's suffix."""
    try:
        return SUFFIXES[path.suffix.lower()]
    except KeyError:
        raise DataError(
            f"{path}: unsupported file type {path.suffix!r}",
            hint=f"use one of {', '.join(sorted(SUFFIXES))}",
        ) from None


def read_file(path: Path, display: str, shape: RowShape, column_map: dict[str, str] | None = None) -> ReadResult:
    """Every record of `path` as a raw-row table conforming to `shape`, plus rejects for the rest.

    `column_map` maps the format's column names to the names used in this file. `display` is the path
    recorded in provenance (relative to the recipe root, so builds are reproducible across checkouts).
    """
    kind = file_kind(path)
    file_shape = _renamed(shape, column_map or {})
    if kind == "parquet":
        result = _read_parquet(path, display, file_shape)
    else:
        fast = kind == "jsonl" and not file_shape.json_columns
        result = _read_jsonl_fast(_mapped(path), file_shape) if fast else None
        if result is None:
            data = path.read_bytes()
            records = _jsonl_records(data) if kind == "jsonl" else _json_array_records(data, display)
            result = _from_records(records, display, file_shape)
    if column_map:
        inverse = {v: k for k, v in column_map.items()}
        result.table = result.table.rename_columns([inverse.get(c, c) for c in result.table.column_names])
    return result


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


def sample_records(path: Path, n: int = 20) -> list[dict[str, Any]]:
    """Up to `n` records from the head of `path` (the readable ones), for format detection."""
    kind = file_kind(path)
    if kind == "parquet":
        pf = pq.ParquetFile(path)
        if pf.metadata.num_rows == 0:
            return []
        return next(pf.iter_batches(batch_size=n)).to_pylist()
    if kind == "jsonl":
        out = []
        with path.open("rb") as fh:
            for raw in fh:
                try:
                    obj = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(obj, dict):
                    out.append(obj)
                if len(out) >= n:
                    break
        return out
    records = _json_array_records(path.read_bytes(), str(path))
    return [r[2] for r in (next(records, None) for _ in range(n)) if r is not None and isinstance(r[2], dict)]


# --- fast paths ---------------------------------------------------------------------------------


def _mapped(path: Path) -> memoryview:
    """The file's bytes, memory-mapped: read from the page cache without a copy.

    Reading a large file into a fresh `bytes` costs a copy and, on VMs, the kernel's zeroing of every new
    page, which measured as much as the JSON parse itself.
    """
    with path.open("rb") as fh:
        if fh.seek(0, 2) == 0:
            return memoryview(b"")
        return memoryview(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ))


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
    missing = [f.name for f in shape.arrow if f.name not in table.column_names]
    for name in missing:
        table = table.append_column(name, pa.nulls(table.num_rows, shape.arrow.field(name).type))
    return ReadResult(
        _finish(table, shape, np.arange(len(lines)), lines),
        empty_rejects(),
        table.num_rows,
        dict(unmodelled.in_arrays(table, shape.arrow)),
    )


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


def _newlines(buf: np.ndarray) -> np.ndarray:
    """Offsets of the newline bytes in `buf`, scanned in blocks so the temporary mask stays small (a mask
    the size of the file is a fresh allocation whose page faults alone cost ~1 s per 400 MiB)."""
    if len(buf) <= _SCAN:
        return np.flatnonzero(buf == 0x0A)
    mask = np.empty(_SCAN, dtype=bool)
    found = []
    for start in range(0, len(buf), _SCAN):
        block = buf[start : start + _SCAN]
        np.equal(block, 0x0A, out=mask[: len(block)])
        found.append(np.flatnonzero(mask[: len(block)]) + start)
    return np.concatenate(found)


def _read_parquet(path: Path, display: str, shape: RowShape) -> ReadResult:
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{display}: not a readable Parquet file ({exc})") from None
    n = table.num_rows
    if shape.json_columns:
        return _from_records(((i, None, r) for i, r in enumerate(table.to_pylist())), display, shape)
    try:
        columns = {}
        for f in shape.arrow:
            if f.name in table.column_names and not _castable(table.schema.field(f.name).type, f.type):
                raise pa.ArrowTypeError(f"{f.name}: {table.schema.field(f.name).type} is not {f.type}")
            columns[f.name] = table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(n, f.type)
        extras = [c for c in table.column_names if c not in columns]
        fitted = pa.table({**columns, **{c: table[c] for c in extras}})
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return _from_records(((i, None, r) for i, r in enumerate(table.to_pylist())), display, shape)
    return ReadResult(
        _finish(fitted, shape, np.arange(n), None), empty_rejects(), n, dict(unmodelled.in_arrays(table, shape.arrow))
    )


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
    return json.dumps(kept, ensure_ascii=False, sort_keys=True) if kept else None


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

Record = tuple[int, int | None, Any]  # (row index, line, parsed value or a _Broken marker)


@dataclass(frozen=True)
class _Broken:
    """A record that could not be parsed; `raw` is its text (lossily decoded for display)."""

    reason: str
    message: str
    raw: str


def _jsonl_records(data: bytes) -> Iterator[Record]:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    row = 0
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield (
                row,
                lineno,
                _Broken(
                    "invalid_utf8",
                    f"invalid UTF-8 at byte {exc.start} of the line; re-encode the file as UTF-8",
                    raw.decode("utf-8", "replace"),
                ),
            )
        else:
            try:
                yield row, lineno, json.loads(text)
            except ValueError as exc:
                yield row, lineno, _Broken("invalid_json", f"broken JSON: {exc}", text)
        row += 1


def _json_array_records(data: bytes, display: str) -> Iterator[Record]:
    """Elements of a top-level JSON array (or top-level objects, one after another), each with its line.

    Elements are decoded one at a time so that one broken element costs one reject: after a syntax error
    the reader resynchronises at the start of the next element (`_resync`). Nothing after the data is
    skipped silently: more objects after a first one are records too (JSON Lines saved as `.json`), and
    text after the array's closing bracket is a reject.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{display}:{line}: invalid UTF-8 at byte {exc.start}; a JSON array file must be valid UTF-8",
            hint="re-encode the file as UTF-8, or convert it to JSON Lines so bad lines can be rejected one by one",
        ) from None
    decoder = json.JSONDecoder()
    n = len(text)
    pos = _skip_ws(text, 0)
    if pos < n and text[pos] == "{":
        # Objects, not an array. Reading stopped after the first one before, which silently dropped every
        # further record of a JSON Lines file named `.json`.
        closing = None
    elif pos < n and text[pos] == "[":
        closing = "]"
        pos += 1
    else:
        raise DataError(
            f"{display}:1: expected a JSON array of records (or an object), found {text[pos : pos + 20]!r}",
            hint="JSON files hold one array of objects; use .jsonl for one object per line",
        )
    row = 0
    line = 1 + text.count("\n", 0, pos)
    last = pos
    while True:
        pos = _skip_ws(text, pos)
        if pos >= n:
            break
        line += text.count("\n", last, pos)
        last = pos
        if closing is not None and text[pos] == closing:
            after = _skip_ws(text, pos + 1)
            if after < n:  # a second array, or stray text: one reject rather than a silent skip
                line += text.count("\n", pos, after)
                message = "unexpected text after the closing ']' of the array"
                yield row, line, _Broken("invalid_json", message, text[after : after + 2000])
            break
        try:
            value, end = decoder.raw_decode(text, pos)
        except ValueError as exc:
            resume = _resync(text, pos)
            yield row, line, _Broken("invalid_json", f"broken JSON: {exc}", text[pos:resume].strip()[:2000])
            row += 1
            pos = resume
            continue
        yield row, line, value
        row += 1
        pos = _skip_ws(text, end)
        if pos < n and text[pos] == ",":
            pos += 1


def _skip_ws(text: str, pos: int) -> int:
    n = len(text)
    while pos < n and text[pos] in " \t\r\n":
        pos += 1
    return pos


_BRACKETS = re.compile(r'"(?:[^"\\\n]|\\.)*"|[{}\[\]]')  # strings (skipped) and brackets


def _resync(text: str, start: int) -> int:
    """Where the element after the broken one starting at `start` begins (or the array's `]`, or the end).

    When the broken element starts its own line (pretty-printed files): the next line that opens an object
    at the same indentation. Any line opening an object was taken before, which in nested files (ShareGPT
    turns, OpenAI messages) turned the inner objects of one broken record into many rejects. When elements
    share a line (one-line arrays): the next object after the broken element's brackets close, found by
    counting brackets outside strings; before, everything after the broken element on its line was lost.
    """
    line_start = text.rfind("\n", 0, start) + 1
    indent = text[line_start:start]
    if not indent.strip(" \t"):
        return _next_object_line(text, start, indent)
    depth = 0
    for m in _BRACKETS.finditer(text, start):
        token = m.group()
        if token[0] == '"':
            continue
        if token in "{[":
            if depth == 0 and m.start() > start:
                return m.start()
            depth += 1
        else:
            depth -= 1
            if depth < 0:
                if token == "]":  # the array's end: the broken element was the last one
                    return m.start()
                break  # brackets do not balance (a stray quote misread strings): fall back to lines
    return _next_object_line(text, start, None)


def _next_object_line(text: str, pos: int, indent: str | None) -> int:
    """Start of the next line after `pos` that opens an object (at `indent`, when given), or the end."""
    n = len(text)
    nl = text.find("\n", pos)
    while nl >= 0:
        begin = body = nl + 1
        while body < n and text[body] in " \t":
            body += 1
        if body < n and text[body] == "{" and (indent is None or text[begin:body] == indent):
            return body
        nl = text.find("\n", begin)
    return n


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


def _validated_records(records: list[Record], display: str, shape: RowShape) -> ReadResult:
    """Validate records one by one against the format's JSON Schema; keep the good, reject the rest."""
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
        problem = _record_problem(value, validator, shape)
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


def _record_problem(value: Any, validator, shape: RowShape) -> tuple[str, str | None, str, str] | None:
    """(reason, field, message, raw) when a parsed record cannot be used, else None."""
    if isinstance(value, _Broken):
        return value.reason, None, value.message, value.raw
    raw = json.dumps(value, ensure_ascii=False)
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate escape: no Arrow string can hold it
        return (
            "invalid_unicode",
            None,
            f"a string holds a lone surrogate ({raw[exc.start]!r}), which is not valid Unicode; fix the escape",
            json.dumps(value),
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
