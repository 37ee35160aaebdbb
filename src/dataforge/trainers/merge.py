"""`dataforge merge ADAPTER -o DIR`: a LoRA adapter folded into its base model, saved as a standalone model.

The base model is the one the adapter records (`base_model_name_or_path` in adapter_config.json) unless
`base` names another copy of it; the tokenizer and chat template saved beside the adapter go with the model.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import DataError, UsageError


def merge(adapter: Path, output: Path, *, base: str | None = None) -> Path:
    """Merge the adapter in `adapter` into its base model and save both model and tokenizer to `output`."""
    config_path = adapter / "adapter_config.json"
    if not config_path.is_file():
        raise UsageError(
            f"{adapter}: not a PEFT adapter folder (no adapter_config.json)",
            hint="point at the output_dir of a `dataforge train` run with peft type lora or qlora",
        )
    base = base or json.loads(config_path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise UsageError(f"{config_path}: names no base model", hint="pass --base <model directory or hub id>")
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        # Merged weights are written in full precision, even for a QLoRA adapter (merging into 4-bit is lossy).
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot load the base model {base!r} ({str(exc).strip().splitlines()[0]})") from None
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    output.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(output))
    AutoTokenizer.from_pretrained(str(adapter)).save_pretrained(str(output))
    return output
