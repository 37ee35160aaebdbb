"""A local `train.model` must be a model a trainer can load — config.json with a model_type and all its weights —
checked from names and headers before the build, for `--handoff-only` too; hub ids are left to the hub."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from training_setup import FAST_ARGS, LORA, REPO, TOKENIZER, demo_recipe, write_recipe

from dataforge.errors import DataError
from dataforge.recipe import Train
from dataforge.trainers.checks import check_model_dir

pytestmark = pytest.mark.slow


def spec(model: Path | str) -> dict:
    return {"method": "sft", "model": str(model), "peft": LORA, "args": FAST_ARGS}


def refusal(model: Path | str, root: Path) -> tuple[str, str]:
    """The (message, hint) `check_model_dir` refuses `model` with."""
    with pytest.raises(DataError) as refused:
        check_model_dir(Train.model_validate(spec(model)), root)
    assert refused.value.exit_code == 1
    return refused.value.message, refused.value.hint


def copy_model(tiny_model: Path, to: Path, *, without: tuple[str, ...] = ()) -> Path:
    shutil.copytree(tiny_model, to, ignore=shutil.ignore_patterns(*without))
    return to


def test_a_tokenizer_only_folder_is_refused_by_handoff_only_before_the_build(tmp_path):
    folder = tmp_path / "tokenizer-only"
    shutil.copytree(TOKENIZER, folder)
    recipe = tmp_path / "mix.yaml"
    write_recipe(recipe, demo_recipe(tmp_path / "build", spec(folder)))
    proc = subprocess.run(
        [sys.executable, "-m", "dataforge", "train", "--handoff-only", str(recipe)],
        capture_output=True,
        text=True,
        env={"COLUMNS": "400", "PATH": "/usr/bin:/bin", "NO_COLOR": "1", "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        f"error: train.model: {folder} holds only a tokenizer (tokenizer.json, tokenizer_config.json): it has no "
        "config.json",
        "  hint: train.model is the model's own directory (config.json and weights, as save_pretrained writes "
        "them) or a hub id; a tokenizer alone belongs in a render target's `tokenizer:`",
    ]
    assert not (tmp_path / "build").exists()  # refused before building anything
    # The README's Training section shows this refusal as it is printed.
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for line in proc.stderr.splitlines():
        assert line.replace(str(folder), "/models/qwen-tok") in readme


def test_the_tiny_model_passes_and_hub_ids_are_not_checked(tmp_path, tiny_model):
    assert check_model_dir(Train.model_validate(spec(tiny_model)), tmp_path) == tiny_model.resolve()
    relative = copy_model(tiny_model, tmp_path / "models" / "tiny")
    assert check_model_dir(Train.model_validate(spec("models/tiny")), tmp_path) == relative
    for hub_id in ("Qwen/Qwen2.5-0.5B-Instruct", "ms://Qwen/Qwen2.5-0.5B-Instruct"):
        assert check_model_dir(Train.model_validate(spec(hub_id)), tmp_path) is None
    assert refusal("./nope", tmp_path) == (
        f"train.model: the directory {tmp_path / 'nope'} does not exist",
        "local models are directories relative to the recipe's root; hub ids look like owner/name",
    )


def test_an_empty_folder_and_an_adapter_are_not_models(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert refusal(empty, tmp_path)[0] == f"train.model: {empty} holds no model: it has no config.json"
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"base_model_name_or_path": "x", "peft_type": "LORA"}')
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    assert refusal(adapter, tmp_path) == (
        f"train.model: {adapter} is a LoRA adapter (adapter_config.json), not a model: it has no config.json",
        f"merge it first (`dataforge merge {adapter} -o merged`) and train merged/, or name its base model",
    )


def test_a_config_must_name_the_model(tmp_path, tiny_model):
    model = copy_model(tiny_model, tmp_path / "m")
    (model / "config.json").write_text('{"hidden_size": 32}')
    assert refusal(model, tmp_path) == (
        f"train.model: {model / 'config.json'} names no model_type or architectures, so it is not a model's config",
        "use the config.json saved with the model (save_pretrained writes model_type and architectures)",
    )
    (model / "config.json").write_text("{not json")
    assert refusal(model, tmp_path)[0] == (
        f"train.model: {model / 'config.json'} is not valid JSON (Expecting property name enclosed in double "
        "quotes: line 1 column 2 (char 1))"
    )


def test_a_config_without_weights_is_refused(tmp_path, tiny_model):
    model = copy_model(tiny_model, tmp_path / "m", without=("*.safetensors",))
    assert refusal(model, tmp_path) == (
        f"train.model: {model} has a config.json but no weights (*.safetensors, pytorch_model*.bin or an index)",
        "save the model with save_pretrained, or download its weight files",
    )


def test_an_index_whose_shards_are_missing_is_refused(tmp_path, tiny_model):
    model = copy_model(tiny_model, tmp_path / "m")
    (model / "model.safetensors").rename(model / "model-00001-of-00002.safetensors")
    weight_map = {
        "lm_head.weight": "model-00001-of-00002.safetensors",
        "model.norm.weight": "model-00002-of-00002.safetensors",
    }
    (model / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    assert refusal(model, tmp_path) == (
        f"train.model: {model} lacks 1 of the 2 weight files model.safetensors.index.json lists: "
        "model-00002-of-00002.safetensors",
        "the download is incomplete: fetch the missing files",
    )
    shutil.copy(model / "model-00001-of-00002.safetensors", model / "model-00002-of-00002.safetensors")
    assert check_model_dir(Train.model_validate(spec(model)), tmp_path) == model


def test_lfs_pointers_and_truncated_weights_are_refused(tmp_path, tiny_model):
    model = copy_model(tiny_model, tmp_path / "m")
    weights = model / "model.safetensors"
    whole = weights.read_bytes()
    weights.write_bytes(whole[: len(whole) - 100])
    assert refusal(model, tmp_path) == (
        f"train.model: {weights} is truncated ({len(whole) - 100:,} bytes; its header describes {len(whole):,})",
        "the download is incomplete: download the file again",
    )
    pointer = "version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + f"\nsize {len(whole)}\n"
    weights.write_text(pointer)
    assert refusal(model, tmp_path) == (
        f"train.model: {weights} is a Git LFS pointer ({len(pointer)} bytes), not the weights",
        "fetch the weights (`git lfs pull` in the model's repository), or download the model again",
    )
    weights.write_bytes(b"\x00" * 4)
    assert refusal(model, tmp_path)[0] == f"train.model: {weights} is not a safetensors file"
