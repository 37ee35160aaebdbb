"""What an export produces, the generic export of rows through one format's writer, and the streaming frame
every export is written in: an `Exporter` takes a split's rows batch by batch and appends each file's records to
a `Sink` (files on disk for a build, strings in memory for `dataforge convert`), so a build never holds a split's
rows or a file's text whole; the bytes are the same whatever the batches."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol

from .. import formats, jsonsafe
from ..formats.base import Format, write_each
from ..reasoning import join_think

Splits = dict[str, list[dict[str, Any]]]  # split name (train, val) → EXAMPLE_SCHEMA rows as dicts
Counts = dict[str, dict[str, dict[str, int]]]  # split → row kind → what → rows


@dataclass
class Exported:
    """Files (path relative to the export's folder → text), and what was dropped or changed."""

    files: dict[str, str] = field(default_factory=dict)
    losses: Counts = field(default_factory=dict)
    transforms: Counts = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)  # file → records written
    # Every row left out whole (the canonical row) and the loss it is counted under, in `losses` too.
    left_out: list[tuple[dict[str, Any], str]] = field(default_factory=list)


class Tally:
    """Counts per split and row kind, turned into plain sorted dicts for the report."""

    def __init__(self) -> None:
        self._counts: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
        self.left_out: list[tuple[dict[str, Any], str]] = []  # rows left out whole, and why

    def add(self, split: str, kind: str, counts: Counter[str] | dict[str, int]) -> None:
        for what, n in counts.items():
            if n:
                self._counts[split][kind][what] += n

    def leave(self, split: str, row: dict[str, Any], why: str) -> None:
        """`row` left out whole, counted under `why` (a loss ending in "not written)")."""
        self._counts[split][row["kind"]][why] += 1
        self.left_out.append((row, why))

    def result(self) -> Counts:
        return {
            split: {kind: dict(sorted(c.items())) for kind, c in sorted(kinds.items()) if c}
            for split, kinds in sorted(self._counts.items())
            if any(kinds.values())
        }


def jsonl(records: list[dict[str, Any]]) -> str:
    """Records as JSON Lines (UTF-8 text, not ASCII-escaped; key order as built)."""
    # allow_nan=False: a NaN must raise rather than be written as `NaN`, which no JSON parser reads (the writers
    # leave such rows out, counted, before this: see `formats.base.unwritable`)
    return "".join(jsonsafe.dumps(r, ensure_ascii=False) + "\n" for r in records)


def write_rows(fmt: str | Format, rows: list[dict[str, Any]], split: str, losses: Tally) -> list[dict[str, Any]]:
    """`rows` through `fmt`'s writer (a registered format's name, or a writer itself) one row at a time, so each
    loss is counted against its row's kind and every row left out is known (`Tally.left_out`)."""
    writer = formats.get(fmt) if isinstance(fmt, str) else fmt
    records: list[dict[str, Any]] = []
    for row in rows:
        written = write_each(writer, [row])
        records.extend(written.records)
        losses.add(split, row["kind"], written.losses)
        losses.left_out.extend(written.left_out)
    return records


# Counted for a row whose record an export builds itself, without the row's unmodelled columns.
METADATA_KEYS = "unmodelled columns (metadata), not written beside the record"


def merge(a: Counts, b: Counts) -> Counts:
    """Two sets of counts (split → kind → what → rows) added up, sorted as `Tally.result` sorts them."""
    tally = Tally()
    for counts in (a, b):
        for split, kinds in counts.items():
            for kind, whats in kinds.items():
                tally.add(split, kind, whats)
    return tally.result()


class Sink(Protocol):
    """Where an export's files go: text appended to a file (path relative to the export's folder)."""

    def write(self, name: str, text: str) -> None:
        """Append `text` to file `name`, creating it on the first call (an empty text still creates it)."""


class MemoryFiles:
    """A sink that keeps the files as text, in the order they were created."""

    def __init__(self) -> None:
        self._pieces: dict[str, list[str]] = {}

    def write(self, name: str, text: str) -> None:
        self._pieces.setdefault(name, []).append(text)

    def files(self) -> dict[str, str]:
        return {name: "".join(pieces) for name, pieces in self._pieces.items()}


