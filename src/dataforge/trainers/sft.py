"""SFT with trl's SFTTrainer on the build's pre-tokenized rows.

The rendered `input_ids` and `labels` (-100 where not trained: prompts, tools' results, turns of weight 0) go
to the trainer as they are. SFTTrainer recognises a dataset with `input_ids` as already processed and a
`labels` column as the loss mask, so trl neither re-renders the conversations nor rebuilds the mask: the model
learns exactly the tokens the build's report counted as trained.

When the target packs (`pack:`), the packed rows go instead, with their `seq_lengths`, through trl's
padding-free path (`pack.TRL_PACKED_ARGS`, set by `config.trl_config`): no segment attends to another, and no
label crosses a segment boundary (tests/trainers/test_packed_loss.py: the loss equals the unpacked loss).

Under `train_on: weighted` the rows also carry `loss_weights` (per token: the turn's weight, 0 off the trained
tokens), and the trainer is `weighted_trainer_class()`: SFTTrainer with a collator that pads (or, padding-free,
concatenates) the weights beside the labels, and a `compute_loss` that scales each token's cross-entropy by
its weight. The loss is

    sum over trained tokens of w_t * CE_t  /  (number of trained tokens)

— trl's own normalisation (per token, over the tokens of the batch, `num_items_in_batch` under gradient
accumulation), with the weights in the numerator only. So a batch whose weights are all 1 gives trl's loss
exactly, and a turn at 0.5 counts half as much as a turn at 1 *without* raising the others: dividing by the
sum of the weights instead would undo a weight given to every turn alike (all turns at 0.5 would train as all
at 1) and make one token's gradient depend on the weights of the other rows in its batch.
"""

from __future__ import annotations

from typing import Any

from ..errors import DataError
from ..render.target import LoadedTarget
from .build import KINDS, TrainingData

WEIGHTS = "loss_weights"


def config_class() -> type:
    from trl import SFTConfig

    return SFTConfig


def weighted(data: TrainingData) -> bool:
    """Whether the target's rows carry per-token loss weights (`train_on: weighted`)."""
    return data.spec.train_on == "weighted"


def datasets(data: TrainingData, target: LoadedTarget) -> tuple[Any, Any | None]:
    """(train, eval) datasets of `input_ids` and `labels` (and `loss_weights` under `train_on: weighted`);
    eval is None when the build has no val rows."""
    from datasets import Dataset

    extra = [WEIGHTS] if weighted(data) else []
    out = []
    for split in ("train", "val"):
        if data.packed is not None:
            table = data.packed[split]
            if extra and WEIGHTS not in table.column_names:
                raise DataError(
                    f"render target {data.spec.name!r}: train_on is weighted but its packed rows have no "
                    f"`{WEIGHTS}` column",
                    hint="the build's packing does not carry the loss weights; train without `pack:` on this target",
                )
            rows = table.select(["input_ids", "labels", "seq_lengths", *extra])
            out.append(Dataset.from_dict(rows.to_pydict()) if rows.num_rows else None)
            continue
        rows = data.rendered_rows(split, KINDS["sft"]).select(["input_ids", "labels", *extra])
        out.append(Dataset.from_dict(rows.to_pydict()) if rows.num_rows else None)
    return out[0], out[1]


def trainer(model: Any, tokenizer: Any, config: Any, peft: Any | None, train: Any, evaluation: Any | None) -> Any:
    """trl's SFTTrainer over the pre-tokenized datasets; the weighted one when they carry `loss_weights`."""
    from trl import SFTTrainer

    cls = weighted_trainer_class() if WEIGHTS in train.column_names else SFTTrainer
    return cls(
        model=model,
        args=config,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=tokenizer,
        peft_config=peft,
    )


_CLASSES: dict[str, type] = {}


