"""What a format is: how it detects itself, reads raw rows into Examples, and writes Examples back.

A format reads a whole Arrow table of raw rows at once (`to_examples`) and reports rows it cannot convert as
rejects; it writes Examples back as plain records (`from_examples`) and counts what it could not carry.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import jsonsafe
from ..readers import EXTRA, LINE, ROW, RowShape
from ..record import EXAMPLE_SCHEMA, Kind
from ..rejects import REJECTS_SCHEMA, Outcome, empty_rejects
from ..tables import keep_rows
from . import media
from .columnar import ORIGIN
from .columnar import whole as col_whole
from .tooling import canonical_tools

FILE = "__file"
ORDINAL = "__ordinal"  # the record's position in its source (all files, rejected records included)


@dataclass
class Converted:
    """Examples (EXAMPLE_SCHEMA + `__origin`) and rejects from one batch of raw rows."""

    examples: pa.Table
    rejects: pa.Table


NOT_WRITTEN = "not written)"  # how every loss that is a whole row left out ends: "… (not written)", "(…; not written)"


def is_unwritten(what: str) -> bool:
    """Whether a loss (a key of `Written.losses`) counts rows left out whole, rather than parts of written rows."""
    return what.endswith(NOT_WRITTEN)


@dataclass
class Written:
    """Records in a format's own shape, and counts of what could not be carried, by what.

    Writers write one record per row or none: a row left out is counted under a loss ending in "not written)"
    (`is_unwritten`), so `len(records) + unwritten == rows given` (tested for every format and kind)."""

    records: list[dict[str, Any]]
    losses: Counter[str] = field(default_factory=Counter)
    # Filled by `write_each`: every row left out (the canonical row) and the loss it was counted under.
    left_out: list[tuple[dict[str, Any], str]] = field(default_factory=list)

    @property
    def unwritten(self) -> int:
        """Rows left out whole."""
        return sum(n for what, n in self.losses.items() if is_unwritten(what))


class Format(ABC):
    """One on-disk data format. Subclasses set the class attributes and implement three methods."""

    name: ClassVar[str]
    description: ClassVar[str]
    shape: ClassVar[RowShape]
    # Columns whose presence identifies the format, and the column that must hold messages (if any).
    signature: ClassVar[frozenset[str]]
    # Detection: when several formats accept a sample, the most specific one wins. A dialect that is a
    # special case of a container format (Hermes tags inside OpenAI messages) ranks above the container.
    specificity: ClassVar[int] = 0

    @abstractmethod
    def matches(self, record: dict[str, Any]) -> bool:
        """True when this record (already renamed by the column map) looks like this format."""

    @abstractmethod
    def to_examples(self, raw: pa.Table, source: str) -> Converted:
        """Examples for every convertible raw row; the rest as rejects naming the field at fault."""

    @abstractmethod
    def from_examples(self, examples: list[dict[str, Any]]) -> Written:
        """Records in this format for EXAMPLE_SCHEMA rows (as dicts), counting what cannot be carried."""

    def json_schema(self) -> dict[str, Any]:
        return self.shape.json_schema


def assemble(
    raw: pa.Table,
    source: str,
    *,
    messages: pa.Array,
    origins: pa.Array,
    kind: Kind | pa.Array = Kind.SFT,
    tools: pa.Array | None = None,
    chosen: pa.Array | None = None,
    rejected: pa.Array | None = None,
    label: pa.Array | None = None,
    text: pa.Array | None = None,
) -> pa.Table:
    """An EXAMPLE_SCHEMA table (+ `__origin`) for `raw`'s rows from their converted messages.

    `kind` is one kind for every row or an array of kinds; absent columns are null.
    """
    n = raw.num_rows
    ids = pc.binary_join_element_wise(pa.scalar(f"{source}:"), raw[ORDINAL].cast(pa.string()), "")

    def given(arr: pa.Array | None, name: str) -> pa.Array:
        typ = EXAMPLE_SCHEMA.field(name).type
        return pa.nulls(n, typ) if arr is None else arr.cast(typ)

    columns = {
        "id": ids,
        "kind": pa.array(np.full(n, kind.value, dtype=object), pa.string()) if isinstance(kind, Kind) else kind,
        "messages": messages,
        "tools": given(tools, "tools"),
        "chosen": given(chosen, "chosen"),
        "rejected": given(rejected, "rejected"),
        "label": given(label, "label"),
        "text": given(text, "text"),
        "source": pa.array(np.full(n, source, dtype=object), pa.string()),
        "file": raw[FILE],
        "row": raw[ROW],
        "line": raw[LINE],
        "metadata": raw[EXTRA],
    }
    table = pa.table(columns, schema=EXAMPLE_SCHEMA)
    return table.append_column(ORIGIN, origins)


class RowProblems:
    """The first problem found in each raw row of a batch: its reason, field and message.

    Converters record what they find as they go; rows with a problem become convert-stage rejects (with the
    raw record) and leave the batch, so every check reports in one place and in row order.
    """

    def __init__(self, n: int) -> None:
        self.bad = np.zeros(n, dtype=bool)
        self._reason: list[str | None] = [None] * n
        self._field: list[str | None] = [None] * n
        self._message: list[str | None] = [None] * n

    def add(self, row: int, reason: str, field: str, message: str) -> None:
        """Record a problem for `row` unless it already has one."""
        if not self.bad[row]:
            self.bad[row] = True
            self._reason[row], self._field[row], self._message[row] = reason, field, message

    def add_rows(self, mask: np.ndarray, reason: str, field: str, message: str) -> None:
        """The same problem for every row where `mask` holds."""
        for row in np.flatnonzero(mask & ~self.bad):
            self.add(int(row), reason, field, message)

    def rejects(self, raw: pa.Table) -> pa.Table:
        """Convert-stage rejects for the rows with a problem, with the raw record as JSON text."""
        idx = np.flatnonzero(self.bad)
        if len(idx) == 0:
            return empty_rejects()
        picked = raw.take(pa.array(idx))
        data_cols = [c for c in picked.column_names if not c.startswith("__")]
        raw_text = [json.dumps(r, ensure_ascii=False) for r in picked.select(data_cols).to_pylist()]
        n = len(idx)

        def column(values: list[str | None]) -> pa.Array:
            return pa.array([values[i] for i in idx], pa.string())

        return pa.table(
            {
                "source": pa.nulls(n, pa.string()),
                "file": picked[FILE],
                "row": picked[ROW],
                "line": picked[LINE],
                "example_id": pa.nulls(n, pa.string()),
                "stage": pa.array(["convert"] * n, pa.string()),
                "outcome": pa.array([Outcome.REJECTED.value] * n, pa.string()),
                "reason": column(self._reason),
                "field": column(self._field),
                "message": column(self._message),
                "duplicate_of": pa.nulls(n, pa.string()),
                "similarity": pa.nulls(n, pa.float64()),
                "raw": pa.array(raw_text, pa.string()),
            },
            schema=REJECTS_SCHEMA,
        )


INVALID_UNICODE = "invalid_unicode"


def lone_surrogate(text: str | None) -> bool:
    """Whether `text` holds a lone surrogate (a JSON `\\ud800` escape decodes to one): not valid Unicode, so
    Arrow and UTF-8 writers cannot hold it. Such a row is rejected (`invalid_unicode`), as the reader does."""
    if not text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def unicode_problem(where: str) -> str:
    return f"{where} holds a lone surrogate (a `\\ud800`-style escape), which is not valid Unicode; fix the escape"


def surrogate_field(messages: list[dict[str, Any]] | None, column: str) -> str | None:
    """The path of the first string in canonical `messages` holding a lone surrogate, else None."""
    for i, m in enumerate(messages or ()):
        for key in ("content", "reasoning", "name", "tool_call_id"):
            if isinstance(m.get(key), str) and lone_surrogate(m[key]):
                return f"{column}[{i}].{key}"
        for j, c in enumerate(m.get("tool_calls") or ()):
            for key in ("id", "name", "arguments"):
                if isinstance(c.get(key), str) and lone_surrogate(c[key]):
                    return f"{column}[{i}].tool_calls[{j}].{key}"
    return None


def first_per_row(mask: np.ndarray, parents: np.ndarray) -> dict[int, int]:
    """For flattened elements where `mask` holds: each row's first such element (row → element index)."""
    first: dict[int, int] = {}
    for i in np.flatnonzero(mask):
        first.setdefault(int(parents[i]), int(i))
    return first


