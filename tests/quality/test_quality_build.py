"""pipelines/demo-quality.yaml builds offline: the planted rows of data/raw/demo/quality/README.md are filtered
by the quality stage with the signal as reason, PII is redacted in the rows kept, the ledger balances, and the
report has its quality section and gates."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import jsonschema
import pyarrow.parquet as pq
import pytest

from dataforge.engine.runner import run
from dataforge.recipe import load_recipe
from dataforge.stages.write import write_build

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo-quality")
    shutil.copytree(REPO / "data" / "raw" / "demo" / "quality", root / "data" / "raw" / "demo" / "quality")
    (root / "pipelines").mkdir()
    shutil.copy(REPO / "pipelines" / "demo-quality.yaml", root / "pipelines" / "demo-quality.yaml")
    loaded = load_recipe(root / "pipelines" / "demo-quality.yaml")
    result = run(loaded)
    write_build(loaded, result.stages, result.entries)
    return loaded.build_dir


def planted() -> list[tuple[int, str]]:
    rows = []
    for line in (REPO / "data" / "raw" / "demo" / "quality" / "README.md").read_text(encoding="utf-8").splitlines():
        m = re.match(r"\| (\d+) \| .*? \| quality \| filtered \| (\S+) \|$", line)
        if m:
            rows.append((int(m[1]), m[2]))
    return rows


@pytest.mark.integration
def test_planted_rows_are_filtered_with_the_signal_as_reason(build) -> None:
    rejects = pq.read_table(build / "rejects.parquet").to_pylist()
    assert (
        sorted((r["line"], r["reason"]) for r in rejects)
        == planted()
        == [
            (9, "dup_line_share"),
            (10, "lang"),
            (11, "refusal"),
        ]
    )
    assert all((r["stage"], r["outcome"]) == ("quality:chat", "filtered") for r in rejects)
    by_line = {r["line"]: r for r in rejects}
    assert by_line[9]["message"] == "assistant dup_line_share 0.75 > max 0.3"
    assert by_line[9]["field"] == "quality.assistant.dup_line_share"


@pytest.mark.integration
def test_pii_is_redacted_and_the_report_has_the_quality_section(build) -> None:
    train = pq.read_table(build / "train.parquet").to_pylist()
    texts = [m["content"] for r in train for m in r["messages"]]
    assert "Can you email the report to <EMAIL>?" in texts
    assert not any("anna.berg@example.com" in t or "203.0.113.45" in t for t in texts)
    report = json.loads((build / "report" / "report.json").read_text(encoding="utf-8"))
    assert report["ledger"]["total"]["balanced"] is True
    assert report["ledger"]["total"]["filtered"] == 3
    quality = report["quality"]
    assert (quality["rows"], quality["pii_rows"]) == (13, 2)
    assert quality["sources"]["chat"]["removed"] == {"dup_line_share": 1, "lang": 1, "refusal": 1}
    assert quality["sources"]["chat"]["lang"]["assistant"] == {"en": 10}
    gates = {(g["gate"], g["scope"]): g["passed"] for g in report["gates"]["results"]}
    assert gates == {("max_pii_rate", "total"): True, ("max_pii_rate", "chat"): True, ("min_lang_share", "en"): True}
    schema = json.loads((REPO / "schemas" / "report.schema.json").read_text(encoding="utf-8"))
    assert [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(report)] == []
    md = (build / "report" / "report.md").read_text(encoding="utf-8")
    assert "## Quality signals" in md and "| `dup_line_share` | assistant |" in md
    html = (build / "report" / "report.html").read_text(encoding="utf-8")
    section = html[html.index('<section id="quality">') :]
    section = section[: section.index("</section>")]
    assert section.count("<svg") == 7  # one histogram per signal shown
    assert "assistant dup_line_share: rows per value" in section and "max 0.3" in section
    assert "<td>chat</td><td>assistant</td><td>en 10</td>" in section


@pytest.mark.integration
def test_train_carries_the_signals_and_the_empty_val_has_its_schema(build) -> None:
    from dataforge.stages.quality import canonical_schema

    train, val = pq.read_table(build / "train.parquet"), pq.read_table(build / "val.parquet")
    assert (train.num_rows, val.num_rows) == (10, 0)  # `split: {validation: 0.0}`
    assert val.schema.equals(train.schema, check_metadata=True)
    assert train.column_names == canonical_schema(True).names
    by_line = {r["line"]: r["quality"] for r in train.to_pylist()}
    assert by_line[12]["pii"]["email"] >= 1 and by_line[13]["pii"]["ipv4"] >= 1  # measured before redaction
    assert {q["assistant"]["lang"] for q in by_line.values()} == {"en"}
    assert max(q["assistant"]["dup_line_share"] for q in by_line.values()) <= 0.3


@pytest.mark.integration
def test_diff_compares_the_quality_section(build) -> None:
    from dataforge.report.diff import compare

    report = json.loads((build / "report" / "report.json").read_text(encoding="utf-8"))
    rows = [(r["what"], r["old"], r["change"]) for r in compare(report, report) if r["section"] == "quality"]
    assert rows == [
        ("PII rate", 0.1538, 0.0),
        ("removed by dup_line_share", 1, 0),
        ("removed by lang", 1, 0),
        ("removed by refusal", 1, 0),
        ("assistant en share", 1.0, 0.0),
    ]
