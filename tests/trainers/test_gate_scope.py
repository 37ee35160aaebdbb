"""Training checks only the gates that concern its own render target: a template gate failing on another
target does not block `train` (or `train --handoff-only`) for this one."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from dataforge.errors import DataError
from dataforge.recipe import RenderTarget
from dataforge.trainers.build import TrainingData
from dataforge.trainers.checks import check_gates


def gate(name: str, scope: str, passed: bool, message: str) -> dict:
    return {"gate": name, "scope": scope, "limit": True, "value": passed, "passed": passed, "message": message}


def data_for(target: str, build: Path, results: list[dict]) -> TrainingData:
    """A build directory whose report.json records `results` for targets `chat` and `qwen3`, as seen by a run
    that trains on `target`."""
    (build / "report").mkdir(parents=True, exist_ok=True)
    report = {
        "render": {"chat": {}, "qwen3": {}},
        "gates": {"checks": {}, "results": results, "passed": all(r["passed"] for r in results)},
    }
    (build / "report" / "report.json").write_text(json.dumps(report), encoding="utf-8")
    spec = RenderTarget.model_validate({"name": target, "tokenizer": "t"})
    return TrainingData(build, {}, "", spec, {}, {}, pa.table({"reason": pa.array([], pa.string())}))


def test_a_gate_failing_on_another_target_does_not_block_training(tmp_path):
    results = [
        gate("require_template_checks", "qwen3", False, "prefix_unstable_history: 3 row(s)"),
        gate("require_template_checks", "chat", True, "every template check passes"),
        gate("min_rows", "total", True, "234 rows (≥ 1)"),
    ]
    check_gates(data_for("chat", tmp_path, results))  # trains on `chat`: qwen3's template is not its concern
    with pytest.raises(DataError) as refused:
        check_gates(data_for("qwen3", tmp_path, results))
    assert str(refused.value).splitlines()[0] == (
        "the build failed its quality gate require_template_checks [qwen3]: prefix_unstable_history: 3 row(s); "
        "not training on it"
    )


def test_a_build_wide_gate_still_blocks_every_target(tmp_path):
    results = [gate("min_rows", "total", False, "3 rows (< 100)")]
    with pytest.raises(DataError, match=r"quality gate min_rows: 3 rows \(< 100\); not training on it"):
        check_gates(data_for("chat", tmp_path, results))
