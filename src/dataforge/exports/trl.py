"""trl export: one folder per row kind, each in the dataset type its trainer takes.

* `sft/`: conversational language modeling — `messages` (+ `tools`) for `SFTTrainer`;
* `preference/`: conversational preference — `prompt`, `chosen`, `rejected` for `DPOTrainer`;
* `kto/`: conversational unpaired preference — `prompt`, `completion`, `label` for `KTOTrainer`;
* `pretrain/`: language modeling — `text`.

Records come from the `trl` format's writer, so what trl cannot carry is counted the same way everywhere.
"""

from __future__ import annotations

from .base import Exported, Splits, Tally, by_kind, jsonl, write_rows


def export(splits: Splits, dataset: str) -> Exported:
    out = Exported()
    losses = Tally()
    for split, rows in splits.items():
        for kind, group in by_kind(rows).items():
            records = write_rows("trl", group, split, losses)
            out.files[f"{kind}/{split}.jsonl"] = jsonl(records)
            out.rows[f"{kind}/{split}.jsonl"] = len(records)
    out.losses, out.left_out = losses.result(), losses.left_out
    return out
