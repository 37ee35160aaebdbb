"""CSV and TSV files: a header row naming the columns, then one record per row, every value read as a string.

The fast path is Arrow's CSV reader with every column typed as a string (so `007` stays `007`); rows with the
wrong number of values are handed to `invalid_row_handler` and become rejects with their line. Lines are
found with one vectorised pass: a newline ends a record when an even number of quotes precede it (a newline
inside a quoted value does not). Files Arrow refuses (invalid UTF-8), whose shape needs JSON values (a
`conversations` column holding JSON text, a boolean `label`) or whose lines do not add up are read with
Python's `csv` module instead, row by row, with the same rejects.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from . import jsonsafe
from .readers import BLOCK_SIZE, ReadResult, RowShape, _from_records, _newlines, _read_table, _with_provenance
from .readers_json import Record, UnreadableFile, _Broken, excerpt, strip_boms
from .rejects import Outcome, concat_rejects, empty_rejects, rejects_from_rows

_NL, _CR, _QUOTE = 0x0A, 0x0D, 0x22


def read_csv(data: bytes | memoryview, display: str, shape: RowShape, delimiter: str) -> ReadResult:
    """Every row of a CSV (or TSV: `delimiter` tab) file as a raw row; rows that cannot be one as rejects."""
    data = strip_boms(data)  # a BOM mid-file (concatenated files) would otherwise start a value
    buf = np.frombuffer(data, dtype=np.uint8)
    starts, ends, lines = _physical_records(buf)
    if len(starts) == 0:  # empty, or only blank lines: no header, no records
        return ReadResult(_with_provenance(shape.arrow.empty_table(), [], []), empty_rejects(), 0)
    header = _header(bytes(data[starts[0] : ends[0]]), delimiter, display, int(lines[0]))
    typed = {f.name: f.type for f in shape.arrow}
    plain = not shape.json_columns and all(pa.types.is_string(typed[c]) for c in header if c in typed)
    if plain:
        fast = _read_fast(data, display, shape, delimiter, header, starts, ends, lines)
        if fast is not None:
            return fast
    return _read_careful(data, display, shape, delimiter)


def _physical_records(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start and end offsets of every non-blank record (header included) and the line each starts on."""
    newlines = _newlines(buf)
    quotes = _newlines(buf, _QUOTE)
    ends_at = newlines[np.searchsorted(quotes, newlines) % 2 == 0] if len(quotes) else newlines
    starts = np.concatenate(([0], ends_at + 1)).astype(np.int64)
    ends = np.concatenate((ends_at, [len(buf)])).astype(np.int64)
    cr = np.zeros(len(ends), dtype=bool)
    has = ends > starts
    cr[has] = buf[ends[has] - 1] == _CR
    ends = ends - cr
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    return starts, ends, np.searchsorted(newlines, starts) + 1


def _header(raw: bytes, delimiter: str, display: str, line: int) -> list[str]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # The whole file is unusable without its header: one `unreadable_file` reject, beside the other files.
        raise UnreadableFile(
            f"{display}:{line}: the header row is not valid UTF-8; re-encode the file as UTF-8"
        ) from None
    with _no_field_limit(len(text)):
        names = next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), [])
    _check_header(names, display, line)
    return names


def _check_header(names: list[str], display: str, line: int) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise UnreadableFile(
                f"{display}:{line}: the header names the column {name!r} twice; a CSV file's first row names each "
                "column once, so rename one of them"
            )
        seen.add(name)


def _read_fast(
    data: bytes | memoryview,
    display: str,
    shape: RowShape,
    delimiter: str,
    header: list[str],
    starts: np.ndarray,
    ends: np.ndarray,
    lines: np.ndarray,
) -> ReadResult | None:
    """The file through Arrow's CSV reader, or None when Arrow refuses it or its records do not add up."""
    bad: list[tuple[int | None, int]] = []
    try:
        # Arrow decodes an invalid row's text before handing it to `invalid`: with a non-UTF-8 byte there it
        # prints "Exception ignored … UnicodeDecodeError" to stderr and goes on. Such files take the careful path.
        codecs.utf_8_decode(data, "strict", True)
    except UnicodeDecodeError:
        return None

    def invalid(row: pacsv.InvalidRow) -> str:
        bad.append((row.number, row.actual_columns))
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(data)),
            # Serial: only then does Arrow number the invalid rows it hands over.
            read_options=pacsv.ReadOptions(use_threads=False, block_size=BLOCK_SIZE),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True, invalid_row_handler=invalid),
            convert_options=pacsv.ConvertOptions(column_types={name: pa.string() for name in header}),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError):
        return None
    records = len(starts) - 1
    if table.column_names != header or table.num_rows + len(bad) != records:
        return None
    # Arrow numbers rows from 1 with the header as row 1, blank lines not counted: data row i is number i + 2.
    bad_rows = np.array([-1 if number is None else number - 2 for number, _ in bad], dtype=np.int64)
    if len(bad_rows) and (bad_rows.min() < 0 or bad_rows.max() >= records or len(np.unique(bad_rows)) != len(bad)):
        return None
    rows = np.setdiff1d(np.arange(records), bad_rows)
    data_lines = lines[1:]
    result = _read_table(table, display, shape, rows, data_lines[rows])
    if not bad:
        result.records = records
        return result
    found = []
    for (_, actual), row in zip(bad, bad_rows.tolist(), strict=True):
        raw = bytes(data[starts[row + 1] : ends[row + 1]]).decode("utf-8", "replace")
        found.append(_reject(display, row, int(data_lines[row]), _count_message(header, actual, delimiter), raw))
    rejects = concat_rejects([rejects_from_rows(found), result.rejects]).sort_by("row")
    return ReadResult(result.table, rejects, records, result.unmodelled)


