"""Checking and converting single files outside a build: read → convert → validate, with every reject kept."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from . import formats
from .errors import UsageError
from .readers import files_problem, find_files
from .recipe import Source
from .rejects import concat_rejects
from .stages.convert import convert_raw
from .stages.read import read_source, resolve_format, skipped_files, source_files
from .stages.validate import validate_examples


@dataclass
class Checked:
    """Valid examples of a set of files and every rejected record, in file order."""

    format: str
    records: int
    examples: pa.Table
    rejects: pa.Table
    unmodelled: dict[str, int]  # nested fields the format does not model → values not carried
    skipped: list[dict[str, str]] = field(default_factory=list)  # files of a folder that are not data, with why


def _quiet(done: int, total: int, what: str) -> None:
    return None


def check_files(
    pattern: str,
    fmt: str | None = None,
    columns: dict[str, str] | None = None,
    root: Path | None = None,
    name: str = "input",
) -> Checked:
    """Read, convert and validate the files `pattern` names, as a one-source build named `name` would."""
    root = root or Path.cwd()
    if fmt is not None and fmt not in formats.names():
        raise UsageError(formats.unknown(fmt), hint=f"known formats: {', '.join(formats.names())}")
    # A path typed on the command line is the person's own choice: it may lead outside the working folder.
    source = Source.model_validate(
        {"name": name, "from": pattern, "format": fmt, "columns": columns or {}, "allow_outside_root": True}
    )
    found = find_files(pattern, root, allow_outside_root=True)  # errors name the argument, not `from:`
    problem = files_problem(found, pattern, root, key=None)
    if problem is not None:
        raise problem
    files = source_files(source, root)
    resolved = resolve_format(source, files, root)
    skipped = skipped_files(source, root)
    read = read_source(source, files, root, resolved, _quiet, skipped)
    converted = convert_raw(read.tables["raw"], resolved, name, _quiet)
    validated = validate_examples(converted.tables["examples"], _quiet)
    rejects = concat_rejects([read.tables["rejects"], converted.tables["rejects"], validated.tables["rejects"]])
    if rejects.num_rows:
        rejects = rejects.sort_by([("file", "ascending"), ("row", "ascending")])
    return Checked(
        resolved, read.stats["records"], validated.tables["examples"], rejects, read.stats["unmodelled_fields"], skipped
    )


OUTPUT_TYPES = (".jsonl", ".json", ".parquet")


def check_output_type(output: Path) -> None:
    """A usage error unless `output` names a file type `write_records` writes."""
    suffix = output.suffix.lower()
    if suffix not in OUTPUT_TYPES:
        raise UsageError(f"{output}: unsupported output type {suffix!r}", hint="use .jsonl, .json or .parquet")


def write_records(records: list[dict[str, Any]], output: Path) -> None:
    """`records` to `output` as JSON Lines, a JSON array or Parquet, by its suffix (one of OUTPUT_TYPES)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    suffix = output.suffix.lower()
    if suffix == ".jsonl":
        # allow_nan=False: never `NaN` in a JSON file (the writers leave such rows out first: `write_each`)
        output.write_text(
            "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in records), encoding="utf-8"
        )
    elif suffix == ".json":
        output.write_text(json.dumps(records, ensure_ascii=False, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    else:
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), output)
