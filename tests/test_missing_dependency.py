"""A package that is missing at run time is one line naming it and the command that installs it.

The packages are made missing the way Python itself allows: `sys.modules[name] = None` makes `import name`
fail with ModuleNotFoundError, and transformers is told jinja2 is unavailable through its own availability
check, so it raises the ImportError it raises on a machine without jinja2.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dataforge.deps import as_missing_dependency, install_command, missing_package

REPO = Path(__file__).resolve().parents[1]


def run_cli(tmp_path: Path, prelude: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`dataforge ARGS` in a fresh interpreter that runs `prelude` first, in `tmp_path`."""
    code = textwrap.dedent(prelude) + textwrap.dedent(f"""
        sys.argv = ["dataforge", *{list(args)!r}]
        from dataforge.cli import main
        main()
    """)
    return subprocess.run(
        [sys.executable, "-c", "import sys\n" + code], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """The demo recipe and its data under `tmp_path` (root `.`)."""
    shutil.copytree(REPO / "data" / "raw" / "demo", tmp_path / "data" / "raw" / "demo")
    shutil.copytree(REPO / "data" / "tokenizers" / "demo-chatml", tmp_path / "data" / "tokenizers" / "demo-chatml")
    recipe = (REPO / "pipelines" / "demo.yaml").read_text(encoding="utf-8").replace("root: ..", "root: .")
    path = tmp_path / "demo.yaml"
    path.write_text(recipe, encoding="utf-8")
    return path


@pytest.mark.integration
def test_a_build_without_jinja2_names_the_package_not_the_template(tmp_path, demo):
    done = run_cli(
        tmp_path,
        """
        import transformers.utils.chat_template_utils as ctu
        ctu.is_jinja_available = lambda: False
        """,
        "build",
        str(demo),
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith(("error:", "  hint:"))]
    assert lines[0].startswith("error: rendering with a chat template needs the Python package 'jinja2'")
    assert lines[1] == '  hint: pip install "jinja2"  (part of the core install: pip install -e . brings it)'
    assert "`chat_template:`" not in done.stderr  # the old hint pointed at the recipe
    assert "Traceback" not in done.stderr


@pytest.mark.integration
def test_training_without_the_train_extra_says_which_extra(tmp_path, demo):
    # A hub id: it is not looked up before the training packages are imported (and the tests are offline).
    recipe = demo.read_text(encoding="utf-8") + "train: {method: sft, model: acme/tiny-model, target: demo-chatml}\n"
    demo.write_text(recipe, encoding="utf-8")
    done = run_cli(tmp_path, "sys.modules['trl'] = None\nsys.modules['peft'] = None\n", "train", str(demo))
    assert done.returncode == 2, done.stderr
    assert "error: `dataforge train` needs the Python package 'trl'" in done.stderr
    # `[train]` printed as text, not swallowed as terminal markup
    assert '  hint: pip install "dataforge[train]"' in done.stderr
    assert "Traceback" not in done.stderr


def test_real_import_errors_map_to_the_package_and_its_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    with pytest.raises(ImportError) as raised:
        import bitsandbytes  # noqa: F401
    error = raised.value
    assert missing_package(error) == "bitsandbytes"
    missing = as_missing_dependency(error, "QLoRA")
    assert missing is not None and missing.exit_code == 2
    assert missing.message == "QLoRA needs the Python package 'bitsandbytes', which is not installed or is too old"
    assert missing.hint == 'pip install "bitsandbytes"'
    assert install_command("torch").startswith('pip install "dataforge[train]"')
    assert install_command("protobuf").startswith('pip install "protobuf"  (part of the core install')


def test_a_library_wording_names_the_package_and_our_own_modules_are_not_packages():
    worded = ImportError("LlamaTokenizer requires the SentencePiece library but it was not found in your environment.")
    assert missing_package(worded) == "sentencepiece"
    ours = ModuleNotFoundError("No module named 'dataforge.nothing'", name="dataforge.nothing")
    assert as_missing_dependency(ours, "build") is None  # a bug in dataforge, shown as one
    assert as_missing_dependency(ImportError("something else entirely"), "build") is None
