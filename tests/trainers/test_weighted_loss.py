"""`train_on: weighted`: trl's SFTTrainer trains on `loss_weights` (CPU, the tiny model of conftest.py).

The rows are rendered by dataforge (demo tokenizer, `train_on: weighted`), so `loss_weights` are the build's
own. The weighted trainer's loss is sum(w * CE) over trained tokens / their number: with every weight 1 it is
trl's own loss on the same batch, and with a turn at 0.5 it is that sum computed by hand from the model's
logits — padded, padding-free (rows concatenated) and on packed rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from training_setup import REPO, TOKENIZER

from dataforge import pack as P
from dataforge.record import Example, Kind, Message, Provenance, Role
from dataforge.render.engine import IGNORE, RenderOptions, render_rows
from dataforge.render.target import load_target

torch = pytest.importorskip("torch", reason="the train extra (torch, transformers, trl) runs the model")
pytestmark = pytest.mark.slow
TOLERANCE = 1e-5  # float32 on CPU: sums in another order


def conversations(half: bool) -> list[dict[str, Any]]:
    """Six chats, some with two assistant turns; with `half`, every second row's first reply has weight 0.5
    and one row's second reply weight 2 (a reply may count more than one)."""
    rows = []
    for i in range(6):
        first = 0.5 if half and i % 2 == 0 else None
        messages = [
            Message(Role.USER, f"Question {i}: what is {i} plus {i * 3}?"),
            Message(Role.ASSISTANT, f"It is {i * 4}." * (1 + i % 3), weight=first),
        ]
        if i % 3 != 1:
            second = 2.0 if half and i == 3 else None
            messages += [Message(Role.USER, "And doubled?"), Message(Role.ASSISTANT, f"Then {i * 8}.", weight=second)]
        rows.append(
            Example(f"s:{i}", Kind.SFT, Provenance("s", "s.jsonl", i, i + 1), messages=tuple(messages)).to_row()
        )
    return rows


def rendered(half: bool) -> pa.Table:
    target = load_target("demo-chatml", str(TOKENIZER), REPO)
    result = render_rows(conversations(half), target, RenderOptions(max_length=256, train_on="weighted"))
    assert result.problems == []
    return result.table.select(["id", "input_ids", "labels", "loss_weights"])


