"""Fixtures for hub tests: a fake hub on 127.0.0.1 holding one HF and one ModelScope dataset, and a recipe."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fakehub import FakeHub, Repo
from hubtools import CHAT_CARD, RECIPE, alpaca_rows, sharegpt_rows


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    """A fake hub with an HF dataset (two splits, a card with configs) and a ModelScope dataset (one JSON file)."""
    with FakeHub() as fake:
        fake.hf["acme/chat"] = Repo(
            files={
                "README.md": b"---\nlicense: apache-2.0\n---\n# chat\n",
                "data/train-00000-of-00001.jsonl": sharegpt_rows(20, "chat"),
                "data/test-00000-of-00001.jsonl": sharegpt_rows(5, "chat test"),
            },
            card=CHAT_CARD,
        )
        fake.ms["kmno4zx/huanhuan-chat"] = Repo(
            files={
                "README.md": b"---\nlicense: apache-2.0\n---\n# huanhuan\n",
                "huanhuan.json": alpaca_rows(10, "huanhuan"),
            }
        )
        yield fake


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A recipe with one hf:// and one ms:// source; returns its path."""
    recipe = tmp_path / "mix.yaml"
    recipe.write_text(RECIPE, encoding="utf-8")
    return recipe
