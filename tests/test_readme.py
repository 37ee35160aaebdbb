"""The README stays true to the code: every format, export and lint reason it documents exists, and none is missing."""

from __future__ import annotations

import re
from pathlib import Path

from dataforge import formats
from dataforge.exports import TRAINERS
from dataforge.stages.lint import REASONS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def table_names(heading: str) -> list[str]:
    """The first column (`name`) of the first table under `heading`."""
    section = README.split(heading, 1)[1]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("## "):
            break
        match = re.match(r"\| `([^`]+)`", line)
        if match:
            rows.append(match.group(1))
        elif rows and not line.startswith("|"):
            break
    return rows


def test_formats_table_lists_every_registered_format():
    assert table_names("## Formats\n") == formats.names()


def test_lint_table_lists_every_reason():
    documented = set()
    for line in README.split("**Lint**", 1)[1].split("\n## ", 1)[0].splitlines():
        if line.startswith("| `"):
            documented |= set(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    assert documented == set(REASONS) | {"invalid_tool_call"}


def test_exports_table_lists_every_trainer():
    assert table_names("## Exports\n")[:4] == list(TRAINERS)
