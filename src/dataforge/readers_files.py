"""Which files a source reads: file types by suffix, compression, and the rule for folders and globs.

A path names one file; a folder means every file below it; a glob, every path it matches (a matched folder
counts as the folder). Every file found is either read, skipped under a rule that names it (hidden, metadata,
documentation, media), or an error naming it: nothing in a folder is passed over without a word.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from .engine.builddir import MARKER as BUILD_MARKER
from .errors import DataError

# Suffix → kind. Text formats may be compressed (`.jsonl.gz`); the compound suffixes are listed too, so that
# `name.endswith(suffix)` for any key tells whether dataforge reads a file (the hub's resolver does that).
PLAIN = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".arrow": "arrow",  # Arrow IPC stream (what `datasets.Dataset.save_to_disk` writes) or file
    ".feather": "arrow",
}
COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}
COMPRESSIBLE = ("jsonl", "json", "csv", "tsv")
SUFFIXES = {
    **PLAIN,
    **{s + c: kind for s, kind in PLAIN.items() if kind in COMPRESSIBLE for c in COMPRESSION},
}

# The folder rule: files that are not records, skipped and named (in the read stage's stats, on the console).
METADATA = {
    "dataset_info.json": "dataset metadata: LLaMA-Factory's dataset registry, or the features `datasets` saved",
    "dataset_infos.json": "dataset metadata: `datasets`' dataset card data",
    "state.json": "`datasets` save_to_disk state (its data-*.arrow files are read)",
    "dataset_dict.json": "`datasets` DatasetDict index: every split folder below it is read into this source",
}
DOC_NAMES = ("readme", "license", "licence", "copying", "notice", "changelog", "citation", "authors")
DOC_SUFFIXES = (".md", ".markdown", ".rst")
MEDIA_SUFFIXES = (
    ".jpg .jpeg .png .gif .webp .bmp .tif .tiff .svg .mp3 .wav .flac .ogg .m4a .mp4 .avi .mov .mkv .webm".split()
)

# What an unreadable file is, by suffix, and what to do about it.
_UNREADABLE = {
    ".zip": "a zip archive; extract it and point `from:` at the folder",
    ".tar": "a tar archive; extract it and point `from:` at the folder",
    ".tgz": "a tar archive; extract it and point `from:` at the folder",
    ".7z": "a 7-Zip archive; extract it and point `from:` at the folder",
    ".rar": "a RAR archive; extract it and point `from:` at the folder",
    ".xlsx": "a spreadsheet; export it as CSV (one header row, one record per row)",
    ".xls": "a spreadsheet; export it as CSV (one header row, one record per row)",
    ".txt": "plain text; dataforge reads records: put each document in a `text` field of a .jsonl file",
    ".xz": "xz-compressed; decompress it, or recompress it with gzip or zstd",
    ".lz4": "lz4-compressed; decompress it, or recompress it with gzip or zstd",
    ".py": "Python code (a dataset loading script?); point `from:` at the data files it loads",
    ".yaml": "YAML, not records (a recipe or config?)",
    ".yml": "YAML, not records (a recipe or config?)",
}


@dataclass(frozen=True)
class FileType:
    kind: str  # jsonl | json | csv | tsv | parquet | arrow
    compression: str | None = None  # gzip | bz2 | zstd


def supported() -> str:
    """The file types dataforge reads, for messages."""
    codecs = [c for c, name in COMPRESSION.items() if pa.Codec.is_available(name)]
    return (
        f".jsonl, .ndjson, .json, .csv, .tsv (each also compressed: {', '.join(codecs)}), .parquet, "
        ".arrow (a `datasets` save_to_disk folder), .feather"
    )


def file_type(path: Path) -> FileType:
    """The file's type from its suffix(es); a DataError saying what the file is and what to do otherwise."""
    why = unreadable(path)
    if why is not None:
        raise DataError(f"{path}: {why}", hint=f"dataforge reads {supported()}")
    name = path.name.lower()
    comp = next((c for c in COMPRESSION if name.endswith(c)), None)
    inner = Path(name[: -len(comp)]) if comp else Path(name)
    return FileType(PLAIN[inner.suffix], COMPRESSION[comp] if comp else None)


def file_kind(path: Path) -> str:
    """`jsonl`, `json`, `csv`, `tsv`, `parquet` or `arrow`, from the file's suffix."""
    return file_type(path).kind


