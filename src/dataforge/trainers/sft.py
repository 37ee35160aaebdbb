"""SFT with trl's SFTTrainer on the build's pre-tokenized rows.

The rendered `input_ids` and `labels` (-100 where not trained: prompts, tools' results, turns of weight 0) go
to the trainer as they are. SFTTrainer recognises a dataset with `input_ids` as already processed and a
`labels` column as the loss mask, so trl neither re-renders the conversations nor rebuilds the mask: the model
learns exactly the tokens the build's report counted as trained.

When the target packs (`pack:`), the packed rows go instead, with their `seq_lengths`, through trl's
padding-free path (`pack.TRL_PACKED_ARGS`, set by `config.trl_config`): no segment attends to another, and no
label crosses a segment boundary (tests/trainers/test_packed_loss.py: the loss equals the unpacked loss).
"""

from __future__ import annotations

from typing import Any

from ..render.target import LoadedTarget
from .build import KINDS, TrainingData


def config_class() -> type:
    from trl import SFTConfig

    return SFTConfig


def datasets(data: TrainingData, target: LoadedTarget) -> tuple[Any, Any | None]:
    """(train, eval) datasets of `input_ids` and `labels`; eval is None when the build has no val rows."""
    from datasets import Dataset

    out = []
    for split in ("train", "val"):
        if data.packed is not None:
            rows = data.packed[split].select(["input_ids", "labels", "seq_lengths"])
            out.append(Dataset.from_dict(rows.to_pydict()) if rows.num_rows else None)
            continue
        rows = data.rendered_rows(split, KINDS["sft"]).select(["input_ids", "labels"])
        out.append(Dataset.from_dict(rows.to_pydict()) if rows.num_rows else None)
    return out[0], out[1]


def trainer(model: Any, tokenizer: Any, config: Any, peft: Any | None, train: Any, evaluation: Any | None) -> Any:
    """trl's SFTTrainer over the pre-tokenized datasets."""
    from trl import SFTTrainer

    return SFTTrainer(
        model=model,
        args=config,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=tokenizer,
        peft_config=peft,
    )
