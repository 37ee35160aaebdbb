"""The report's quality section from the quality stage's own outputs: distributions, thresholds, removals, mix."""

from __future__ import annotations

import pyarrow.parquet as pq

from builders import qa, quiet, table
from dataforge.quality.policy import Quality
from dataforge.report.quality import quality_diff, quality_gates, quality_report, render_quality_markdown
from dataforge.stages.quality import quality_examples


def test_section_counts_what_the_stage_removed_and_found(tmp_path) -> None:
    rows = table(
        qa("a", 0, "What is the capital of France?", "Paris is the capital and largest city of France."),
        qa("a", 1, "Say it again", "again\nagain\nagain\nagain"),
        qa("a", 2, "Mail me at john@example.com", "Sure, I will write to you tomorrow morning."),
    )
    policy = Quality(max_dup_line_share=0.5)
    out = quality_examples(rows, policy, "quality:a", quiet)
    pq.write_table(out.tables["signals"], tmp_path / "signals.parquet")
    report = quality_report(policy, {"a": tmp_path / "signals.parquet"}, {"quality:a": out.stats})
    assert (report["rows"], report["pii_rows"], report["pii_rate"]) == (3, 1, 0.3333)
    first = report["signals"][0]
    assert (first["signal"], first["role"], first["limits"], first["removed"]) == (
        "dup_line_share",
        "assistant",
        [{"op": "max", "limit": 0.5}],
        {"a": 1},
    )
    assert (first["rows"], first["max"], first["p50"]) == (3, 0.75, 0.0)
    assert sum(first["histogram"]["counts"]) == 3
    assert report["sources"]["a"]["lang"]["assistant"] == {"en": 2}
    md = "\n".join(render_quality_markdown(report))
    assert "| `dup_line_share` | assistant | 0 | 0.6 | 0.735 | 0.75 | max 0.5 | 1 |" in md
    assert "found in 1 of 3 rows (33.33%)" in md
    assert "| a | 3 | 1 | `dup_line_share` 1 | en 2 | en 1, nl 1 |" in md


def test_gates_on_the_quality_section() -> None:
    quality = {
        "rows": 10,
        "pii_rows": 2,
        "sources": {
            "a": {"rows": 6, "pii_rows": 2, "lang": {"assistant": {"en": 4, "zh": 1}}},
            "b": {"rows": 4, "pii_rows": 0, "lang": {"assistant": {"en": 3}}},
        },
    }
    results = quality_gates({"quality": quality}, {"max_pii_rate": 0.25, "min_lang_share": {"en": 0.9, "zh": 0.1}})
    assert [(r["gate"], r["scope"], r["value"], r["passed"]) for r in results] == [
        ("max_pii_rate", "total", 0.2, True),
        ("max_pii_rate", "a", 0.3333, False),
        ("max_pii_rate", "b", 0.0, True),
        ("min_lang_share", "en", 0.875, False),
        ("min_lang_share", "zh", 0.125, True),
    ]
    assert results[1]["message"] == "PII in 2 of 6 rows, 33.33% (limit 25.00%)"
    assert quality_gates({}, {"max_pii_rate": 0.1})[0]["message"] == "the build has no `quality:` section"


def test_diff_rows_compare_pii_rate_removals_and_language_mix() -> None:
    old = {"quality": {"pii_rate": 0.1, "sources": {"a": {"removed": {"lang": 2}, "lang": {"assistant": {"en": 8}}}}}}
    new = {
        "quality": {
            "pii_rate": 0.0,
            "sources": {"a": {"removed": {"pii": 1}, "lang": {"assistant": {"en": 6, "de": 2}}}},
        }
    }
    rows = [(r["what"], r["old"], r["new"], r["change"]) for r in quality_diff(old, new)]
    assert rows == [
        ("PII rate", 0.1, 0.0, -0.1),
        ("removed by lang", 2, 0, -2),
        ("removed by pii", 0, 1, 1),
        ("assistant en share", 1.0, 0.75, -0.25),
        ("assistant de share", 0.0, 0.25, 0.25),
    ]
    assert quality_diff({}, {}) == []
