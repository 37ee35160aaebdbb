"""Streaming, sharded reads of big source files: plan byte or row-group ranges, read one range at a time.

`plan_shards` cuts a file into shards without holding it in memory (it reads the file once, in chunks, to find the
cuts and hash each shard); `read_shard` reads one shard into the same kind of `ReadResult` that
`readers.read_file` gives for a whole file, through the same code (Arrow's fast path, then the careful path
record by record for a shard Arrow refuses). Concatenating the shards' results in order, each shard's `__row`
(and its rejects' `row`) offset by the records of the shards before it (`shift_rows`), gives exactly what
`read_file` gives for the file: the same table, rejects, record count and unmodelled counts.

How each kind of file is cut:

- Plain JSON Lines (`.jsonl`, `.ndjson`): at the offsets k × target_bytes, each moved forward to just after the
  next newline, so every shard holds whole lines. A cut depends only on the bytes before it, so appending to a
  file leaves every earlier shard (its bytes, digest and first line) as it was: only the last shard changes and
  new ones follow. A line longer than target_bytes is one shard of its own (or part of one); never split.
- JSON arrays (a `.json` file holding one top-level `[...]`): after the comma that ends an element, once a shard
  holds target_bytes; a later shard is read as `[` + its bytes (+ `]` when the array goes on past it). Only a
  file whose every element decodes is cut (planning decodes them, one at a time): after a broken element the
  careful path resynchronises by looking ahead, possibly past any cut, so such a file is one "whole" shard.
- Parquet: by row group, consecutive row groups put together while their uncompressed size stays within
  target_bytes (a row group larger than that is a shard alone). Digest: the row groups' column chunk bytes and
  the file's footer.
- One "whole" shard, read by `read_file` itself (so memory is that of the whole file): CSV/TSV (quoted fields may
  hold newlines), compressed files (.gz/.bz2/.zst: no random access), Arrow/Feather files, JSON files that are
  not one array of well-formed elements (objects, column-oriented JSON, a broken element, invalid UTF-8), a
  `.jsonl` whose first bytes say it is compressed or binary (its one `unreadable_file` reject), and a Parquet
  file whose footer cannot be read or that holds no row group.

Where `readers` itself reads the same record two ways, depending on the rest of its file (Arrow's fast path vs
record by record: an integer extra next to floats, a missing required field), a shard can read it the other way
than the whole file does; tests/test_readers_shards.py marks those cases. Known difference from `read_file` by
design: a Parquet row group that cannot be decoded makes its shard one
`unreadable_file` reject (naming the row groups); `read_file` makes the whole file one.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import DataError
from .readers import (
    LINE,
    ROW,
    ReadResult,
    RowShape,
    _check_not_compressed,
    _drop_pandas_index,
    _from_records,
    _read_jsonl_fast,
    _read_table,
    _renamed,
    _unreadable_result,
    read_file,
)
from .readers_files import file_type
from .readers_json import UnreadableFile, _json_text_records, _jsonl_records, strip_boms

__all__ = ["TARGET_BYTES", "FileShard", "plan_shards", "read_shard", "shift_rows"]

TARGET_BYTES = 32 << 20
_BOM = b"\xef\xbb\xbf"
_CHUNK = 8 << 20  # bytes read at a time while planning: memory stays this, whatever the file's size


@dataclass(frozen=True)
class FileShard:
    """One bounded piece of one source file, and what it held when it was planned.

    kind "bytes": bytes [start, end) of a JSON Lines file (whole lines) or of a JSON array (whole elements),
    `first_line` the 1-based line number of byte `start`. kind "row_groups": row groups [start, end) of a Parquet
    file, whose column chunks lie in bytes [byte_start, byte_end). kind "whole": the whole file (start 0, end its
    size). `digest`: sha256 of exactly the bytes the shard reads (for Parquet: its column chunks, then the footer;
    for "whole": the file), so a file that changed between planning and reading is an error instead of rows from
    two versions of it.
    """

    path: Path
    display: str  # the path as recorded in provenance
    index: int  # shard number within the file, from 0
    kind: str  # "bytes" | "row_groups" | "whole"
    start: int
    end: int  # exclusive
    first_line: int | None  # "bytes": line number of `start`; None for other kinds
    digest: str
    byte_start: int  # the byte range read (the footer too, for Parquet)
    byte_end: int
    rows: int | None = None  # Parquet: rows in these row groups (from the footer); None where unknown
    decoded_bytes: int | None = None  # Parquet: uncompressed size of these row groups (for scheduling)
    inside_array: bool = False  # JSON array shards but the last: the top-level array is still open at `end`

    def describe(self) -> str:
        """Which piece of which file, for people (executor errors name a shard this way)."""
        if self.kind == "bytes":
            return f"{self.display} bytes {self.start}–{self.end}"
        if self.kind == "row_groups":
            return f"{self.display} row groups {self.start}–{self.end - 1}"
        return f"{self.display} (whole file)"


# --- planning -----------------------------------------------------------------------------------


def plan_shards(path: Path, display: str, target_bytes: int = TARGET_BYTES) -> list[FileShard]:
    """The shards of `path` in file order (at least one), each about `target_bytes` (see the module docstring).

    Reads the file once in chunks of a few MiB (never whole) to find the cuts and hash each shard. A DataError
    when the file's type is unknown or it cannot be read.
    """
    if target_bytes < 1:
        raise ValueError(f"target_bytes must be at least 1, not {target_bytes}")
    ftype = file_type(path)
    try:
        if ftype.kind == "jsonl" and ftype.compression is None and not _binary_head(path, display):
            return _plan_lines(path, display, target_bytes)
        if ftype.kind == "json" and ftype.compression is None:
            try:
                shards = _plan_array(path, display, target_bytes)
            except UnicodeDecodeError:  # not UTF-8: the whole-file read rejects it, saying so
                shards = []
            if shards:
                return shards
        if ftype.kind == "parquet":
            shards = _plan_row_groups(path, display, target_bytes)
            if shards:
                return shards
        return [_whole(path, display)]
    except OSError as exc:
        raise _cannot_read(display, exc) from None


def _binary_head(path: Path, display: str) -> bool:
    """Whether a JSON Lines file's first bytes say it is compressed or binary (`read_file` makes it one reject)."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    try:
        _check_not_compressed(head, display, file_type(path))
    except UnreadableFile:
        return True
    return False


