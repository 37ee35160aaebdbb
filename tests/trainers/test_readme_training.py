"""The README's Training section stays true: its `train:` example is a valid section, its commands exist."""

from __future__ import annotations

import re

import yaml
from training_setup import REPO

from dataforge.cli import app
from dataforge.recipe import Train

TRAINING = (REPO / "README.md").read_text(encoding="utf-8").split("## Training\n", 1)[1].split("\n## ", 1)[0]


def test_the_train_example_is_a_valid_train_section():
    example = re.search(r"```yaml\n(.*?)```", TRAINING, re.S).group(1)
    train = Train.model_validate(yaml.safe_load(example)["train"])
    assert (train.method, train.peft.type, train.peft.target_modules) == ("sft", "lora", "all-linear")
    assert train.args["learning_rate"] == 2.0e-4 and train.max_untrained_share == 0.01


def test_the_documented_commands_exist():
    commands = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert {"train", "merge"} <= commands
    assert "dataforge train" in TRAINING and "dataforge merge" in TRAINING
    for setting in ('bnb_4bit_quant_type="nf4"', "bnb_4bit_use_double_quant=True", "torch.bfloat16"):
        assert setting in TRAINING