def weighted_collator_class() -> type:
    """trl's DataCollatorForLanguageModeling that also collates `loss_weights` (built on first use: trl and torch
    load only for training)."""
    if "collator" in _CLASSES:
        return _CLASSES["collator"]
    from dataclasses import dataclass

    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling
    from trl.trainer.utils import pad

    @dataclass
    class WeightedCollator(DataCollatorForLanguageModeling):
        """Pads `loss_weights` with 0 as trl pads `labels` with -100 (padding-free: concatenated, 0 at each
        segment's first token, where trl sets the label to -100). Rows trl truncated to `max_length` have their
        weights cut the same way (`truncation_mode`)."""

        truncation_mode: str = "keep_start"

        def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
            weights = []
            for example in examples:
                w = torch.tensor(example[WEIGHTS], dtype=torch.float32)
                n = len(example["input_ids"])
                weights.append(w[:n] if self.truncation_mode == "keep_start" else w[len(w) - n :])
            output = super().torch_call([{k: v for k, v in e.items() if k != WEIGHTS} for e in examples])
            if self.padding_free:
                weights = [torch.cat(weights, dim=0)]
            output[WEIGHTS] = pad(
                weights, padding_value=0.0, padding_side="right", pad_to_multiple_of=self.pad_to_multiple_of
            )
            output[WEIGHTS][output["labels"] == -100] = 0.0
            return output

    _CLASSES["collator"] = WeightedCollator
    return WeightedCollator


def weighted_trainer_class() -> type:
    """SFTTrainer whose loss scales each trained token's cross-entropy by its `loss_weights` entry (see the
    module docstring for the normalisation)."""
    if "trainer" in _CLASSES:
        return _CLASSES["trainer"]
    from trl import SFTTrainer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    collator_class = weighted_collator_class()

    class WeightedSFTTrainer(SFTTrainer):
        """trl's SFTTrainer with per-token loss weights.

        trl removes dataset columns the model's forward does not name (`_signature_columns`) and its collator
        drops keys it does not know, so `loss_weights` is kept as a signature column and collated by
        `WeightedCollator`. `compute_loss` pops it and hands trl's own `compute_loss` a view of the model whose
        fused-head `log_probs` are scaled by the weights: trl's loss is `-sum(log_probs) / num_tokens`, so it
        becomes `sum(w * CE) / num_tokens`, and trl's other bookkeeping (token counts, entropy, accuracy, the
        aux loss, gradient accumulation) stays trl's.
        """

        uses_loss_weights = True  # read by `run.py` for training.json

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            config = kwargs["args"]
            if config.loss_type != "nll" or config.label_smoothing_factor > 0:
                # DFT multiplies by exp(log_probs) and label smoothing reads the logits: neither is the plain
                # per-token cross-entropy the weights scale.
                raise ValueError("loss_weights (train_on: weighted) need loss_type nll without label_smoothing_factor")
            super().__init__(*args, **kwargs)
            if type(self.data_collator) is DataCollatorForLanguageModeling:
                # trl's own collator, as trl set it up (pad token, padding-free), taught to carry the weights.
                own = self.data_collator
                self.data_collator = collator_class(
                    pad_token_id=own.pad_token_id,
                    padding_free=own.padding_free,
                    return_position_ids=own.return_position_ids,
                    pad_to_multiple_of=own.pad_to_multiple_of,
                    truncation_mode=config.truncation_mode,
                )
            parallelism = getattr(self.accelerator, "parallelism_config", None)
            if parallelism is not None and getattr(parallelism, "sp_enabled", False):
                # trl's sequence-parallel branch takes the model's own (unweighted) loss, not the log-probs.
                raise ValueError("loss_weights (train_on: weighted) are not supported with sequence parallelism")
            if self.compute_loss_func is not None:
                raise ValueError("loss_weights (train_on: weighted) cannot be combined with a compute_loss_func")

        def _set_signature_columns_if_needed(self) -> None:
            super()._set_signature_columns_if_needed()
            if WEIGHTS not in self._signature_columns:
                self._signature_columns = [*self._signature_columns, WEIGHTS]

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            weights = inputs.pop(WEIGHTS, None)
            if weights is None:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            return super().compute_loss(_Scaled(model, weights), inputs, return_outputs, num_items_in_batch)

    _CLASSES["trainer"] = WeightedSFTTrainer
    return WeightedSFTTrainer


class _Scaled:
    """`model` as trl's `compute_loss` calls it, with the fused LM head's per-token `log_probs` (which trl's
    loss sums) multiplied by the next-token `loss_weights`: log_probs[:, i] scores labels[:, i + 1], so it takes
    weights[:, i + 1]. Other calls (no fused head) go to the model unchanged."""

    def __init__(self, model: Any, weights: Any) -> None:
        self.model = model
        self.weights = weights

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        outputs = self.model(*args, **kwargs)
        if kwargs.get("fused_lm_head") and getattr(outputs, "log_probs", None) is not None:
            shifted = self.weights[:, 1:] if kwargs.get("shift_labels") is None else self.weights
            outputs.log_probs = outputs.log_probs * shifted.to(outputs.log_probs.device, outputs.log_probs.dtype)
        return outputs

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)
