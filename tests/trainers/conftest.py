"""A tiny model and one training run per method for the training tests.

The model is built from a config (random weights, two layers, hidden size 32) over the shipped demo tokenizer,
so training runs offline on CPU in seconds. Each method trains once per session (`trained`); the tests then
look at what the run wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from training_setup import FAST_ARGS, LORA, TOKENIZER, demo_recipe, fixture_recipe, write_recipe

from dataforge.recipe import LoadedRecipe


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-layer Llama with random weights and the demo tokenizer's vocabulary, saved with that tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(TOKENIZER)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=None,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Callable[[str], tuple[LoadedRecipe, Any]]:
    """`trained(method)`: (recipe, Trained) of one LoRA run of `method` — SFT on the demo build, DPO and KTO
    on the preference and KTO fixtures — run once per session."""
    from dataforge.trainers.run import train

    runs: dict[str, tuple[LoadedRecipe, Any]] = {}

    def run(method: str) -> tuple[LoadedRecipe, Any]:
        if method not in runs:
            root = tmp_path_factory.mktemp(f"train-{method}")
            spec = {"method": method, "model": str(tiny_model), "peft": LORA, "args": FAST_ARGS}
            if method == "sft":
                recipe = demo_recipe(root / "build", spec)
            else:
                fixture = {"dpo": "preference.jsonl", "kto": "kto.jsonl"}[method]
                recipe = fixture_recipe(f"{method}-fixture", fixture, root / "build", spec)
            loaded = write_recipe(root / "mix.yaml", recipe)
            runs[method] = (loaded, train(loaded))
        return runs[method]

    return run