def _plan_lines(path: Path, display: str, target: int) -> list[FileShard]:
    """Cuts at k × target moved to just after the next newline; one pass, chunk by chunk, hashing as it goes."""
    shards: list[FileShard] = []
    start, first_line = 0, 1
    digest = hashlib.sha256()
    lines = 0  # newlines seen in the current shard so far
    pos = 0  # file offset of the current chunk
    cut = target  # the next cut is just after the first newline at offset >= cut - 1
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            view = memoryview(chunk)
            done = 0  # bytes of this chunk already in a shard
            while (find_from := max(cut - 1 - pos, done)) < len(chunk):
                nl = chunk.find(b"\n", find_from)
                if nl < 0:
                    break
                boundary = pos + nl + 1
                digest.update(view[done : nl + 1])
                lines += chunk.count(b"\n", done, nl + 1)
                shards.append(_byte_shard(path, display, len(shards), start, boundary, first_line, digest))
                start, first_line, lines, done = boundary, first_line + lines, 0, nl + 1
                digest = hashlib.sha256()
                # The next multiple of target past this cut: cuts never depend on where earlier lines ended
                # beyond the previous cut, so appended bytes cannot move them.
                cut = (boundary // target + 1) * target
            digest.update(view[done:])
            lines += chunk.count(b"\n", done)
            pos += len(chunk)
    if start < pos or not shards:  # the rest (or an empty file: one empty shard, read as no records)
        shards.append(_byte_shard(path, display, len(shards), start, pos, first_line, digest))
    return shards


def _byte_shard(path: Path, display: str, index: int, start: int, end: int, first_line: int, digest) -> FileShard:
    return FileShard(path, display, index, "bytes", start, end, first_line, digest.hexdigest(), start, end)


def _plan_row_groups(path: Path, display: str, target: int) -> list[FileShard]:
    """Consecutive row groups up to `target` uncompressed bytes per shard; [] when the footer cannot be read or
    the file holds no row group (one "whole" shard then, read as `read_file` reads it)."""
    size = path.stat().st_size
    try:
        meta = pq.read_metadata(path)
        footer = _footer_range(path, size)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, ValueError):
        return []
    if meta.num_row_groups == 0 or footer is None:
        return []
    groups: list[list[int]] = []
    decoded = 0
    for i in range(meta.num_row_groups):
        rg_size = meta.row_group(i).total_byte_size
        if groups and decoded + rg_size <= target:
            groups[-1].append(i)
            decoded += rg_size
        else:
            groups.append([i])
            decoded = rg_size
    shards = []
    with open(path, "rb") as fh:
        for index, members in enumerate(groups):
            lo, hi = _chunk_range(meta, members)
            digest = hashlib.sha256()
            for begin, end in ((lo, hi), footer):
                _hash_range(fh, begin, end, digest)
            shards.append(
                FileShard(
                    path,
                    display,
                    index,
                    "row_groups",
                    members[0],
                    members[-1] + 1,
                    None,
                    digest.hexdigest(),
                    lo,
                    hi,
                    rows=sum(meta.row_group(i).num_rows for i in members),
                    decoded_bytes=sum(meta.row_group(i).total_byte_size for i in members),
                )
            )
    return shards


