"""The recipe's `quality:` section: unknown signals are recipe errors with the line and a suggestion."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataforge.errors import RecipeError
from dataforge.recipe import parse_recipe

HEAD = "name: q\nsources:\n  - name: a\n    from: a.jsonl\n"


def load(section: str, tmp_path: Path):
    (tmp_path / "a.jsonl").write_text('{"messages": []}\n', encoding="utf-8")
    return parse_recipe(HEAD + section, tmp_path / "mix.yaml")


def test_a_quality_section_loads_with_its_defaults(tmp_path: Path) -> None:
    loaded = load("quality:\n  lang: {assistant: [en, zh], min_score: 0.65}\n  max_dup_line_share: 0.3\n", tmp_path)
    quality = loaded.recipe.quality
    assert quality.lang.assistant == ["en", "zh"] and quality.lang.min_score == 0.65
    assert quality.max_dup_line_share == 0.3 and quality.pii == "keep"
    assert load("seed: 1\n", tmp_path).recipe.quality is None


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            "quality:\n  max_dup_lines_share: 0.3\n",
            "line 6: quality.max_dup_lines_share: unknown key (did you mean `max_dup_line_share`?)",
        ),
        (
            "quality:\n  lang: {assitant: [en]}\n",
            "line 6: quality.lang.assitant: unknown key (did you mean `assistant`?)",
        ),
        ("quality:\n  pii: mask\n", "line 6: quality.pii: Input should be 'keep', 'redact' or 'reject' (found 'mask')"),
    ],
)
def test_unknown_signals_are_recipe_errors(tmp_path: Path, section: str, expected: str) -> None:
    with pytest.raises(RecipeError) as err:
        load(section, tmp_path)
    assert str(err.value).splitlines()[1].strip() == expected