def finish(
    raw: pa.Table, source: str, problems: RowProblems, *, messages: pa.Array, origins: pa.Array, **columns: Any
) -> Converted:
    """Examples for the rows of `raw` without problems (declared tools checked too), rejects for the rest.

    `columns` are passed to `assemble` (kind, chosen, rejected, label, text)."""
    tools, tool_problems = canonical_tools(col_whole(raw["tools"]))
    for row, (reason, problem) in tool_problems.items():
        problems.add(row, reason, "tools", problem)
    examples = assemble(raw, source, messages=messages, origins=origins, tools=tools, **columns)
    return Converted(keep_rows(examples, ~problems.bad), problems.rejects(raw))


def write_each(fmt: Format, rows: list[dict[str, Any]]) -> Written:
    """`rows` through `fmt`'s writer one at a time, so every row left out is known with the loss it was counted
    under (`Written.left_out`). A row a writer leaves out without counting it is counted here, never lost."""
    out = Written([])
    for row in rows:
        try:
            written = fmt.from_examples([row])
        except jsonsafe.JsonValueError as exc:  # JSON text in the row (metadata, arguments) that is not safe
            written = Written([], Counter({NOT_FINITE if exc.reason == "non_finite_number" else TOO_DEEP: 1}))
        unsafe = next((why for why in map(unwritable, written.records) if why is not None), None)
        if unsafe is not None:  # counted and left out whole, never written as invalid JSON
            written = Written([], Counter({unsafe: 1}))
        out.records.extend(written.records)
        out.losses.update(written.losses)
        if not written.records:
            why = next((what for what in written.losses if is_unwritten(what)), None)
            if why is None:
                why = f"rows the {fmt.name} writer left out (not written)"
                out.losses[why] += 1
            out.left_out.append((row, why))
    return out


