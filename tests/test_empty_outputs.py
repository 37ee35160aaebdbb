"""A convert or render that writes nothing exits 1 and says why (issue 19): an empty output is no success."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

QWEN = Path(__file__).parent / "fixtures" / "templates" / "qwen2.5-instruct"


def dataforge(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dataforge", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "args,said",
    [
        (
            ("convert", "empty.jsonl", "--format", "openai", "--to", "alpaca", "-o", "out.jsonl"),
            "error: out.jsonl holds no records: the input holds no records",
        ),
        (
            ("convert", "empty.jsonl", "--format", "openai", "--to", "trl", "-o", "trl"),
            "error: trl/ holds no records: the input holds no records",
        ),
        (
            ("render", "empty.jsonl", "--format", "openai", "-t", str(QWEN)),
            "error: no rows rendered: the input holds no records",
        ),
        (
            ("render", "bad.jsonl", "--format", "openai", "-t", str(QWEN)),
            "error: no rows rendered: every row was rejected or dropped",
        ),
    ],
    ids=["convert-file", "convert-trainer", "render-empty", "render-all-rejected"],
)
def test_a_command_that_writes_nothing_exits_1_and_says_why(tmp_path, args, said):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    (tmp_path / "bad.jsonl").write_text('{"messages": [{"role": "user", "content": "only a question"}]}\n')
    done = dataforge(*args, cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert said in done.stderr
    assert "Traceback" not in done.stderr
