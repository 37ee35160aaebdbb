"""PEFT for the bundled trainers: LoRA adapters from the recipe's `train.peft`, and QLoRA's 4-bit base model.

QLoRA loads the base model through bitsandbytes in 4-bit NF4 with double quantisation and bf16 compute — the
setting the QLoRA paper and trl's own examples use — and needs a CUDA GPU; elsewhere it stops with a message.
"""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from ..recipe import Peft


def lora_config(peft: Peft) -> Any | None:
    """peft's `LoraConfig` for a causal LM, or None when the whole model is trained (`type: none`)."""
    if peft.type == "none":
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=peft.r,
        lora_alpha=peft.alpha,
        lora_dropout=peft.dropout,
        target_modules=peft.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )


def quantization_config() -> Any:
    """The 4-bit NF4 `BitsAndBytesConfig` for QLoRA; a UsageError when there is no GPU or no bitsandbytes."""
    import torch

    if not torch.cuda.is_available():
        raise UsageError(
            "train.peft.type qlora needs a CUDA GPU (bitsandbytes 4-bit); this machine has none",
            hint="use peft.type: lora on CPU, or run on a GPU machine",
        )
    try:
        import bitsandbytes  # noqa: F401  (imported to fail here, with a message, rather than inside transformers)
    except ImportError:
        raise UsageError("train.peft.type qlora needs bitsandbytes", hint="pip install bitsandbytes") from None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
