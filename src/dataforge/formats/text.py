"""Plain text: `{"text": ...}` records for continued pretraining (LLaMA-Factory's c4_demo, trl's standard
language-modelling type). Every row is kind pretrain.

Only pretrain rows can be written: a conversation flattened into text would need a chat template, which is
the render stage's job, so other rows are not written and are counted in the losses by kind.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa

from ..readers import RowShape
from ..record import MESSAGE_TYPE, MESSAGES_TYPE, Kind
from ..tables import keep_rows
from . import columnar as col
from .base import Converted, Format, RowProblems, Written, add_metadata, assemble, count_media

ARROW = pa.schema([pa.field("text", pa.string())])

JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://dataforge.dev/schemas/formats/text.schema.json",
    "title": "Plain text record",
    "type": "object",
    "required": ["text"],
    "properties": {"text": {"type": "string", "description": "The text to train on, every token of it."}},
}


class TextFormat(Format):
    name = "text"
    description = "plain text records ({text}) for continued pretraining (c4-style, trl language modelling)"
    shape = RowShape(ARROW, JSON_SCHEMA)
    signature = frozenset({"text"})
    # A `text` column sits beside the columns of many formats (a rendered copy of a conversation): any other
    # format that accepts the records is the better reading.
    specificity = -1

    def matches(self, record: dict[str, Any]) -> bool:
        return isinstance(record.get("text"), str)

    def to_examples(self, raw: pa.Table, source: str) -> Converted:
        n = raw.num_rows
        problems = RowProblems(n)
        text = col.whole(raw["text"])
        problems.add_rows(col.is_null(text), "schema_violation", "text", "'text' is required but missing")
        offsets = pa.array(np.zeros(n + 1, dtype=np.int32), pa.int32())
        no_messages = pa.ListArray.from_arrays(offsets, pa.array([], MESSAGE_TYPE), type=MESSAGES_TYPE)
        no_origins = pa.ListArray.from_arrays(offsets, pa.array([], pa.string()), type=pa.list_(pa.string()))
        examples = assemble(raw, source, messages=no_messages, origins=no_origins, kind=Kind.PRETRAIN, text=text)
        return Converted(keep_rows(examples, ~problems.bad), problems.rejects(raw))

    def from_examples(self, examples: list[dict[str, Any]]) -> Written:
        records: list[dict[str, Any]] = []
        losses: Counter[str] = Counter()
        for ex in examples:
            if count_media(ex, losses):
                continue
            if ex["kind"] != Kind.PRETRAIN.value:
                losses[f"{ex['kind']} rows (not plain text, not written)"] += 1
                continue
            record: dict[str, Any] = {"text": ex["text"]}
            if ex.get("tools"):
                losses["tool declarations"] += 1
            add_metadata(record, ex.get("metadata"), self.shape.arrow.names, losses)
            records.append(record)
        return Written(records, losses)