def unreadable(path: Path) -> str | None:
    """None when dataforge reads `path` by its suffix; else what the file is and what to do, in words."""
    name = path.name.lower()
    comp = next((c for c in COMPRESSION if name.endswith(c)), None)
    inner = Path(name[: -len(comp)]) if comp else Path(name)
    if comp is not None:
        if name.endswith((".tar.gz", ".tar.bz2", ".tar.zst")):
            return "a tar archive; extract it and point `from:` at the folder"
        kind = PLAIN.get(inner.suffix)
        codec = COMPRESSION[comp]
        if kind is None:
            return (
                f"{codec}-compressed data of unknown type ({comp!r}); name it after what it holds "
                f"(e.g. {inner.stem or 'data'}.jsonl{comp}) or decompress it"
            )
        if kind not in COMPRESSIBLE:
            return f"a compressed {inner.suffix} file; {inner.suffix} files are compressed inside: decompress it"
        if not pa.Codec.is_available(codec):
            return f"{codec}-compressed, and this pyarrow has no {codec} codec; decompress it first"
        return None
    if inner.suffix in PLAIN:
        return None
    if inner.suffix in _UNREADABLE:
        return _UNREADABLE[inner.suffix]
    return f"unsupported file type {inner.suffix or '(no suffix)'!r}"


def skip_reason(rel: Path) -> str | None:
    """Why a file found in a folder is not data (`rel`: its path below the folder), or None when it may be."""
    name = rel.name
    lower = name.lower()
    if lower in METADATA:
        return METADATA[lower]
    if name.startswith("."):
        return "hidden file"
    if lower.startswith(DOC_NAMES) or lower.endswith(DOC_SUFFIXES):
        return "documentation"
    if lower.endswith(tuple(MEDIA_SUFFIXES)):
        return "media (records may refer to it; it is not records)"
    return None


def _hidden_dir(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


@dataclass
class FileSet:
    """What a path, folder or glob names: files to read, files skipped by the folder rule, files not readable."""

    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file or hidden folder, why)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # (file, what it is and what to do)
    looked_for: Path | None = None  # the absolute path or glob searched
    # (file, where it leads): files that resolve (through links or `..`) outside the recipe's root. Why: a
    # recipe from a pull request must not copy a secret file's lines into rejects and reports.
    outside: list[tuple[Path, Path]] = field(default_factory=list)
    root: Path | None = None  # the root that `outside` is judged against; None: not judged

    def _add(self, path: Path, rel: Path) -> None:
        why = skip_reason(rel)
        if why is not None:
            self.skipped.append((path, why))
            return
        problem = unreadable(path) if path.exists() else "a broken link: the file it points to does not exist"
        if problem is None:
            self._take(path)
        else:
            self.unreadable.append((path, problem))

    def _take(self, path: Path) -> None:
        """Read `path`, unless it resolves outside the root being enforced (then it is listed in `outside`)."""
        target = Path(os.path.realpath(path))
        if self.root is not None and not _inside(target, self.root):
            self.outside.append((path, target))
        else:
            self.files.append(path)

    def _walk(self, folder: Path) -> None:
        """Every file below `folder`; linked folders are followed, each real folder once, except links to a
        folder that holds this one (a loop), which are skipped and named."""
        top = os.path.realpath(folder)
        seen: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in seen:
                dirnames[:] = []
                continue
            seen.add(real)
            here = Path(dirpath)
            keep = []
            for d in sorted(dirnames):
                target = os.path.realpath(here / d)
                if (here / d / BUILD_MARKER).is_file():
                    # A dataforge build folder (`data/processed/<name>` below `from: data`): its outputs are not
                    # source data, and its housekeeping files would be named as skipped on every build.
                    continue
                if _hidden_dir(d):
                    self.skipped.append((here / d, "hidden folder (not searched)"))
                elif top == target or top.startswith(target + os.sep):
                    self.skipped.append((here / d, "a link to a folder that holds this one (not followed)"))
                else:
                    keep.append(d)
            dirnames[:] = keep
            for f in sorted(filenames):
                path = here / f
                self._add(path, path.relative_to(folder))

    def _sort(self) -> None:
        self.files = sorted(set(self.files))
        self.skipped = sorted(set(self.skipped))
        self.unreadable = sorted(set(self.unreadable))
        self.outside = sorted(set(self.outside))


def _inside(target: Path, root: Path) -> bool:
    """Whether the resolved `target` is `root` or below it (`root` already resolved)."""
    return target == root or root in target.parents


