"""KTO with trl's KTOTrainer on the build's labelled completions.

KTOTrainer tokenizes conversations itself, so it receives the rows the render target rendered as
conversational `prompt` / `completion` / `label` (the last assistant turn is the completion, as the render
stage trains it), with the target's tokenizer; a sample is checked to tokenize to the rendered ids.
"""

from __future__ import annotations

from typing import Any

from ..render.target import LoadedTarget
from .build import TrainingData
from .records import messages, to_dataset, tokenized_as_rendered, with_context


def config_class() -> type:
    from trl import KTOConfig

    return KTOConfig


def datasets(data: TrainingData, target: LoadedTarget) -> tuple[Any, Any | None]:
    """(train, eval) conversational unpaired-preference datasets; eval is None when the build has no val rows."""
    reasoning = data.spec.reasoning
    out = []
    for split in ("train", "val"):
        rows = data.examples_rendered(split, ("kto",))
        records = []
        for row in rows:
            conversation = messages(row["messages"], reasoning)
            records.append({"prompt": conversation[:-1], "completion": conversation[-1:], "label": row["label"]})
        with_context(records, rows, data)
        dataset = to_dataset(records)
        if dataset is not None:
            tokenized_as_rendered(dataset, data, target.tokenizer, split, "kto", {"completion": "input_ids"})
        out.append(dataset)
    return out[0], out[1]


def trainer(model: Any, tokenizer: Any, config: Any, peft: Any | None, train: Any, evaluation: Any | None) -> Any:
    """trl's KTOTrainer; with a LoRA adapter the reference model is the base with the adapter disabled."""
    from trl import KTOTrainer

    return KTOTrainer(
        model=model,
        args=config,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=tokenizer,
        peft_config=peft,
    )