def _footer_range(path: Path, size: int) -> tuple[int, int] | None:
    """Bytes of a Parquet file's footer (metadata, its length, `PAR1`); None when it is not a plain footer."""
    if size < 12:
        return None
    with open(path, "rb") as fh:
        fh.seek(size - 8)
        tail = fh.read(8)
    if len(tail) < 8 or tail[4:] != b"PAR1":  # encrypted footers (`PARE`) are read whole
        return None
    length = int.from_bytes(tail[:4], "little")
    return (size - 8 - length, size) if length + 12 <= size else None


def _chunk_range(meta: pq.FileMetaData, members: list[int]) -> tuple[int, int]:
    """The bytes [lo, hi) holding the column chunks of these (consecutive) row groups."""
    lo, hi = None, 0
    for i in members:
        rg = meta.row_group(i)
        for j in range(rg.num_columns):
            col = rg.column(j)
            first = col.data_page_offset
            if col.has_dictionary_page and col.dictionary_page_offset is not None:
                first = min(first, col.dictionary_page_offset)
            lo = first if lo is None else min(lo, first)
            hi = max(hi, first + col.total_compressed_size)
    return (lo or 0), hi


def _hash_range(fh, begin: int, end: int, digest) -> None:
    fh.seek(begin)
    left = end - begin
    while left > 0 and (block := fh.read(min(_CHUNK, left))):
        digest.update(block)
        left -= len(block)


_WS = " \t\r\n"  # JSON's whitespace, as the careful path skips it


def _plan_array(path: Path, display: str, target: int) -> list[FileShard]:
    """Cuts after the comma that ends an element, once a shard holds `target` bytes; [] (one "whole" shard) unless
    the file is one array of well-formed elements.

    Every element is decoded here (one at a time, over a window of the file a few MiB long): a cut is only safe
    where the careful path would decode every element of the file without an error, because after a broken
    element it resynchronises by looking ahead, possibly past any cut. Anything else (a broken element, elements
    without commas between them, a BOM or invalid UTF-8 in the text, elements nested past Python's recursion
    limit, an object instead of an array) leaves the file whole, read exactly as `read_file` reads it.
    """
    decoder = json.JSONDecoder()  # NaN/Infinity decode here: on reading they are rejects of their element alone
    utf8 = codecs.getincrementaldecoder("utf-8")()
    cuts: list[tuple[int, int]] = []  # (byte offset, its 1-based line)
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(3)
        offset = 3 if head == _BOM else 0  # byte offset of buf[0]; the BOM belongs to shard 0
        buf = utf8.decode(head[offset:])
        lines = 1  # line of buf[0]
        state = {"eof": False, "read": _CHUNK}

        def more() -> bool:
            """More of the file into `buf` (twice as much each time one element does not fit); False at the end."""
            nonlocal buf
            if state["eof"]:
                return False
            raw = fh.read(state["read"])
            state["read"] *= 2
            if not raw:
                state["eof"] = True
                buf += utf8.decode(b"", final=True)
                return True
            buf += utf8.decode(raw)
            return True

        def skip(i: int) -> int:
            while True:
                while i < len(buf) and buf[i] in _WS:
                    i += 1
                if i < len(buf) or not more():
                    return i

        try:
            pos = skip(0)
            if pos >= len(buf) or buf[pos] != "[":
                return []
            pos += 1
            mark, start = 0, 0  # buf[mark] is at byte `offset`, on line `lines`; the current shard starts at `start`
            while True:
                pos = skip(pos)
                if pos >= len(buf):
                    return []  # the array never closes
                if buf[pos] == "]":
                    break
                while True:
                    try:
                        end = decoder.raw_decode(buf, pos)[1]
                    except ValueError:
                        if more():
                            continue  # the element goes on past the window
                        return []  # broken: the careful path resynchronises after it, looking ahead
                    held = len(buf)
                    after = skip(end)
                    if len(buf) == held:  # the window did not end right after the value: it is all there
                        break
                if after >= len(buf) or buf[after] not in ",]":
                    return []  # two elements without a comma between, or stray text
                if buf[after] == "]":
                    break
                pos = after + 1
                offset += len(buf[mark:pos].encode("utf-8"))
                lines += buf.count("\n", mark, pos)
                mark = pos
                if offset - start >= target:
                    cuts.append((offset, lines))
                    start = offset
                if mark >= _CHUNK:  # drop what is behind: memory stays a window of the file
                    buf, pos, mark = buf[mark:], 0, 0
                    state["read"] = _CHUNK
            # Text after the array is the last shard's (a reject there, as in the whole file), but the whole file
            # must be UTF-8 for it to be read at all.
            while raw := fh.read(_CHUNK):
                utf8.decode(raw)
            utf8.decode(b"", final=True)
        except (UnicodeDecodeError, RecursionError):
            return []
    if not cuts:
        return []
    bounds = [(0, 1), *cuts]
    shards = []
    with open(path, "rb") as fh:
        for i, (begin, line) in enumerate(bounds):
            end = bounds[i + 1][0] if i + 1 < len(bounds) else size
            digest = hashlib.sha256()
            _hash_range(fh, begin, end, digest)
            shards.append(
                FileShard(
                    path,
                    display,
                    i,
                    "bytes",
                    begin,
                    end,
                    line,
                    digest.hexdigest(),
                    begin,
                    end,
                    inside_array=i + 1 < len(bounds),
                )
            )
    return shards


