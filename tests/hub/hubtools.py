"""Helpers for hub tests: rows for fake repositories, and the CLI run in a subprocess against the fake hub.

The subprocess gets a clean environment: the hub endpoints point at the fake, caches and HOME live under the
test's temporary directory, and none of the offline variables the suite sets for itself are passed on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fakehub import FakeHub


def sharegpt_rows(n: int, topic: str) -> bytes:
    rows = [
        {
            "conversations": [
                {"from": "human", "value": f"Question {i} about {topic}?"},
                {"from": "gpt", "value": f"Answer {i}: {topic} in a few words."},
            ]
        }
        for i in range(n)
    ]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def alpaca_rows(n: int, topic: str) -> bytes:
    rows = [
        {"instruction": f"Tell me about {topic} {i}.", "input": "", "output": f"{topic} {i} is fine."} for i in range(n)
    ]
    return json.dumps(rows, ensure_ascii=False, indent=1).encode()


CHAT_CARD = {
    "license": "apache-2.0",
    "configs": [
        {
            "config_name": "default",
            "data_files": [
                {"split": "train", "path": "data/train-*.jsonl"},
                {"split": "test", "path": "data/test-*.jsonl"},
            ],
        }
    ],
}

RECIPE = """\
name: hubmix
seed: 1
sources:
  - name: chat
    from: hf://acme/chat
    format: sharegpt
  - name: huanhuan
    from: ms://kmno4zx/huanhuan-chat
split: {validation: 0.2}
"""


def cli(hub: FakeHub, *args: object, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run `dataforge ARGS` as a user would, against the fake hub; (exit code, stdout, stderr)."""
    home = cwd / ".home"
    base = {
        "PATH": "/usr/bin:/bin",
        "COLUMNS": "200",
        "NO_COLOR": "1",
        "HOME": str(home),
        "HF_HOME": str(home / "hf"),
        "HF_ENDPOINT": hub.url,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "MODELSCOPE_ENDPOINT": hub.url,
        "MODELSCOPE_CACHE": str(home / "ms"),
        "DATAFORGE_HUB_RETRY_DELAY": "0.05",
        # Anything not addressed to 127.0.0.1 goes to a proxy that is not there: no request can leave the machine.
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "dataforge", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**base, **(env or {})},
        timeout=300,
    )
    return proc.returncode, proc.stdout, proc.stderr
