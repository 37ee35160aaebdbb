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


def test_the_bad_recipe_example_prints_what_the_readme_says(tmp_path):
    """The README's malformed recipe, built, prints the error block the README quotes (exit 2)."""
    import subprocess
    import sys

    section = README.split("A malformed recipe reports every problem at once", 1)[1]
    recipe, printed = re.findall(r"```(?:yaml)?\n(.*?)```", section, flags=re.S)[:2]
    (tmp_path / "bad.yaml").write_text(recipe, encoding="utf-8")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.jsonl").write_text("", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "dataforge", "build", "bad.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr == printed


def test_the_setup_commands_ci_runs_are_the_readmes():
    """`.ci/run` takes its two commands from the README's Set up section; the section still has them."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / ".ci" / "readme_command.py"
    first = subprocess.run([sys.executable, str(script), "first"], capture_output=True, text=True, check=True)
    tests = subprocess.run([sys.executable, str(script), "tests"], capture_output=True, text=True, check=True)
    assert first.stdout.strip().endswith("pip install -e . && dataforge build pipelines/demo.yaml")
    assert tests.stdout.strip().endswith('pip install -e ".[dev,train,ray]" && python -m pytest -q -n 2')
    assert f"```bash\n{first.stdout}```" in README
    ci = (script.parent / "run").read_text(encoding="utf-8")
    assert "readme_command.py first" in ci and "readme_command.py tests" in ci


def test_the_demo_recipe_the_readme_shows_is_pipelines_demo_yaml():
    """The recipe under "What the demo shows" says what pipelines/demo.yaml says (comments and layout aside), so the
    README's figures, which tests/test_demo.py checks against a real build, are that recipe's."""
    import yaml

    section = README.split("## What the demo shows\n", 1)[1]
    shown = yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, flags=re.S)[1])
    demo = yaml.safe_load((Path(__file__).resolve().parents[1] / "pipelines" / "demo.yaml").read_text(encoding="utf-8"))
    assert shown == demo
    assert demo["quality"] == {"max_dup_line_share": 0.3, "pii": "redact"}
