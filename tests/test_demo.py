"""The shipped demo: the build runs offline and every planted problem in data/raw/demo/README.md is caught
exactly where the table says."""

import json
import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dataforge.engine.runner import run
from dataforge.recipe import load_recipe
from dataforge.stages.write import write_build

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    shutil.copytree(REPO / "data" / "raw" / "demo", root / "data" / "raw" / "demo")
    shutil.copytree(REPO / "data" / "tokenizers" / "demo-chatml", root / "data" / "tokenizers" / "demo-chatml")
    (root / "pipelines").mkdir()
    shutil.copy(REPO / "pipelines" / "demo.yaml", root / "pipelines" / "demo.yaml")
    loaded = load_recipe(root / "pipelines" / "demo.yaml")
    result = run(loaded)
    manifest = write_build(loaded, result.stages, result.entries)
    return loaded.build_dir, manifest


def planted_rows():
    rows = []
    for line in (REPO / "data" / "raw" / "demo" / "README.md").read_text().splitlines():
        m = re.match(r"\| (\S+\.jsonl?) \| (\d+) \| (.*?) \| (.*?) \| (.*?) \|$", line)
        if m:
            rows.append((m[1], int(m[2]), m[3], m[4], m[5]))
    return rows


def test_the_readme_table_lists_the_planted_problems():
    rows = planted_rows()
    assert len(rows) == 54
    assert {r[0] for r in rows} == {"alpaca.json", "sharegpt.jsonl", "openai.jsonl"}


def test_every_planted_problem_is_caught_where_the_table_says(demo_build):
    out, _ = demo_build
    rejects = pq.read_table(out / "rejects.parquet").to_pylist()
    by_place = {(Path(r["file"]).name, r["line"]): r for r in rejects}
    for file, line, what, stage, reason in planted_rows():
        got = by_place.get((file, line))
        if stage == "-":
            assert got is None, (file, line, what, got)
        else:
            assert got is not None, (file, line, what)
            assert (got["stage"], got["reason"]) == (stage, reason), (file, line, what)


def test_nothing_is_removed_that_was_not_planted(demo_build):
    out, manifest = demo_build
    planted = {(f, line) for f, line, _, stage, _ in planted_rows() if stage != "-"}
    removed = {(Path(r["file"]).name, r["line"]) for r in pq.read_table(out / "rejects.parquet").to_pylist()}
    assert removed == planted
    total = manifest["ledger"]["total"]
    assert total["balanced"] is True
    assert total["in"] == total["train"] + total["val"] + total["rejected"] + total["filtered"] + total["deduplicated"]


def test_demo_outputs_are_complete(demo_build):
    out, manifest = demo_build
    assert set(manifest["outputs"]) == {
        "train.parquet",
        "val.parquet",
        "rejects.parquet",
        "report/report.json",
        "report/report.md",
        "report/report.html",
        "exports/openai/train.jsonl",
        "exports/openai/val.jsonl",
        "exports/sharegpt/train.jsonl",
        "exports/sharegpt/val.jsonl",
        "rendered/demo-chatml/train.parquet",
        "rendered/demo-chatml/val.parquet",
        "rendered/demo-chatml/rejects.parquet",
        "rendered/demo-chatml/lengths.png",
    }
    report = (out / "report" / "report.md").read_text()
    assert "Ledger balances." in report
    assert report.splitlines()[2] == "## ✅ All 13 gate(s) pass"  # the demo's checks: section
    train = pq.read_table(out / "train.parquet")
    assert set(train["source"].to_pylist()) == {"alpaca", "sharegpt", "openai"}
    assert manifest["ledger"]["total"]["val"] == pq.read_table(out / "val.parquet").num_rows > 0


def test_the_readme_quotes_the_demo_report_as_it_is(demo_build):
    out, _ = demo_build
    report = (out / "report" / "report.md").read_text().splitlines()
    quoted = [
        line.removeprefix("> ") for line in (REPO / "README.md").read_text().splitlines() if line.startswith("> ")
    ]
    headline = next(line for line in report if line.startswith("**"))
    per_source = [line for line in report if line.startswith("| ") and line.count("|") == 10]
    assert headline in quoted
    assert per_source and all(line in quoted for line in per_source)


def test_the_demo_renders_for_its_target_with_lengths_and_overflow(demo_build):
    out, manifest = demo_build
    train = pq.read_table(out / "rendered" / "demo-chatml" / "train.parquet")
    assert train.num_rows > 150
    row = train.slice(0, 1).to_pylist()[0]
    assert len(row["input_ids"]) == len(row["labels"]) == row["n_tokens"]
    assert row["n_trained"] == sum(1 for x in row["labels"] if x != -100) > 0
    assert all(x == -100 for x in row["labels"][: row["n_prompt"]])
    report = json.loads((out / "report" / "report.json").read_text())["render"]["demo-chatml"]
    assert report["overflow"]["max_length"] == 160
    assert report["overflow"]["dropped"] == report["dropped_by_reason"]["overflow"] > 0
    assert report["lengths"]["total"]["max"] > 160  # the dropped rows still show in the histogram
    assert sum(report["lengths"]["histogram"]["total"]["counts"]) == (
        report["rows"]["train"]["in"] + report["rows"]["val"]["in"]
    )
    md = (out / "report" / "report.md").read_text()
    assert "## Rendered for `demo-chatml`" in md and "lengths.png" in md
    assert manifest["render"]["demo-chatml"]["template_digest"]
