"""DPO with trl's DPOTrainer on the build's preference pairs.

DPOTrainer tokenizes conversations itself (it needs the prompt apart from each completion), so it receives
the pairs the render target rendered, as conversational `prompt` / `chosen` / `rejected`, and the target's
tokenizer with its chat template; a sample is checked to tokenize to the rendered ids on both sides.
"""

from __future__ import annotations

from typing import Any

from ..render.target import LoadedTarget
from .build import TrainingData
from .records import messages, to_dataset, tokenized_as_rendered, with_context


def config_class() -> type:
    from trl import DPOConfig

    return DPOConfig


def datasets(data: TrainingData, target: LoadedTarget) -> tuple[Any, Any | None]:
    """(train, eval) conversational preference datasets; eval is None when the build has no val pairs."""
    reasoning = data.spec.reasoning
    out = []
    for split in ("train", "val"):
        rows = data.examples_rendered(split, ("preference",))
        records = [
            {
                "prompt": messages(row["messages"], reasoning),
                "chosen": messages(row["chosen"], reasoning),
                "rejected": messages(row["rejected"], reasoning),
            }
            for row in rows
        ]
        with_context(records, rows, data)
        dataset = to_dataset(records)
        if dataset is not None:
            sides = {"chosen": "input_ids", "rejected": "rejected_input_ids"}
            tokenized_as_rendered(dataset, data, target.tokenizer, split, "preference", sides)
        out.append(dataset)
    return out[0], out[1]


def trainer(model: Any, tokenizer: Any, config: Any, peft: Any | None, train: Any, evaluation: Any | None) -> Any:
    """trl's DPOTrainer; with a LoRA adapter the reference model is the base with the adapter disabled."""
    from trl import DPOTrainer

    return DPOTrainer(
        model=model,
        args=config,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=tokenizer,
        peft_config=peft,
    )
