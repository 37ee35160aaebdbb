"""Trainer exports: every file a description names exists and holds the columns it says, and the data reads
back into the same canonical content (except what the export reports it could not carry)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from dataforge.checking import check_files
from dataforge.engine.runner import run
from dataforge.exports import export, export_names
from dataforge.reasoning import apply_policy
from dataforge.recipe import load_recipe
from dataforge.record import Example, Kind, Message, Provenance, Role, ToolCall
from dataforge.stages.write import write_build
from project import RECIPE, make_project

WEATHER = {
    "name": "weather",
    "description": "Current weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def ex(i: int, kind: Kind, *messages: Message, **more: Any) -> dict[str, Any]:
    return Example(
        id=f"s:{i}", kind=kind, provenance=Provenance("s", "s.jsonl", i, i + 1), messages=tuple(messages), **more
    ).to_row()


def rows() -> list[dict[str, Any]]:
    system, user = Message(Role.SYSTEM, "Be brief."), Message(Role.USER, "Weather in Oslo?")
    return [
        ex(
            0,
            Kind.SFT,
            system,
            user,
            Message(Role.ASSISTANT, None, tool_calls=(ToolCall("weather", {"city": "Oslo"}),)),
            Message(Role.TOOL, '{"temp": -3}'),
            Message(Role.ASSISTANT, "It is -3 °C.", reasoning="The tool says -3."),
            tools=[WEATHER],
        ),
        ex(1, Kind.SFT, Message(Role.USER, "2+2?"), Message(Role.ASSISTANT, "4")),
        ex(
            2,
            Kind.PREFERENCE,
            system,
            Message(Role.USER, "Capital of Norway?"),
            chosen=(Message(Role.ASSISTANT, "Oslo."),),
            rejected=(Message(Role.ASSISTANT, "Bergen."),),
        ),
        ex(3, Kind.KTO, Message(Role.USER, "Say hi"), Message(Role.ASSISTANT, "Hi!"), label=True),
        ex(4, Kind.KTO, Message(Role.USER, "Say hi"), Message(Role.ASSISTANT, "Go away."), label=False),
        ex(5, Kind.PRETRAIN, text="Oslo is the capital of Norway.\nIt lies on a fjord."),
    ]


def content(row: dict[str, Any]) -> dict[str, Any]:
    """What an export must keep: kind, label, text, tools and every side's roles, text, reasoning, calls."""

    def side(messages):
        return [
            (
                m["role"],
                m["content"] or None,
                m["reasoning"],
                [(c["name"], json.loads(c["arguments"])) for c in m["tool_calls"] or ()],
            )
            for m in messages or ()
        ]

    return {
        "kind": row["kind"],
        "label": row["label"],
        "text": row["text"],
        "tools": json.loads(row["tools"]) if row["tools"] else None,
        "messages": side(row["messages"]),
        "chosen": side(row["chosen"]),
        "rejected": side(row["rejected"]),
    }


