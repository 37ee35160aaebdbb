"""SFT hand-offs carry the build's own tokens: what each tool loads (read back with the real `datasets` library)
is exactly the rendered rows, packed as dataforge packed them for LLaMA-Factory, unpacked for axolotl; ms-swift
(which re-encodes messages) gets the export, whose messages carry each turn's weight; per-turn loss in the chat
exports is carried where the format can say it and counted where not."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from training_setup import LORA, demo_recipe, write_recipe

from dataforge.exports import axolotl
from dataforge.trainers.build import KINDS, target_spec, training_data
from dataforge.trainers.handoff import write_handoff

pytestmark = pytest.mark.slow
PACK = 320


def _weighted_source(path: Path) -> None:
    """Multi-turn conversations whose first answer weighs 0.5, whose second does not train, third weighs 1."""
    lines = []
    for i in range(40):
        messages = [
            {"role": "user", "content": f"Question {i}: what is {i} plus {i}?"},
            {"role": "assistant", "content": f"It is {2 * i}.", "weight": 0.5},
            {"role": "user", "content": "And times two?"},
            {"role": "assistant", "content": f"That makes {4 * i}.", "weight": 0},
            {"role": "user", "content": "Thanks."},
            {"role": "assistant", "content": "You are welcome.", "weight": 1},
        ]
        lines.append(json.dumps({"messages": messages}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _recipe(variant: str, root: Path, model: Path) -> dict[str, Any]:
    spec = {"method": "sft", "model": str(model), "peft": LORA, "args": {"max_steps": 3}}
    recipe = demo_recipe(root / "build", spec)
    if variant == "packed":
        recipe["render"][0]["pack"] = {"max_length": PACK}
    elif variant == "last":
        recipe["render"][0]["train_on"] = "last"
    else:  # weighted
        _weighted_source(root / "weighted.jsonl")
        recipe["name"] = "weighted"
        recipe["sources"] = [
            {"name": "w", "from": str(root / "weighted.jsonl"), "format": "openai", "allow_outside_root": True}
        ]
        recipe["split"] = {"validation": 0.2}
        recipe.pop("checks", None)
        recipe.pop("filters", None)
        recipe.pop("mix", None)
        recipe["render"][0]["train_on"] = "weighted"
    return recipe


@pytest.fixture(scope="session")
def handed(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Callable[[str], Any]:
    """`handed(variant)`: (loaded recipe, TrainingData, hand-off folder) of `dataforge train --handoff-only` on
    the demo build packed to 320 tokens (`packed`), unpacked with train_on: last (`last`), or on weighted
    multi-turn rows with train_on: weighted (`weighted`)."""
    from dataforge.trainers.run import train

    runs: dict[str, Any] = {}

    def run(variant: str) -> Any:
        if variant not in runs:
            root = tmp_path_factory.mktemp(f"handoff-{variant}")
            loaded = write_recipe(root / "mix.yaml", _recipe(variant, root, tiny_model))
            result = train(loaded, handoff_only=True)
            data = training_data(loaded, target_spec(loaded, loaded.recipe.train))
            runs[variant] = (loaded, data, result.output_dir / "handoff")
        return runs[variant]

    return run


def rendered(data: Any, split: str) -> list[dict[str, Any]]:
    return data.rendered_rows(split, KINDS["sft"]).to_pylist()


def swift_options(script: Path) -> dict[str, list[str]]:
    words = shlex.split(script.read_text().replace("\\\n", " "), comments=True)
    options: dict[str, list[str]] = {}
    for word in words:
        if word.startswith("--"):
            current = options.setdefault(word[2:], [])
        elif options:
            current.append(word)
    return options


# ------------------------------------------------------------------------------------------------ LLaMA-Factory


def test_llamafactory_loads_the_packed_rows_in_its_neat_packing_layout(handed):
    from datasets import load_from_disk

    _, data, folder = handed("packed")
    config = yaml.safe_load((folder / "llamafactory" / "train.yaml").read_text())
    assert (config["packing"], config["neat_packing"]) == (True, True)
    # Every row as long as cutoff_len, past the pack length and a multiple of LLaMA-Factory's collator's 8.
    length = config["cutoff_len"]
    assert length == 328 and length > PACK and length % 8 == 0
    loaded = load_from_disk(config["tokenized_path"])
    assert sorted(loaded) == ["train", "validation"]
    for split, name in (("train", "train"), ("val", "validation")):
        by_id = {row["id"]: row for row in rendered(data, split)}
        packed = data.packed[split].to_pylist()
        rows = loaded[name]
        assert set(rows.column_names) == {"input_ids", "attention_mask", "position_ids", "labels"}
        assert len(rows) == len(packed)
        seen: list[str] = []
        for row, bin_ in zip(rows, packed, strict=True):
            mask, ids, labels, positions = row["attention_mask"], row["input_ids"], row["labels"], row["position_ids"]
            assert len(ids) == len(mask) == len(labels) == len(positions) == length
            start = 0
            for number, (row_id, size) in enumerate(zip(bin_["row_ids"], bin_["seq_lengths"], strict=True), 1):
                end = start + size
                source = by_id[row_id]
                # Unpacking a segment gives back its rendered row; only label 0 differs (-100 at a segment start).
                assert mask[start:end] == [number] * size
                assert ids[start:end] == source["input_ids"]
                assert labels[start] == -100 and labels[start + 1 : end] == source["labels"][1:]
                assert positions[start:end] == list(range(size))
                seen.append(row_id)
                start = end
            pad = length - start
            assert pad >= 1  # LLaMA-Factory's own packed rows always end in padding
            assert mask[start:] == [0] * pad and labels[start:] == [-100] * pad and positions[start:] == [0] * pad
            assert ids[start:] == [0] * pad  # the pad id dataforge train passes none of: 0, masked out anyway
        assert sorted(seen) == sorted(by_id)  # every rendered row in exactly one segment
    text = (folder / "llamafactory" / "train.yaml").read_text()
    assert "# packing: dataforge's own packed rows (" in text and "padded to 328" in text
    assert "# attention: neat_packing builds a segment-id attention mask" in text


def test_llamafactory_takes_the_unpacked_rows_and_keeps_the_chat_export_as_fallback(handed):
    from datasets import load_from_disk

    loaded_recipe, data, folder = handed("last")
    config = yaml.safe_load((folder / "llamafactory" / "train.yaml").read_text())
    assert "packing" not in config and "neat_packing" not in config
    assert config["cutoff_len"] == 160
    assert config["mask_history"] is True  # train_on: last, for the chat-export fallback
    assert config["dataset"] == f"{loaded_recipe.recipe.name}_sft_train"  # LLaMA-Factory requires it
    loaded = load_from_disk(config["tokenized_path"])
    for split, name in (("train", "train"), ("val", "validation")):
        rows = loaded[name]
        assert rows.column_names == ["input_ids", "attention_mask", "labels"]
        expected = rendered(data, split)
        assert [r["input_ids"] for r in rows] == [r["input_ids"] for r in expected]
        assert [r["labels"] for r in rows] == [r["labels"] for r in expected]
        assert all(r["attention_mask"] == [1] * len(r["input_ids"]) for r in rows)
    text = (folder / "llamafactory" / "train.yaml").read_text()
    assert "the labels carry train_on: last" in text


def test_llamafactory_padding_uses_the_given_pad_id_and_the_rows_are_byte_identical(handed, tmp_path):
    loaded, data, _ = handed("packed")
    first, second = tmp_path / "a", tmp_path / "b"
    for where in (first, second):
        write_handoff(loaded, loaded.recipe.train, data, None, where, pad_token_id=7)
    from datasets import load_from_disk

    rows = load_from_disk(str(first / "llamafactory" / "tokenized"))["train"]
    for row in rows:
        pad = [i for i, m in enumerate(row["attention_mask"]) if m == 0]
        assert pad and [row["input_ids"][i] for i in pad] == [7] * len(pad)
    for tool, sub in (("llamafactory", "tokenized"), ("axolotl", "data")):
        names = sorted(p.relative_to(first) for p in (first / tool / sub).rglob("*") if p.is_file())
        assert names and names == sorted(p.relative_to(second) for p in (second / tool / sub).rglob("*") if p.is_file())
        for name in names:
            assert (first / name).read_bytes() == (second / name).read_bytes(), name


# ------------------------------------------------------------------------------------------------------ axolotl


@pytest.mark.parametrize("variant", ["packed", "last"])
def test_axolotl_trains_the_rendered_rows_in_its_pre_tokenized_form(handed, variant):
    from datasets import load_dataset

    _, data, folder = handed(variant)
    config = yaml.safe_load((folder / "axolotl" / "config.yaml").read_text())
    for key, split in (("datasets", "train"), ("test_datasets", "val")):
        (block,) = config[key]
        assert "type" not in block and block["ds_type"] == "parquet"  # no type: used as tokenized
        rows = load_dataset("parquet", data_files=block["path"], split="train")
        assert rows.column_names == ["input_ids", "attention_mask", "labels"]  # exactly axolotl's columns
        expected = rendered(data, split)
        assert [r["input_ids"] for r in rows] == [r["input_ids"] for r in expected]
        assert [r["labels"] for r in rows] == [r["labels"] for r in expected]
        assert all(set(r["attention_mask"]) == {1} for r in rows)
    if variant == "packed":
        assert (config["sample_packing"], config["sequence_len"], config["flash_attention"]) == (True, PACK, True)
        text = (folder / "axolotl" / "config.yaml").read_text()
        assert "# packing: predicted 96.78% efficiency (bfd) at 320 tokens" in text
    else:
        assert "sample_packing" not in config and config["sequence_len"] == 160


# ----------------------------------------------------------------------------------------------------- ms-swift


@pytest.mark.parametrize("variant", ["packed", "last", "weighted"])
def test_ms_swift_trains_the_export_with_the_targets_turn_mode(handed, variant):
    _, _, folder = handed(variant)
    script = folder / "ms-swift" / "train.sh"
    options = swift_options(script)
    # ms-swift encodes messages itself (no pre-tokenized input): the export, with the mode as ms-swift says it.
    assert Path(options["dataset"][0]).parent.name == "sft" and "cached_dataset" not in options
    assert options.get("loss_scale") == (["last_round"] if variant == "last" else None)
    assert not (folder / "ms-swift" / "data").exists()
    packs = {k: options.get(k) for k in ("packing", "attn_impl", "max_length")}
    if variant == "packed":
        assert packs == {"packing": ["true"], "attn_impl": ["flash_attn"], "max_length": [str(PACK)]}
        assert "# packing: predicted 96.78% efficiency (bfd) at 320 tokens" in script.read_text()
    else:
        assert packs == {"packing": None, "attn_impl": None, "max_length": ["160"]}
    assert "# data: the ms-swift export (chat messages; ms-swift takes no pre-tokenized rows" in script.read_text()


# ------------------------------------------------------------------------------------------------- loss weights


def test_loss_weights_are_named_where_the_tool_cannot_take_them_and_carried_where_it_can(handed):
    from datasets import load_dataset

    _, data, folder = handed("weighted")
    rendered_train = rendered(data, "train")
    weighted = sum(
        1
        for row in rendered_train + rendered(data, "val")
        for label, weight in zip(row["labels"], row["loss_weights"], strict=True)
        if label != -100 and weight != 1.0
    )
    assert weighted > 0
    # weight 0 is -100 in the pre-tokenized labels; other weights LLaMA-Factory and axolotl cannot take: said.
    for tool, name in (("llamafactory", "train.yaml"), ("axolotl", "config.yaml")):
        text = (folder / tool / name).read_text()
        assert f"# loss weights: {weighted} trained tokens weigh other than 1 (loss_weights); {tool} takes no" in text
    block = yaml.safe_load((folder / "axolotl" / "config.yaml").read_text())["datasets"][0]
    labels = [r["labels"] for r in load_dataset("parquet", data_files=block["path"], split="train")]
    assert labels == [r["labels"] for r in rendered_train]
    assert pq.read_schema(block["path"]).names == ["input_ids", "attention_mask", "labels"]
    # ms-swift gets every turn's weight in its messages: 0.5 as loss_scale, 0 as loss: false, 1 as the default.
    options = swift_options(folder / "ms-swift" / "train.sh")
    (path,) = options["dataset"]
    for line in Path(path).read_text().splitlines():
        answers = [m for m in json.loads(line)["messages"] if m["role"] == "assistant"]
        assert [{k: m[k] for k in ("loss", "loss_scale") if k in m} for m in answers] == [
            {"loss_scale": 0.5},
            {"loss": False},
            {},
        ]


# ------------------------------------------------------------------------ per-turn loss in the chat exports

weights = st.lists(st.sampled_from([None, 0, 1, 0.5, 2.0]), min_size=1, max_size=4)


def _conversation(turn_weights: list[float | None], user_weight: float | None = None) -> dict[str, Any]:
    from dataforge.record import Example, Kind, Message, Provenance, Role

    messages: list[Message] = []
    for i, w in enumerate(turn_weights):
        messages += [Message(Role.USER, f"q{i}", weight=user_weight), Message(Role.ASSISTANT, f"a{i}", weight=w)]
    return Example(id="x:0", kind=Kind.SFT, provenance=Provenance("x", "x.jsonl", 0), messages=tuple(messages)).to_row()


def _sft_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


@settings(max_examples=60, deadline=None)
@given(turn_weights=weights, user_weight=st.sampled_from([None, 1]))
def test_axolotl_export_carries_turn_weights_as_training_flags_and_counts_the_rest(turn_weights, user_weight):
    from dataforge.exports import export

    out = export("axolotl", {"train": [_conversation(turn_weights, user_weight)]}, "d")
    (record,) = _sft_lines(out.files["sft/train.jsonl"])
    answers = [m for m in record["messages"] if m["role"] == "assistant"]
    # Only weight 0 needs the flag (it overrides roles_to_train); other weights train as any assistant turn.
    assert [m.get("training") for m in answers] == [False if w == 0 else None for w in turn_weights]
    assert all("weight" not in m for m in record["messages"])
    lost = out.losses.get("train", {}).get("sft", {})
    fractional = sum(w not in (None, 0, 1) for w in turn_weights)
    assert lost.get(axolotl.FRACTIONAL, 0) == fractional
    assert lost.get(axolotl.NOT_ASSISTANT, 0) == (len(turn_weights) if user_weight is not None else 0)
    block = yaml.safe_load(out.files["axolotl-sft.yaml"])["datasets"][0]
    assert block.get("message_field_training") == ("training" if 0 in turn_weights else None)


@settings(max_examples=60, deadline=None)
@given(turn_weights=weights)
def test_ms_swift_export_carries_turn_weights_as_its_loss_fields(turn_weights):
    from dataforge.exports import export

    out = export("ms-swift", {"train": [_conversation(turn_weights)]}, "d")
    (record,) = _sft_lines(out.files["sft/train.jsonl"])
    answers = [m for m in record["messages"] if m["role"] == "assistant"]
    # weight 1 writes nothing: ms-swift's --loss_scale strategy decides, as train_on does (true would override it)
    expected = [{} if w in (None, 1) else {"loss": False} if w == 0 else {"loss_scale": w} for w in turn_weights]
    assert [{k: m[k] for k in ("loss", "loss_scale") if k in m} for m in answers] == expected
    assert "message weights" not in out.losses.get("train", {}).get("sft", {})  # carried, not lost


def test_ms_swift_export_puts_the_turns_loss_field_on_its_tool_calls_too():
    from dataforge.exports import export
    from dataforge.record import Example, Kind, Message, Provenance, Role, ToolCall

    messages = (
        Message(Role.USER, "q"),
        Message(Role.ASSISTANT, None, tool_calls=(ToolCall("f", {"x": 1}),), weight=0.0),
        Message(Role.TOOL, "r"),
        Message(Role.ASSISTANT, "a", weight=0.25),
    )
    row = Example(id="x:0", kind=Kind.SFT, provenance=Provenance("x", "x.jsonl", 0), messages=messages).to_row()
    (record,) = _sft_lines(export("ms-swift", {"train": [row]}, "d").files["sft/train.jsonl"])
    assert [(m["role"], m.get("loss"), m.get("loss_scale")) for m in record["messages"]] == [
        ("user", None, None),
        ("tool_call", False, None),
        ("tool_response", None, None),
        ("assistant", None, 0.25),
    ]


def test_ms_swift_hand_off_says_when_the_export_weighs_turns_the_target_trains_at_full_weight(handed, tmp_path):
    loaded, data, _ = handed("weighted")
    # The same build, as a target that does not weigh (train_on: all): ms-swift would still apply loss_scale.
    unweighted = type(data)(**{**data.__dict__, "spec": data.spec.model_copy(update={"train_on": "all"})})
    write_handoff(loaded, loaded.recipe.train, unweighted, None, tmp_path)
    text = (tmp_path / "ms-swift" / "train.sh").read_text()
    # 40 conversations (train and val), one turn of weight 0.5 each
    assert "# turn weights: 40 assistant turns carry a loss_scale other than 1 in the export" in text


def test_llamafactory_export_counts_turn_weights_sharegpt_cannot_carry():
    from dataforge.exports import export

    out = export("llamafactory", {"train": [_conversation([0, 1, None])]}, "d")
    assert out.losses["train"]["sft"]["turn weights"] == 2
    (record,) = _sft_lines(out.files["sft_train.jsonl"])
    assert all(set(turn) == {"from", "value"} for turn in record["conversations"])


def test_rows_without_loss_weights_weigh_1_on_their_trained_tokens_beside_weighted_rows():
    import pyarrow as pa

    from dataforge.trainers.handoff import loss_weights

    table = pa.table(
        {
            "input_ids": pa.array([[5, 6, 7], [8, 9], [1, 2, 3, 4]], pa.list_(pa.int32())),
            "labels": pa.array([[-100, 6, 7], [-100, 9], [-100, -100, 3, 4]], pa.list_(pa.int32())),
            "loss_weights": pa.array([[0.0, 0.5, 0.5], None, [0.0, 0.0, 2.0, 2.0]], pa.list_(pa.float32())),
        }
    ).slice(1)  # a slice: offsets that do not start at 0
    assert loss_weights(table).to_pylist() == [[0.0, 1.0], [0.0, 0.0, 2.0, 2.0]]
    assert loss_weights(table.drop_columns(["loss_weights"])) is None
    unweighted = table.set_column(2, "loss_weights", pa.array([None, None], pa.list_(pa.float32())))
    assert loss_weights(unweighted) is None
