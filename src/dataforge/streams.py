"""Streaming helpers for the build's output side: Parquet written shard by shard, text files written in pieces.

`ParquetStream` takes tables one at a time (a stage output's parts, in order) and cuts row groups exactly where
`engine.cache.write_parquet` cuts them for the tables' concatenation (every ROW_GROUP rows, with the same
compression and statistics), so the file is byte-identical to writing the whole table (its chunks joined)
while only one part and less than one row group are held. Both kinds of file are written atomically: to a
temporary name beside the target, renamed over it at the end, removed when anything fails.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.parquet as pq

from .engine.builddir import writing

ROW_GROUP = 64 * 1024  # rows per row group: engine.cache.write_parquet's row_group_size
PARQUET_OPTIONS = {"compression": "zstd", "write_statistics": True}  # engine.cache.write_parquet's options


def temporary(path: Path) -> Path:
    """The temporary name a file is written under before it is renamed to `path` (engine.cache's spelling)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def parts_schema(parts: list[Path]) -> pa.Schema | None:
    """The schema `pa.concat_tables(..., promote_options="default")` gives the parts' tables (None: no parts)."""
    schemas = [pq.read_schema(p) for p in parts]
    if not schemas:
        return None
    if all(s.equals(schemas[0], check_metadata=True) for s in schemas[1:]):
        return schemas[0]
    return pa.unify_schemas(schemas, promote_options="default")


class ParquetStream:
    """One Parquet file written from a sequence of tables, with the bytes `write_parquet` gives their
    concatenation once its chunks are joined (`concat_tables(tables).combine_chunks()`).

    Why joined: Parquet's writer cuts data pages and decides its dictionary fallback at Arrow chunk boundaries,
    so the bytes of a concatenation written as it is depend on where the parts happened to end. Each row group
    is written from contiguous arrays instead, which makes the file a function of the rows alone: the same
    for any sharding, and the same as today's file of one stored table (read back, its chunks are its 64k-row
    row groups, exactly the row groups written here)."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path, self.schema = path, schema
        self.rows = 0
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._writer = pq.ParquetWriter(path, schema, **PARQUET_OPTIONS)

    def write(self, table: pa.Table) -> None:
        """Append `table`'s rows; full row groups are written as soon as they are complete."""
        if not table.schema.equals(self.schema, check_metadata=False):
            table = table.cast(self.schema)  # what concat_tables' promotion does (a null column becomes typed)
        self._buffer.append(table)
        self._buffered += table.num_rows
        self.rows += table.num_rows
        while self._buffered >= ROW_GROUP:
            # Slicing the concatenation keeps the chunks the whole table would have had in this row group.
            joined = pa.concat_tables(self._buffer)
            self._flush(joined.slice(0, ROW_GROUP))
            rest = joined.slice(ROW_GROUP)
            self._buffer, self._buffered = [rest], rest.num_rows

    def _flush(self, group: pa.Table) -> None:
        self._writer.write_table(group.combine_chunks(), row_group_size=ROW_GROUP)

    def close(self) -> None:
        """Write the last (partial) row group and the footer. A file of no rows gets the one empty row group
        `pq.write_table` writes for an empty table."""
        if self._buffered or self.rows == 0:
            joined = pa.concat_tables(self._buffer) if self._buffer else self.schema.empty_table()
            self._flush(joined)
        self._buffer, self._buffered = [], 0
        self._writer.close()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()


def write_parquet_stream(tables: Iterable[pa.Table], path: Path, schema: pa.Schema, nbytes: int | None = None) -> int:
    """Write `tables` (in order) to `path` atomically as one Parquet file; the rows written.

    `nbytes` (about how much will be written) only serves the message of a full-disk error."""
    tmp = temporary(path)
    with writing(path, nbytes):
        stream: ParquetStream | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            stream = ParquetStream(tmp, schema)
            for table in tables:
                stream.write(table)
            stream.close()
            os.replace(tmp, path)
        except BaseException:
            if stream is not None:
                stream.abort()
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise
    return stream.rows


def write_parts(parts: list[Path], path: Path, empty: pa.Schema | None = None) -> int:
    """A stage output's parts (Parquet files, in row order) as one Parquet file at `path`, read one part at a
    time; byte-identical to `engine.cache.write_parquet` of their concatenation (see `ParquetStream`). The rows
    written. A table of no parts at all is written as an empty table of schema `empty`."""
    schema = parts_schema(parts) or empty
    if schema is None:
        raise ValueError(f"{path}: the table has no parts, and no schema to write it empty with")
    size = sum(p.stat().st_size for p in parts)
    return write_parquet_stream((pq.read_table(p) for p in parts), path, schema, nbytes=size)


class TextFiles:
    """Text files written in pieces: each is created (under a temporary name) on its first `write` and renamed
    into place by `commit`; `discard` removes what was not committed.

    `before_create(name)` is called before a file is first created (the build records it as pending, so a
    killed build never leaves a file no list names)."""

    def __init__(self, root: Path, before_create: Callable[[str], None] | None = None) -> None:
        self.root = root
        self._before = before_create
        self._open: dict[str, IO[bytes]] = {}
        self._sizes: dict[str, int] = {}

    def write(self, name: str, text: str) -> None:
        """Append `text` to file `name` (a path relative to the root); an empty text still creates the file."""
        handle = self._open.get(name)
        path = self.root / name
        with writing(path, len(text)):
            if handle is None:
                if self._before is not None:
                    self._before(name)
                path.parent.mkdir(parents=True, exist_ok=True)
                handle = self._open[name] = temporary(path).open("wb")
                self._sizes[name] = 0
            data = text.encode("utf-8")
            handle.write(data)
            self._sizes[name] += len(data)

    def names(self) -> list[str]:
        return list(self._open)

    def commit(self) -> list[str]:
        """Close every file and rename it into place; the names, in the order they were created."""
        names = list(self._open)
        for name in names:
            path = self.root / name
            with writing(path, self._sizes[name]):
                self._open[name].close()
                os.replace(temporary(path), path)
        self._open.clear()
        return names

    def discard(self) -> None:
        """Close and remove every file not committed (after a failure)."""
        for name, handle in self._open.items():
            with contextlib.suppress(OSError):
                handle.close()
                temporary(self.root / name).unlink(missing_ok=True)
        self._open.clear()


def slices(table: pa.Table, rows: int) -> Iterable[pa.Table]:
    """`table` in consecutive slices of at most `rows` rows (none for an empty table)."""
    for start in range(0, table.num_rows, rows):
        yield table.slice(start, rows)


class Tables:
    """A table read piece by piece (a stage output's parts, a Parquet file's row groups, or tables in memory), as
    often as needed: `tables(columns)` yields the pieces in row order with those of `columns` the table has (all
    when None), so a statistic that reads a few columns never loads the rest."""

    def __init__(self, read: Callable[[list[str] | None], Iterable[pa.Table]], names: list[str], num_rows: int):
        self._read = read
        self.column_names = names
        self.num_rows = num_rows

    def __call__(self, columns: list[str] | None = None) -> Iterable[pa.Table]:
        wanted = None if columns is None else [c for c in columns if c in self.column_names]
        return self._read(wanted)

    @classmethod
    def of(cls, *tables: pa.Table) -> Tables:
        """Tables in memory (small outputs and tests)."""
        names = list(tables[0].column_names) if tables else []

        def read(columns: list[str] | None) -> Iterable[pa.Table]:
            for t in tables:
                yield t if columns is None else t.select(columns)

        return cls(read, names, sum(t.num_rows for t in tables))

    @classmethod
    def parts(cls, parts: list[Path]) -> Tables:
        """A stage output's Parquet parts, one part at a time."""
        schema = parts_schema(parts)
        names = list(schema.names) if schema is not None else []
        rows = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)

        def read(columns: list[str] | None) -> Iterable[pa.Table]:
            for p in parts:
                yield pq.read_table(p, columns=columns)

        return cls(read, names, rows)

    @classmethod
    def file(cls, path: Path) -> Tables:
        """One Parquet file, one row group at a time."""
        meta = pq.ParquetFile(path)
        names, rows = list(meta.schema_arrow.names), meta.metadata.num_rows

        def read(columns: list[str] | None) -> Iterable[pa.Table]:
            f = pq.ParquetFile(path)
            for i in range(f.num_row_groups):
                yield f.read_row_group(i, columns=columns)

        return cls(read, names, rows)

    @classmethod
    def chain(cls, *sources: Tables) -> Tables:
        """Several tables one after the other (train, then val)."""
        names = list(dict.fromkeys(n for s in sources for n in s.column_names))

        def read(columns: list[str] | None) -> Iterable[pa.Table]:
            for s in sources:
                yield from s(columns)

        return cls(read, names, sum(s.num_rows for s in sources))


def as_tables(value: pa.Table | Tables) -> Tables:
    """`value` as `Tables` (a table in memory is one piece)."""
    return value if isinstance(value, Tables) else Tables.of(value)
