"""The careful path's parsers: JSON Lines and JSON files record by record, each record with its line.

A record that cannot be parsed is a `_Broken` marker carrying its reason, message and text, so that one bad
record costs one reject and reading resumes after it. Every record goes through `jsonsafe` (nesting bounded
before parsing, NaN/Infinity refused); a record nested too deep is skipped by its brackets, never parsed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import jsonsafe
from .errors import DataError
from .rejects import RAW_LIMIT  # characters of a bad record's text kept in the rejects table

Record = tuple[int, int | None, Any]  # (row index, line, parsed value or a _Broken marker)


class UnreadableFile(DataError):
    """A file whose content cannot be read at all (not UTF-8, empty, a cut Parquet footer, broken gzip): it
    becomes one `unreadable_file` reject (`readers.read_file`), so one broken file does not fail its source."""


def excerpt(text: str | None, limit: int = RAW_LIMIT) -> str | None:
    """`text` cut to `limit` characters, saying how many were left out (a huge bad line must not land whole
    in rejects.parquet, report.json and report.html)."""
    if text is None or len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters]"


_BOM = b"\xef\xbb\xbf"
_LINE_BOM = re.compile(re.escape(b"\n" + _BOM))


def strip_boms(data: bytes | memoryview) -> bytes | memoryview:
    """`data` without UTF-8 byte order marks at the start of the file or of any line (what `cat a.jsonl
    b.jsonl` gives when b starts with one); unchanged (no copy) when it holds none."""
    if data[:3] == _BOM:
        data = data[3:]
    if _LINE_BOM.search(data) is None:  # the usual case: `re` searches the buffer in place, no copy
        return data
    return bytes(data).replace(b"\n" + _BOM, b"\n")


def _parsed(text: str, raw: str | None = None) -> Any:
    """The JSON value of one record's text, or a `_Broken` saying why it is not usable."""
    try:
        return jsonsafe.loads(text)
    except jsonsafe.JsonValueError as exc:
        return _Broken(exc.reason, exc.message, raw if raw is not None else text, exc.field)
    except ValueError as exc:
        return _Broken("invalid_json", f"broken JSON: {exc}", raw if raw is not None else text)


@dataclass(frozen=True)
class _Broken:
    """A record that could not be parsed; `raw` is its text (lossily decoded for display; `excerpt` caps it when
    it becomes a reject)."""

    reason: str
    message: str
    raw: str
    field: str | None = None


def _jsonl_records(data: bytes) -> Iterator[Record]:
    data = bytes(strip_boms(data))
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
            yield row, lineno, _parsed(text)
        row += 1


