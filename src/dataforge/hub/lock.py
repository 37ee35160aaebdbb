"""The lock file `<recipe>.lock`: for every hub source, the commit it resolved to and the sha256 of every file.

It is written next to the recipe (mix.yaml → mix.lock) as sorted, indented JSON, so the same state gives the
same bytes and a change shows as a small diff. A build verifies it before reading; the read stage's cache key
includes the source's entry, so a new lock entry re-runs that source's branch and nothing else.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..engine.cache import atomic_write_bytes, file_sha256
from ..errors import DataError
from ..recipe import Source
from .uris import DEFAULT_REVISION, HubRef, parse_uri

LOCK_VERSION = 1


@dataclass(frozen=True)
class LockedFile:
    """One repository file as fetched: its path in the repository, sha256 and size in bytes."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Request:
    """What the recipe asked of a hub source; a lock entry answers one request."""

    uri: str
    revision: str
    subset: str | None = None
    split: str | None = None
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class LockedSource:
    """A hub source pinned: the request, the commit it resolved to, its files and the license its card names."""

    request: Request
    commit: str | None  # None where the hub has no commit id to give (ModelScope datasets)
    files: tuple[LockedFile, ...]
    license: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "uri": self.request.uri,
            "revision": self.request.revision,
            "subset": self.request.subset,
            "split": self.request.split,
            "files_patterns": list(self.request.files),
            "commit": self.commit,
            "license": self.license,
            "files": [asdict(f) for f in self.files],
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> LockedSource:
        request = Request(
            uri=data["uri"],
            revision=data["revision"],
            subset=data.get("subset"),
            split=data.get("split"),
            files=tuple(data.get("files_patterns", ())),
        )
        files = tuple(LockedFile(f["path"], f["sha256"], int(f["size"])) for f in data["files"])
        return LockedSource(request, data.get("commit"), files, data.get("license"))

    def key(self) -> dict[str, Any]:
        """What the read stage's cache key takes from the lock: where the bytes came from and what they are."""
        return {
            "uri": self.request.uri,
            "revision": self.request.revision,
            "commit": self.commit,
            "files": {f.path: f.sha256 for f in self.files},
        }


def hub_ref(source: Source) -> HubRef | None:
    """The hub repository of `source`, or None for a local source."""
    return parse_uri(source.from_)


def request_of(source: Source) -> Request:
    """The request a hub source makes, with the hub's default revision filled in."""
    ref = hub_ref(source)
    assert ref is not None
    revision = source.revision or DEFAULT_REVISION[ref.hub]
    if source.files:  # explicit patterns replace the subset/split resolution
        return Request(uri=ref.uri, revision=revision, files=tuple(source.files))
    return Request(uri=ref.uri, revision=revision, subset=source.subset, split=source.split or "train")


def lock_path(recipe_path: Path) -> Path:
    """mix.yaml → mix.lock, beside it."""
    return recipe_path.with_suffix(".lock")


def read_lock(path: Path) -> dict[str, LockedSource]:
    """The entries of the lock at `path` by source name (none when the file does not exist)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {name: LockedSource.from_json(entry) for name, entry in data["sources"].items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"{path}: the lock file is damaged ({exc})",
            hint="delete it and build online with --update-lock to write it again",
        ) from None


def lock_text(entries: dict[str, LockedSource]) -> str:
    """The lock file's content: deterministic JSON (sorted keys, sorted sources)."""
    body = {
        "version": LOCK_VERSION,
        "comment": "Written by dataforge: the commit and sha256 of every hub file a build used. Commit it.",
        "sources": {name: entries[name].to_json() for name in sorted(entries)},
    }
    return json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_lock(path: Path, entries: dict[str, LockedSource]) -> bool:
    """Write the lock when its content changed; True when it was written."""
    text = lock_text(entries)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    atomic_write_bytes(path, text.encode("utf-8"))
    return True


def local_files(locked: LockedSource, directory: Path) -> list[Path]:
    """The local copies of a locked source's files, in lock order (sorted by repository path)."""
    return [directory / f.path for f in locked.files]


def verify_local(locked: LockedSource, directory: Path, root: Path) -> list[str]:
    """Problems with the local copies: files missing or whose sha256 differs from the lock (empty when all match)."""
    problems = []
    for f, path in zip(locked.files, local_files(locked, directory), strict=True):
        shown = _shown(path, root)
        if not path.is_file():
            problems.append(f"{shown} is missing")
        elif file_sha256(path) != f.sha256:
            problems.append(f"{shown} has sha256 {file_sha256(path)[:12]}…, the lock says {f.sha256[:12]}…")
    return problems


def _shown(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()