class Exporter:
    """An export written batch by batch: `add(split, rows)` as often as needed (splits in order, each split's
    rows in order), then `finish()` for the counts and the description files.

    Records go to one file per split and row kind (`file_name`), created when the split's first row of that kind
    arrives, so kinds appear in the order a whole-split pass would see them. `keep_left_out=False` forgets the
    rows left out whole once they are counted (a build counts them; only `dataforge convert` lists them)."""

    def __init__(self, sink: Sink, dataset: str, *, keep_left_out: bool = True) -> None:
        self.sink, self.dataset, self.keep_left_out = sink, dataset, keep_left_out
        self.out = Exported()
        self.losses, self.transforms = Tally(), Tally()
        self.kinds: dict[str, dict[str, None]] = {}  # split → row kinds, in first-seen order
        self.keys: dict[tuple[str, str], set[str]] = {}  # (split, kind) → every key of the records written

    def add(self, split: str, rows: list[dict[str, Any]]) -> None:
        kinds = self.kinds.setdefault(split, {})
        for kind, group in by_kind(rows).items():
            kinds.setdefault(kind)
            records = self.records(split, kind, group)
            self.emit(self.file_name(split, kind), records)
            self.seen(split, kind, records)
        if not self.keep_left_out:
            self.losses.left_out.clear()

    def records(self, split: str, kind: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records written for `rows` (all of one kind); losses and transforms counted on the way."""
        raise NotImplementedError

    def file_name(self, split: str, kind: str) -> str:
        return f"{kind}/{split}.jsonl"

    def emit(self, name: str, records: list[dict[str, Any]]) -> None:
        self.sink.write(name, jsonl(records))
        self.out.rows[name] = self.out.rows.get(name, 0) + len(records)

    def seen(self, split: str, kind: str, records: list[dict[str, Any]]) -> None:
        """Note what a description file needs to know of the records written (their keys, by default)."""
        self.keys.setdefault((split, kind), set()).update(k for r in records for k in r)

    def describe(self) -> None:
        """Write the description files (dataset_info.json, axolotl YAML), once every row is in."""

    def finish(self) -> Exported:
        self.describe()
        self.out.losses, self.out.transforms = self.losses.result(), self.transforms.result()
        self.out.left_out = self.losses.left_out
        return self.out


class FormatExporter(Exporter):
    """Every split through one format's writer: `<split>.jsonl` (written for every split, even an empty one)."""

    def __init__(self, name: str, sink: Sink, dataset: str, *, keep_left_out: bool = True) -> None:
        super().__init__(sink, dataset, keep_left_out=keep_left_out)
        self.format = name

    def add(self, split: str, rows: list[dict[str, Any]]) -> None:
        self.kinds.setdefault(split, {})
        self.emit(f"{split}.jsonl", write_rows(self.format, rows, split, self.losses))
        if not self.keep_left_out:
            self.losses.left_out.clear()


def run_export(exporter: Exporter, sink: MemoryFiles, splits: Splits) -> Exported:
    """`splits` through `exporter` in one batch per split; the result holds the files' text."""
    for split, rows in splits.items():
        exporter.add(split, rows)
    out = exporter.finish()
    out.files = sink.files()
    return out


def format_export(name: str, splits: Splits) -> Exported:
    """Every split through one format's writer: `<split>.jsonl`."""
    sink = MemoryFiles()
    return run_export(FormatExporter(name, sink, ""), sink, splits)


def by_kind(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows grouped by kind, kinds in first-seen order, rows in their order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["kind"], []).append(row)
    return groups


def reasoning_inline(row: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """A copy of `row` whose assistant reasoning heads its content as a `<think>` block (for trainers that
    take reasoning only inline), and how many turns moved."""
    moved = 0

    def side(messages: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        nonlocal moved
        if not messages:
            return messages
        out = []
        for m in messages:
            if m.get("reasoning") and m["role"] == "assistant":
                m = {**m, "content": join_think(m["reasoning"], m.get("content")), "reasoning": None}
                moved += 1
            out.append(m)
        return out

    copy = {**row, "messages": side(row.get("messages")), "chosen": side(row.get("chosen"))}
    copy["rejected"] = side(row.get("rejected"))
    return copy, moved
