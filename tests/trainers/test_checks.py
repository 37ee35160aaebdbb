"""The checks that refuse to start a run: each with its one-line message, before any compute is spent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
import yaml
from training_setup import FAST_ARGS, LORA, REPO, TOKENIZER, demo_recipe, write_recipe

from dataforge.errors import DataError, RecipeError, UsageError
from dataforge.recipe import parse_recipe
from dataforge.render.target import load_target
from dataforge.trainers.build import target_spec, training_data
from dataforge.trainers.checks import check_target
from dataforge.trainers.run import train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build directory for the demo recipes of this module (their stages are shared through its cache)."""
    return tmp_path_factory.mktemp("checks") / "build"


def spec(model: Path | str, **extra) -> dict:
    return {"method": "sft", "model": str(model), "peft": LORA, "args": FAST_ARGS, **extra}


def test_dpo_on_data_without_pairs_exits_1_with_one_line_and_no_traceback(tmp_path, tiny_model):
    recipe = tmp_path / "mix.yaml"
    write_recipe(recipe, demo_recipe(tmp_path / "build", spec(tiny_model, method="dpo")))
    proc = subprocess.run(
        [sys.executable, "-m", "dataforge", "train", str(recipe)],
        capture_output=True,
        text=True,
        env={"COLUMNS": "300", "PATH": "/usr/bin:/bin", "NO_COLOR": "1", "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    rendered = pq.read_table(tmp_path / "build" / "rendered" / "demo-chatml" / "train.parquet")
    assert set(rendered["kind"].to_pylist()) == {"sft"}
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: train.method dpo needs preference pairs (preference rows), but render target 'demo-chatml' has "
        f"none in train (sft: {rendered.num_rows})"
    ]
    assert not (tmp_path / "build" / "train").exists()  # refused before writing anything


def test_too_many_rows_without_trained_tokens_refuse_to_start(tmp_path, tiny_model):
    rows = []
    for i in range(20):
        # Four answers carry weight 0 (OpenAI's "do not train this turn"): nothing in those rows is trained.
        answer = {"role": "assistant", "content": f"Answer number {i}."}
        if i % 5 == 0:
            answer["weight"] = 0
        rows.append({"messages": [{"role": "user", "content": f"Question number {i}?"}, answer]})
    data = tmp_path / "weights.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    recipe = {
        "name": "weights",
        "root": str(REPO),
        # The data lies in the test's folder, outside the repository that is the recipe's root: opted in.
        "sources": [{"name": "w", "from": str(data), "format": "openai", "allow_outside_root": True}],
        "outputs": {"dir": str(tmp_path / "build"), "exports": ["llamafactory"]},
        "render": [{"name": "demo-chatml", "tokenizer": "data/tokenizers/demo-chatml", "max_length": 160}],
        "train": spec(tiny_model),
    }
    with pytest.raises(DataError) as refused:
        train(write_recipe(tmp_path / "mix.yaml", recipe))
    assert str(refused.value).splitlines()[0] == (
        "render target 'demo-chatml': 4 of 20 rows (20.0%) have no trained token (4 dropped as no_trained_tokens, "
        "0 truncated to none); the limit is train.max_untrained_share = 1.0%"
    )
    # A configurable threshold: at 25% the same data passes the checks (here: hand-off files only).
    recipe["train"]["max_untrained_share"] = 0.25
    result = train(write_recipe(tmp_path / "mix.yaml", recipe), handoff_only=True)
    assert result.rows == {"train": 16, "val": 0}
    assert [p.name for p in result.handoff] == ["train.yaml", "dataset_info.json"]
    assert result.skipped_handoff == [
        "axolotl: the build has no axolotl export (add it to outputs.exports)",
        "ms-swift: the build has no ms-swift export (add it to outputs.exports)",
    ]


