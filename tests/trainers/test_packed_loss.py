"""Packed rows train exactly as the rows they hold: same loss, and no segment sees another (CPU, tiny model).

The rows are rendered by dataforge (demo tokenizer), packed by `dataforge.pack`, and fed through trl's own
padding-free path: `SFTConfig(padding_free=True, packing=False, max_length=None,
dataset_kwargs={"skip_prepare_dataset": True})`, whose collator concatenates a batch into one sequence,
rebuilds `position_ids` from `seq_lengths`, and sends no attention mask. Which attention backends then keep
segments apart (transformers 5.24, torch 2.13, CPU):

* `eager`, `sdpa`: isolated. transformers finds the segments from the `position_ids` resets
  (`masking_utils.find_packed_sequence_indices`) and builds a block-diagonal causal mask — but only when no KV
  cache is passed: a model called with its default `use_cache=True` creates one and attends across segments
  (`test_a_kv_cache_lets_segments_attend_to_each_other`). trl's `SFTTrainer.compute_loss` passes
  `use_cache=False`, so training through trl is isolated.
* `flex_attention`: NOT reliable on CPU. Probed on 2-layer Llamas: packed rows of 140+ tokens gave a segment
  logits off by 0.12, or NaN, against the same segment alone (e.g. segments 50+40+30+8, 100+40), while short
  rows matched; it is also ~60x slower here. Not tested below; do not train packed rows with it on CPU.
* `flash_attention_2` / `_3`: isolate through `cu_seq_lens` / `position_ids` (varlen kernels); GPU only, not
  installed here, so not checked by these tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from training_setup import FAST_ARGS, LORA, REPO, TOKENIZER, demo_recipe, write_recipe

from builders import chat
from dataforge import pack as P
from dataforge.render.engine import RenderOptions, render_rows
from dataforge.render.target import load_target

torch = pytest.importorskip("torch", reason="the train extra (torch, transformers, trl) runs the model")
pytestmark = pytest.mark.slow
BACKENDS = ("eager", "sdpa")  # flex_attention: see the module docstring
TOLERANCE = 1e-5  # float32 on CPU: the packed and unpacked sums differ only by summation order


def conversations() -> list[dict[str, Any]]:
    """Eight short chats of different lengths (some multi-turn), as the render stage reads them."""
    rows = []
    for i in range(8):
        turns = [("user", f"Question {i}: what is {i} plus {i * 3}?"), ("assistant", f"It is {i * 4}." * (1 + i % 3))]
        if i % 2:
            turns += [("user", "And doubled?"), ("assistant", f"Then {i * 8}, since {i * 4} twice is {i * 8}.")]
        rows.append(chat("s", i, *turns, system="Be brief." if i % 3 == 0 else None).to_row())
    return rows


@pytest.fixture(scope="module")
def rendered() -> pa.Table:
    target = load_target("demo-chatml", str(TOKENIZER), REPO)
    result = render_rows(conversations(), target, RenderOptions(max_length=256))
    assert result.problems == []
    return result.table.select(["id", "input_ids", "labels"])


@pytest.fixture(scope="module")
def packed(rendered: pa.Table) -> P.Packed:
    longest = max(len(ids) for ids in rendered["input_ids"].to_pylist())
    result = P.pack(rendered, max_length=2 * longest, strategy="bfd")
    assert result.stats["rows_per_bin"]["max"] >= 2  # bins really hold several rows
    return result


def load(model_dir: Path, backend: str) -> Any:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation=backend, dtype=torch.float32)
    return model.eval()


def unpacked_batch(rendered: pa.Table, pad: int) -> dict[str, Any]:
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    rows = rendered.select(["input_ids", "labels"]).to_pylist()
    return DataCollatorForLanguageModeling(pad_token_id=pad)(rows)


def sft_trainer(model: Any, tokenizer: Any, packed: P.Packed, out: Path) -> Any:
    """trl's SFTTrainer set up for pre-packed rows the way `dataforge train` hands them over."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    config = SFTConfig(
        output_dir=str(out),
        padding_free=True,
        packing=False,
        max_length=None,  # trl refuses padding_free without packing when max_length is set: rows are packed already
        dataset_kwargs={"skip_prepare_dataset": True},
        per_device_train_batch_size=packed.table.num_rows,
        report_to=[],
        use_cpu=True,
    )
    dataset = Dataset.from_dict(packed.table.select(["input_ids", "labels", "seq_lengths"]).to_pydict())
    return SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)


@pytest.mark.parametrize("backend", BACKENDS)
def test_packed_loss_equals_unpacked_loss(
    backend: str, tiny_model: Path, rendered: pa.Table, packed: P.Packed, tmp_path
):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = load(tiny_model, backend)
    trainer = sft_trainer(model, tokenizer, packed, tmp_path)
    batch = next(iter(trainer.get_train_dataloader()))
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1  # one padding-free sequence
    with torch.no_grad():
        packed_loss = trainer.compute_loss(model, batch)
        loose = unpacked_batch(rendered, tokenizer.pad_token_id)
        unpacked_loss = model(**loose, use_cache=False).loss
    assert abs(float(packed_loss) - float(unpacked_loss)) <= TOLERANCE * float(unpacked_loss)


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_segment_sees_only_itself(backend: str, tiny_model: Path, rendered: pa.Table, packed: P.Packed):
    """Every segment's logits inside a packed row equal that row's logits alone: no attention across rows."""
    model = load(tiny_model, backend)
    by_id = {row["id"]: row["input_ids"] for row in rendered.to_pylist()}
    worst = 0.0
    with torch.no_grad():
        for row in packed.table.to_pylist():
            logits = model(
                input_ids=torch.tensor([row["input_ids"]]),
                position_ids=torch.tensor([row["position_ids"]]),
                use_cache=False,
            ).logits[0]
            start = 0
            for row_id, length in zip(row["row_ids"], row["seq_lengths"], strict=True):
                alone = model(input_ids=torch.tensor([by_id[row_id]]), use_cache=False).logits[0]
                worst = max(worst, float((logits[start : start + length] - alone).abs().max()))
                start += length
    assert worst < 1e-4


