"""The shipped demo: the build runs offline and every planted problem in data/raw/demo/README.md is caught
exactly where the table says; its `quality:` section filters the planted repeated-line answer, redacts the planted
e-mail address, and leaves every row's signals in the `quality` column of train/val.parquet (not in the exports)."""

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
    assert len(rows) == 56
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


def test_the_quality_section_filters_one_planted_row_and_redacts_another(demo_build):
    out, manifest = demo_build
    rejects = [r for r in pq.read_table(out / "rejects.parquet").to_pylist() if r["stage"].startswith("quality:")]
    assert [(r["stage"], Path(r["file"]).name, r["line"], r["reason"], r["field"], r["message"]) for r in rejects] == [
        (
            "quality:sharegpt",
            "sharegpt.jsonl",
            88,
            "dup_line_share",
            "quality.assistant.dup_line_share",
            "assistant dup_line_share 0.75 > max 0.3",
        )
    ]
    rows = pq.read_table(out / "train.parquet").to_pylist() + pq.read_table(out / "val.parquet").to_pylist()
    assert all(r["quality"] is not None and r["quality"]["assistant"]["turns"] > 0 for r in rows)
    mail = next(r for r in rows if r["file"].endswith("openai.jsonl") and r["line"] == 89)
    assert [m["content"] for m in mail["messages"]] == [
        "Can you check my e-mail address before I sign up? It is <EMAIL>.",
        "<EMAIL> is a well-formed address: a name, an @ and a domain.",
    ]
    assert mail["quality"]["pii"]["email"] == mail["quality"]["pii"]["total"] == 2  # measured before redaction
    assert sum(r["quality"]["pii"]["total"] > 0 for r in rows) == 1
    assert not any("maria.lopez@example.com" in (m["content"] or "") for r in rows for m in r["messages"])
    report = json.loads((out / "report" / "report.json").read_text())["quality"]
    assert (report["rows"], report["pii_rows"]) == (262, 1)
    assert report["sources"]["sharegpt"]["removed"] == {"dup_line_share": 1}
    for path in (out / "exports").rglob("*.jsonl"):
        text = path.read_text(encoding="utf-8")
        assert "maria.lopez@example.com" not in text, path
        assert '"quality"' not in text and "dup_line_share" not in text, path


def test_the_readme_states_the_demo_build_line(demo_build):
    _, manifest = demo_build
    total = manifest["ledger"]["total"]
    line = f"Built demo: {total['train']} train, {total['val']} val from {total['in']} records (…)"
    assert f"It ends with `{line}`" in (REPO / "README.md").read_text()


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
