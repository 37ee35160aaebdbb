"""Recipes for the training tests: the demo pipeline and the trl-format fixtures, with every trainer export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dataforge.recipe import LoadedRecipe, load_recipe

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"
TOKENIZER = REPO / "data" / "tokenizers" / "demo-chatml"
TRAINER_EXPORTS = ["trl", "llamafactory", "ms-swift", "axolotl"]
# A few steps, small batches, no gradient checkpointing (it only saves memory, and costs time on CPU).
FAST_ARGS = {
    "max_steps": 3,
    "per_device_train_batch_size": 4,
    "per_device_eval_batch_size": 4,
    "logging_steps": 1,
    "learning_rate": 1e-3,
    "gradient_checkpointing": False,
}
LORA = {"type": "lora", "r": 8, "alpha": 16, "dropout": 0.0}


def demo_recipe(out: Path, train: dict[str, Any] | None) -> dict[str, Any]:
    """pipelines/demo.yaml, built into `out` with every trainer export, plus a `train:` section."""
    recipe = yaml.safe_load((REPO / "pipelines" / "demo.yaml").read_text(encoding="utf-8"))
    recipe["root"] = str(REPO)
    recipe["outputs"] = {"dir": str(out), "exports": TRAINER_EXPORTS}
    if train is not None:
        recipe["train"] = train
    return recipe


def fixture_recipe(name: str, fixture: str, out: Path, train: dict[str, Any] | None) -> dict[str, Any]:
    """A recipe over one trl-format fixture under tests/trainers/fixtures/, rendered for the demo tokenizer."""
    recipe: dict[str, Any] = {
        "name": name,
        "seed": 7,
        "root": str(REPO),
        "sources": [{"name": name, "from": str((FIXTURES / fixture).relative_to(REPO)), "format": "trl"}],
        "split": {"validation": 0.2},
        "outputs": {"dir": str(out), "exports": TRAINER_EXPORTS},
        "render": [{"name": "demo-chatml", "tokenizer": "data/tokenizers/demo-chatml", "max_length": 160}],
    }
    if train is not None:
        recipe["train"] = train
    return recipe


def write_recipe(path: Path, recipe: dict[str, Any]) -> LoadedRecipe:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return load_recipe(path)
