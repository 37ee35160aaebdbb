"""report.md shows data as text (never HTML or Markdown), excerpts are capped, length axes fit the data, and
template notes that a template causes by design do not fail the template gate."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np

from dataforge.rejects import rejects_from_rows
from dataforge.report import plots
from dataforge.report.gates import gate_section
from dataforge.report.html import render_html
from dataforge.report.lengths import length_stats
from dataforge.report.mdkit import code, text
from dataforge.report.summary import CUT_MARK, EXCERPT_CHARS, reject_groups, render_markdown

SCRIPT = "<script>alert(1)</script><img src=x onerror=alert(1)>"


def demo_report(out: Path) -> dict:
    return json.loads((out / "report" / "report.json").read_text())


def renamed(report: dict, old: str, new: str) -> dict:
    """The report with source `old` called `new` (as a recipe could not, but a hand-edited report.json can)."""
    report = copy.deepcopy(report)
    for s in report["sources"]:
        if s["name"] == old:
            s["name"] = new
    report["ledger"]["sources"][new] = report["ledger"]["sources"].pop(old)
    return report


def test_markdown_text_and_code_escape_html_and_markdown():
    assert text(SCRIPT) == "&lt;script>alert(1)&lt;/script>&lt;img src=x onerror=alert(1)>"
    assert text("a|b *c* _d_ [e](f) `g` ~h~ #i") == r"a\|b \*c\* \_d\_ \[e\](f) \`g\` \~h\~ \#i"
    assert text("min_rows: 1 < 2 & 3; &amp;") == "min_rows: 1 < 2 & 3; &amp;amp;"  # only what would change meaning
    assert code("a`b") == "``a`b``" and code("`x") == "`` `x ``"
    assert code("a|b", cell=True) == r"`a\|b`" and code("a|b") == "`a|b`"


def test_a_role_with_html_and_a_source_with_a_pipe_stay_text_in_report_md(demo_out):
    report = renamed(demo_report(demo_out), "openai", "open|ai")
    group = next(g for g in report["removed_by_reason"] if g["examples"])
    group["examples"][0]["message"] = f"unknown role {SCRIPT!r}"
    group["examples"][0]["field"] = "messages[1].role"
    md = render_markdown(report)
    assert "<script" not in md and "<img" not in md
    assert "unknown role '&lt;script>alert(1)&lt;/script>&lt;img src=x onerror=alert(1)>'" in md
    row = next(line for line in md.splitlines() if line.startswith("| open"))
    assert row.startswith(r"| open\|ai | openai | ")
    header = next(line for line in md.splitlines() if line.startswith("| source | format |"))
    assert row.replace("\\|", "").count("|") == header.count("|")  # the pipe did not add a column
    html = render_html(report)
    assert "<script" not in html and "&lt;script&gt;" in html


def test_raw_excerpts_of_removed_rows_are_capped_and_marked_in_every_report_file():
    raw = "secret " * 600  # 4,200 characters, more than a read keeps of an unreadable row
    rejects = rejects_from_rows(
        [{"stage": "read:s", "outcome": "rejected", "reason": "unreadable_file", "source": "s", "file": "f.json",
          "row": 0, "message": "m" * 2000, "raw": raw}]
    )  # fmt: skip
    example = reject_groups(rejects)[0]["examples"][0]
    assert example["raw"] == raw[:EXCERPT_CHARS] + CUT_MARK and example["raw"].endswith("… (cut)")
    assert example["message"] == "m" * EXCERPT_CHARS + CUT_MARK
    assert len(json.dumps(example)) < 1300


def test_the_length_axis_fits_the_data_and_marks_a_far_max_length_at_its_edge():
    tokens = np.array([40, 120, 300, 605])
    stats = length_stats(tokens, tokens // 2, tokens // 2, np.zeros(4, int), ["s"], 8192)
    edges = stats["histogram"]["total"]["edges"]
    assert (edges[0], edges[-1]) == (0, 640)  # 605 tokens, not 8,192: every bin holds data
    assert stats["histogram"]["trained"]["edges"] == edges  # one axis for the three curves
    svg = plots.length_histogram(stats, 8192, 0)
    assert "max_length 8,192 →" in svg
    near = length_stats(tokens, tokens // 2, tokens // 2, np.zeros(4, int), ["s"], 1000)
    assert near["histogram"]["total"]["edges"][-1] == 1000  # close enough: the axis runs to max_length
    assert "max_length 1000" in plots.length_histogram(near, 1000, 0)


def qwen3_like(report: dict, history_as_prefix: bool | None) -> dict:
    """The demo report with a second render target whose template renders history unlike the latest turn."""
    report = copy.deepcopy(report)
    target = copy.deepcopy(report["render"]["demo-chatml"])
    target["checks"]["history_renders_as_prefix"] = history_as_prefix
    target["checks"]["row_notes"] = {"prefix_unstable_history": 12}
    report["render"]["qwen3"] = target
    return report


def test_a_note_a_template_gives_by_design_does_not_fail_the_template_gate(demo_out):
    checks = {"require_template_checks": True}
    gates = gate_section(qwen3_like(demo_report(demo_out), False), checks)
    result = next(r for r in gates["results"] if r["scope"] == "qwen3")
    assert gates["passed"] and result["passed"]
    assert result["message"].startswith("every template check passes; expected for this template, not failing: ")
    assert "12 row(s) with several trained turns" in result["message"]
    assert "set `train_on: last` on render target 'qwen3'" in result["message"]
    md = render_markdown({**qwen3_like(demo_report(demo_out), False), "gates": gates})
    assert "- expected for this template (not failing): history renders unlike the latest turn" in md


def test_a_failing_template_gate_says_what_to_do(demo_out):
    gates = gate_section(qwen3_like(demo_report(demo_out), True), {"require_template_checks": True})
    failed = [r for r in gates["results"] if not r["passed"]]
    assert [(r["scope"], r["message"]) for r in failed] == [
        ("qwen3", "prefix_unstable_history: 12 row(s) (set `train_on: last` on render target 'qwen3' to train "
                  "only the last turn)")
    ]  # fmt: skip
    assert [r["passed"] for r in gates["results"] if r["scope"] == "demo-chatml"] == [True]
