"""What the CLI prints from data is printed as it is: never read as terminal markup or emoji codes, never
wrapped inside a line (one reject per line in logs and pipes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def dataforge(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dataforge", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def chat(user: str, role: str = "assistant") -> str:
    return json.dumps({"messages": [{"role": "user", "content": user}, {"role": role, "content": "fine"}]})


def test_a_reject_on_line_100_and_a_role_that_looks_like_markup_print_verbatim(tmp_path):
    lines = [chat(f"question {i} " + "padding " * 12) for i in range(99)]
    lines.append(chat("the hundredth", role="[/x]"))
    lines.append(chat("styled?", role="[red]robot"))
    (tmp_path / "data.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = dataforge("validate", "data.jsonl", "--format", "openai", cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    out = done.stdout.splitlines()
    assert out[0].startswith("data.jsonl:100: messages[1].role: unknown role '[/x]'")
    assert out[1].startswith("data.jsonl:101: messages[1].role: unknown role '[red]robot'")
    assert "💯" not in done.stdout
    assert out[2] == "data.jsonl: openai, 101 records, 99 valid, 2 invalid"
    assert len(out) == 3  # one line per reject, however long: no wrapping at 80 columns in a pipe
    assert all(len(line) > 80 for line in out[:2])