def _whole(path: Path, display: str) -> FileShard:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
            size += len(block)
    return FileShard(path, display, 0, "whole", 0, size, None, digest.hexdigest(), 0, size)


# --- reading ------------------------------------------------------------------------------------


def read_shard(shard: FileShard, shape: RowShape, column_map: dict[str, str] | None = None) -> ReadResult:
    """The records of one shard, as `read_file` reads a file: `__row` from 0 within the shard, `__line` (and
    rejects' `line`) the file's own line numbers, rejects naming `shard.display`, `sha256` the digest of the
    bytes read. A DataError when those bytes are not the ones planned (the file changed)."""
    if shard.kind == "whole":
        result = read_file(shard.path, shard.display, shape, column_map)
        _check_digest(shard, result.sha256)
        return result
    file_shape = _renamed(shape, column_map or {})
    if shard.kind == "bytes":
        data = _read_range(shard, [(shard.byte_start, shard.byte_end)])[0]
        digest = hashlib.sha256(data).hexdigest()
        _check_digest(shard, digest)
        if file_type(shard.path).kind == "json":
            result = _read_elements(data, shard, file_shape)
        else:
            result = _read_lines(data, shard, file_shape)
    elif shard.kind == "row_groups":
        result, digest = _read_row_groups(shard, file_shape)
    else:
        raise ValueError(f"unknown shard kind {shard.kind!r}")
    result.sha256 = digest
    if column_map:
        inverse = {v: k for k, v in column_map.items()}
        result.table = result.table.rename_columns([inverse.get(c, c) for c in result.table.column_names])
    return result


def shift_rows(result: ReadResult, offset: int) -> ReadResult:
    """`result` with `__row` and its rejects' `row` moved on by `offset` (the records of the shards before it)."""
    if offset == 0:
        return result
    return replace(result, table=_add(result.table, ROW, offset), rejects=_add(result.rejects, "row", offset))


def _read_lines(data: bytes, shard: FileShard, shape: RowShape) -> ReadResult:
    """Whole lines of a JSON Lines file, as `readers._read_buffer` reads a whole file, line numbers made absolute."""
    display = shard.display
    try:
        if shard.start == 0:  # what read_file checks of a file's head (planning did too; the digest matched)
            _check_not_compressed(data[:8], display, file_type(shard.path))
    except UnreadableFile as exc:
        return _unreadable_result(display, shape, exc.message)
    text = _bom_stripped(data, shard.start == 0)
    result = _read_jsonl_fast(text, shape) if not shape.json_columns else None
    if result is None:  # this shard only goes record by record; the others keep the fast path
        result = _from_records(_jsonl_records(bytes(text)), display, shape)
    return _absolute_lines(result, shard)


def _read_elements(data: bytes, shard: FileShard, shape: RowShape) -> ReadResult:
    """Elements of a JSON array file, as `readers._read_buffer` reads the whole file (record by record), with
    the array reopened before a later shard's first element and closed after the last element of a shard that
    is not the file's last; line numbers made absolute."""
    try:
        text = bytes(_bom_stripped(data, shard.start == 0)).decode("utf-8-sig" if shard.start == 0 else "utf-8")
    except UnicodeDecodeError as exc:  # planning decoded these bytes and the digest matched: not expected
        raise _changed(shard) from exc
    text = ("[" if shard.start else "") + text + ("]" if shard.inside_array else "")
    try:
        result = _from_records(_json_text_records(text, shard.display), shard.display, shape)
    except UnreadableFile as exc:
        return _unreadable_result(shard.display, shape, exc.message)
    return _absolute_lines(result, shard)