def find_files(pattern: str, root: Path, allow_outside_root: bool = False) -> FileSet:
    """The files named by a path, a folder (every file below it) or a glob, sorted, by the folder rule.

    A path to one file is read whatever its name (when its type is readable). In a folder, and among a glob's
    matches, hidden files and folders, dataset metadata (`dataset_info.json`, `state.json`,
    `dataset_dict.json`), documentation (README, LICENSE, *.md) and media files are skipped and named; any
    other file dataforge does not read is listed in `unreadable`.

    Every file found is resolved (links, `..`); one that leads outside `root` is listed in `outside` (and
    `files_problem` refuses it) unless `allow_outside_root`. Absolute paths count as outside unless under root.
    """
    base = Path(pattern)
    path = base if base.is_absolute() else root / base
    found = FileSet(looked_for=path, root=None if allow_outside_root else Path(os.path.realpath(root)))
    if path.is_dir():
        found._walk(path)
    elif any(ch in pattern for ch in "*?["):
        matches = [Path(m) for m in glob.glob(str(path), recursive=True)]
        folders = {p for p in matches if p.is_dir()}
        for folder in sorted(folders):
            if not any(parent in folders for parent in folder.parents):  # `**` matches every folder below
                found._walk(folder)
        for p in matches:
            if p.is_file():
                found._add(p, Path(p.name))
    elif path.is_file():
        problem = unreadable(path)
        if problem is None:
            found._take(path)
        else:
            found.unreadable.append((path, problem))
    found._sort()
    return found


def shown(path: Path, root: Path) -> str:
    """`path` relative to `root` when inside it, else absolute; links are not resolved (a message names the
    path as the folder holds it)."""
    here, base = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    try:
        return here.relative_to(base).as_posix()
    except ValueError:
        return here.as_posix()


def _listing(items: list[tuple[Path, str]], root: Path, most: int = 8) -> str:
    listed = "; ".join(f"{shown(p, root)} ({why})" for p, why in items[:most])
    return listed + (f"; and {len(items) - most} more" if len(items) > most else "")


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def files_problem(
    found: FileSet, pattern: str, root: Path, what: str | None = None, key: str | None = "from"
) -> DataError | None:
    """The error for a FileSet that names no readable file or holds unreadable ones; None when it is usable.

    `what` names who asked (`source 'chat'`), `key` the recipe key that holds `pattern`.
    """
    lead = f"{what}: " if what else ""
    named = f"`{key}: {pattern}`" if key else f"`{pattern}`"
    example = f"`{key}: {pattern.rstrip('/')}/*.jsonl`" if key else f"`{pattern.rstrip('/')}/*.jsonl`"
    target = found.looked_for or Path(pattern)
    is_glob = any(ch in pattern for ch in "*?[")
    relative = "" if Path(pattern).is_absolute() else f"; relative paths resolve against {root}"
    if found.outside:
        listed = "; ".join(f"{shown(p, root)} leads to {real}" for p, real in found.outside[:8])
        more = f"; and {len(found.outside) - 8} more" if len(found.outside) > 8 else ""
        who = f"{what} reads" if what else f"{named} names"
        return DataError(
            f"{who} {_files(len(found.outside))} outside the recipe's root {os.path.realpath(root)}: {listed}{more}",
            hint="move the data below the recipe's folder, or set `allow_outside_root: true` on the source if "
            "reading there is intended",
        )
    if found.unreadable:
        if not is_glob and not target.is_dir():
            path, why = found.unreadable[0]
            return DataError(f"{lead}{shown(path, root)}: {why}", hint=f"dataforge reads {supported()}")
        return DataError(
            f"{lead}{_files(len(found.unreadable))} in {named} cannot be read: {_listing(found.unreadable, root)}",
            hint=f"dataforge reads {supported()}; move the other files out of the way, or name the data files "
            + (f"with a glob (e.g. {example})" if target.is_dir() else "with a narrower glob"),
        )
    if found.files:
        return None
    if target.is_dir():
        message = f"{lead}{named}: the folder {target} holds no file dataforge reads"
        if found.skipped:
            message += f" (skipped as not data: {_listing(found.skipped, root)})"
        return DataError(message, hint=f"dataforge reads {supported()}")
    if is_glob:
        message = f"{lead}{named} matches no file: nothing matches {target}"
        if found.skipped:
            message = f"{lead}{named} matches no data file (skipped as not data: {_listing(found.skipped, root)})"
        return DataError(message, hint=f"check the pattern{relative}")
    return DataError(f"{lead}{named}: no such file or folder: {target}", hint=f"check the path{relative}")
