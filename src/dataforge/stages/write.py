"""write: the build directory — train/val parquet, rejects, exports, summary report, manifest with ledger.

This is the edge stage that touches the build directory. Every file is written atomically (temp + rename),
the manifest last; its key covers every upstream entry and the output settings, so an unchanged build
writes nothing. Outputs an earlier build wrote that this one does not (an export taken out of the recipe)
are removed before the manifest is written, so the manifest lists exactly the files present.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import __version__
from ..engine.builddir import HOUSEKEEPING, build_dir_lock, read_marker, set_pending
from ..engine.cache import (
    Cache,
    Entry,
    atomic_path,
    atomic_write_bytes,
    canonical_json,
    file_sha256,
    library_versions,
)
from ..engine.graph import rejecting_stages
from ..errors import DataforgeError
from ..exports import Exported, open_export
from ..recipe import LoadedRecipe
from ..record import EXAMPLE_SCHEMA
from ..rejects import REJECTS_SCHEMA, Outcome, capped_raw
from ..report.assemble import complete_report, report_files
from ..report.lengths import plot
from ..report.summary import build_report
from ..streams import Tables, TextFiles, as_tables, slices, write_parquet_stream, write_parts
from .base import Stage, StageInput
from .export_job import ExportJob
from .quality import canonical_schema

# 2: report.html, content statistics and gates in the report; 3: report.md escapes data, excerpts capped,
# expected template notes, length axes scaled to the data
VERSION = 3
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


def ledger(
    loaded: LoadedRecipe,
    entries: dict[str, Entry],
    rejects: pa.Table | Tables,
    train: pa.Table | Tables,
    val: pa.Table | Tables,
) -> dict[str, Any]:
    """Per source and in total: rows in = train + val + rejected + filtered + deduplicated + downsampled.

    Counted one piece at a time from the `source` and `outcome` columns alone."""
    rows: dict[str, dict[str, int]] = {}
    counts = group_counts(as_tables(rejects), ["source", "outcome"])
    train_src = group_counts(as_tables(train), ["source"])
    val_src = group_counts(as_tables(val), ["source"])
    for src in loaded.recipe.sources:
        name = src.name
        r = {"in": entries[f"read:{name}"].manifest["stats"]["records"]}
        for outcome in Outcome:
            r[outcome.value] = counts.get((name, outcome.value), 0)
        r["train"] = train_src.get((name,), 0)
        r["val"] = val_src.get((name,), 0)
        out = r["train"] + r["val"] + sum(r[o.value] for o in Outcome)
        r["balanced"] = out == r["in"]
        rows[name] = r
    total = {k: sum(r[k] for r in rows.values()) for k in ["in", *(o.value for o in Outcome), "train", "val"]}
    total["balanced"] = all(r["balanced"] for r in rows.values())
    return {"sources": rows, "total": total}


def reject_tables(inputs: list[StageInput], columns: list[str] | None = None) -> Tables:
    """The rejects of every rejecting stage, in graph order, as `concat_rejects` would hold them (REJECTS_SCHEMA,
    `raw` capped; empty parts skipped), read one part at a time; `columns` picks a subset of REJECTS_SCHEMA."""
    names = [f.name for f in REJECTS_SCHEMA]
    parts = [part for inp in inputs for part in inp.parts("rejects")]

    def read(wanted: list[str] | None) -> Iterator[pa.Table]:
        schema = REJECTS_SCHEMA if wanted is None else pa.schema([REJECTS_SCHEMA.field(c) for c in wanted])
        for part in parts:
            present = set(pq.read_schema(part).names)
            table = pq.read_table(part, columns=[f.name for f in schema if f.name in present])
            if table.num_rows == 0:
                continue
            columns = {
                f.name: table[f.name].cast(f.type) if f.name in present else pa.nulls(table.num_rows, f.type)
                for f in schema
            }
            table = pa.table(columns, schema=schema)
            yield capped_raw(table) if "raw" in schema.names else table

    return Tables(read, names, sum(pq.ParquetFile(p).metadata.num_rows for p in parts))


def group_counts(tables: Tables, keys: list[str]) -> dict[tuple, int]:
    """Rows per distinct value of `keys` (nulls included, as Arrow's group_by counts them), over every piece."""
    out: dict[tuple, int] = {}
    for table in tables(keys):
        if table.num_rows == 0:
            continue
        grouped = table.group_by(keys).aggregate([([], "count_all")])
        for r in grouped.to_pylist():
            key = tuple(r[k] for k in keys)
            out[key] = out.get(key, 0) + r["count_all"]
    return out


def _manifest_target(stats: dict[str, Any]) -> dict[str, Any]:
    """A render target in the manifest: tokenizer/template digests, rows, and how it packed (when it does)."""
    entry = {**stats["target"], "rows": stats["rows"]}
    if stats.get("pack"):
        keys = ("strategy", "max_length", "bins", "rows_packed", "efficiency")
        entry["pack"] = {key: stats["pack"][key] for key in keys}
    return entry


def write_build(loaded: LoadedRecipe, stages: list[Stage], entries: dict[str, Entry]) -> dict[str, Any]:
    """Write every output of the build (holding the build directory's lock); returns the manifest."""
    with build_dir_lock(loaded) as claim:
        claim.refuse_writes()
        return _write_build(loaded, stages, entries)


def previous_outputs(out: Path) -> set[str]:
    """Files earlier builds wrote here: the last manifest's outputs and any a killed build left pending."""
    names = set(read_marker(out).get("pending_outputs", []))
    try:
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        names |= set(manifest.get("outputs", {}))
    except (OSError, ValueError, AttributeError):
        pass
    # Only plain relative paths below the build dir, never our own housekeeping (a hand-edited manifest
    # must not make a build delete files elsewhere).
    return {n for n in names if isinstance(n, str) and _inside(n) and n.split("/")[0] not in HOUSEKEEPING}


def _inside(name: str) -> bool:
    parts = Path(name).parts
    return bool(parts) and not Path(name).is_absolute() and ".." not in parts


def remove_stale(out: Path, stale: set[str]) -> None:
    """Remove outputs an earlier build wrote that this one does not, and the folders they leave empty."""
    for name in sorted(stale):
        path = out / name
        path.unlink(missing_ok=True)
        for parent in path.parents:
            if parent == out or not parent.is_relative_to(out):
                break
            try:
                parent.rmdir()
            except OSError:  # not empty (or gone): what is left is still in use
                break


def _write_build(loaded: LoadedRecipe, stages: list[Stage], entries: dict[str, Entry]) -> dict[str, Any]:
    out = loaded.build_dir
    out.mkdir(parents=True, exist_ok=True)
    pending = previous_outputs(out)
    set_pending(out, pending)  # before the manifest goes: a killed write still leaves the list behind
    # The manifest is the build's seal: removed first and written last, so a directory that has one is
    # complete and consistent, whatever moment an earlier build was interrupted at.
    (out / "manifest.json").unlink(missing_ok=True)
    split_entry = entries["split"].as_input()
    train, val = Tables.parts(split_entry.parts("train")), Tables.parts(split_entry.parts("val"))
    reject_inputs = [entries[name].as_input() for name in rejecting_stages(stages)]
    book = ledger(loaded, entries, reject_tables(reject_inputs, ["source", "outcome"]), train, val)
    if not book["total"]["balanced"]:
        bad = [n for n, r in book["sources"].items() if not r["balanced"]]
        raise LedgerError(f"internal error: the ledger does not balance for {', '.join(bad)}: {book['sources']}")
    written: dict[str, str] = {}

    def note(name: str) -> None:
        if name not in pending:  # a new output: listed before it exists, so no killed build can orphan it
            pending.add(name)
            set_pending(out, pending)

    def parquet(parts: list[Path], name: str, empty: pa.Schema | None = None) -> None:
        """A stage output's parts as one file, streamed (the bytes today's write of the whole table gives);
        `empty`: the schema of a table that has no parts at all."""
        note(name)
        write_parts(parts, out / name, empty)
        written[name] = file_sha256(out / name)

    def text(data: str, name: str) -> None:
        note(name)
        atomic_write_bytes(out / name, data.encode("utf-8"))
        written[name] = file_sha256(out / name)

    # The exports run in worker processes meanwhile when that is worth it (see export_job), else here, below.
    job = ExportJob.start(out, loaded, {"train": split_entry.parts("train"), "val": split_entry.parts("val")})
    example_schema = canonical_schema(loaded.recipe.quality is not None)  # with its `quality` column or not
    try:
        parquet(split_entry.parts("train"), "train.parquet", example_schema)
        parquet(split_entry.parts("val"), "val.parquet", example_schema)
        note("rejects.parquet")
        all_rejects = reject_tables(reject_inputs)
        nbytes = all_rejects.num_rows * 256
        write_parquet_stream(all_rejects(), out / "rejects.parquet", REJECTS_SCHEMA, nbytes=nbytes)
        written["rejects.parquet"] = file_sha256(out / "rejects.parquet")
        rejects = Tables.file(out / "rejects.parquet")  # read back one row group at a time for the report
        rendered = {}
        rendered_rows = {}  # target → its rendered train + val rows, for the report's token shares and samples
        for spec in loaded.recipe.render:
            entry = entries[f"render:{spec.name}"].as_input()
            packed = ("packed_train", "packed_val") if spec.pack is not None else ()
            for name in ("train", "val", "rejects", *packed):
                parts = entry.parts(name)
                parquet(parts, f"rendered/{spec.name}/{name}.parquet", None if parts else _rendered_schema(name))
            rendered[spec.name] = entry.stats
            rendered_rows[spec.name] = Tables.chain(
                Tables.parts(entry.parts("train")), Tables.parts(entry.parts("val"))
            )
            png = f"rendered/{spec.name}/lengths.png"
            note(png)
            with atomic_path(out / png) as tmp:
                plot(entry.stats["lengths"], spec.max_length, f"{spec.name}: tokens per row (train + val)", tmp)
            written[png] = file_sha256(out / png)
        stage_stats = {name: e.manifest["stats"] for name, e in entries.items()}
        if job is None:
            splits = {"train": train, "val": val}
            exports = write_exports(out, loaded.recipe.outputs.exports, loaded.recipe.name, splits, note)
        else:
            exports, job = job.collect(note), None
    except BaseException:
        if job is not None:
            job.abandon()
        raise
    export_losses = {}
    for name, (exported, hashes) in exports.items():
        written.update(hashes)
        export_losses[name] = {"files": exported.rows, "losses": exported.losses, "transforms": exported.transforms}
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
        "render": {name: _manifest_target(stats) for name, stats in rendered.items()},
        "outputs": dict(sorted(written.items())),
        "versions": library_versions(LIBRARIES + ("datasets", "transformers")),
    }
    remove_stale(out, pending - set(written))
    atomic_write_bytes(
        out / "manifest.json",
        (json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True, allow_nan=False) + "\n").encode(),
    )
    set_pending(out, set())  # the manifest lists every output now
    return manifest


def _rendered_schema(name: str) -> pa.Schema | None:
    """The schema of a render target's table `name`, for writing it when it has no parts (packed tables: none)."""
    from ..render.engine import RENDERED_SCHEMA
    from .render import DROPPED_SCHEMA

    return {"train": RENDERED_SCHEMA, "val": RENDERED_SCHEMA, "rejects": DROPPED_SCHEMA}.get(name)


EXPORT_BATCH = 10_000  # rows turned into dicts at a time for the exports


def write_exports(
    out: Path, names: list[str], dataset: str, splits: dict[str, Tables], note: Callable[[str], None]
) -> dict[str, tuple[Exported, dict[str, str]]]:
    """The exports `names` of dataset `dataset`, written batch by batch under `out/exports/<name>/` (each file
    atomically, all renamed into place once every row is in); per export its counts and {file: sha256}.
    `note(file)` is called before a file is first created."""
    if not names:
        return {}
    files = {name: TextFiles(out, note) for name in names}
    exporters = {
        name: open_export(name, _Prefixed(files[name], f"exports/{name}/"), dataset, keep_left_out=False)
        for name in names
    }
    try:
        for split, tables in splits.items():
            for exporter in exporters.values():
                exporter.add(split, [])  # every split is known to every export, even one without rows
            for table in tables(EXAMPLE_SCHEMA.names):  # the record, never the quality signals
                for batch in slices(table, EXPORT_BATCH):
                    rows = batch.to_pylist()
                    for exporter in exporters.values():
                        exporter.add(split, rows)
        done = {name: exporter.finish() for name, exporter in exporters.items()}
        result = {}
        for name in names:
            committed = files[name].commit()
            result[name] = (done[name], {f: file_sha256(out / f) for f in committed})
        return result
    except BaseException:
        for f in files.values():
            f.discard()
        raise


class _Prefixed:
    """A sink writing into `files` under a folder prefix."""

    def __init__(self, files: TextFiles, prefix: str) -> None:
        self.files, self.prefix = files, prefix

    def write(self, name: str, text: str) -> None:
        self.files.write(self.prefix + name, text)


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


def no_rows_problem(build_dir: Path, top: int = 3) -> str | None:
    """One line saying why a build kept no training rows (with its top reasons), or None when it kept some.

    Why: a build with nothing to train on is unusable data (exit 1), even though its report is written and
    explains it; the gates only check what a recipe asks for."""
    try:
        total = json.loads((build_dir / "manifest.json").read_text(encoding="utf-8"))["ledger"]["total"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if total.get("train", 0) > 0:
        return None
    n_in = total.get("in", 0)
    if n_in == 0:
        return "the build kept no rows: its sources hold no records"
    dropped = [f"{total[o.value]:,} of {n_in:,} records {o.value}" for o in Outcome if total.get(o.value)]
    left = f"{total.get('val', 0):,} went to validation" if total.get("val") else None
    line = "the build kept no training rows: " + ", ".join([*dropped, *([left] if left else [])])
    counts: dict[str, int] = {}
    example: dict[str, str] = {}
    try:
        # One row group at a time, two columns: a build that kept nothing may have rejected millions of rows.
        for table in Tables.file(build_dir / "rejects.parquet")(["reason", "message"]):
            for reason, n in group_counts(Tables.of(table), ["reason"]).items():
                counts[reason[0]] = counts.get(reason[0], 0) + n
            for reason in counts.keys() - example.keys():
                first = (
                    pc.index(table["reason"], reason).as_py() if reason is not None else _first_null(table["reason"])
                )
                if first >= 0:
                    example[reason] = " ".join(str(table["message"][first].as_py() or "").split())
    except (OSError, ValueError, KeyError, pa.ArrowInvalid):
        return line
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[:top]  # str: a null reason sorts too
    reasons = "; ".join(f"{reason} {n:,}: {_clip(example[reason])}" for reason, n in ranked)
    return f"{line} ({reasons})" if reasons else line


def _first_null(column: pa.ChunkedArray) -> int:
    """The index of the first null in `column`, or -1."""
    nulls = pc.is_null(column).to_numpy(zero_copy_only=False)
    return int(nulls.argmax()) if nulls.any() else -1


def _clip(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
