"""Template placeholders: finding `{{name}}` left in the text, and filling them from the recipe's `substitute:`.

Datasets meant to be personalised ship with placeholders (LLaMA-Factory's `identity.json`: "I am {{name}},
an AI assistant developed by {{author}}."). Training on them teaches a model to say `{{name}}`. The lint
rejects rows that still hold one (`unfilled_placeholder`); a source's `substitute: {name: Aurora}` fills them
after conversion, so they never reach validation.

What counts as a placeholder (the lint and the substitution agree, so what is filled is exactly what would be
flagged): two braces around a bare identifier, `{{name}}` or `{{ name }}` (spaces or tabs inside). Not a
placeholder, so that code and template languages in legitimate answers pass:

- anything that is not a bare identifier: `{{ user.name }}`, `{{ . }}`, `{{ x | upper }}`, `{{ hello: f }}`;
- `${{ matrix }}` (GitHub Actions), `{{{raw}}}` (Handlebars triple braces) and `{{{{x}}}}`;
- anything inside Markdown code: a fenced block (``` or ~~~, to its closing fence or the end of the text) or an
  inline code span (`` `{{name}}` `` on one line). Indented code blocks are not recognised.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..formats.columnar import contains, rows_where, whole

PLACEHOLDER = re.compile(r"(?<![{$])\{\{[ \t]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*\}\}(?!\})")
# Fenced blocks first (to the closing fence of the same kind and at least the same length, or the end of the
# text); then inline code spans on one line, closed by a backtick run of the same length.
_CODE = re.compile(r"(`{3,}|~{3,})[\s\S]*?(?:\1|\Z)|(`{1,2})(?!`)[^\n]*?(?<!`)\2(?!`)")
# A cheap pre-filter over whole Arrow columns: could this string hold a placeholder at all?
_MAYBE = r"\{\{[ \t]*[A-Za-z_]"
# The Example columns holding message lists, and the message fields searched in them.
MESSAGE_COLUMNS = ("messages", "chosen", "rejected")
TEXT_FIELDS = ("content", "reasoning")


def _outside_code(text: str) -> Callable[[int], bool]:
    spans = [m.span() for m in _CODE.finditer(text)] if "`" in text or "~~~" in text else []

    def outside(pos: int) -> bool:
        return not any(start <= pos < end for start, end in spans)

    return outside


def placeholders(text: str | None) -> list[str]:
    """The distinct placeholder names in `text` outside code, in order of first appearance."""
    if not text or "{{" not in text:
        return []
    outside = _outside_code(text)
    return list(dict.fromkeys(m.group(1) for m in PLACEHOLDER.finditer(text) if outside(m.start())))


def fill(text: str | None, values: Mapping[str, str], counts: dict[str, int]) -> str | None:
    """`text` with every placeholder outside code whose name is in `values` replaced by its value (inserted as
    is, not searched again); `counts[name]` grows by the occurrences replaced."""
    if not text or "{{" not in text:
        return text
    outside = _outside_code(text)

    def replace(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in values and outside(m.start()):
            counts[name] = counts.get(name, 0) + 1
            return values[name]
        return m.group(0)

    return PLACEHOLDER.sub(replace, text)


def _might_hold(examples: pa.Table) -> np.ndarray:
    """Rows with a string that may hold a placeholder (message content or reasoning, or `text`)."""
    mask = contains(whole(examples["text"]), _MAYBE)
    for column in MESSAGE_COLUMNS:
        mask |= rows_where(whole(examples[column]), messages_might_hold)
    return mask


def messages_might_hold(flat: pa.Array) -> np.ndarray:
    """Per message (a flattened message array): whether its content or reasoning may hold a placeholder."""
    hit = np.zeros(len(flat), dtype=bool)
    for name in TEXT_FIELDS:
        hit |= contains(pc.struct_field(flat, name), _MAYBE)
    return hit


def substitute(examples: pa.Table, values: Mapping[str, str]) -> tuple[pa.Table, dict[str, Any]]:
    """`examples` with the placeholders named in `values` filled in every message's content and reasoning
    (prompt, chosen and rejected) and in pretrain `text`; and what was filled: occurrences per name, rows
    changed, and the names that matched nothing in this source (`unused`)."""
    counts: dict[str, int] = {}
    rows = np.flatnonzero(_might_hold(examples)) if values and examples.num_rows else np.zeros(0, dtype=np.int64)
    changed = 0
    if len(rows):
        columns = [*MESSAGE_COLUMNS, "text"]
        picked = examples.select(columns).take(pa.array(rows))
        records = picked.to_pylist()
        for record in records:
            before = sum(counts.values())
            for column in MESSAGE_COLUMNS:
                for message in record[column] or ():
                    for name in TEXT_FIELDS:
                        message[name] = fill(message[name], values, counts)
            record["text"] = fill(record["text"], values, counts)
            changed += sum(counts.values()) > before
        if changed:
            filled = pa.Table.from_pylist(records, schema=picked.schema)
            examples = _put_rows(examples, rows, filled)
    stats = {
        "filled": {name: counts.get(name, 0) for name in sorted(values)},
        "rows": changed,
        "unused": sorted(name for name in values if not counts.get(name)),
    }
    return examples, stats


def _put_rows(table: pa.Table, rows: np.ndarray, replacement: pa.Table) -> pa.Table:
    """`table` with the rows at positions `rows` taking `replacement`'s columns (same order, same types)."""
    keep = np.ones(table.num_rows, dtype=bool)
    keep[rows] = False
    untouched = np.flatnonzero(keep)
    order = np.argsort(np.concatenate([untouched, rows]), kind="stable")
    for name in replacement.column_names:
        i = table.schema.get_field_index(name)
        merged = pa.chunked_array([*table[name].take(pa.array(untouched)).chunks, *replacement[name].chunks])
        table = table.set_column(i, table.schema.field(i), whole(merged).take(pa.array(order)))
    return table
