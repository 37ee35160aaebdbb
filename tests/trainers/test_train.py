"""Training a tiny model for a few steps on CPU with LoRA: SFT on the demo build, DPO and KTO on fixtures.

Each run must end with a finite loss, an adapter that changed, reloads with peft and generates, the tokenizer
with the template the data was rendered with, and `training.json` naming the exact data by digest.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from peft import PeftModel
from training_setup import FAST_ARGS, TOKENIZER
from transformers import AutoModelForCausalLM, AutoTokenizer

from dataforge.trainers import sft
from dataforge.trainers.build import target_spec, training_data
from dataforge.trainers.merge import merge

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("method", ["sft", "dpo", "kto"])
def test_a_few_lora_steps_give_a_finite_loss_and_an_adapter_that_learned(trained, method):
    loaded, result = trained(method)
    assert math.isfinite(result.training_loss)
    losses = [entry["loss"] for entry in result.log if "loss" in entry]
    assert len(losses) == FAST_ARGS["max_steps"]
    assert all(math.isfinite(loss) for loss in losses)
    out = result.output_dir
    assert out == loaded.build_dir / "train" / method
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "chat_template.jinja"):
        assert (out / name).is_file(), name
    logged = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert [e["loss"] for e in logged if "loss" in e] == losses


@pytest.mark.parametrize("method", ["sft", "dpo", "kto"])
def test_the_adapter_reloads_with_peft_and_generates(trained, tiny_model, method):
    _, result = trained(method)
    tok = AutoTokenizer.from_pretrained(result.output_dir)
    # The saved template is the render target's: what the data was rendered with is what inference uses.
    assert tok.chat_template == (TOKENIZER / "chat_template.jinja").read_text(encoding="utf-8")
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), result.output_dir)
    trained_b = [p for name, p in model.named_parameters() if "lora_B" in name]
    assert trained_b and any(float(p.abs().sum()) > 0 for p in trained_b)  # LoRA's B starts at zero
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 5?"}], add_generation_prompt=True, return_tensors="pt"
    )
    with torch.no_grad():
        generated = model.generate(**prompt, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    assert generated.shape == (1, prompt["input_ids"].shape[1] + 6)
    assert generated[0, : prompt["input_ids"].shape[1]].tolist() == prompt["input_ids"][0].tolist()


def test_training_json_names_the_data_by_the_build_manifest_digest(trained):
    loaded, result = trained("sft")
    record = json.loads((result.output_dir / "training.json").read_text())
    build = loaded.build_dir
    manifest = json.loads((build / "manifest.json").read_text())
    assert record["data"]["manifest_sha256"] == hashlib.sha256((build / "manifest.json").read_bytes()).hexdigest()
    assert record["data"]["build_key"] == manifest["build_key"]
    for name, digest in record["data"]["files"].items():
        assert digest == manifest["outputs"][name] == hashlib.sha256((build / name).read_bytes()).hexdigest()
    folder = build / "rendered" / "demo-chatml"
    rendered = {split: pq.read_metadata(folder / f"{split}.parquet").num_rows for split in ("train", "val")}
    assert record["data"]["rows"] == rendered == result.rows  # every rendered demo row is sft
    assert rendered["train"] > 150 and rendered["val"] > 15
    assert record["data"]["tokenizer_digest"] == manifest["render"]["demo-chatml"]["tokenizer_digest"]
    assert record["method"] == "sft" and record["peft"]["r"] == 8
    assert record["training_loss"] == pytest.approx(result.training_loss)


def test_sft_trains_on_the_rendered_ids_and_labels_as_they_are(trained):
    loaded, _ = trained("sft")
    spec = target_spec(loaded, loaded.recipe.train)
    data = training_data(loaded, spec)
    train_set, eval_set = sft.datasets(data, target=None)
    rendered = pq.read_table(loaded.build_dir / "rendered" / "demo-chatml" / "train.parquet")
    assert train_set.column_names == ["input_ids", "labels"]
    assert train_set["input_ids"] == rendered["input_ids"].to_pylist()
    assert train_set["labels"] == rendered["labels"].to_pylist()
    assert eval_set.num_rows == 23
    # Labels are the ids where trained and -100 elsewhere, so trl's collator uses them unchanged.
    row_ids, row_labels = train_set[0]["input_ids"], train_set[0]["labels"]
    assert all(label in (-100, token) for token, label in zip(row_ids, row_labels, strict=True))
    assert -100 in row_labels and any(label != -100 for label in row_labels)


def test_merge_folds_the_adapter_into_a_model_that_computes_the_same(trained, tiny_model, tmp_path):
    _, result = trained("sft")
    merged_dir = merge(result.output_dir, tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), result.output_dir).eval()
    ids = torch.tensor([[5, 17, 230, 9, 41]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, adapted(ids).logits, atol=1e-5)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    assert (
        AutoTokenizer.from_pretrained(merged_dir).chat_template
        == AutoTokenizer.from_pretrained(result.output_dir).chat_template
    )
    assert not (Path(merged_dir) / "adapter_config.json").exists()


def test_without_peft_the_whole_model_is_trained_and_saved(tmp_path, tiny_model):
    from training_setup import demo_recipe, write_recipe

    from dataforge.trainers.run import train

    spec = {"method": "sft", "model": str(tiny_model), "peft": {"type": "none"}, "args": {**FAST_ARGS, "max_steps": 2}}
    result = train(write_recipe(tmp_path / "mix.yaml", demo_recipe(tmp_path / "build", spec)))
    assert math.isfinite(result.training_loss)
    assert (result.output_dir / "model.safetensors").is_file()
    assert not (result.output_dir / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(result.output_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    changed = [
        name
        for (name, p), (_, q) in zip(model.named_parameters(), base.named_parameters(), strict=True)
        if not torch.equal(p, q)
    ]
    assert changed  # every weight is trainable: the full model moved
    ids = torch.tensor([[5, 17, 230]])
    assert model.generate(ids, max_new_tokens=3, min_new_tokens=3, do_sample=False).shape == (1, 6)
