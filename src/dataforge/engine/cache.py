"""Content-addressed stage cache (DESIGN.md seam 4).

A stage's key is the hash of: its kind and version, its canonical config, the digests of its inputs'
outputs, the sha256 of the files it reads, and the versions of the libraries that shape its output. Its
outputs live in `<cache>/<stage>/<key>/`, written to a temporary directory first and renamed into place
with the manifest inside, so an interrupted build leaves either a whole entry or none. A stage is reused
only when an entry for its exact key exists and its files are the ones stored: the manifest records each
file's size and sha256, and `check` verifies both before an entry is served (a truncated or altered entry
is reported, removed by the runner and recomputed).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..stages.base import Stage, StageInput, StageOutput
from .builddir import writing

_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, memoised per (path, size, mtime) within the process."""
    st = path.stat()
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo not in _FILE_DIGESTS:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _FILE_DIGESTS[memo] = h.hexdigest()
    return _FILE_DIGESTS[memo]


def library_versions(names: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for name in sorted(set(names) | {"dataforge"}):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


@dataclass
class Entry:
    """A cached stage output: its directory and manifest."""

    path: Path
    manifest: dict[str, Any]

    def as_input(self) -> StageInput:
        return StageInput(
            self.manifest["stage"],
            self.manifest["stats"],
            self.part_paths(),
            self.part_digests(),
            self.manifest.get("part_meta", {}),
        )

    def part_paths(self) -> dict[str, list[Path]]:
        """Each output table's Parquet parts, in row order."""
        return {name: [self.path.parent / p for p in parts] for name, parts in _parts(self.manifest).items()}

    def part_digests(self) -> dict[str, str]:
        """sha256 of each part, by its path (what a shard's key takes from its inputs)."""
        outputs = self.manifest["outputs"]
        return {
            str(self.path.parent / p): outputs[_output_name(self.manifest, p)]
            for parts in _parts(self.manifest).values()
            for p in parts
        }

    @property
    def digest(self) -> str:
        """What downstream keys depend on: the digests of every output file."""
        return hashlib.sha256(canonical_json(self.manifest["outputs"]).encode()).hexdigest()


class Cache:
    """The stage cache of one build directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def key_parts(self, stage: Stage, inputs: dict[str, Entry], root: Path) -> dict[str, Any]:
        """Everything the stage's output depends on, by name (kept in the manifest to explain staleness)."""
        files = {}
        for f in stage.files:
            try:
                shown = f.resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                shown = f.resolve().as_posix()
            files[shown] = file_sha256(f)
        return {
            "stage": stage.kind,
            "version": stage.version,
            "config": json.loads(canonical_json(stage.config)),
            "inputs": {name: inputs[name].digest for name in stage.inputs},
            "files": files,
            "libraries": library_versions(stage.libraries),
        }

    @staticmethod
    def key(parts: dict[str, Any]) -> str:
        return hashlib.sha256(canonical_json(parts).encode()).hexdigest()[:32]

    def _dir(self, stage_name: str) -> Path:
        return self.root / stage_name.replace(":", "--")

    def lookup(self, stage_name: str, key: str) -> Entry | None:
        """The verified entry for `key`, or None when there is none or it is damaged (see `check`)."""
        entry, _ = self.check(stage_name, key)
        return entry

    def check(self, stage_name: str, key: str) -> tuple[Entry | None, str | None]:
        """The entry for `key` if it is whole, else (None, what is wrong with it) — (None, None) when absent."""
        path = self._dir(stage_name) / key
        manifest = path / "manifest.json"
        if not path.is_dir():
            return None, None
        if not manifest.is_file():
            return None, "its manifest.json is missing"
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return None, f"its manifest.json cannot be read ({exc})"
        problem = damage(path, data)
        return (None, problem) if problem else (Entry(path, data), None)

    def discard(self, stage_name: str, key: str) -> None:
        """Remove the (damaged) entry for `key`."""
        shutil.rmtree(self._dir(stage_name) / key, ignore_errors=True)

    def latest(self, stage_name: str) -> Entry | None:
        """The entry the last run of this stage produced or reused, to explain what changed since."""
        pointer = self._dir(stage_name) / "LATEST"
        if not pointer.is_file():
            return None
        return self.lookup(stage_name, pointer.read_text().strip())

    def mark_latest(self, stage_name: str, key: str) -> None:
        """Point LATEST at `key`; nothing is written when it already does (a cached build writes nothing)."""
        pointer = self._dir(stage_name) / "LATEST"
        try:
            if pointer.read_text().strip() == key:
                return
        except (OSError, UnicodeDecodeError):
            pass
        _atomic_write(pointer, key.encode())

    def scratch(self, stage_name: str) -> Path:
        """A fresh scratch folder for a global stage's parts and working files (on the cache's disk, so parts move
        into the entry by rename)."""
        path = self._dir(stage_name) / f".scratch-{os.getpid()}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def shard_dir(self, stage_name: str, key: str) -> Path:
        return self._dir(stage_name) / "shards" / key

    def shard_tmp(self, stage_name: str, key: str) -> Path:
        return self._dir(stage_name) / "shards" / f".tmp-{key}-{os.getpid()}"

    def store_sharded(
        self,
        stage: Stage,
        key: str,
        parts: dict[str, Any],
        results: list[Any],
        stats: dict[str, Any],
        finished: Any = None,
    ) -> Entry:
        """The entry of a sharded stage: a manifest naming its shards' files (which stay where they are), and the
        files `finished` (engine.shards.Finished) wrote, moved into the entry."""
        final = self._dir(stage.name) / key
        tmp = self._dir(stage.name) / f".tmp-{key}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        chosen = finished.parts if finished is not None else {}
        table_parts: dict[str, list[str]] = {name: [] for name in stage.outputs}
        outputs: dict[str, str] = {}
        sizes: dict[str, int] = {}
        for name in stage.outputs:
            for i, item in enumerate(chosen.get(name, [r for r in results if r.has(name)])):
                if isinstance(item, Path):
                    (tmp / name).mkdir(exist_ok=True)
                    os.replace(item, tmp / name / f"{i:05d}.parquet")
                    rel = f"{key}/{name}/{i:05d}.parquet"
                    outputs[rel] = file_sha256(tmp / name / f"{i:05d}.parquet")
                    sizes[rel] = (tmp / name / f"{i:05d}.parquet").stat().st_size
                else:
                    rel = f"shards/{item.key}/{name}.parquet"
                    outputs[rel] = item.info["outputs"][f"{name}.parquet"]
                    sizes[rel] = item.info["sizes"][f"{name}.parquet"]
                table_parts[name].append(rel)
        outputs["stats"] = hashlib.sha256(canonical_json(stats).encode()).hexdigest()
        manifest = {
            "stage": stage.name,
            "key": key,
            "parts": parts,
            "tables": list(stage.outputs),
            "table_parts": table_parts,
            "shards": [r.key for r in results],
            "stats": stats,
            "outputs": outputs,
            "sizes": sizes,
            "part_meta": finished.meta if finished is not None else {},
        }
        try:
            with writing(tmp, 1 << 16):
                text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False)
                (tmp / "manifest.json").write_text(text)
                if final.exists():
                    shutil.rmtree(tmp)
                else:
                    os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.mark_latest(stage.name, key)
        return Entry(final, manifest)

    def store(self, stage: Stage, key: str, parts: dict[str, Any], output: StageOutput) -> Entry:
        """Write `output` under `key` atomically and return its entry.

        A failed write (a full disk, a read-only mount) removes the temporary folder, so the cache holds whole
        entries only, and becomes a DataError naming the path."""
        final = self._dir(stage.name) / key
        tmp = self._dir(stage.name) / f".tmp-{key}-{os.getpid()}"
        produced = sorted(name for name, table in output.tables.items() if table is not None)
        if produced != sorted(stage.outputs):
            raise RuntimeError(f"stage {stage.name} declared outputs {list(stage.outputs)} but produced {produced}")
        nbytes = sum(table.nbytes for table in output.tables.values() if isinstance(table, pa.Table))
        try:
            with writing(tmp, nbytes):
                manifest = self._write_entry(stage, key, parts, output, tmp)
                if final.exists():  # another run finished the same key first; its output is identical
                    shutil.rmtree(tmp)
                else:
                    os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.mark_latest(stage.name, key)
        return Entry(final, manifest)

    @staticmethod
    def _write_entry(stage: Stage, key: str, parts: dict[str, Any], output: StageOutput, tmp: Path) -> dict:
        """Write the tables and the manifest (with each file's size and sha256) into `tmp`; the manifest."""
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        outputs: dict[str, str] = {}
        sizes: dict[str, int] = {}
        tables = []
        table_parts: dict[str, list[str]] = {}
        parted = any(isinstance(table, list) for table in output.tables.values())
        for name, table in output.tables.items():
            if table is None:
                continue
            if isinstance(table, list):  # parts a global stage wrote one shard at a time: moved in, in order
                (tmp / name).mkdir()
                table_parts[name] = []
                for i, part in enumerate(table):
                    path = tmp / name / f"{i:05d}.parquet"
                    os.replace(part, path)
                    rel = f"{key}/{name}/{path.name}"
                    outputs[rel] = file_sha256(path)
                    sizes[rel] = path.stat().st_size
                    table_parts[name].append(rel)
            else:
                path = tmp / f"{name}.parquet"
                write_parquet(table, path)
                # Beside parts, a whole table is named like them (relative to the stage's folder).
                name_key = f"{key}/{path.name}" if parted else path.name
                outputs[name_key] = file_sha256(path)
                sizes[name_key] = path.stat().st_size
            tables.append(name)
        stats_text = canonical_json(output.stats)
        outputs["stats"] = hashlib.sha256(stats_text.encode()).hexdigest()
        manifest = {
            "stage": stage.name,
            "key": key,
            "parts": parts,
            "tables": tables,
            "stats": output.stats,
            "outputs": outputs,  # what downstream keys depend on (Entry.digest): unchanged by `sizes`
            "sizes": sizes,
        }
        if table_parts:
            manifest["table_parts"] = {name: table_parts.get(name, [f"{key}/{name}.parquet"]) for name in tables}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False))
        return manifest

    def prune(self, keep: dict[str, str]) -> int:
        """Remove entries other than `keep` (stage → key) and stale temporaries; the number removed."""
        removed = 0
        if not self.root.is_dir():
            return 0
        for stage_dir in self.root.iterdir():
            if not stage_dir.is_dir():
                continue
            wanted = keep.get(stage_dir.name.replace("--", ":"))
            for entry in stage_dir.iterdir():
                if entry.is_dir() and entry.name not in (wanted, "shards"):
                    shutil.rmtree(entry)
                    removed += 1
            removed += _prune_shards(stage_dir, wanted)
        return removed