def _count_message(header: list[str], actual: int, delimiter: str) -> str:
    sep = "a tab" if delimiter == "\t" else f"{delimiter!r}"
    return (
        f"expected {len(header)} values ({', '.join(header)}), found {actual}; quote values that hold {sep}, "
        "a quote or a line break"
    )


def _reject(display: str, row: int, line: int, message: str, raw: str) -> dict[str, Any]:
    return {
        "file": display,
        "row": row,
        "line": line,
        "stage": "read",
        "outcome": Outcome.REJECTED.value,
        "reason": "invalid_csv",
        "field": None,
        "message": message,
        "raw": excerpt(raw),
    }


def _read_careful(data: bytes | memoryview, display: str, shape: RowShape, delimiter: str) -> ReadResult:
    """Row by row with Python's `csv`: invalid UTF-8 and wrong value counts become rejects, values that the
    format types as lists, objects or booleans are decoded from the cell's JSON text."""
    text = bytes(data).decode("utf-8-sig", errors="surrogateescape")
    records: list[Record] = []
    header: list[str] | None = None
    with _no_field_limit(len(text)):
        for row, line, cells in _rows(text, delimiter):
            if header is None:
                _check_header(cells, display, line)
                header = cells
                continue
            records.append((row - 1, line, _record(cells, header, shape, delimiter)))
    return _from_records(records, display, shape)


def _rows(text: str, delimiter: str) -> Iterator[tuple[int, int, list[str]]]:
    """(index, line it starts on, values) of every non-blank row, header included."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    done = 0
    index = 0
    for cells in reader:
        start, done = done + 1, reader.line_num
        if not cells:  # a blank line
            continue
        yield index, start, cells
        index += 1


def _record(cells: list[str], header: list[str], shape: RowShape, delimiter: str) -> dict[str, Any] | _Broken:
    try:
        "".join(cells).encode("utf-8")
    except UnicodeEncodeError:
        shown = [c.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for c in cells]
        return _Broken(
            "invalid_utf8",
            "invalid UTF-8 in this row; re-encode the file as UTF-8",
            json.dumps(shown, ensure_ascii=False),
        )
    if len(cells) != len(header):
        return _Broken(
            "invalid_csv", _count_message(header, len(cells), delimiter), json.dumps(cells, ensure_ascii=False)
        )
    record: dict[str, Any] = dict(zip(header, cells, strict=True))
    typed = {f.name: f.type for f in shape.arrow}
    for name, value in record.items():
        typ = typed.get(name)
        if typ is None:  # a column the format does not model: kept, as text, in metadata
            continue
        if value == "" and not pa.types.is_string(typ):
            record[name] = None  # an empty cell where a list, object or boolean belongs: absent
        elif name in shape.json_columns:
            try:
                record[name] = _maybe_json(value)
            except jsonsafe.JsonValueError as exc:  # too deep, or NaN: a reject naming the column
                return _Broken(exc.reason, exc.message, json.dumps(record, ensure_ascii=False), name)
        elif pa.types.is_boolean(typ):
            record[name] = {"true": True, "false": False, "1": True, "0": False}.get(value.strip().lower(), value)
        elif not pa.types.is_string(typ):
            try:
                record[name] = jsonsafe.loads(value, field=name)
            except jsonsafe.JsonValueError as exc:  # too deep, or NaN: a reject naming the column
                return _Broken(exc.reason, exc.message, json.dumps(record, ensure_ascii=False), name)
            except ValueError:
                what = "a list" if pa.types.is_list(typ) else "an object" if pa.types.is_struct(typ) else str(typ)
                return _Broken(
                    "invalid_json",
                    f"expected JSON text ({what}) in this CSV value, found {value[:60]!r}",
                    json.dumps(record, ensure_ascii=False),
                    field=name,
                )
    return record


def _maybe_json(value: str) -> Any:
    """A cell's JSON value when it holds a JSON array or object, else the text itself.

    Raises `jsonsafe.JsonValueError` when the JSON is nested too deep or holds NaN/Infinity (not JSON text
    that happens to start with a bracket: a value that must not be used)."""
    if value[:1] in ("[", "{"):
        try:
            return jsonsafe.loads(value)
        except jsonsafe.JsonValueError:
            raise
        except ValueError:
            return value
    return value


def sample_csv(head: bytes, whole: bool, delimiter: str, n: int) -> list[dict[str, Any]]:
    """Up to `n` records from the head of a CSV file, cells holding JSON arrays or objects decoded."""
    text = head.decode("utf-8-sig", errors="replace")
    out: list[dict[str, Any]] = []
    header: list[str] | None = None
    try:
        with _no_field_limit(len(text)):
            rows = list(_rows(text, delimiter))
    except csv.Error:
        return out
    if not whole:
        rows = rows[:-1]  # the last row may be cut short
    for _, _, cells in rows:
        if header is None:
            header = cells
        elif len(cells) == len(header):
            try:
                out.append({k: _maybe_json(v) for k, v in zip(header, cells, strict=True)})
            except jsonsafe.JsonValueError:
                continue  # a row that will be a reject when read
            if len(out) >= n:
                break
    return out


@contextmanager
def _no_field_limit(size: int) -> Iterator[None]:
    """Python's csv refuses values over 128 KiB by default; a long conversation in one cell is data."""
    old = csv.field_size_limit()
    csv.field_size_limit(max(old, size + 1))
    try:
        yield
    finally:
        csv.field_size_limit(old)
