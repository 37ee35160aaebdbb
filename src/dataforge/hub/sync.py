"""The fetch step of a build: bring every hub source's files into data/raw/<source>/ and agree with the lock.

Online, each hub source is resolved (revision → commit, files), compared with its lock entry (a moved remote
is an error unless `--update-lock`), downloaded where the local copies are missing or differ, and hashed; the
lock is rewritten when an entry changed. Offline (`--offline`, or the hubs' offline variables) nothing touches
the network: the local copies must match the lock, and a missing file is named with what to do.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..engine.cache import file_sha256
from ..errors import DataError, DataforgeError
from ..recipe import LoadedRecipe, Source
from .lock import (
    LockedFile,
    LockedSource,
    Request,
    hub_ref,
    lock_path,
    read_lock,
    request_of,
    verify_local,
    write_lock,
)
from .remote import Client, Remote
from .resolve import resolve_files
from .retry import with_retries
from .uris import Hub, HubRef, raw_dir, token_from

# The variables that already mean "no network" to each hub's users. ModelScope's SDK has none of its own;
# MODELSCOPE_OFFLINE is read by dataforge only.
OFFLINE_ENV: dict[Hub, tuple[str, ...]] = {
    "hf": ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"),
    "ms": ("MODELSCOPE_OFFLINE",),
}

Say = Callable[[str], None]


def hub_sources(loaded: LoadedRecipe) -> list[Source]:
    """The recipe's sources that live on a hub, in recipe order."""
    return [s for s in loaded.recipe.sources if hub_ref(s) is not None]


def is_offline(flag: bool, hub: Hub) -> bool:
    """True when `--offline` was given or an offline variable of `hub` is set to a true value."""
    truthy = {"1", "true", "yes", "on"}
    return flag or any(os.environ.get(v, "").strip().lower() in truthy for v in OFFLINE_ENV[hub])


def client_for(hub: Hub) -> Client:
    from .fetch_hf import HfClient
    from .fetch_ms import MsClient

    return HfClient() if hub == "hf" else MsClient()


def sync_sources(
    loaded: LoadedRecipe,
    *,
    offline: bool = False,
    update_lock: bool = False,
    quiet: bool = False,
    say: Say = lambda line: None,
) -> dict[str, LockedSource]:
    """Fetch and verify every hub source of the recipe; write the lock when it changed. {} without hub sources."""
    sources = hub_sources(loaded)
    if not sources:
        return {}
    path = lock_path(loaded.path)
    old = read_lock(path)
    entries: dict[str, LockedSource] = {}
    for src in sources:
        entries[src.name] = sync_source(
            src, old.get(src.name), loaded, offline=offline, update_lock=update_lock, quiet=quiet, say=say
        )
    if write_lock(path, entries):
        say(f"wrote {path.name} ({len(entries)} hub source(s))")
    return entries


def sync_source(
    src: Source,
    locked: LockedSource | None,
    loaded: LoadedRecipe,
    *,
    offline: bool,
    update_lock: bool,
    quiet: bool,
    say: Say,
) -> LockedSource:
    """One hub source's lock entry after fetching (online) or checking the local copies (offline)."""
    ref = hub_ref(src)
    assert ref is not None
    request = request_of(src)
    directory = raw_dir(loaded.root, src.name)
    lock_name = lock_path(loaded.path).name
    if locked is not None and locked.request != request:
        if is_offline(offline, ref.hub):
            raise DataError(
                f"source {src.name!r}: the recipe asks {ref.uri} for something else than {lock_name} records "
                "(revision, subset, split or files changed)",
                hint="build once online to fetch and lock the new selection",
            )
        say(f"source {src.name}: revision, subset, split or files changed in the recipe; resolving again")
        locked = None
    if is_offline(offline, ref.hub):
        return _offline(src, ref, locked, loaded, lock_name)
    client = client_for(ref.hub)
    token = token_from(src.token_env, ref)
    what = f"source {src.name} ({ref.uri})"

    def fetch() -> tuple[Remote, list[str]]:
        remote = client.resolve(ref, request.revision, token, directory)
        keep = locked is not None and not update_lock
        if keep:
            assert locked is not None
            moved = _drift(locked, remote)
            if moved:
                raise DataError(
                    f"source {src.name!r}: {ref.uri}@{request.revision} changed since {lock_name} was written: {moved}",
                    hint=f"accept the new data with `dataforge build {loaded.path.name} --update-lock`, or keep "
                    f"the locked data by pinning `revision:` or building with --offline",
                )
        files = (
            [f.path for f in locked.files]
            if keep and locked is not None
            else resolve_files(
                ref,
                remote.paths,
                patterns=request.files,
                subset=request.subset,
                split=request.split,
                card=remote.card,
                revision=request.revision,
            )
        )
        current = keep and locked is not None and not verify_local(locked, directory, loaded.root)
        if keep and locked is not None and not current:
            _drop_altered(locked, directory)
        if not current:
            say(f"{what}: fetching {len(files)} file(s) at {(remote.commit or request.revision)[:12]} → {directory}")
            client.download(ref, remote.commit or request.revision, files, directory, token, quiet)
        return remote, files

    try:
        remote, files = with_retries(fetch, transient=client.transient, what=what, say=say)
    except DataforgeError:
        raise
    except Exception as exc:
        explained = client.explain(exc, ref, request.revision, src.token_env)
        if explained is None:
            raise
        raise explained from None
    entry = _entry(src, ref, request, remote, files, directory)
    if locked is not None and not update_lock and entry.files != locked.files:
        changed = sorted({f.path for f in entry.files} ^ {f.path for f in locked.files}) or [
            a.path for a, b in zip(entry.files, locked.files, strict=True) if a != b
        ]
        raise DataError(
            f"source {src.name!r}: {ref.uri}@{request.revision} served different bytes than {lock_name} records "
            f"({', '.join(changed)})",
            hint=f"accept them with `dataforge build {loaded.path.name} --update-lock`",
        )
    return entry


