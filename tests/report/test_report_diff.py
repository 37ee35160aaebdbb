"""`dataforge diff`: the demo against the demo with one source removed."""

from __future__ import annotations

import json

import pytest

from conftest import dataforge, without_checks


@pytest.fixture(scope="module")
def without_openai(demo_root):
    """The demo recipe without its `openai` source, built into data/processed/demo-no-openai."""
    # Without the demo's gates too: they name the removed source (min_rows).
    text = without_checks(demo_root / "pipelines" / "demo.yaml")
    start = text.index("  - name: openai")
    end = text.index("\n\n", start)
    recipe = demo_root / "pipelines" / "no-openai.yaml"
    recipe.write_text(
        text[:start] + text[end + 1 :].replace("outputs:\n", "outputs:\n  dir: data/processed/demo-no-openai\n")
    )
    code, _, err = dataforge("build", "-q", recipe)
    assert code == 0, err
    return demo_root / "data" / "processed" / "demo-no-openai"


def test_diff_shows_the_removed_source_and_what_it_changed(demo_out, without_openai):
    code, stdout, _ = dataforge("diff", demo_out, without_openai, "--json")
    assert code == 0
    changes = {(c["section"], c["what"]): c for c in json.loads(stdout)["changes"]}
    before = json.loads((demo_out / "report" / "report.json").read_text())["ledger"]
    after = json.loads((without_openai / "report" / "report.json").read_text())["ledger"]
    gone = before["sources"]["openai"]
    assert {k: (c["old"], c["new"]) for k, c in changes.items() if k[0] == "rows" and "openai" in k[1]} == {
        ("rows", "openai in"): (gone["in"], None),
        ("rows", "openai train"): (gone["train"], None),
        ("rows", "openai val"): (gone["val"], None),
    }
    total_in = changes[("rows", "total in")]
    assert (total_in["old"], total_in["new"], total_in["change"]) == (282, 282 - gone["in"], -gone["in"])
    assert changes[("rows", "total train")]["change"] == after["total"]["train"] - before["total"]["train"] < 0
    assert changes[("rates", "reject rate total")]["old"] == round(17 / 282, 4)
    assert changes[("rates", "reject rate total")]["new"] == round(after["total"]["rejected"] / after["total"]["in"], 4)
    assert ("rows", "alpaca in") not in changes  # unchanged values are left out unless --all
    assert {what for section, what in changes if section == "tokens demo-chatml"} >= {"length p50", "length p99"}


def test_diff_table_and_markdown(demo_out, without_openai):
    code, stdout, _ = dataforge("diff", demo_out, without_openai)
    assert code == 0
    row = next(line for line in stdout.splitlines() if "openai in" in line)
    assert [cell.strip() for cell in row.split("│")][1:6] == ["rows", "openai in", "88", "–", "removed"]
    assert "reject rate total" in stdout and "-0.88 pp" in stdout  # 17/282 → 10/194 (6.03% → 5.15%)
    code, stdout, _ = dataforge("diff", demo_out, without_openai, "--markdown")
    assert code == 0
    assert "| rows | openai in | 88 | – | **removed** |" in stdout
    assert "| rows | total in | 282 | 194 | **-88** |" in stdout
    code, stdout, _ = dataforge("diff", demo_out, demo_out, "--markdown", "--all")
    assert "0 of" in stdout and "| rows | alpaca in | 107 | 107 |  |" in stdout


def test_diff_of_a_missing_build_is_a_usage_error(demo_out, tmp_path):
    code, _, err = dataforge("diff", demo_out, tmp_path)
    assert code == 2 and f"{tmp_path}: no report/report.json here" in err and "Traceback" not in err
    (tmp_path / "report.json").write_text("{not json")
    code, _, err = dataforge("diff", demo_out, tmp_path / "report.json")
    assert code == 1 and "not a readable report" in err
