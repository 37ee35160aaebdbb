"""tests/fixtures/ says what it holds: every vendored file has a row (source, licence) in its README, and where the
shared fixtures are present, each verbatim copy equals its original byte for byte."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

VENDORED = Path(__file__).resolve().parent / "fixtures"
README = (VENDORED / "README.md").read_text(encoding="utf-8")
FILES = sorted(
    p.relative_to(VENDORED).as_posix()
    for p in VENDORED.rglob("*")
    if (p.is_file() or p.is_symlink()) and p.parent != VENDORED
)


def _row_name(rel: str) -> str:
    """How the README names a file: below templates/ as `family/file`, below peers/llamafactory/ as `file`."""
    return rel.removeprefix("templates/").removeprefix("peers/llamafactory/")


def test_every_vendored_file_has_a_row_in_the_readme():
    assert len(FILES) > 20
    missing = [rel for rel in FILES if f"| `{_row_name(rel)}` |" not in README]
    assert missing == []


def test_the_vendored_files_stay_near_15_mb():
    total = sum((VENDORED / rel).stat().st_size for rel in FILES if not (VENDORED / rel).is_symlink())
    assert total < 16_500_000


def test_peer_files_are_verbatim_copies():
    shared = Path(os.environ.get("DATAFORGE_FIXTURES") or VENDORED.parents[2] / "shared" / "fixtures")
    peers = [rel for rel in FILES if rel.startswith("peers/")]
    if not (shared / "peers").is_dir():
        pytest.skip(f"needs the shared fixtures' peers/ to compare the {len(peers)} vendored peer files with")
    assert len(peers) >= 18
    differ = [rel for rel in peers if (VENDORED / rel).read_bytes() != (shared / rel).read_bytes()]
    assert differ == []
