"""Shared test helpers: where the real fixtures (vendored or shared) are, and tiny files written under `tmp_path`."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataforge.checking import Checked, check_files

# No test may reach the network: the hub clients fail fast instead of retrying a connection.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MODELSCOPE_OFFLINE", "1")

# Real tokenizers, chat templates and peer datasets. A licence-compatible subset is vendored in tests/fixtures
# (see its README.md); the rest lives in the shared fixtures folder: $DATAFORGE_FIXTURES when set (then the only
# shared location), else ../shared/fixtures beside the checkout. `fixture_path` is the one place that chooses.
VENDORED_FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_FIXTURES = Path(
    os.environ.get("DATAFORGE_FIXTURES") or Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
)


def fixture_path(relative: str) -> Path:
    """`relative` (e.g. "templates/qwen3", "peers/llamafactory/c4_demo.jsonl") from the vendored fixtures, else
    from the shared ones; skips the calling test, naming what it needs, when neither has it."""
    for root in (VENDORED_FIXTURES, SHARED_FIXTURES):
        path = root / relative
        if path.exists():
            return path
    pytest.skip(
        f"needs {relative} from the shared fixtures (../shared/fixtures or $DATAFORGE_FIXTURES): not vendored in "
        f"tests/fixtures and not found under {SHARED_FIXTURES}"
    )


def write_records(path: Path, content: str | bytes | list[Any]) -> Path:
    """Write `content` to `path`: text or bytes as given; a list as JSONL, JSON or Parquet by suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    elif path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(content), path)
    elif path.suffix == ".json":
        path.write_text(json.dumps(content, ensure_ascii=False, indent=2), encoding="utf-8")
    else:
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in content), encoding="utf-8")
    return path


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str | bytes | list[Any]], Path]:
    """`write(name, content)`: a file under `tmp_path` (see `write_records`)."""
    return lambda name, content: write_records(tmp_path / name, content)


@pytest.fixture
def check(tmp_path: Path) -> Callable[..., Checked]:
    """`check(path, fmt=None, columns=None)`: read → convert → validate, provenance relative to `tmp_path`."""

    def run(path: Path, fmt: str | None = None, columns: dict[str, str] | None = None) -> Checked:
        return check_files(str(path), fmt, columns, root=tmp_path)

    return run


@pytest.fixture(name="fixture_path", scope="session")
def fixture_path_fixture() -> Callable[[str], Path]:
    """`fixture_path(relative)`: a real fixture file or folder, vendored or shared (see `fixture_path`)."""
    return fixture_path
