"""ms-swift export: its `messages` format per row kind (`sft/`, `preference/` with `rejected_response`,
`kto/` with `label`), written by the `swift` format's writer; pretraining text as a single assistant message,
which is how ms-swift's pretraining datasets are spelled.

Per-turn loss: an assistant turn's `weight` goes out in ms-swift's per-message fields (`"loss": false` for
weight 0, nothing for 1, `"loss_scale": w` otherwise; see `SwiftTrainerFormat`), so turn weights, fractional
ones included, are carried; a weight on a non-assistant turn is counted. Modes of the
render target (`last`, `first_n`) are no property of the rows: the hand-off says them (`--loss_scale
last_round` for `last`)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..formats.swift import SwiftTrainerFormat
from .base import METADATA_KEYS, Exported, Exporter, MemoryFiles, Splits, run_export, write_rows

WRITER = SwiftTrainerFormat()


class SwiftExporter(Exporter):
    def records(self, split: str, kind: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if kind != "pretrain":
            return write_rows(WRITER, rows, split, self.losses)
        # ms-swift's pretraining spelling; for training it loses nothing (the swift writer counts it only
        # because it reads back as sft).
        self.losses.add(split, kind, Counter(METADATA_KEYS for row in rows if row.get("metadata")))
        return [{"messages": [{"role": "assistant", "content": row["text"]}]} for row in rows]


def export(splits: Splits, dataset: str) -> Exported:
    sink = MemoryFiles()
    return run_export(SwiftExporter(sink, dataset), sink, splits)