def _json_array_records(data: bytes, display: str) -> Iterator[Record]:
    """Elements of a top-level JSON array (or top-level objects, one after another), each with its line.

    Elements are decoded one at a time so that one broken element costs one reject: after a syntax error
    the reader resynchronises at the start of the next element (`_resync`). Nothing after the data is
    skipped silently: more objects after a first one are records too (JSON Lines saved as `.json`), and
    text after the array's closing bracket is a reject. One object whose values are equal-length lists is
    column-oriented (`{"instruction": [...], "output": [...]}`): its records are the rows, without lines.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UnreadableFile(
            f"{display}: not UTF-8 at byte {exc.start} (line {line}); a JSON array file must be valid UTF-8",
            hint="re-encode the file as UTF-8, or convert it to JSON Lines so bad lines can be rejected one by one",
        ) from None
    return _json_text_records(text, display)


def _json_text_records(text: str, display: str) -> Iterator[Record]:
    """`_json_array_records` of decoded text."""
    decoder = json.JSONDecoder(parse_constant=_refuse_constant)
    n = len(text)
    pos = _skip_ws(text, 0)
    if pos >= n:
        raise UnreadableFile(
            f"{display}: empty file" + (" (only whitespace)" if n else ""),
            hint="a JSON file holds one array of records; remove the file or fill it",
        )
    # One bracket more than the limit: the top-level array itself is a level.
    deep = jsonsafe.could_exceed(text, jsonsafe.MAX_DEPTH + 1) and jsonsafe.depth(text) > jsonsafe.MAX_DEPTH + 1
    if pos < n and text[pos] == "{":
        # Objects, not an array. Reading stopped after the first one before, which silently dropped every
        # further record of a JSON Lines file named `.json`.
        closing = None
        try:
            if deep:  # never parse it whole: the elements are taken one by one below, deep ones skipped
                raise ValueError("too deep")
            first, end = decoder.raw_decode(text, pos)
        except ValueError:
            first, end = None, pos
        columns = _columns_of(first, display) if isinstance(first, dict) and _skip_ws(text, end) >= n else None
        if columns is not None:
            names = list(columns)
            for i in range(len(columns[names[0]])):
                yield i, None, {k: columns[k][i] for k in names}
            return
    elif pos < n and text[pos] == "[":
        closing = "]"
        pos += 1
    else:
        raise UnreadableFile(
            f"{display}: the top level is not an array of records (or an object): it starts with "
            f"{text[pos : pos + 20]!r}",
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
                yield row, line, _Broken("invalid_json", message, text[after:])
            break
        if deep and text[pos] in "[{":
            end, found = _span(text, pos)
            if found > jsonsafe.MAX_DEPTH:  # skipped by its brackets, never handed to the parser
                too = jsonsafe.TooDeep(found)
                yield row, line, _Broken(too.reason, too.message, text[pos:end])
                row += 1
                pos = _skip_ws(text, end)
                if pos < n and text[pos] == ",":
                    pos += 1
                continue
        try:
            value, end = decoder.raw_decode(text, pos)
        except _Constant:  # NaN/Infinity: jsonsafe names the field that holds it
            end = json.JSONDecoder().raw_decode(text, pos)[1]
            yield row, line, _parsed(text[pos:end])
            row += 1
            pos = _skip_ws(text, end)
            if pos < n and text[pos] == ",":
                pos += 1
            continue
        except ValueError as exc:
            resume = _resync(text, pos)
            yield row, line, _Broken("invalid_json", f"broken JSON: {exc}", text[pos:resume].strip())
            row += 1
            pos = resume
            continue
        yield row, line, value
        row += 1
        pos = _skip_ws(text, end)
        if pos < n and text[pos] == ",":
            pos += 1


class _Constant(ValueError):
    """Raised by the array decoder on a NaN/Infinity literal, so that `jsonsafe` can name its field."""


def _refuse_constant(literal: str) -> Any:
    raise _Constant(literal)


def _span(text: str, start: int) -> tuple[int, int]:
    """(end, deepest nesting) of the array or object starting at `start`, found by counting brackets outside
    strings (no parsing, so any depth is safe); the end of the text when it never closes."""
    level = deepest = 0
    for m in _BRACKETS.finditer(text, start):
        token = m.group()
        if token[0] == '"':
            continue
        level += 1 if token in "{[" else -1
        deepest = max(deepest, level)
        if level <= 0:
            return m.end(), deepest
    return len(text), deepest


def _columns_of(obj: dict[str, Any], display: str) -> dict[str, list[Any]] | None:
    """The columns of a column-oriented JSON object; None when the object is one record.

    Column-oriented: every value a list, at least one list holding something other than objects (a record's
    own lists are messages: lists of objects), all of one length. Lists of differing lengths where no value
    is a list of objects cannot be one record of any format: an error naming the lengths.
    """
    if not obj or not all(isinstance(v, list) for v in obj.values()) or not any(obj.values()):
        return None
    objects = {k for k, v in obj.items() if v and all(isinstance(x, dict) for x in v)}
    if len(objects) == len(obj):
        return None
    lengths = {k: len(v) for k, v in obj.items()}
    if len(set(lengths.values())) == 1:
        return obj
    if objects:
        return None
    listed = ", ".join(f"{k} {n}" for k, n in lengths.items())
    raise UnreadableFile(
        f"{display}: column-oriented JSON (one object of lists, one list per column) whose columns differ in "
        f"length: {listed}; give every column one value per record, or write the records as a JSON array of "
        "objects or JSON Lines"
    )


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
