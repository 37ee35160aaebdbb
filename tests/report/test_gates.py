"""Quality gates: a failing recipe exits 1 after writing everything, report.md leads with the failed gates,
and `dataforge check` agrees without rebuilding."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import copy_demo, dataforge, without_checks
from dataforge.report.gates import evaluate, gate_section

STRICT = """
checks:
  max_reject_rate: 0.05
  max_duplicate_rate: 0.2
  max_overflow_rate: 0.01
  min_rows: {total: 200, alpaca: 100}
  min_trained_token_share: 0.4
  max_length_p99: 256
  require_template_checks: true
"""
LENIENT = """
checks:
  max_reject_rate: 0.1
  min_rows: 200
  require_template_checks: true
"""
FAILED = [
    "min_rows [alpaca]: 90 rows (< 100)",
    "max_reject_rate: 6.03% rejected (limit 5.00%)",
    "max_reject_rate [openai]: 7.95% rejected (limit 5.00%)",
    "max_reject_rate [sharegpt]: 8.05% rejected (limit 5.00%)",
    "max_overflow_rate [demo-chatml]: 2.18% of rows over max_length (5 of 229) (limit 1.00%)",
]


@pytest.fixture(scope="module")
def strict(tmp_path_factory) -> tuple[Path, Path]:
    """A demo copy whose recipe sets gates that fail, and a lenient recipe beside it; (root, build dir)."""
    root = tmp_path_factory.mktemp("gates")
    recipe = copy_demo(root)
    text = without_checks(recipe)
    recipe.write_text(text + STRICT)
    (root / "pipelines" / "lenient.yaml").write_text(text + LENIENT)
    return root, root / "data" / "processed" / "demo"


def test_a_failing_gate_exits_1_after_writing_everything(strict):
    root, out = strict
    code, stdout, err = dataforge("build", "-q", root / "pipelines" / "demo.yaml")
    assert code == 1
    assert "Built demo: 206 train, 23 val" in stdout
    assert [line.removeprefix("gate failed: ") for line in err.splitlines()] == FAILED
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"report/report.json", "report/report.md", "report/report.html", "train.parquet"} <= set(manifest["outputs"])
    # Cached, the build still says no.
    code, stdout, err = dataforge("build", "-q", root / "pipelines" / "demo.yaml")
    assert code == 1 and "Everything is cached" in stdout and "gate failed: min_rows [alpaca]" in err


def test_report_md_names_the_failed_gates_first(strict):
    root, out = strict
    dataforge("build", "-q", root / "pipelines" / "demo.yaml")
    lines = (out / "report" / "report.md").read_text().splitlines()
    assert lines[0] == "# dataforge build `demo`"
    assert lines[2] == "## ❌ 5 gate(s) failed"
    # Data in Markdown is escaped: `[alpaca]` would otherwise be read as a link's text.
    assert lines[4:9] == [f"- {f}".replace("[", "\\[").replace("]", "\\]") for f in FAILED]
    table = [line for line in lines if line.startswith("| ") and ("FAILED" in line or "passed" in line)]
    assert len(table) == 11 and all("FAILED" in row for row in table[:5]) and "FAILED" not in "".join(table[5:])
    assert lines.index("## Rows per source") > lines.index(table[-1])
    html = (out / "report" / "report.html").read_text()
    assert '<span class="badge fail">5 gate(s) failed</span>' in html
    gates = html.split('<section id="gates">', 1)[1].split("</section>", 1)[0]
    verdicts = re.findall(r'<span class="(fail|pass)">(FAILED|passed)</span>', gates)
    assert [v for _, v in verdicts] == ["FAILED"] * 5 + ["passed"] * 6


def test_check_agrees_with_the_build_and_rechecks_other_limits(strict):
    root, out = strict
    dataforge("build", "-q", root / "pipelines" / "demo.yaml")
    report = json.loads((out / "report" / "report.json").read_text())
    code, stdout, _ = dataforge("check", out)
    assert code == 1
    assert "5 gate(s) failed." in stdout
    failed_rows = [line for line in stdout.splitlines() if "FAILED" in line]
    assert len(failed_rows) == sum(not r["passed"] for r in report["gates"]["results"]) == 5
    code, stdout, _ = dataforge("check", out, "--recipe", root / "pipelines" / "lenient.yaml")
    assert code == 0
    assert "All gates pass." in stdout and "max_reject_rate" in stdout
    code, _, err = dataforge("check", root / "nowhere")
    assert code == 2 and "no report/report.json" in err and "Traceback" not in err


def test_a_passing_build_exits_0(strict):
    root, out = strict
    code, _, err = dataforge("build", "-q", root / "pipelines" / "lenient.yaml")
    assert code == 0, err
    gates = json.loads((out / "report" / "report.json").read_text())["gates"]
    assert gates["passed"] is True
    assert gates["checks"] == {"max_reject_rate": 0.1, "min_rows": 200, "require_template_checks": True}
    assert [r["scope"] for r in gates["results"]] == ["total", "total", "alpaca", "openai", "sharegpt", "demo-chatml"]
    assert "## ✅ All 6 gate(s) pass" in (out / "report" / "report.md").read_text()


def test_gate_semantics_on_the_demo_report(demo_out):
    report = json.loads((demo_out / "report" / "report.json").read_text())
    book = report["ledger"]
    results = {(r["gate"], r["scope"]): r for r in evaluate(report, {"max_reject_rate": 0.080})}
    # Rejected rows per rows read, for each source and in total.
    for source, r in book["sources"].items():
        assert results[("max_reject_rate", source)]["value"] == round(r["rejected"] / r["in"], 4)
    assert [k[1] for k, r in results.items() if not r["passed"]] == ["sharegpt"]  # 7/87 > 0.080 > 7/88 (openai)
    # Duplicates per row that reached dedup (read - rejected - filtered).
    total = book["total"]
    rate = round(total["deduplicated"] / (total["in"] - total["rejected"] - total["filtered"]), 4)
    (dup,) = evaluate(report, {"max_duplicate_rate": rate})
    assert (dup["value"], dup["passed"]) == (rate, True)
    (dup,) = evaluate(report, {"max_duplicate_rate": rate - 0.001})
    assert dup["passed"] is False
    (p99,) = evaluate(report, {"max_length_p99": 163})
    assert (p99["value"], p99["passed"]) == (report["render"]["demo-chatml"]["lengths"]["total"]["p99"], False)
    # Target gates fail when nothing is rendered: a gate that cannot be measured is not a pass.
    unrendered = {**report, "render": {}, "tokens": {}}
    section = gate_section(unrendered, {"require_template_checks": True, "min_trained_token_share": 0.1})
    assert section["passed"] is False
    assert {r["message"] for r in section["results"]} == {
        "the build renders no target",
        "the build renders no target (add `render:`)",
    }


def test_a_min_rows_key_that_names_no_source_is_a_recipe_error(tmp_path):
    recipe = copy_demo(tmp_path)
    recipe.write_text(
        without_checks(recipe) + "\nchecks:\n  min_rows: {total: 1, alpacca: 5}\n  max_overflow_rate: 2\n"
    )
    code, _, err = dataforge("build", "-q", recipe)
    assert code == 2
    assert "checks.min_rows.alpacca: no source is named 'alpacca' (total, alpaca, sharegpt, openai)" in err
    assert "checks.max_overflow_rate: Input should be less than or equal to 1 (found 2)" in err
