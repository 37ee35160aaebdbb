#!/usr/bin/env python3
"""Print a pip constraints file that pins every core dependency of pyproject.toml at its declared lower bound.

CI installs the core package with it (`pip install -e . -c <(python .ci/lowest_constraints.py)`) and runs the demo,
so each `>=X` in `[project] dependencies` is a version that has really been installed and run. The pins are read
from pyproject.toml each time, so they cannot drift from it. A core dependency without a `>=` bound is an error.
Only the standard library is used: this runs before anything is installed.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"

# PEP 508 name, optional [extras], then the version specifiers up to an environment marker.
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*)")


def lower_bounds(pyproject: Path = PYPROJECT) -> list[tuple[str, str]]:
    """(name, lower bound) for each core dependency, in the order pyproject.toml lists them."""
    with pyproject.open("rb") as handle:
        dependencies = tomllib.load(handle)["project"]["dependencies"]
    bounds = []
    for requirement in dependencies:
        match = _REQUIREMENT.match(requirement)
        if match is None:
            raise SystemExit(f"{pyproject}: cannot read the requirement {requirement!r}")
        name, specifiers = match.group(1), match.group(2)
        lows = [spec.strip()[2:].strip() for spec in specifiers.split(",") if spec.strip().startswith(">=")]
        if len(lows) != 1:
            raise SystemExit(f"{pyproject}: {requirement!r} needs exactly one '>=' lower bound")
        bounds.append((name, lows[0]))
    return bounds


def main() -> int:
    pyproject = Path(sys.argv[1]) if len(sys.argv) > 1 else PYPROJECT
    print(f"# Core dependencies of {pyproject.name} at their declared lower bounds (.ci/lowest_constraints.py).")
    for name, low in lower_bounds(pyproject):
        print(f"{name}=={low}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
