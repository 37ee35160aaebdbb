"""`dataforge dedup FILES -o OUT`: exact and near deduplication of files outside a build.

Kept rows are written to OUT in the first input's format (or `--to`); every removed row goes to
`<OUT stem>.rejects.jsonl` beside it with the reason, where it came from, the row it duplicates (id and
file:line) and the similarity, so nothing is lost silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import UsageError
from ..recipe import Dedup, NearDedup
from ..rejects import concat_rejects, location


@dataclass
class DedupResult:
    """What `dedup_files` read, kept and removed."""

    format: str
    records: int
    kept: int
    exact: int
    near: int
    clusters: int
    unreadable: int
    rejects_path: Path
    problems: list[dict[str, Any]]  # the unreadable or invalid records' rejects rows, in input order


def rejects_path(output: Path) -> Path:
    """Where the removed rows of OUT go: `<stem>.rejects.jsonl` in OUT's folder."""
    return output.with_name(output.name.removesuffix(output.suffix) + ".rejects.jsonl")


def dedup_files(
    inputs: list[str], output: Path, near: NearDedup | None, *, exact: bool, keep: str, to: str | None, seed: int
) -> DedupResult:
    """Deduplicate the rows of `inputs` (in the order given: earlier inputs win ties) into `output`."""
    from .. import formats
    from ..checking import check_files, check_output_type, write_records
    from ..formats.base import write_each
    from ..stages.dedup import deduplicate

    check_output_type(output)
    if keep not in ("first", "longest", "quality"):
        raise UsageError(f"--keep {keep!r}: choose first, longest or quality")
    checked = [check_files(pattern, name=f"in{i}") for i, pattern in enumerate(inputs)]
    examples = pa.concat_tables([c.examples for c in checked])
    policy = Dedup(exact=exact, near=near, keep=keep)
    result = deduplicate(examples, policy, root=Path.cwd(), files=[], seed=seed, progress=lambda *_: None)
    kept = result.tables["examples"]
    removed = result.tables["rejects"]
    target = formats.get(to or checked[0].format)
    written = write_each(target, kept.drop_columns([c for c in kept.column_names if c.startswith("__")]).to_pylist())
    write_records(written.records, output)
    where = {r["id"]: location(r) for r in examples.select(["id", "file", "row", "line"]).to_pylist()}
    unreadable = concat_rejects([c.rejects for c in checked])
    lines = [_reject_line(r, where) for r in concat_rejects([unreadable, removed]).to_pylist()]
    path = rejects_path(output)
    write_records(lines, path)
    return DedupResult(
        format=target.name,
        records=sum(c.records for c in checked),
        kept=kept.num_rows,
        exact=result.stats["exact"]["removed"],
        near=result.stats["near"].get("removed", 0),
        clusters=result.stats["near"].get("clusters", 0),
        unreadable=unreadable.num_rows,
        rejects_path=path,
        problems=unreadable.to_pylist(),
    )


def _reject_line(r: dict[str, Any], where: dict[str, str]) -> dict[str, Any]:
    return {
        "at": location(r),
        "reason": r["reason"],
        "message": r["message"],
        "duplicate_of": where.get(r["duplicate_of"]) if r["duplicate_of"] else None,
        "similarity": r["similarity"],
    }
