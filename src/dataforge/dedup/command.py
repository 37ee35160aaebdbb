"""`dataforge dedup FILES -o OUT`: exact and near deduplication of files outside a build.

Kept rows are written to OUT in the first input's format (or `--to`); every removed row goes to
`<OUT stem>.rejects.jsonl` beside it with the reason, where it came from, the row it duplicates (id and
file:line) and the similarity, so nothing is lost silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import UsageError
from ..recipe import Dedup, NearDedup


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


def rejects_path(output: Path) -> Path:
    """Where the removed rows of OUT go: `<stem>.rejects.jsonl` in OUT's folder."""
    return output.with_name(output.name.removesuffix(output.suffix) + ".rejects.jsonl")


def dedup_files(
    inputs: list[str], output: Path, near: NearDedup | None, *, exact: bool, keep: str, to: str | None, seed: int
) -> DedupResult:
    """Deduplicate the rows of `inputs` (in the order given: earlier inputs win ties) into `output`."""
    from .. import formats
    from ..checking import check_files
    from ..rejects import concat_rejects
    from ..stages.dedup import deduplicate

    suffix = output.suffix.lower()
    if suffix not in {".jsonl", ".json", ".parquet"}:
        raise UsageError(f"{output}: unsupported output type {suffix!r}", hint="use .jsonl, .json or .parquet")
    checked = [check_files(pattern, name=f"in{i}") for i, pattern in enumerate(inputs)]
    if keep not in ("first", "longest", "quality"):
        raise UsageError(f"--keep {keep!r}: choose first, longest or quality")
    examples = pa.concat_tables([c.examples for c in checked])
    policy = Dedup(exact=exact, near=near, keep=keep)
    result = deduplicate(examples, policy, root=Path.cwd(), files=[], seed=seed, progress=lambda *_: None)
    kept = result.tables["examples"]
    removed = result.tables["rejects"]
    target = formats.get(to or checked[0].format)
    written = target.from_examples(kept.to_pylist())
    output.parent.mkdir(parents=True, exist_ok=True)
    _write_records(written.records, output)
    where = {r["id"]: _where(r) for r in examples.select(["id", "file", "row", "line"]).to_pylist()}
    unreadable = concat_rejects([c.rejects for c in checked])
    lines = [_reject_line(r, where) for r in concat_rejects([unreadable, removed]).to_pylist()]
    path = rejects_path(output)
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    return DedupResult(
        format=target.name,
        records=sum(c.records for c in checked),
        kept=kept.num_rows,
        exact=result.stats["exact"]["removed"],
        near=result.stats["near"].get("removed", 0),
        clusters=result.stats["near"].get("clusters", 0),
        unreadable=unreadable.num_rows,
        rejects_path=path,
    )


def _where(r: dict[str, Any]) -> str:
    return f"{r['file']}:{r['line']}" if r["line"] is not None else f"{r['file']}#{r['row']}"


def _reject_line(r: dict[str, Any], where: dict[str, str]) -> dict[str, Any]:
    return {
        "at": _where(r),
        "reason": r["reason"],
        "message": r["message"],
        "duplicate_of": where.get(r["duplicate_of"]) if r["duplicate_of"] else None,
        "similarity": r["similarity"],
    }


def _write_records(records: list[dict[str, Any]], output: Path) -> None:
    suffix = output.suffix.lower()
    if suffix == ".jsonl":
        output.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    elif suffix == ".json":
        output.write_text(json.dumps(records, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    else:
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), output)
