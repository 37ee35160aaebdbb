"""`pack:` on a render target: the build writes packed rows beside the rendered ones, checked and reported."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pyarrow.parquet as pq
import pytest

from dataforge import pack as P
from dataforge.engine.runner import run
from dataforge.errors import DataError
from dataforge.recipe import load_recipe
from dataforge.report.gates import evaluate
from dataforge.stages.write import write_build
from project import RECIPE, make_project

DEMO = Path(__file__).resolve().parents[2] / "data" / "tokenizers" / "demo-chatml"


def build(tmp_path: Path, pack: str, checks: str = "") -> tuple[Path, dict]:
    recipe = (
        RECIPE + f"render:\n  - name: demo\n    tokenizer: {DEMO}\n    max_length: 256\n    pack: {pack}\n" + checks
    )
    loaded = load_recipe(make_project(tmp_path, recipe))
    result = run(loaded)
    write_build(loaded, result.stages, result.entries)
    return loaded.build_dir, json.loads((loaded.build_dir / "report" / "report.json").read_text())


def test_packed_rows_hold_every_rendered_row_once(tmp_path):
    out, report = build(tmp_path, "{max_length: 128, strategy: bfd}")
    for split in ("train", "val"):
        rendered = pq.read_table(out / "rendered" / "demo" / f"{split}.parquet")
        packed = pq.read_table(out / "rendered" / "demo" / f"packed_{split}.parquet")
        assert P.check_unpack(rendered.select(["id", "input_ids", "labels"]), packed, []) == []
        assert max(packed["n_tokens"].to_pylist()) <= 128
    stats = report["render"]["demo"]["pack"]
    assert stats["strategy"] == "bfd" and stats["max_length"] == 128
    assert stats["trained_tokens"]["balanced"] and stats["rows_too_long"] == 0
    assert stats["rows_packed"] == sum(report["render"]["demo"]["rows"][s]["rendered"] for s in ("train", "val"))
    assert stats["bins"] < stats["rows_packed"]  # rows were really packed together
    markdown = (out / "report" / "report.md").read_text()
    assert "Packed with `bfd` into" in markdown
    html = (out / "report" / "report.html").read_text()
    assert "<h3>Packing</h3>" in html and f"{stats['efficiency']:.2%}" in html


def test_rows_too_long_to_pack_are_rejected_by_name(tmp_path):
    out, report = build(tmp_path, "{max_length: 24, drop_longer: true}")
    rejects = pq.read_table(out / "rendered" / "demo" / "rejects.parquet").to_pylist()
    too_long = [r for r in rejects if r["reason"] == "too_long_to_pack"]
    stats = report["render"]["demo"]
    assert too_long and len(too_long) == stats["pack"]["rows_too_long"]
    assert too_long[0]["stage"] == "render:demo" and too_long[0]["file"]
    assert "longer than pack.max_length 24" in too_long[0]["message"]
    for split in ("train", "val"):  # the target's own ledger still balances
        rows = stats["rows"][split]
        assert rows["in"] == rows["rendered"] + rows["dropped"]


def test_rows_too_long_to_pack_fail_the_build_unless_dropped(tmp_path):
    with pytest.raises(DataError) as caught:
        build(tmp_path, "{max_length: 24, drop_longer: false}")
    assert re.fullmatch(
        r"render target 'demo': pack: \d+ row\(s\) are longer than max_length 24 \(the longest has \d+ tokens\); "
        r"rows are never split, e\.g\. [a-z]+:\d+(, [a-z]+:\d+)*",
        caught.value.message,
    )


def test_min_packing_efficiency_gate(tmp_path):
    out, report = build(tmp_path, "{max_length: 128}", "checks:\n  min_packing_efficiency: 0.5\n")
    schema = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "report.schema.json").read_text())
    assert [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(report)] == []
    assert [g["gate"] for g in report["gates"]["results"]] == ["min_packing_efficiency"]
    efficiency = report["render"]["demo"]["pack"]["efficiency"]
    results = evaluate(report, {"min_packing_efficiency": 0.5})
    assert [(r["gate"], r["scope"], r["passed"], r["value"]) for r in results] == [
        ("min_packing_efficiency", "demo", efficiency >= 0.5, efficiency)
    ]
    failing = evaluate(report, {"min_packing_efficiency": 1.0})
    assert failing[0]["passed"] is (efficiency >= 1.0)
    assert failing[0]["message"] == f"{efficiency:.2%} of packed capacity filled (limit 100.00%)"
