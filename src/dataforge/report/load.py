"""Reading a finished build's report.json, for `dataforge check` and `dataforge diff`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import DataError, UsageError


def load_report(build: Path) -> dict[str, Any]:
    """report.json of a build directory (or the file itself); a usage error when there is none."""
    path = build if build.is_file() else build / "report" / "report.json"
    if not path.is_file():
        raise UsageError(
            f"{build}: no report/report.json here", hint="pass a build directory, e.g. data/processed/demo"
        )
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable report ({exc})") from None
    if not isinstance(report, dict) or "ledger" not in report:
        raise DataError(f"{path}: not a dataforge report (no `ledger`)")
    return report