def _entry(
    src: Source, ref: HubRef, request: Request, remote: Remote, files: list[str], directory: Path
) -> LockedSource:
    """The lock entry for the downloaded `files`, hashed from disk and checked against the hub's listing."""
    locked_files = []
    for name in files:
        path = directory / name
        if not path.is_file():
            raise DataError(f"source {src.name!r}: {ref.uri} file {name} was not downloaded to {directory}")
        digest = file_sha256(path)
        listed = remote.sha256.get(name)
        if listed is not None and listed != digest:
            raise DataError(
                f"source {src.name!r}: {path} has sha256 {digest[:12]}…, but {ref.uri} lists {listed[:12]}…",
                hint=f"delete {path} and build again to download it afresh",
            )
        locked_files.append(LockedFile(name, digest, path.stat().st_size))
    license_ = remote.card.get("license")
    if isinstance(license_, list):
        license_ = ", ".join(str(x) for x in license_)
    return LockedSource(request, remote.commit, tuple(locked_files), str(license_) if license_ else None)


def _drop_altered(locked: LockedSource, directory: Path) -> None:
    """Delete local copies whose bytes differ from the lock, so the client fetches them again.

    huggingface_hub trusts a local_dir file whose recorded commit matches and would keep an edited copy.
    """
    by_path = {f.path: f.sha256 for f in locked.files}
    for path, digest in by_path.items():
        local = directory / path
        if local.is_file() and file_sha256(local) != digest:
            local.unlink()


def _drift(locked: LockedSource, remote: Remote) -> str | None:
    """How the remote differs from the lock entry, in words; None when it has not moved."""
    if locked.commit and remote.commit and locked.commit != remote.commit:
        return f"it now points to commit {remote.commit[:12]}, the lock has {locked.commit[:12]}"
    present = set(remote.paths)
    for f in locked.files:
        if f.path not in present:
            return f"{f.path} is gone"
        listed = remote.sha256.get(f.path)
        if listed is not None and listed != f.sha256:
            return f"{f.path} changed (sha256 {f.sha256[:12]}… → {listed[:12]}…)"
    return None


def _offline(
    src: Source, ref: HubRef, locked: LockedSource | None, loaded: LoadedRecipe, lock_name: str
) -> LockedSource:
    """The lock entry, after checking that every locked file is in data/raw with its locked sha256."""
    if locked is None:
        raise DataError(
            f"source {src.name!r} ({ref.uri}) is not in {lock_name}, and the build is offline",
            hint=f"build once online (`dataforge build {loaded.path.name}`) to fetch and lock it, then copy "
            f"data/raw/{src.name}/ and {lock_name} to the offline machine",
        )
    directory = raw_dir(loaded.root, src.name)
    problems = verify_local(locked, directory, loaded.root)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        pin = locked.commit or locked.request.revision
        raise DataError(
            f"source {src.name!r} ({ref.uri}@{pin[:12]}): {problems[0]}{more}, and the build is offline",
            hint=f"fetch it online with `dataforge build {loaded.path.name}`, or copy data/raw/{src.name}/ from a "
            "machine that has it",
        )
    return locked


def locked_entries(loaded: LoadedRecipe) -> dict[str, LockedSource]:
    """The lock entries of the recipe's hub sources, read from disk without touching the network."""
    if not hub_sources(loaded):
        return {}
    return read_lock(lock_path(loaded.path))


def go_offline() -> None:
    """Make this process offline for both hubs, including tokenizers loaded by the render stage.

    huggingface_hub reads HF_HUB_OFFLINE when it is first imported; when it already is, its constant is set too.
    """
    import sys

    for names in OFFLINE_ENV.values():
        os.environ[names[0]] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True


def quiet_progress() -> None:
    """No download progress bars in this process (`build -q`).

    ModelScope's bars are plain tqdm, which reads TQDM_DISABLE when it is imported: call this before any
    hub client is imported.
    """
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
