"""Builds shared by the report tests: the shipped demo, built once, in a temporary copy of the repository."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def copy_demo(root: Path) -> Path:
    """The demo's data, tokenizer and recipe under `root`; returns the recipe path."""
    shutil.copytree(REPO / "data" / "raw" / "demo", root / "data" / "raw" / "demo")
    shutil.copytree(REPO / "data" / "tokenizers" / "demo-chatml", root / "data" / "tokenizers" / "demo-chatml")
    (root / "pipelines").mkdir()
    shutil.copy(REPO / "pipelines" / "demo.yaml", root / "pipelines" / "demo.yaml")
    return root / "pipelines" / "demo.yaml"


def without_checks(recipe: Path) -> str:
    """The recipe's text without its `checks:` section (the demo's gates), for a test to set its own."""
    return recipe.read_text().split("\nchecks:", 1)[0]


def dataforge(*args: object, cwd: Path | None = None) -> tuple[int, str, str]:
    """Run the command line as a user does; (exit code, stdout, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "dataforge", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "NO_COLOR": "1", "HF_HUB_OFFLINE": "1"},
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository's demo, built with `dataforge build` (no gates set)."""
    root = tmp_path_factory.mktemp("demo")
    recipe = copy_demo(root)
    code, out, err = dataforge("build", "-q", recipe)
    assert code == 0, err
    return root


@pytest.fixture(scope="session")
def demo_out(demo_root: Path) -> Path:
    """The demo's build directory."""
    return demo_root / "data" / "processed" / "demo"