def _prune_shards(stage_dir: Path, wanted: str | None) -> int:
    """Remove the shards (and stale temporaries) the kept entry of a sharded stage does not name."""
    shards = stage_dir / "shards"
    if not shards.is_dir():
        return 0
    used: set[str] = set()
    if wanted is not None:
        try:
            used = set(json.loads((stage_dir / wanted / "manifest.json").read_text(encoding="utf-8")).get("shards", []))
        except (OSError, ValueError):
            used = set()
    removed = 0
    for shard in shards.iterdir():
        if shard.name not in used:
            shutil.rmtree(shard, ignore_errors=True)
            removed += 1
    return removed


def _parts(manifest: dict[str, Any]) -> dict[str, list[str]]:
    """Each table's parts, relative to the stage's folder (an entry of one file per table names `<key>/<t>.parquet`)."""
    if "table_parts" in manifest:
        return {name: list(manifest["table_parts"][name]) for name in manifest["tables"]}
    return {name: [f"{manifest['key']}/{name}.parquet"] for name in manifest["tables"]}


def _output_name(manifest: dict[str, Any], rel: str) -> str:
    """The key under `outputs` of the part at `rel` (entries of one file per table record the bare file name)."""
    if "table_parts" in manifest:
        return rel
    return rel.split("/", 1)[1]


