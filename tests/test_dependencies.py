"""The core install declares what dataforge imports, with lower bounds that hold and that CI installs and runs.

Every third-party module that `src/dataforge` imports (an AST scan, so lazy imports inside functions count) is a
core dependency, or a train-extra one imported only under `dataforge/trainers/`. Every core dependency is either
imported or named below with the reason a dependency needs it without declaring it. The installed versions
satisfy the declared bounds, and the constraints file CI installs the lowest versions with pins exactly them.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SOURCE = ROOT / "src" / "dataforge"
TRAINERS = SOURCE / "trainers"
LOWEST_CONSTRAINTS = ROOT / ".ci" / "lowest_constraints.py"

# Import name → distribution name, where they differ.
DISTRIBUTION = {
    "yaml": "pyyaml",
    "huggingface_hub": "huggingface-hub",
    "modelscope_hub": "modelscope-hub",
    "google": "protobuf",
}
# Core dependencies that dataforge never imports: packages that transformers needs at run time without declaring.
NOT_IMPORTED = {
    "jinja2": "transformers renders chat templates with it (apply_chat_template), >=3.1.6",
    "sentencepiece": "transformers loads SentencePiece-only tokenizers (tokenizer.model, e.g. Mistral v0.2) with it",
    "protobuf": "transformers converts a SentencePiece model to a fast tokenizer with it",
}
# Imported only under dataforge/trainers/, for `dataforge train` and `merge`: the `train` extra.
TRAIN_ONLY = {"torch", "trl", "peft"}
# GPU-only (QLoRA), imported under dataforge/trainers/ inside `try: ... except ImportError` that says what to install;
# declared nowhere, as it is needed only on CUDA machines.
GUARDED = {"bitsandbytes"}
# `engine: ray`: the `ray` extra, imported only by the Ray executor (which says how to install it when it is missing).
RAY_ONLY = {"ray"}
RAY_EXECUTOR = SOURCE / "engine" / "ray_executor.py"


def requirements(group: str = "core") -> dict[str, Requirement]:
    """The requirements of the core install (`[project] dependencies`) or of one extra, by canonical name."""
    project = PYPROJECT["project"]
    listed = project["dependencies"] if group == "core" else project["optional-dependencies"][group]
    return {canonicalize_name(r.name): r for r in map(Requirement, listed)}


def lower_bound(requirement: Requirement) -> str:
    lows = [spec.version for spec in requirement.specifier if spec.operator == ">="]
    assert len(lows) == 1, f"{requirement}: needs exactly one '>=' lower bound"
    return lows[0]


def first_party() -> set[str]:
    return {name.rstrip("*").rstrip(".") for name in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]}


def guarded_by_import_error(tree: ast.AST) -> set[ast.stmt]:
    """The statements that sit directly in the body of a `try` with an `except ImportError` (or ModuleNotFoundError)."""
    guarded: set[ast.stmt] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            for handler in node.handlers:
                names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
                if any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names):
                    guarded.update(node.body)
    return guarded


@functools.cache
def third_party_imports() -> tuple[tuple[str, Path, int, bool], ...]:
    """(top-level module, file, line, guarded by `except ImportError`) for each third-party import in src/dataforge."""
    skip = set(sys.stdlib_module_names) | first_party()
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        guarded = guarded_by_import_error(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in skip:
                    found.append((top, path, node.lineno, node in guarded))
    return tuple(found)


def distribution(module: str) -> str:
    return canonicalize_name(DISTRIBUTION.get(module, module))


def test_the_scan_sees_the_imports_it_must() -> None:
    """A scan that found nothing would pass everything below: it sees lazy imports inside functions too."""
    modules = {module for module, *_ in third_party_imports()}
    assert {"pyarrow", "transformers", "scipy", "httpx2", "requests", "torch"} <= modules


def test_every_import_outside_the_trainers_is_a_core_dependency() -> None:
    core = requirements("core")
    missing = [
        f"{path.relative_to(ROOT)}:{line}: {module} (distribution {distribution(module)})"
        for module, path, line, _ in third_party_imports()
        if distribution(module) not in core and module not in TRAIN_ONLY | GUARDED | RAY_ONLY
    ]
    assert not missing, "imported but not in [project] dependencies:\n" + "\n".join(missing)


def test_ray_is_in_the_ray_extra_and_imported_only_by_the_ray_executor() -> None:
    assert {distribution(m) for m in RAY_ONLY} <= set(requirements("ray"))
    misplaced = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for module, path, line, _ in third_party_imports()
        if module in RAY_ONLY and path != RAY_EXECUTOR
    ]
    assert not misplaced, "ray imported outside engine/ray_executor.py:\n" + "\n".join(misplaced)


def test_train_only_imports_are_in_the_train_extra_and_only_under_trainers() -> None:
    train = requirements("train")
    assert {distribution(m) for m in TRAIN_ONLY} <= set(train), "the train extra lacks a package the trainers import"
    misplaced = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for module, path, line, _ in third_party_imports()
        if module in TRAIN_ONLY | GUARDED and not path.is_relative_to(TRAINERS)
    ]
    assert not misplaced, (
        "train-only packages imported outside dataforge/trainers/ (the core install lacks them):\n"
        + ("\n".join(misplaced))
    )


def test_undeclared_optional_imports_are_guarded_with_a_message() -> None:
    unguarded = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for module, path, line, guarded in third_party_imports()
        if module in GUARDED and not guarded
    ]
    assert not unguarded, "optional GPU-only imports must sit in `try/except ImportError`:\n" + "\n".join(unguarded)


def test_every_core_dependency_is_imported_or_says_why_not() -> None:
    imported = {distribution(module) for module, *_ in third_party_imports()}
    unexplained = sorted(set(requirements("core")) - imported - set(NOT_IMPORTED))
    assert not unexplained, (
        f"core dependencies dataforge never imports (drop them or say why in NOT_IMPORTED): {unexplained}"
    )
    stale = sorted(set(NOT_IMPORTED) - set(requirements("core")))
    assert not stale, f"NOT_IMPORTED names packages that are not core dependencies: {stale}"


@pytest.mark.parametrize("group", ["core", "train"])
def test_installed_versions_satisfy_the_declared_bounds(group: str) -> None:
    """Every core dependency is installed and within its bounds; so is every train-extra one that is installed."""
    wrong = []
    for name, requirement in requirements(group).items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            if group == "core":
                wrong.append(f"{requirement}: not installed")
            continue
        lower_bound(requirement)
        if not requirement.specifier.contains(installed, prereleases=True):
            wrong.append(f"{requirement}: {installed} is installed")
    assert not wrong, f"{group} dependencies outside their declared bounds:\n" + "\n".join(wrong)


def lowest_constraints(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(LOWEST_CONSTRAINTS), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_lowest_constraints_pin_every_core_dependency_at_its_lower_bound() -> None:
    result = lowest_constraints()
    assert result.returncode == 0, result.stderr
    pins = {}
    for line in result.stdout.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line.strip())
        assert match, f"not a `name==version` pin: {line!r}"
        name = canonicalize_name(match.group(1))
        assert name not in pins, f"{name} is pinned twice"
        pins[name] = match.group(2)
    assert pins == {name: lower_bound(r) for name, r in requirements("core").items()}


def test_lowest_constraints_refuse_a_dependency_without_a_lower_bound(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\ndependencies = ["numpy>=1.26", "rich<14"]\n', encoding="utf-8")
    result = lowest_constraints(str(pyproject))
    assert result.returncode != 0
    assert "rich<14" in result.stderr
