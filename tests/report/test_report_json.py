"""report.json: documented by schemas/report.schema.json, consistent with the build's own tables, reproducible."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pyarrow.compute as pc
import pyarrow.parquet as pq

from conftest import REPO, dataforge

SCHEMA = json.loads((REPO / "schemas" / "report.schema.json").read_text())


def load(out: Path) -> dict:
    return json.loads((out / "report" / "report.json").read_text())


def test_the_demo_report_matches_its_schema(demo_out):
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    report = load(demo_out)
    errors = [f"{e.json_path}: {e.message}" for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(report)]
    assert errors == []
    # The schema has teeth: an unknown key or a missing section is an error.
    broken = {**{k: v for k, v in report.items() if k != "gates"}, "surprise": 1}
    messages = sorted(e.message for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(broken))
    assert any("'gates' is a required property" in m for m in messages)
    assert any("'surprise' was unexpected" in m for m in messages)


def test_content_statistics_agree_with_train_and_val(demo_out):
    content = load(demo_out)["content"]
    train, val = pq.read_table(demo_out / "train.parquet"), pq.read_table(demo_out / "val.parquet")
    rows = train.num_rows + val.num_rows
    assert content["rows"] == rows > 200
    assert content["kinds"] == {"sft": rows}
    sources = train["source"].to_pylist() + val["source"].to_pylist()
    assert content["kinds_by_source"] == {s: {"sft": sources.count(s)} for s in ("alpaca", "sharegpt", "openai")}
    turns = content["turns"]
    assert sum(turns["histogram"].values()) == rows
    # Every assistant message is one turn: the role count and the turn histogram are two views of one number.
    assert content["roles"]["assistant"] == sum(int(k) * v for k, v in turns["histogram"].items())
    messages = sum(len(m) for m in train["messages"].to_pylist() + val["messages"].to_pylist())
    assert sum(content["roles"].values()) == messages
    with_system = sum(
        any(m["role"] == "system" for m in ms) for ms in train["messages"].to_pylist() + val["messages"].to_pylist()
    )
    assert content["rows_with_system"] == with_system > 0
    assert content["tool_calls"]["calls"] == 0 and content["reasoning"]["rows"] == 0  # the demo has neither


def test_trained_token_share_is_summed_from_the_rendered_rows(demo_out):
    tokens = load(demo_out)["tokens"]["demo-chatml"]
    parts = [pq.read_table(demo_out / "rendered" / "demo-chatml" / f"{s}.parquet") for s in ("train", "val")]
    total = sum(pc.sum(t["n_tokens"]).as_py() for t in parts)
    trained = sum(pc.sum(t["n_trained"]).as_py() for t in parts)
    assert (tokens["tokens"], tokens["trained"]) == (total, trained)
    assert tokens["share"] == round(trained / total, 4)
    assert sum(s["rows"] for s in tokens["per_source"].values()) == tokens["rows"] == sum(t.num_rows for t in parts)


def test_duplicate_clusters_account_for_every_duplicate(demo_out):
    report = load(demo_out)
    dups = report["duplicates"]
    removed = report["ledger"]["total"]["deduplicated"]
    assert dups["removed"] == removed > 0
    assert sum((int(size) - 1) * n for size, n in dups["cluster_sizes"].items()) == removed
    assert sum(dups["by_reason"].values()) == removed
    assert dups["clusters"] == sum(dups["cluster_sizes"].values())
    biggest = dups["samples"][0]
    assert len(biggest["members"]) == max(int(s) for s in dups["cluster_sizes"])
    assert biggest["members"][0]["kept"] and not any(m["kept"] for m in biggest["members"][1:])
    assert biggest["text"].startswith("user: ")


def test_rendered_samples_mark_the_trained_tokens(demo_out):
    samples = load(demo_out)["samples"]["demo-chatml"]
    assert [s["source"] for s in samples] == ["alpaca", "sharegpt", "openai"]
    for s in samples:
        trained = [seg["text"] for seg in s["segments"] if seg["trained"]]
        assert trained and all(t.endswith("<|im_end|>") for t in trained)  # the answer and its end-of-turn token
        assert s["segments"][0]["text"].startswith("<|im_start|>") and not s["segments"][0]["trained"]


def test_the_same_build_writes_the_same_report_bytes(demo_root, demo_out):
    before = {n: (demo_out / "report" / n).read_bytes() for n in ("report.json", "report.md", "report.html")}
    (demo_out / "manifest.json").unlink()  # the build writes its outputs again
    code, _, err = dataforge("build", "-q", demo_root / "pipelines" / "demo.yaml")
    assert code == 0, err
    after = {n: (demo_out / "report" / n).read_bytes() for n in before}
    assert after == before