def write_parquet(table: pa.Table, path: Path) -> None:
    """Deterministic Parquet: same table → same bytes (no timestamps; fixed compression and row groups)."""
    pq.write_table(table, path, compression="zstd", row_group_size=64 * 1024, write_statistics=True)


def damage(path: Path, manifest: dict[str, Any]) -> str | None:
    """What is wrong with the cache entry at `path` (a file missing, cut or altered), or None when it is whole.

    Sizes are compared first (cheap, and what a truncation changes); then each file's sha256 (about 0.1 s per
    100 MB, memoised per file and mtime within a process)."""
    try:
        outputs, sizes = manifest["outputs"], manifest.get("sizes", {})
        if canonical_json_digest(manifest["stats"]) != outputs.get("stats"):
            return "its stats do not match their recorded digest"
        for parts in _parts(manifest).values():
            for rel in parts:
                file, name = path.parent / rel, _output_name(manifest, rel)
                want = outputs[name]
                shown = file.name if "table_parts" not in manifest else rel
                if not file.is_file():
                    return f"{shown} is missing"
                size = file.stat().st_size
                if name in sizes and size != sizes[name]:
                    return f"{shown} is {size:,} bytes, {sizes[name]:,} were stored"
                if file_sha256(file) != want:
                    return f"{shown} does not match its recorded sha256"
    except (KeyError, TypeError, AttributeError) as exc:
        return f"its manifest.json lacks {exc}"
    except OSError as exc:
        return f"it cannot be read ({exc})"
    return None


def canonical_json_digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with writing(path, len(data)):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `path` so readers see the old or the new content, never a part."""
    _atomic_write(path, data)


def atomic_write_parquet(table: pa.Table, path: Path) -> None:
    """Write `table` to `path` atomically (temp + rename); a failed write leaves no temporary behind."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with writing(path, table.nbytes):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_parquet(table, tmp)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` for a writer that takes a path (a plot); renamed over `path` at the end."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with writing(path):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            yield tmp
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise
