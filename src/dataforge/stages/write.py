"""write: the build directory — train/val parquet, rejects, exports, summary report, manifest with ledger.

This is the edge stage that touches the build directory. Every file is written atomically (temp + rename),
the manifest last; its key covers every upstream entry and the output settings, so an unchanged build
writes nothing.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pyarrow as pa

from .. import __version__
from ..engine.cache import (
    Cache,
    Entry,
    atomic_write_bytes,
    atomic_write_parquet,
    canonical_json,
    file_sha256,
    library_versions,
)
from ..engine.graph import rejecting_stages
from ..errors import DataforgeError
from ..exports import export
from ..recipe import LoadedRecipe
from ..rejects import Outcome, concat_rejects, count_by
from ..report.assemble import complete_report, report_files
from ..report.lengths import plot
from ..report.summary import build_report
from .base import Stage

VERSION = 2  # 2: report.html, content statistics and gates in the report
LIBRARIES = ("pyarrow", "numpy", "jsonschema", "pydantic")


class LedgerError(DataforgeError):
    """The ledger does not balance: a bug in dataforge, never in the data."""

    exit_code = 1


def write_key(loaded: LoadedRecipe, entries: dict[str, Entry]) -> str:
    parts = {
        "version": VERSION,
        "recipe": recipe_digest(loaded),
        "entries": {name: e.digest for name, e in sorted(entries.items())},
        "libraries": library_versions(LIBRARIES),
    }
    return Cache.key(parts)


def recipe_digest(loaded: LoadedRecipe) -> str:
    """sha256 of the recipe's validated content (comments and key order do not change it)."""
    return hashlib.sha256(canonical_json(loaded.recipe.model_dump(by_alias=True)).encode()).hexdigest()


def is_current(loaded: LoadedRecipe, key: str) -> bool:
    manifest = loaded.build_dir / "manifest.json"
    if not manifest.is_file():
        return False
    data = json.loads(manifest.read_text())
    if data.get("build_key") != key:
        return False
    return all(
        (loaded.build_dir / name).is_file() and file_sha256(loaded.build_dir / name) == digest
        for name, digest in data.get("outputs", {}).items()
    )


def ledger(loaded: LoadedRecipe, entries: dict[str, Entry], rejects: pa.Table, train: pa.Table, val: pa.Table):
    """Per source and in total: rows in = train + val + rejected + filtered + deduplicated + downsampled."""
    rows: dict[str, dict[str, int]] = {}
    counts = {(c["source"], c["outcome"]): c["count"] for c in count_by(rejects, "source", "outcome")}
    train_src = train["source"].to_pylist()
    val_src = val["source"].to_pylist()
    for src in loaded.recipe.sources:
        name = src.name
        r = {"in": entries[f"read:{name}"].manifest["stats"]["records"]}
        for outcome in Outcome:
            r[outcome.value] = counts.get((name, outcome.value), 0)
        r["train"] = train_src.count(name)
        r["val"] = val_src.count(name)
        out = r["train"] + r["val"] + sum(r[o.value] for o in Outcome)
        r["balanced"] = out == r["in"]
        rows[name] = r
    total = {k: sum(r[k] for r in rows.values()) for k in ["in", *(o.value for o in Outcome), "train", "val"]}
    total["balanced"] = all(r["balanced"] for r in rows.values())
    return {"sources": rows, "total": total}


def write_build(loaded: LoadedRecipe, stages: list[Stage], entries: dict[str, Entry]) -> dict[str, Any]:
    """Write every output of the build; returns the manifest."""
    out = loaded.build_dir
    out.mkdir(parents=True, exist_ok=True)
    # The manifest is the build's seal: removed first and written last, so a directory that has one is
    # complete and consistent, whatever moment an earlier build was interrupted at.
    (out / "manifest.json").unlink(missing_ok=True)
    split_entry = entries["split"].as_input()
    train, val = split_entry.table("train"), split_entry.table("val")
    reject_tables = [entries[name].as_input().table("rejects") for name in rejecting_stages(stages)]
    rejects = concat_rejects(reject_tables)
    book = ledger(loaded, entries, rejects, train, val)
    if not book["total"]["balanced"]:
        bad = [n for n, r in book["sources"].items() if not r["balanced"]]
        raise LedgerError(f"internal error: the ledger does not balance for {', '.join(bad)}: {book['sources']}")
    written: dict[str, str] = {}

    def parquet(table: pa.Table, name: str) -> None:
        atomic_write_parquet(table, out / name)
        written[name] = file_sha256(out / name)

    def text(data: str, name: str) -> None:
        atomic_write_bytes(out / name, data.encode("utf-8"))
        written[name] = file_sha256(out / name)

    parquet(train, "train.parquet")
    parquet(val, "val.parquet")
    parquet(rejects, "rejects.parquet")
    export_losses = {}
    splits = {"train": train.to_pylist(), "val": val.to_pylist()} if loaded.recipe.outputs.exports else {}
    for name in loaded.recipe.outputs.exports:
        exported = export(name, splits, loaded.recipe.name)
        for path, data in sorted(exported.files.items()):
            text(data, f"exports/{name}/{path}")
        export_losses[name] = {"files": exported.rows, "losses": exported.losses, "transforms": exported.transforms}
    rendered = {}
    rendered_rows = {}  # target → its rendered train + val rows, for the report's token shares and samples
    for spec in loaded.recipe.render:
        entry = entries[f"render:{spec.name}"].as_input()
        tables = {name: entry.table(name) for name in ("train", "val", "rejects")}
        for name, table in tables.items():
            parquet(table, f"rendered/{spec.name}/{name}.parquet")
        rendered[spec.name] = entry.stats
        rendered_rows[spec.name] = pa.concat_tables([tables["train"], tables["val"]])
        png = f"rendered/{spec.name}/lengths.png"
        plot(entry.stats["lengths"], spec.max_length, f"{spec.name}: tokens per row (train + val)", out / png)
        written[png] = file_sha256(out / png)
    stage_stats = {name: e.manifest["stats"] for name, e in entries.items()}
    report = build_report(loaded, stages, entries, stage_stats, book, rejects, train, val, export_losses)
    report["render"] = rendered
    complete_report(report, loaded, train, val, rejects, rendered_rows)
    for name, data in report_files(report).items():
        text(data, name)
    manifest = {
        "dataforge": __version__,
        "build_key": write_key(loaded, entries),
        # The recipe itself (defaults left out) travels with the build: `dataforge push` puts it in the card.
        "recipe": {
            "name": loaded.recipe.name,
            "digest": recipe_digest(loaded),
            "config": loaded.recipe.model_dump(mode="json", by_alias=True, exclude_defaults=True),
        },
        "sources": source_lock(loaded, entries),
        "stages": {name: e.manifest["key"] for name, e in entries.items()},
        "ledger": book,
        "render": {name: {**stats["target"], "rows": stats["rows"]} for name, stats in rendered.items()},
        "outputs": dict(sorted(written.items())),
        "versions": library_versions(LIBRARIES + ("datasets", "transformers")),
    }
    atomic_write_bytes(
        out / "manifest.json", (json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode()
    )
    return manifest


def source_lock(loaded: LoadedRecipe, entries: dict[str, Entry]) -> list[dict[str, Any]]:
    """Per source: its format and every file used, with sha256 and record count; a hub source adds where it
    came from (uri, revision, resolved commit, license), as its lock entry pinned it."""
    lock = []
    for src in loaded.recipe.sources:
        entry = entries[f"read:{src.name}"].manifest
        digests = entry["parts"]["files"]
        hub = entry["parts"]["config"].get("hub")
        lock.append(
            {
                "name": src.name,
                "format": entry["stats"]["format"],
                "files": [{**f, "sha256": digests.get(f["file"])} for f in entry["stats"]["files"]],
                # Files the folder rule passed over (README, dataset_info.json, …): named, so none is lost unseen.
                **({"skipped": entry["stats"]["skipped"]} if entry["stats"].get("skipped") else {}),
                **({"hub": {k: v for k, v in hub.items() if k != "files"}} if hub else {}),
            }
        )
    return lock