def test_a_kv_cache_lets_segments_attend_to_each_other(tiny_model: Path, packed: P.Packed):
    """The hazard the hand-off avoids: with the model's default use_cache=True, transformers builds no
    packed-sequence mask, so later segments see earlier ones (this is why the check above is not vacuous)."""
    model = load(tiny_model, "sdpa")
    row = max(packed.table.to_pylist(), key=lambda r: len(r["seq_lengths"]))
    inputs = {"input_ids": torch.tensor([row["input_ids"]]), "position_ids": torch.tensor([row["position_ids"]])}
    with torch.no_grad():
        isolated = model(**inputs, use_cache=False).logits
        cached = model(**inputs).logits
    first = row["seq_lengths"][0]
    assert torch.allclose(isolated[0, :first], cached[0, :first], atol=1e-5)  # the first segment is unaffected
    assert float((isolated[0, first:] - cached[0, first:]).abs().max()) > 1e-3


def test_trl_collator_rebuilds_the_packed_positions(tiny_model: Path, packed: P.Packed, tmp_path):
    """trl drops the `position_ids` column (not a signature column) and rebuilds the same from `seq_lengths`."""
    from transformers import AutoTokenizer

    trainer = sft_trainer(load(tiny_model, "sdpa"), AutoTokenizer.from_pretrained(tiny_model), packed, tmp_path)
    batch = next(iter(trainer.get_train_dataloader()))
    rows = packed.table.to_pylist()
    order = np.concatenate([r["position_ids"] for r in rows])
    # the sampler may shuffle packed rows; the multiset of (position, label) pairs must match ours exactly
    ours = sorted(zip(order.tolist(), np.concatenate([r["labels"] for r in rows]).tolist(), strict=True))
    theirs = sorted(zip(batch["position_ids"][0].tolist(), batch["labels"][0].tolist(), strict=True))
    assert ours == theirs
    assert int(batch["cu_seq_lens_q"][-1]) == sum(r["n_tokens"] for r in rows)
    assert len(batch["cu_seq_lens_q"]) == sum(len(r["seq_lengths"]) for r in rows) + 1


# ------------------------------------------------------------------------------ `dataforge train` on packed rows


def test_train_uses_the_packed_rows_padding_free(tmp_path_factory, tiny_model: Path):
    """With `pack:` on the target, `dataforge train` trains trl on the packed rows (padding-free, no re-packing),
    records them in training.json, and tells each other trainer how to pack the same rows."""
    import json
    import math

    import yaml

    from dataforge.trainers.run import train

    root = tmp_path_factory.mktemp("train-packed")
    recipe = demo_recipe(root / "build", {"method": "sft", "model": str(tiny_model), "peft": LORA, "args": FAST_ARGS})
    recipe["render"][0]["pack"] = {"max_length": 512, "strategy": "bfd"}
    result = train(write_recipe(root / "mix.yaml", recipe))
    assert result.training_loss is not None and math.isfinite(result.training_loss)
    record = json.loads((result.output_dir / "training.json").read_text())
    assert record["data"]["packed"]["strategy"] == "bfd" and record["data"]["packed"]["max_length"] == 512
    assert record["data"]["files"]["rendered/demo-chatml/packed_train.parquet"]
    handoff = result.output_dir / "handoff"
    factory = yaml.safe_load((handoff / "llamafactory" / "train.yaml").read_text())
    # pack length + 1, rounded up to a multiple of 8: LLaMA-Factory's collator pads input_ids to a multiple of 8
    # but never position_ids, so every packed row is written at that length already
    assert (factory["packing"], factory["neat_packing"], factory["cutoff_len"]) == (True, True, 520)
    axolotl = yaml.safe_load((handoff / "axolotl" / "config.yaml").read_text())
    assert (axolotl["sample_packing"], axolotl["flash_attention"], axolotl["sequence_len"]) == (True, True, 512)
    swift = (handoff / "ms-swift" / "train.sh").read_text()
    assert "--packing true" in swift and "--attn_impl flash_attn" in swift and "--max_length 512" in swift
    assert (
        "# attention: neat_packing builds a segment-id attention mask"
        in (handoff / "llamafactory" / "train.yaml").read_text()
    )


def test_the_readme_packed_target_is_a_valid_render_target():
    import re

    import yaml

    from dataforge.recipe import Pack, RenderTarget

    text = (REPO / "README.md").read_text(encoding="utf-8").split("### Packed SFT\n", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    target = RenderTarget.model_validate(yaml.safe_load(block)["render"][0])
    assert target.pack == Pack(max_length=1024, strategy="bfd", drop_longer=True)


def test_train_args_that_would_undo_the_packing_are_refused(tmp_path):
    from trl import SFTConfig

    from dataforge.errors import RecipeError
    from dataforge.trainers.config import trl_config

    recipe = demo_recipe(tmp_path / "build", {"method": "sft", "model": "m", "args": {"packing": True}})
    recipe["render"][0]["pack"] = {"max_length": 512}
    loaded = write_recipe(tmp_path / "mix.yaml", recipe)
    with pytest.raises(RecipeError) as caught:
        trl_config(SFTConfig, loaded, loaded.recipe.render[0], tmp_path / "out")
    assert caught.value.problems == [
        "train.args.packing: render target 'demo-chatml' packs its rows (`pack:`), and dataforge sets packing for "
        "trl's padding-free training of them; remove it"
    ]