def _absolute_lines(result: ReadResult, shard: FileShard) -> ReadResult:
    """`result` with the shard's line numbers (from 1) made the file's."""
    lines_before = (shard.first_line or 1) - 1
    if lines_before:
        result.table = _add(result.table, LINE, lines_before)
        result.rejects = _add(result.rejects, "line", lines_before)
    return result


def _bom_stripped(data: bytes, file_start: bool) -> bytes | memoryview:
    """The shard's bytes as `read_file` hands the same bytes of the whole file to its JSON Lines readers.

    A BOM opening the file belongs to shard 0, which goes through `strip_boms` exactly as the whole file does (as
    a memoryview of an Arrow buffer, like `readers._decompressed` gives). A later shard starts a line, so a BOM
    opening it is a BOM after a newline in the file: it is removed as `strip_boms` removes those (and only
    those), which is why the shard is seen as if a newline preceded it.
    """
    if file_start or not data.startswith(_BOM):
        return strip_boms(memoryview(pa.py_buffer(data)).cast("B"))
    return memoryview(pa.py_buffer(bytes(strip_boms(b"\n" + data))[1:])).cast("B")


def _read_row_groups(shard: FileShard, shape: RowShape) -> tuple[ReadResult, str]:
    """Row groups [start, end) from exactly the bytes hashed (column chunks + footer held in memory), so a file
    rewritten meanwhile cannot mix in other bytes."""
    try:
        size = shard.path.stat().st_size
    except OSError as exc:
        raise _cannot_read(shard.display, exc) from None
    footer = _footer_range(shard.path, size)
    if footer is None:
        _check_digest(shard, None)
    assert footer is not None
    chunks, tail = _read_range(shard, [(shard.byte_start, shard.byte_end), footer])
    digest = hashlib.sha256(chunks)
    digest.update(tail)
    _check_digest(shard, digest.hexdigest())
    source = _Sparse(size, [(shard.byte_start, chunks), (footer[0], tail)])
    try:
        table = pq.ParquetFile(source).read_row_groups(range(shard.start, shard.end))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        why = f"row groups {shard.start}–{shard.end - 1} cannot be decoded ({exc})"
        return _unreadable_result(shard.display, shape, f"{shard.display}: {why}"), digest.hexdigest()
    return _read_table(_drop_pandas_index(table), shard.display, shape), digest.hexdigest()


class _Sparse(io.RawIOBase):
    """A read-only file of `size` bytes of which only some ranges are held (the rest reads as zeros): what
    Parquet's reader needs of a file to decode some row groups (their column chunks and the footer)."""

    def __init__(self, size: int, pieces: list[tuple[int, bytes]]) -> None:
        super().__init__()
        self._size = size
        self._pieces = pieces
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        out = memoryview(buffer).cast("B")
        n = max(0, min(len(out), self._size - self._pos))
        out[:n] = bytes(n)
        for begin, data in self._pieces:
            lo, hi = max(begin, self._pos), min(begin + len(data), self._pos + n)
            if lo < hi:
                out[lo - self._pos : hi - self._pos] = data[lo - begin : hi - begin]
        self._pos += n
        return n


def _read_range(shard: FileShard, ranges: list[tuple[int, int]]) -> list[bytes]:
    """The bytes of each range (fewer where the file is now shorter: the digest then tells)."""
    out = []
    try:
        with open(shard.path, "rb") as fh:
            for begin, end in ranges:
                fh.seek(begin)
                out.append(fh.read(end - begin))
    except OSError as exc:
        raise _cannot_read(shard.display, exc) from None
    return out


def _check_digest(shard: FileShard, digest: str | None) -> None:
    if digest != shard.digest:
        raise _changed(shard)


def _changed(shard: FileShard) -> DataError:
    return DataError(
        f"{shard.display}: changed while the build read it ({shard.describe()} are not the bytes planned)",
        hint="let whatever writes the file finish, then build again",
    )


def _add(table: pa.Table, name: str, offset: int) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, table.schema.field(i), pc.add(table.column(i), pa.scalar(offset, pa.int64())))


def _cannot_read(display: str, exc: OSError) -> DataError:
    return DataError(f"{display}: cannot be read ({exc})", hint="check that the file exists and may be read")