def load(model_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager", dtype=torch.float32).eval()


def make_trainer(model: Any, tokenizer: Any, table: pa.Table, out: Path, weighted: bool, padding_free: bool) -> Any:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from dataforge.trainers.sft import weighted_trainer_class

    columns = ["input_ids", "labels", *(["seq_lengths"] if "seq_lengths" in table.column_names else [])]
    config = SFTConfig(
        output_dir=str(out),
        padding_free=padding_free,
        packing=False,
        max_length=None if padding_free else 256,
        dataset_kwargs={"skip_prepare_dataset": True} if padding_free else None,
        per_device_train_batch_size=table.num_rows,
        report_to=[],
        use_cpu=True,
        shuffle_dataset=False,
    )
    dataset = Dataset.from_dict(table.select([*columns, *(["loss_weights"] if weighted else [])]).to_pydict())
    cls = weighted_trainer_class() if weighted else SFTTrainer
    return cls(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)


def by_hand(model: Any, table: pa.Table) -> float:
    """sum(w * CE) / trained tokens, each row run alone through the model: CE from log_softmax of its logits."""
    total, count = 0.0, 0
    with torch.no_grad():
        for row in table.to_pylist():
            logits = model(input_ids=torch.tensor([row["input_ids"]]), use_cache=False).logits[0].double()
            logp = torch.log_softmax(logits[:-1], dim=-1)
            for i, (label, weight) in enumerate(zip(row["labels"][1:], row["loss_weights"][1:], strict=True)):
                if label != IGNORE:
                    total += weight * float(-logp[i, label])
                    count += 1
    return total / count


def one_batch_loss(trainer: Any, model: Any) -> float:
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        return float(trainer.compute_loss(model, batch))


def test_rendered_weights_are_the_turn_weights():
    """The fixture rows really hold weights other than 1 on trained tokens and 0 elsewhere."""
    rows = rendered(True).to_pylist()
    row0 = rows[0]
    trained = [w for label, w in zip(row0["labels"], row0["loss_weights"], strict=True) if label != IGNORE]
    assert set(trained) == {0.5, 1.0} and trained[0] == 0.5 and trained[-1] == 1.0
    assert all(w == 0.0 for label, w in zip(row0["labels"], row0["loss_weights"], strict=True) if label == IGNORE)
    assert 2.0 in rows[3]["loss_weights"]


@pytest.mark.parametrize("padding_free", [False, True])
def test_weights_of_one_give_trls_own_loss(tiny_model: Path, tmp_path: Path, padding_free: bool):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = load(tiny_model)
    table = rendered(False)
    assert {w for ws in table["loss_weights"].to_pylist() for w in ws} == {0.0, 1.0}
    ours = one_batch_loss(make_trainer(model, tokenizer, table, tmp_path / "w", True, padding_free), model)
    theirs = one_batch_loss(make_trainer(model, tokenizer, table, tmp_path / "t", False, padding_free), model)
    assert abs(ours - theirs) <= TOLERANCE * theirs


@pytest.mark.parametrize("padding_free", [False, True])
def test_a_half_weight_turn_gives_the_hand_computed_loss(tiny_model: Path, tmp_path: Path, padding_free: bool):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = load(tiny_model)
    table = rendered(True)
    trainer = make_trainer(model, tokenizer, table, tmp_path, True, padding_free)
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["loss_weights"].shape == batch["labels"].shape
    assert bool(((batch["loss_weights"] != 0) == (batch["labels"] != IGNORE)).all())
    ours = one_batch_loss(trainer, model)
    expected = by_hand(model, table)
    assert abs(ours - expected) <= TOLERANCE * expected
    plain = one_batch_loss(make_trainer(model, tokenizer, table, tmp_path / "t", False, padding_free), model)
    assert abs(ours - plain) > 1e-3  # the weights changed the loss (the test is not vacuous)


def test_packed_rows_keep_their_weights_in_the_loss(tiny_model: Path, tmp_path: Path):
    """Packed rows (dataforge.pack, padding-free through trl) give the same weighted loss as the rows alone."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = load(tiny_model)
    table = rendered(True)
    longest = max(len(ids) for ids in table["input_ids"].to_pylist())
    packed = P.pack(table, max_length=2 * longest, strategy="bfd")
    assert packed.stats["rows_per_bin"]["max"] >= 2
    assert "loss_weights" in packed.table.column_names, "dataforge.pack must carry loss_weights"
    trainer = make_trainer(model, tokenizer, packed.table, tmp_path, True, True)
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
    ours = one_batch_loss(trainer, model)
    expected = by_hand(model, table)
    assert abs(ours - expected) <= TOLERANCE * expected


def test_dft_loss_is_refused_with_weights(tiny_model: Path, tmp_path: Path):
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig

    from dataforge.trainers.sft import weighted_trainer_class

    table = rendered(True)
    config = SFTConfig(output_dir=str(tmp_path), loss_type="dft", report_to=[], use_cpu=True, max_length=256)
    with pytest.raises(ValueError, match="loss_type nll"):
        weighted_trainer_class()(
            model=load(tiny_model),
            args=config,
            train_dataset=Dataset.from_dict(table.select(["input_ids", "labels", "loss_weights"]).to_pydict()),
            processing_class=AutoTokenizer.from_pretrained(tiny_model),
        )


@pytest.mark.parametrize("packed", [False, True])
def test_dataforge_train_uses_the_weights_of_a_weighted_target(tmp_path_factory, tiny_model: Path, packed: bool):
    """`dataforge train` on a `train_on: weighted` target (rows as rendered, or packed) hands trl the
    `loss_weights` and the weighted trainer, and training.json says so."""
    import json
    import math

    from training_setup import FAST_ARGS, LORA, demo_recipe, write_recipe

    from dataforge.recipe import load_recipe
    from dataforge.trainers import sft
    from dataforge.trainers.build import target_spec, training_data
    from dataforge.trainers.run import train

    root = tmp_path_factory.mktemp("train-weighted")
    recipe = demo_recipe(root / "build", {"method": "sft", "model": str(tiny_model), "peft": LORA, "args": FAST_ARGS})
    recipe["render"][0]["train_on"] = "weighted"
    if packed:
        recipe["render"][0]["pack"] = {"max_length": 512, "strategy": "bfd"}
    loaded = write_recipe(root / "mix.yaml", recipe)
    result = train(loaded)
    assert result.training_loss is not None and math.isfinite(result.training_loss)
    record = json.loads((result.output_dir / "training.json").read_text())
    assert record["data"]["train_on"] == "weighted"
    assert record["loss"] == {
        "loss_weights": True,
        "normalisation": "sum(loss_weights * cross_entropy) / trained tokens",
    }
    loaded = load_recipe(root / "mix.yaml")
    data = training_data(loaded, target_spec(loaded, loaded.recipe.train))
    train_set, _ = sft.datasets(data, None)
    columns = ["input_ids", "labels", *(["seq_lengths"] if packed else []), "loss_weights"]
    assert train_set.column_names == columns
    first = train_set[0]
    assert [w != 0 for w in first["loss_weights"]] == [label != IGNORE for label in first["labels"]]


def test_the_collator_pads_and_cuts_the_weights_like_the_labels():
    """Padding: weights 0 where trl pads labels with -100; a row trl truncated to max_length (overflow: keep)
    has its weights cut from the same end (`truncation_mode`)."""
    from dataforge.trainers.sft import weighted_collator_class

    examples = [
        {"input_ids": [5, 6, 7], "labels": [-100, 6, 7], "loss_weights": [0.0, 0.5, 0.5, 2.0]},  # cut to 3
        {"input_ids": [8, 9], "labels": [-100, 9], "loss_weights": [0.0, 2.0]},
    ]
    start = weighted_collator_class()(pad_token_id=0)(examples)
    assert start["loss_weights"].tolist() == [[0.0, 0.5, 0.5], [0.0, 2.0, 0.0]]
    assert start["labels"].tolist() == [[-100, 6, 7], [-100, 9, -100]]
    end = weighted_collator_class()(pad_token_id=0, truncation_mode="keep_end")(examples)
    assert end["loss_weights"].tolist() == [[0.0, 0.5, 2.0], [0.0, 2.0, 0.0]]
    flat = weighted_collator_class()(pad_token_id=0, padding_free=True)(examples)
    assert flat["loss_weights"].tolist() == [[0.0, 0.5, 0.5, 0.0, 2.0]]  # 0 at each row's start
