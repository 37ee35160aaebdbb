"""ms-swift export: its `messages` format per row kind (`sft/`, `preference/` with `rejected_response`,
`kto/` with `label`), written by the `swift` format; pretraining text as a single assistant message, which is
how ms-swift's pretraining datasets are spelled."""

from __future__ import annotations

from collections import Counter

from .base import METADATA_KEYS, Exported, Splits, Tally, by_kind, jsonl, write_rows


def export(splits: Splits, dataset: str) -> Exported:
    out = Exported()
    losses = Tally()
    for split, rows in splits.items():
        for kind, group in by_kind(rows).items():
            if kind == "pretrain":
                # ms-swift's pretraining spelling; for training it loses nothing (the swift writer counts it only
                # because it reads back as sft).
                records = [{"messages": [{"role": "assistant", "content": row["text"]}]} for row in group]
                losses.add(split, kind, Counter(METADATA_KEYS for row in group if row.get("metadata")))
            else:
                records = write_rows("swift", group, split, losses)
            out.files[f"{kind}/{split}.jsonl"] = jsonl(records)
            out.rows[f"{kind}/{split}.jsonl"] = len(records)
    out.losses, out.left_out = losses.result(), losses.left_out
    return out
