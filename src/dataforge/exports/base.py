"""What an export produces, and the generic export of rows through one format's writer."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from .. import formats, jsonsafe
from ..formats.base import write_each
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


def write_rows(fmt: str, rows: list[dict[str, Any]], split: str, losses: Tally) -> list[dict[str, Any]]:
    """`rows` through `fmt`'s writer one row at a time, so each loss is counted against its row's kind and
    every row left out is known (`Tally.left_out`)."""
    writer = formats.get(fmt)
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


def format_export(name: str, splits: Splits) -> Exported:
    """Every split through one format's writer: `<split>.jsonl`."""
    out = Exported()
    losses = Tally()
    for split, rows in splits.items():
        records = write_rows(name, rows, split, losses)
        out.files[f"{split}.jsonl"] = jsonl(records)
        out.rows[f"{split}.jsonl"] = len(records)
    out.losses, out.left_out = losses.result(), losses.left_out
    return out


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
