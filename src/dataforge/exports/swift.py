"""ms-swift export: its `messages` format per row kind (`sft/`, `preference/` with `rejected_response`,
`kto/` with `label`), written by the `swift` format; pretraining text as a single assistant message, which is
how ms-swift's pretraining datasets are spelled."""

from __future__ import annotations

from collections import Counter
from typing import Any

from .base import METADATA_KEYS, Exported, Exporter, MemoryFiles, Splits, run_export, write_rows


class SwiftExporter(Exporter):
    def records(self, split: str, kind: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if kind != "pretrain":
            return write_rows("swift", rows, split, self.losses)
        # ms-swift's pretraining spelling; for training it loses nothing (the swift writer counts it only
        # because it reads back as sft).
        self.losses.add(split, kind, Counter(METADATA_KEYS for row in rows if row.get("metadata")))
        return [{"messages": [{"role": "assistant", "content": row["text"]}]} for row in rows]


def export(splits: Splits, dataset: str) -> Exported:
    sink = MemoryFiles()
    return run_export(SwiftExporter(sink, dataset), sink, splits)