def test_a_model_whose_tokenizer_differs_from_the_render_target_is_refused(tmp_path, tiny_model, demo_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    other = tmp_path / "other-model"
    AutoModelForCausalLM.from_pretrained(tiny_model).save_pretrained(other)
    tok = AutoTokenizer.from_pretrained(TOKENIZER)
    tok.add_tokens(["<|tool|>"])  # one token more: ids past it would mean something else
    tok.save_pretrained(other)
    loaded = write_recipe(tmp_path / "mix.yaml", demo_recipe(demo_dir, spec(other)))
    with pytest.raises(DataError, match="the model's tokenizer differs from render target 'demo-chatml'"):
        train(loaded)
    assert not (demo_dir / "train" / "sft" / "adapter_config.json").exists()


def test_a_template_other_than_the_one_the_build_rendered_with_is_refused(tmp_path, tiny_model, demo_dir):
    loaded = write_recipe(tmp_path / "mix.yaml", demo_recipe(demo_dir, spec(tiny_model)))
    target_spec_ = target_spec(loaded, loaded.recipe.train)
    data = training_data(loaded, target_spec_)
    target = load_target("demo-chatml", str(TOKENIZER), REPO)
    check_target(target, data)  # the build's own tokenizer and template pass
    data.manifest["render"]["demo-chatml"]["template_digest"] = "0" * 64  # as if rendered with another template
    with pytest.raises(DataError, match="the chat template is not the one the build rendered with"):
        check_target(target, data)


def test_a_model_with_fewer_embeddings_than_tokens_is_refused(tmp_path, demo_dir):
    from transformers import LlamaConfig, LlamaForCausalLM

    small = tmp_path / "small-vocab"
    config = LlamaConfig(
        vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    LlamaForCausalLM(config).save_pretrained(small)  # no tokenizer: the target's is used, and must fit
    loaded = write_recipe(tmp_path / "mix.yaml", demo_recipe(demo_dir, spec(small)))
    with pytest.raises(DataError, match="the tokenizer has 3025 tokens but the model's embedding table only 100"):
        train(loaded)


def test_an_unknown_trl_argument_is_a_recipe_error_with_a_suggestion(tmp_path, tiny_model, demo_dir):
    recipe = demo_recipe(demo_dir, spec(tiny_model, args={"learning_rat": 1e-4}))
    with pytest.raises(RecipeError) as bad:
        train(write_recipe(tmp_path / "mix.yaml", recipe))
    assert bad.value.exit_code == 2
    assert bad.value.problems == [
        "train.args.learning_rat: not an argument of trl's SFTConfig (did you mean `learning_rate`?)"
    ]


@pytest.mark.skipif(torch.cuda.is_available(), reason="QLoRA runs where there is a GPU")
def test_qlora_without_a_gpu_says_so(tmp_path, tiny_model, demo_dir):
    recipe = demo_recipe(demo_dir, spec(tiny_model, peft={"type": "qlora"}))
    with pytest.raises(UsageError, match="train.peft.type qlora needs a CUDA GPU"):
        train(write_recipe(tmp_path / "mix.yaml", recipe))


def test_the_train_section_is_checked_with_the_recipe(tmp_path):
    recipe = demo_recipe(tmp_path / "build", {"method": "orpo", "model": "x", "target": "nope", "peft": {"alpah": 8}})
    with pytest.raises(RecipeError) as bad:
        parse_recipe(yaml.safe_dump(recipe, sort_keys=False), tmp_path / "mix.yaml")
    problems = [p.split(": ", 1)[1] for p in bad.value.problems]
    assert "train.method: Input should be 'sft', 'dpo' or 'kto' (found 'orpo')" in problems
    assert "train.peft.alpah: unknown key (did you mean `alpha`?)" in problems
    assert "train.target: no render target is named 'nope' (demo-chatml)" in problems


def test_a_recipe_without_a_train_section_is_a_usage_error(tmp_path):
    loaded = write_recipe(tmp_path / "mix.yaml", demo_recipe(tmp_path / "build", None))
    with pytest.raises(UsageError, match="the recipe has no `train:` section"):
        train(loaded)


def test_trl_tokenizing_pairs_differently_from_the_build_is_refused(trained):
    from dataforge.trainers import dpo
    from dataforge.trainers.checks import check_trl_tokenization

    loaded, _ = trained("dpo")
    data = training_data(loaded, target_spec(loaded, loaded.recipe.train))
    target = load_target("demo-chatml", str(TOKENIZER), REPO)
    train_set, _ = dpo.datasets(data, target)  # checks a sample of pairs: trl's ids equal the rendered ones
    rendered = data.rendered_rows("train", ("preference",))
    row, ids = train_set[0], rendered["input_ids"][0].as_py()
    check_trl_tokenization([row], [ids], ["pairs:0"], target.tokenizer, "chosen")
    with pytest.raises(DataError, match=r"trl would tokenize pairs:0 differently from the build's rendering"):
        check_trl_tokenization([row], [ids[:-1]], ["pairs:0"], target.tokenizer, "chosen")
    with pytest.raises(DataError):  # the rejected side is not the chosen one
        check_trl_tokenization([row], [ids], ["pairs:0"], target.tokenizer, "rejected")


def test_a_float_argument_written_as_yaml_reads_it_is_a_float(tmp_path, tiny_model):
    from dataforge.trainers import sft
    from dataforge.trainers.config import trl_config

    text = yaml.safe_dump(demo_recipe(tmp_path / "build", spec(tiny_model)), sort_keys=False)
    text += "    weight_decay: 1e-2\n"  # under train.args; YAML 1.1 reads 1e-2 as a string
    loaded = parse_recipe(text, tmp_path / "mix.yaml")
    assert loaded.recipe.train.args["weight_decay"] == "1e-2"
    config = trl_config(sft.config_class(), loaded, loaded.recipe.render[0], tmp_path / "out")
    assert config.weight_decay == 0.01 and config.learning_rate == FAST_ARGS["learning_rate"]
    assert (config.use_cpu, config.bf16, config.max_length, config.seed) == (True, False, 160, 42)


def test_merge_of_a_folder_without_an_adapter_exits_2_with_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "dataforge", "merge", str(tmp_path), "-o", str(tmp_path / "merged")],
        capture_output=True,
        text=True,
        env={"COLUMNS": "300", "PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == f"error: {tmp_path}: not a PEFT adapter folder (no adapter_config.json)"
    assert "Traceback" not in proc.stderr


def test_a_build_that_failed_its_quality_gates_is_not_trained_on(tmp_path, tiny_model):
    recipe = demo_recipe(tmp_path / "build", spec(tiny_model))
    recipe["checks"] = {"min_rows": 1000}  # the demo keeps 234 rows
    with pytest.raises(DataError) as refused:
        train(write_recipe(tmp_path / "mix.yaml", recipe), handoff_only=True)
    message = str(refused.value).splitlines()[0]
    assert message.startswith("the build failed its quality gate min_rows") and "not training on it" in message
    assert not (tmp_path / "build" / "train").exists()