def records(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def materialise(files: dict[str, str], folder: Path) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")


def test_every_trainer_and_format_is_an_export():
    assert export_names()[:4] == ["trl", "llamafactory", "ms-swift", "axolotl"]
    assert {"alpaca", "sharegpt", "openai"} <= set(export_names())


def test_llamafactory_dataset_info_describes_its_files(tmp_path):
    out = export("llamafactory", {"train": rows()}, "mix")
    info = json.loads(out.files["dataset_info.json"])
    assert sorted(info) == ["mix_kto_train", "mix_preference_train", "mix_pretrain_train", "mix_sft_train"]
    for name, entry in info.items():
        data = records(out.files[entry["file_name"]])
        assert data, name
        if name.endswith("pretrain_train"):
            assert entry == {"file_name": "pretrain_train.jsonl", "columns": {"prompt": "text"}}
            assert all(set(r) == {"text"} for r in data)
            continue
        assert entry["formatting"] == "sharegpt"
        columns, tags = entry["columns"], entry["tags"]
        # Every key of every record is a described column, and every described column is in the data.
        assert {k for r in data for k in r} == set(columns.values())
        roles = {tags[t] for t in ("user_tag", "assistant_tag", "observation_tag", "function_tag", "system_tag")}
        for r in data:
            assert all(set(turn) == {tags["role_tag"], tags["content_tag"]} for turn in r[columns["messages"]])
            assert {turn[tags["role_tag"]] for turn in r[columns["messages"]]} <= roles
            if entry.get("ranking"):
                for side in ("chosen", "rejected"):
                    assert r[columns[side]][tags["role_tag"]] == tags["assistant_tag"]
            if "kto_tag" in columns:
                assert isinstance(r[columns["kto_tag"]], bool)
        assert entry.get("ranking", False) == name.endswith("preference_train")
    assert out.transforms == {"train": {"sft": {"reasoning moved inline as <think>": 1}}}

    # Read back: each file in its own format, reasoning moved back to its field, is the same content.
    materialise(out.files, tmp_path)
    back = []
    for entry in info.values():
        fmt = "text" if entry.get("formatting") != "sharegpt" else "sharegpt"
        checked = check_files(str(tmp_path / entry["file_name"]), fmt, root=tmp_path)
        assert checked.rejects.to_pylist() == []
        table, _, _ = apply_policy(checked.examples, "field")
        back += [content(r) for r in table.to_pylist()]
    expected = [content(r) for r in rows()]
    key = json.dumps
    assert sorted(back, key=key) == sorted(expected, key=key)


def test_axolotl_yaml_points_at_exported_files_and_their_fields(tmp_path):
    out = export("axolotl", {"train": rows(), "val": rows()[:2]}, "mix")
    kinds = {"sft", "preference", "kto", "pretrain"}
    assert {f"axolotl-{k}.yaml" for k in kinds} <= set(out.files)
    for kind in kinds:
        config = yaml.safe_load(out.files[f"axolotl-{kind}.yaml"])
        for key in ("datasets", "test_datasets"):
            for block in config.get(key, []):
                data = records(out.files[block["path"]])
                assert data
                keys = {k for r in data for k in r}
                kind_type = block["type"]
                if kind_type in ("chat_template", "chat_template.default"):
                    assert block["field_messages"] in keys
                    props = set(block["message_property_mappings"].values())
                    assert {"role", "content"} <= props
                    messages = [m for r in data for m in r[block["field_messages"]]]
                    assert all({"role", "content"} <= set(m) for m in messages)
                if kind_type == "chat_template.default":
                    assert {block["field_chosen"], block["field_rejected"]} <= keys
                if isinstance(kind_type, dict):  # user-defined KTO
                    assert {kind_type["field_prompt"], kind_type["field_completion"], kind_type["field_label"]} <= keys
                if kind_type == "completion":
                    assert block["field"] in keys
                if "field_tools" in block:
                    assert block["field_tools"] in keys
    assert "test_datasets" in yaml.safe_load(out.files["axolotl-sft.yaml"])
    assert yaml.safe_load(out.files["axolotl-preference.yaml"])["rl"] == "dpo"
    assert yaml.safe_load(out.files["axolotl-kto.yaml"])["rl"] == "kto"


def test_trl_export_uses_each_trainers_columns():
    out = export("trl", {"train": rows()}, "mix")
    expected = {
        "sft/train.jsonl": {"messages"},
        "preference/train.jsonl": {"prompt", "chosen", "rejected"},
        "kto/train.jsonl": {"prompt", "completion", "label"},
        "pretrain/train.jsonl": {"text"},
    }
    assert set(out.files) == set(expected)
    for name, columns in expected.items():
        for r in records(out.files[name]):
            assert columns <= set(r) <= columns | {"tools"}
    sft = records(out.files["sft/train.jsonl"])
    assert [("tools" in r) for r in sft] == [True, False]
    kto = records(out.files["kto/train.jsonl"])
    assert [r["label"] for r in kto] == [True, False]
    assert [m["role"] for m in kto[0]["prompt"]] == ["user"] and [m["role"] for m in kto[0]["completion"]] == [
        "assistant"
    ]


def test_swift_export_uses_its_roles_and_columns():
    out = export("ms-swift", {"train": rows()}, "mix")
    sft = records(out.files["sft/train.jsonl"])
    roles = [m["role"] for m in sft[0]["messages"]]
    assert roles == ["system", "user", "tool_call", "tool_response", "assistant"]
    assert isinstance(sft[0]["tools"], str) and json.loads(sft[0]["tools"])
    assert sft[0]["messages"][-1]["content"].startswith("<think>")
    pref = records(out.files["preference/train.jsonl"])
    assert pref[0]["rejected_response"] == "Bergen." and pref[0]["messages"][-1] == {
        "role": "assistant",
        "content": "Oslo.",
    }
    assert [r["label"] for r in records(out.files["kto/train.jsonl"])] == [True, False]
    assert records(out.files["pretrain/train.jsonl"]) == [
        {"messages": [{"role": "assistant", "content": "Oslo is the capital of Norway.\nIt lies on a fjord."}]}
    ]


@pytest.mark.parametrize("name", ["trl", "llamafactory", "ms-swift", "axolotl"])
def test_exports_are_deterministic(name):
    assert export(name, {"train": rows()}, "mix").files == export(name, {"train": rows()}, "mix").files


def test_a_build_writes_every_export(tmp_path):
    recipe = make_project(tmp_path, RECIPE.replace("[openai, sharegpt]", "[trl, llamafactory, ms-swift, axolotl]"))
    loaded = load_recipe(recipe)
    result = run(loaded)
    manifest = write_build(loaded, result.stages, result.entries)
    out = loaded.build_dir
    for path in (
        "exports/trl/sft/train.jsonl",
        "exports/llamafactory/dataset_info.json",
        "exports/ms-swift/sft/val.jsonl",
        "exports/axolotl/axolotl-sft.yaml",
    ):
        assert (out / path).is_file(), path
        assert path in manifest["outputs"]
    info = json.loads((out / "exports/llamafactory/dataset_info.json").read_text())
    assert sorted(info) == ["tiny_sft_train", "tiny_sft_val"]
    train_rows = manifest["ledger"]["total"]["train"]
    assert len((out / "exports/trl/sft/train.jsonl").read_text().splitlines()) == train_rows
    report = json.loads((out / "report/report.json").read_text())
    assert report["exports"]["llamafactory"]["files"]["sft_train.jsonl"] == train_rows


def test_exports_that_build_their_own_records_count_the_columns_they_leave_out():
    """axolotl's DPO/KTO/text records and ms-swift's text records are built without the row's unmodelled columns
    (metadata): counted, as every format writer counts what it cannot carry."""
    from dataforge.exports.base import METADATA_KEYS

    tagged = [{**r, "metadata": json.dumps({"quality": 3})} for r in rows()[1:]]
    axolotl = export("axolotl", {"train": tagged}, "mix")
    assert {kind: c.get(METADATA_KEYS) for kind, c in axolotl.losses["train"].items()} == {
        "kto": 2,
        "preference": 1,
        "pretrain": 1,
    }
    assert json.loads(axolotl.files["sft/train.jsonl"].splitlines()[0])["quality"] == 3  # the openai writer keeps it
    swift = export("ms-swift", {"train": tagged}, "mix")
    assert swift.losses["train"]["pretrain"] == {METADATA_KEYS: 1}


def test_an_export_names_each_row_it_leaves_out():
    long_pair = rows()[2] | {"chosen": rows()[2]["chosen"] * 2}
    exported = export("axolotl", {"train": [long_pair, rows()[1]]}, "mix")
    assert exported.rows == {"preference/train.jsonl": 0, "sft/train.jsonl": 1}
    assert exported.left_out == [(long_pair, "rows whose completion is not a single message (not written)")]
    assert exported.losses == {
        "train": {"preference": {"rows whose completion is not a single message (not written)": 1}}
    }