NOT_FINITE = "rows holding NaN or an infinity, which JSON cannot hold (not written)"
NOT_UNICODE = "rows holding a lone surrogate, which is not valid Unicode (not written)"
TOO_DEEP = f"rows holding JSON nested deeper than {jsonsafe.MAX_DEPTH} levels (not written)"


def unwritable(record: dict[str, Any]) -> str | None:
    """The loss to count when `record` cannot be written as strict JSON text in UTF-8, else None.

    The convert stage rejects such values (`non_finite_number`, `invalid_unicode`); this is the writers' own
    guarantee for rows that reach them another way (a hand-made table, an older build's Parquet)."""
    try:
        jsonsafe.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return NOT_UNICODE
    except ValueError:
        return NOT_FINITE
    return None


def count_media(example: dict[str, Any], losses: Counter[str]) -> bool:
    """True (and the row counted as not written) when `example` carries image, video or audio inputs in its
    metadata: a writer must not put it out as text whose placeholders point at media nothing maps. The convert
    stage rejects such rows (`multimodal_unsupported`); this keeps any that reach a writer another way out."""
    if media.in_metadata(example.get("metadata")):
        losses[media.NOT_WRITTEN] += 1
        return True
    return False


def add_metadata(record: dict[str, Any], metadata: str | None, columns: list[str], losses: Counter[str]) -> None:
    """Metadata keys as extra top-level keys of `record`, except keys that name one of the format's
    `columns`: those are counted as lost. (Merged with `setdefault` before, such a key was dropped silently
    when the column was written, and read back as that column, e.g. a system prompt, when it was not.)"""
    if not metadata:
        return
    for key, value in jsonsafe.loads(metadata, field="metadata").items():
        if key in columns:
            losses["metadata keys named like a format column"] += 1
        else:
            record[key] = value


def count_unwritable(m: dict[str, Any], losses: Counter[str]) -> None:
    """Count what a message carries that a text-only dialect (role + content: Hermes tags, ms-swift) has no
    place for: call and result ids, names, loss weights, reasoning off the assistant's turn."""
    ids = sum(bool(c.get("id")) for c in m.get("tool_calls") or ())
    if ids:
        losses["tool call ids"] += ids
    if m.get("tool_call_id"):
        losses["tool result ids"] += 1
    if m.get("name"):
        losses["message names"] += 1
    if m.get("weight") is not None:
        losses["message weights"] += 1
    if m.get("reasoning") is not None and m["role"] != "assistant":
        losses["reasoning on non-assistant turns"] += 1


def first_message(messages: list[dict[str, Any]], role: str) -> dict[str, Any] | None:
    return next((m for m in messages if m["role"] == role), None)
