"""trl export: one folder per row kind, each in the dataset type its trainer takes.

* `sft/`: conversational language modeling — `messages` (+ `tools`) for `SFTTrainer`;
* `preference/`: conversational preference — `prompt`, `chosen`, `rejected` for `DPOTrainer`;
* `kto/`: conversational unpaired preference — `prompt`, `completion`, `label` for `KTOTrainer`;
* `pretrain/`: language modeling — `text`.

Records come from the `trl` format's writer, so what trl cannot carry is counted the same way everywhere.
"""

from __future__ import annotations

from typing import Any

from .base import Exported, Exporter, MemoryFiles, Splits, run_export, write_rows


class TrlExporter(Exporter):
    def records(self, split: str, kind: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return write_rows("trl", rows, split, self.losses)


def export(splits: Splits, dataset: str) -> Exported:
    sink = MemoryFiles()
    return run_export(TrlExporter(sink, dataset), sink, splits)
