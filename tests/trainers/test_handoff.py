"""The hand-off configs reference files that exist, and name columns the exported rows actually have (SFT's
pre-tokenized rows: tests/trainers/test_handoff_pretokenized.py)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.slow
METHODS = ["sft", "dpo", "kto"]


def records(path: str | Path) -> list[dict[str, Any]]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    assert lines, f"{path} is empty"
    return [json.loads(line) for line in lines]


def handoff(trained, method: str, tool: str) -> Path:
    _, result = trained(method)
    return result.output_dir / "handoff" / tool


@pytest.mark.parametrize("method", METHODS)
def test_llamafactory_yaml_and_dataset_info_describe_the_exported_rows(trained, method):
    loaded, _ = trained(method)
    folder = handoff(trained, method, "llamafactory")
    text = (folder / "train.yaml").read_text()
    # What the tool has no name for is said in the file, not dropped silently.
    assert "# train.args without a counterpart here (not carried): per_device_eval_batch_size, " in text
    config = yaml.safe_load(text)
    assert config["stage"] == method
    assert (config["finetuning_type"], config["lora_rank"], config["lora_alpha"], config["lora_target"]) == (
        "lora",
        8,
        16,
        "all",
    )
    assert config["template"] == "chatml" and config["cutoff_len"] == 160
    # SFT trains the build's own tokens (the chat export below stays the fallback); DPO and KTO the export.
    if method == "sft":
        assert config["tokenized_path"] == str(folder / "tokenized")
        assert json.loads((folder / "tokenized" / "dataset_dict.json").read_text())["splits"] == ["train", "validation"]
    else:
        assert "tokenized_path" not in config
    assert config["max_steps"] == 3 and config["per_device_train_batch_size"] == 4
    # LLaMA-Factory reads dataset_info.json from dataset_dir: the one written beside the YAML.
    assert Path(config["dataset_dir"]) == folder
    info = json.loads((folder / "dataset_info.json").read_text())
    kind = {"sft": "sft", "dpo": "preference", "kto": "kto"}[method]
    assert config["dataset"] == f"{loaded.recipe.name}_{kind}_train"
    assert config["eval_dataset"] == f"{loaded.recipe.name}_{kind}_val"
    for name in (config["dataset"], config["eval_dataset"]):
        entry = info[name]
        path = Path(entry["file_name"])
        assert path.is_absolute() and path.is_file()
        assert path.parent == loaded.build_dir / "exports" / "llamafactory"
        tags = entry["tags"]
        roles = {tags[t] for t in ("user_tag", "assistant_tag", "system_tag", "observation_tag", "function_tag")}
        for row in records(path):
            assert set(entry["columns"].values()) <= set(row)
            for turn in row[entry["columns"]["messages"]]:
                assert turn[tags["role_tag"]] in roles and isinstance(turn[tags["content_tag"]], str)
            if method == "dpo":
                assert entry["ranking"] is True
                for side in ("chosen", "rejected"):
                    assert row[entry["columns"][side]][tags["role_tag"]] == tags["assistant_tag"]
            if method == "kto":
                assert isinstance(row[entry["columns"]["kto_tag"]], bool)


@pytest.mark.parametrize("method", METHODS)
def test_axolotl_config_points_at_its_data_with_their_fields(trained, tiny_model, method):
    config = yaml.safe_load((handoff(trained, method, "axolotl") / "config.yaml").read_text())
    assert config["base_model"] == str(tiny_model)
    assert config["chat_template"] == "tokenizer_default"
    assert (config["adapter"], config["lora_r"], config["lora_target_linear"], config["sequence_len"]) == (
        "lora",
        8,
        True,
        160,
    )
    assert config.get("rl") == {"sft": None, "dpo": "dpo", "kto": "kto"}[method]
    assert config["micro_batch_size"] == 4 and config["max_steps"] == 3
    for key in ("datasets", "test_datasets"):
        (block,) = config[key]
        assert Path(block["path"]).is_absolute() and Path(block["path"]).is_file()
        if method == "sft":  # the build's own tokens (tests/trainers/test_handoff_pretokenized.py checks them)
            assert "type" not in block and block["ds_type"] == "parquet"
            assert Path(block["path"]).parent == handoff(trained, method, "axolotl") / "data"
            continue
        for row in records(block["path"]):
            if method == "dpo":
                for field in ("field_messages", "field_chosen", "field_rejected"):
                    assert block[field] in row
                assert row[block["field_chosen"]]["role"] == "assistant"
            else:
                fields = block["type"]
                assert {fields["field_prompt"], fields["field_completion"], fields["field_label"]} <= set(row)
                assert isinstance(row[fields["field_label"]], bool)


def swift_command(path: Path) -> tuple[list[str], dict[str, list[str]]]:
    """(the command words, --option → values) of a generated train.sh."""
    # As sh reads it: a backslash-newline continues the line.
    words = shlex.split(path.read_text().replace("\\\n", " "), comments=True)
    first = next(i for i, w in enumerate(words) if w.startswith("--") and w != "--rlhf_type")
    options: dict[str, list[str]] = {}
    for word in words[first:]:
        if word.startswith("--"):
            current = options.setdefault(word[2:], [])
        else:
            current.append(word)
    return words[:first], options


@pytest.mark.parametrize("method", METHODS)
def test_ms_swift_script_trains_on_its_data(trained, tiny_model, method):
    script = handoff(trained, method, "ms-swift") / "train.sh"
    assert script.read_text().startswith("#!/bin/sh\n")
    command, options = swift_command(script)
    assert command == (["swift", "sft"] if method == "sft" else ["swift", "rlhf", "--rlhf_type", method])
    assert options["model"] == [str(tiny_model)] and options["train_type"] == ["lora"]
    assert options["lora_rank"] == ["8"] and options["target_modules"] == ["all-linear"]
    assert options["max_length"] == ["160"]
    for key in ("dataset", "val_dataset"):
        (path,) = options[key]
        assert Path(path).is_file()
        for row in records(path):
            assert all({"role", "content"} <= set(m) for m in row["messages"])
            if method == "dpo":
                assert row["messages"][-1]["role"] == "assistant"  # the chosen reply
                assert isinstance(row["rejected_response"], str)
            if method == "kto":
                assert isinstance(row["label"], bool)
