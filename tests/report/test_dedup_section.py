"""The report reads a `dedup` section (exact + MinHash near-duplicates, decontamination) when a build has one."""

from __future__ import annotations

import json

import jsonschema

from conftest import REPO
from dataforge.report.gates import evaluate, metrics
from dataforge.report.html import render_html

NEAR = {
    "exact": {"removed": 26},
    "near": {
        "enabled": True,
        "threshold": 0.8,
        "removed": 4,
        "clusters": 3,
        "cluster_sizes": {"2": 2, "3": 1},
        "by_source": {"alpaca": {"rows": 93, "removed": 3, "rate": 0.0323}},
        "cross_source_clusters": 1,
        "samples": [
            {
                "cluster": "c0",
                "members": [
                    {"id": "alpaca:3", "source": "alpaca", "similarity": None, "kept": True, "text": "How do I sort?"},
                    {"id": "alpaca:7", "source": "alpaca", "similarity": 0.86, "kept": False, "text": "How to sort?"},
                ],
            }
        ],
    },
    "decontamination": {"val_removed": 1, "train_removed": 0, "files": ["data/eval/gsm8k.jsonl"]},
}


def test_near_duplicates_count_in_the_duplicate_rate_and_show_in_the_html(demo_out):
    report = json.loads((demo_out / "report" / "report.json").read_text())
    # The demo's own dedup section (exact + near) and the ledger count the same rows.
    dedup = report["dedup"]
    assert metrics(report)["duplicates"] == dedup["exact"]["removed"] + dedup["near"]["removed"]
    assert metrics(report)["duplicates"] == report["ledger"]["total"]["deduplicated"]
    assert f"Near duplicates (MinHash, threshold {dedup['near']['threshold']})" in render_html(report)
    del report["dedup"]  # without one (a build with exact dedup only): the ledger's count
    assert metrics(report)["duplicates"] == report["ledger"]["total"]["deduplicated"]
    report["dedup"] = NEAR
    schema = json.loads((REPO / "schemas" / "report.schema.json").read_text())
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(report)) == []
    assert metrics(report)["duplicates"] == 30
    (gate,) = evaluate(report, {"max_duplicate_rate": 0.1})
    # 261 rows reach dedup in the demo: 282 records - 17 rejected - 4 filtered
    assert (gate["value"], gate["passed"]) == (round(30 / 261, 4), False)
    html = render_html(report)
    duplicates = html.split('<section id="duplicates">', 1)[1].split("</section>", 1)[0]
    assert "Near duplicates (MinHash, threshold 0.8)" in duplicates
    assert "4 removed in 3 cluster(s); 1 span sources." in duplicates
    assert "How to sort?" in duplicates and ">0.86<" in duplicates
    assert "1 val and 0 train row(s) removed against data/eval/gsm8k.jsonl" in duplicates
