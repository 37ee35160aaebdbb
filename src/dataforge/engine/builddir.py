"""The build directory: where a build may write, one build at a time, and what turns OS faults into words.

A build directory is one dataforge created (it holds the marker `.dataforge-build`), or one that is empty or
does not exist yet, or one the person adopts with `dataforge build --force`. A folder that holds a dataforge
`manifest.json` and a `.cache/` (a build made before the marker existed) is adopted silently. The filesystem
root, the recipe's root and every folder above it are always refused: a build there would mix its outputs
with the project's own files.

While a build runs it holds an exclusive `flock` on `.dataforge-lock` inside the directory (for the whole
build, write stage included); the lock file names its holder so a second build can say who it waits for.
The lock is re-entrant within one process, so `run()` and `write_build()` take it themselves when a caller
(a test, `dataforge train`) did not take it around both.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError, UsageError

MARKER = ".dataforge-build"
LOCK = ".dataforge-lock"
# What is ours besides the outputs the manifest lists: never reported as foreign, never listed as an output.
HOUSEKEEPING = frozenset({MARKER, LOCK, ".cache", "manifest.json", ".dataforge-exports"})
# Temporary names of atomic writes (`.<name>.<pid>.tmp`) and cache stores (`.tmp-<key>-<pid>`).
_TMP_FILE = re.compile(r"^\..+\.\d+\.tmp$")
_TMP_ENTRY = re.compile(r"^\.tmp-.+-\d+$")
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class BuildLocked(DataError):
    """Another build holds this build directory (exit 1)."""


# --- turning OS write faults into messages ------------------------------------------------------------


def _free_bytes(path: Path) -> int | None:
    """Free bytes on the filesystem holding `path` (or its nearest existing parent); None when unknown."""
    for candidate in (path, *path.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def write_error(exc: OSError, path: Path, nbytes: int | None = None) -> DataError | None:
    """The DataError an OS write fault becomes, or None for faults that are not the disk's or the mount's."""
    if exc.errno in _READ_ONLY:
        why = "read-only file system" if exc.errno == errno.EROFS else "permission denied"
        return DataError(
            f"cannot write to {path}: {why}",
            hint="point `outputs.dir` at a writable folder, or make this one writable",
        )
    if exc.errno in _NO_SPACE:
        why = "no space left on device" if exc.errno == errno.ENOSPC else "disk quota exceeded"
        size = f"writing {nbytes:,} bytes" if nbytes is not None else "while writing"
        free = _free_bytes(path)
        room = f"{free:,} bytes free" if free is not None else "free space unknown"
        return DataError(
            f"cannot write to {path}: {why} ({size}; {room})",
            hint="free some space (old builds' .cache/ folders are safe to delete) and build again; "
            "completed stages stay cached",
        )
    return None


@contextmanager
def writing(path: Path, nbytes: int | None = None) -> Iterator[None]:
    """Run a write of about `nbytes` to `path`; a read-only, permission or full-disk fault becomes a DataError."""
    try:
        yield
    except OSError as exc:
        problem = write_error(exc, path, nbytes)
        if problem is None:
            raise
        raise problem from None


# --- where a build may write ----------------------------------------------------------------------------


def refused_location(build_dir: Path, root: Path) -> str | None:
    """Why `build_dir` can never be a build directory (the filesystem root, the recipe root or above), or None."""
    where, home = build_dir.resolve(), root.resolve()
    if where == Path(where.anchor):
        return f"outputs.dir resolves to the filesystem root {where}"
    if where == home:
        return f"outputs.dir resolves to the recipe's root {where}"
    if home.is_relative_to(where):
        return f"outputs.dir resolves to {where}, a folder above the recipe's root {home}"
    return None


def _is_legacy_build(folder: Path) -> bool:
    """A build made before the marker existed: a dataforge manifest beside a `.cache/` folder, or a `.cache/`
    alone (a build stopped before its write stage)."""
    manifest = folder / "manifest.json"
    if not (folder / ".cache").is_dir():
        return False
    if {p.name for p in folder.iterdir()} <= {".cache", LOCK}:
        return True
    if not manifest.is_file():
        return False
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "build_key" in data and "dataforge" in data


def foreign_entries(folder: Path) -> list[str]:
    """Names in `folder` that make it not ours to write: empty when it is new, empty, marked or a legacy build."""
    if not folder.exists():
        return []
    if not folder.is_dir():
        return [folder.name]
    if (folder / MARKER).is_file() or _is_legacy_build(folder):
        return []
    return sorted(p.name for p in folder.iterdir() if p.name != LOCK)


def _marker_body(loaded: Any, adopted: str) -> bytes:
    from .. import __version__

    body = {
        "created_by": "dataforge",
        "dataforge": __version__,
        "recipe": str(loaded.path),
        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "how": adopted,
    }
    return (json.dumps(body, indent=2) + "\n").encode()


# --- the lock ----------------------------------------------------------------------------------------


@dataclass
class Claim:
    """A held build directory: where it is, and why it cannot be written when it cannot (a read-only mount)."""

    folder: Path
    denied: OSError | None = None

    @property
    def writable(self) -> bool:
        return self.denied is None

    def refuse_writes(self) -> None:
        """Raise the DataError a write here would end in (call before writing anything)."""
        if self.denied is not None:
            raise write_error(self.denied, self.folder) or self.denied


@dataclass
class _Held:
    fd: int | None  # None: a read-only directory nobody can write to, so there is nothing to lock
    depth: int
    claim: Claim


_HELD: dict[str, _Held] = {}


def _holder(lock: Path) -> str:
    """Who holds `lock`, from what it wrote into the file."""
    try:
        info = json.loads(lock.read_text(encoding="utf-8"))
        return f"pid {info.get('pid')} on {info.get('host')}, building {info.get('recipe')} since {info.get('since')}"
    except (OSError, ValueError, AttributeError):
        return "a process that has not said who it is yet"


def _open_lock(lock: Path) -> tuple[int | None, OSError | None]:
    """An fd for the lock file (None when it cannot exist) and why the directory is not writable, if it is not."""
    try:
        return os.open(lock, os.O_RDWR | os.O_CREAT, 0o644), None
    except OSError as exc:
        if exc.errno not in _READ_ONLY:
            raise
        denied = exc
    try:  # read-only: an existing lock file can still be locked, so a writer elsewhere is still seen
        return os.open(lock, os.O_RDONLY), denied
    except FileNotFoundError:
        return None, denied


def _acquire(lock: Path, fd: int, wait: bool) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        raise BuildLocked(
            f"another build is writing {lock.parent}: {_holder(lock)}",
            hint="wait for it to finish (or pass --wait); two builds into one directory would mix their outputs",
        ) from None


def _say_holder(fd: int, loaded: Any) -> None:
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "recipe": str(loaded.path),
        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)


def _claim(folder: Path, loaded: Any, force: bool, writable: bool) -> None:
    """Refuse a folder that is not ours (unless forced); mark it ours when it is new, empty, legacy or forced."""
    foreign = foreign_entries(folder)
    if foreign and not force:
        shown = ", ".join(foreign[:5]) + (f", … ({len(foreign)} entries)" if len(foreign) > 5 else "")
        raise UsageError(
            f"refusing to build into {folder}: it holds files dataforge did not write ({shown})",
            hint="point `outputs.dir` at a new or empty folder, or pass `dataforge build --force` to adopt this one",
        )
    if writable and not (folder / MARKER).is_file():
        how = "forced" if foreign else ("legacy" if _is_legacy_build(folder) else "created")
        from .cache import atomic_write_bytes

        with writing(folder / MARKER):
            atomic_write_bytes(folder / MARKER, _marker_body(loaded, how))


def clean_orphans(folder: Path) -> int:
    """Remove temporaries killed builds left (cache `.tmp-*` folders, `.*.<pid>.tmp` files); the number removed.

    Called with the lock held, so none of them can belong to a live build."""
    removed = 0
    cache = folder / ".cache"
    if cache.is_dir():
        for stage_dir in cache.iterdir():
            if stage_dir.is_dir():
                for entry in stage_dir.iterdir():
                    if _TMP_ENTRY.match(entry.name) and entry.is_dir():
                        shutil.rmtree(entry, ignore_errors=True)
                        removed += 1
    for path in folder.rglob(".*.tmp"):
        if _TMP_FILE.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


@contextmanager
def build_dir_lock(loaded: Any, *, force: bool = False, wait: bool = False) -> Iterator[Claim]:
    """Hold the build directory of `loaded` for a build.

    Refuses a forbidden or foreign location, fails at once (or waits) when another build holds it, marks it
    ours, and removes what killed builds left. Re-entrant: a nested call in the same process is a no-op. On a
    read-only mount it still yields (a cached build writes nothing): `Claim.refuse_writes` says why not."""
    folder = loaded.build_dir
    why = refused_location(folder, loaded.root)
    if why is not None:
        raise UsageError(
            f"{loaded.path}: {why}", hint="set `outputs.dir` to a folder of its own, e.g. data/processed/<name>"
        )
    name = str(folder.resolve())
    held = _HELD.get(name)
    if held is not None:
        held.depth += 1
        try:
            yield held.claim
        finally:
            held.depth -= 1
        return
    if not force and foreign_entries(folder):  # said before anything (even the lock file) is written there
        _claim(folder, loaded, force, writable=False)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise (write_error(exc, folder) or exc) from None
    fd, denied = _open_lock(folder / LOCK)
    if fd is not None:
        _acquire(folder / LOCK, fd, wait)
        if denied is None:
            _say_holder(fd, loaded)
    try:
        _claim(folder, loaded, force, denied is None)
        if denied is None:
            clean_orphans(folder)
        claim = Claim(folder, denied)
        _HELD[name] = _Held(fd, 1, claim)
        yield claim
    finally:
        _HELD.pop(name, None)
        if fd is not None:
            os.close(fd)  # closing the only descriptor releases the flock


# --- what earlier builds wrote ------------------------------------------------------------------------


def read_marker(folder: Path) -> dict[str, Any]:
    """The marker's body ({} when absent or unreadable)."""
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def set_pending(folder: Path, names: set[str]) -> None:
    """Record in the marker the outputs dataforge wrote here that no finished manifest lists yet.

    Why: the manifest is removed while a build writes; if that build is killed, the next one still knows which
    files were dataforge's and removes those it no longer writes."""
    from .cache import atomic_write_bytes

    body = read_marker(folder) or json.loads(_marker_body_text(folder))
    body["pending_outputs"] = sorted(names)
    atomic_write_bytes(folder / MARKER, (json.dumps(body, indent=2) + "\n").encode())


def _marker_body_text(folder: Path) -> str:
    from .. import __version__

    return json.dumps({"created_by": "dataforge", "dataforge": __version__, "how": "created"})
