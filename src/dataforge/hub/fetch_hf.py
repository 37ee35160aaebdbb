"""Fetching from the Hugging Face Hub with huggingface_hub: resolve a revision, list files, snapshot download.

The endpoint is huggingface_hub's own (`HF_ENDPOINT`), so a mirror or a local test server works unchanged.
Downloads go to `data/raw/<source>/` with `local_dir`, which resumes `.incomplete` files on the next try.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError, UsageError
from .remote import Remote
from .uris import HubRef


class HfClient:
    """The Hugging Face Hub, through huggingface_hub's HfApi and snapshot_download."""

    def resolve(self, ref: HubRef, revision: str, token: str | None, directory: Path) -> Remote:
        """The commit `revision` points to, every file at that commit (LFS files with sha256), the card data."""
        from huggingface_hub import HfApi
        from huggingface_hub.hf_api import RepoFile

        api = HfApi(token=token or False)
        info = api.dataset_info(ref.repo, revision=revision)
        commit = info.sha
        tree = api.list_repo_tree(ref.repo, repo_type="dataset", revision=commit, recursive=True)
        files = [f for f in tree if isinstance(f, RepoFile)]
        sha256 = {f.path: f.lfs.sha256 for f in files if f.lfs is not None}
        card = info.card_data.to_dict() if info.card_data is not None else {}
        return Remote(commit=commit, paths=sorted(f.path for f in files), sha256=sha256, card=card)

    def download(
        self, ref: HubRef, revision: str, files: list[str], directory: Path, token: str | None, quiet: bool
    ) -> None:
        """Snapshot download of exactly `files` at `revision` (a commit) into `directory`."""
        from huggingface_hub import snapshot_download

        # Progress bars are huggingface_hub's own; `dataforge build -q` silences them (HF_HUB_DISABLE_PROGRESS_BARS).
        snapshot_download(
            ref.repo,
            repo_type="dataset",
            revision=revision,
            local_dir=directory,
            allow_patterns=files,
            token=token or False,
            max_workers=4,
        )

    def transient(self, exc: BaseException) -> bool:
        """Failures worth retrying: no connection, a timeout, a 5xx or 429 answer, an interrupted snapshot."""
        import httpx2
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

        if isinstance(exc, OfflineModeIsEnabled):
            return False
        if isinstance(exc, httpx2.TransportError | LocalEntryNotFoundError):
            return True
        if isinstance(exc, HfHubHTTPError) and exc.response is not None:
            return exc.response.status_code >= 500 or exc.response.status_code == 429
        return False

    def explain(self, exc: BaseException, ref: HubRef, revision: str, token_env: str | None) -> Exception | None:
        """A one-line dataforge error for a huggingface_hub failure (None when it is not one we know)."""
        import httpx2
        from huggingface_hub.errors import (
            EntryNotFoundError,
            GatedRepoError,
            HfHubHTTPError,
            LocalEntryNotFoundError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        from .uris import HUB_NAMES

        page = f"https://huggingface.co/datasets/{ref.repo}"
        token_hint = f"set `token_env:` to a variable holding a token with access ({page})"
        if isinstance(exc, GatedRepoError):
            given = f"the token in {token_env} has no access" if token_env else "no token was given"
            return UsageError(
                f"{ref.uri} is a gated dataset and {given}",
                hint=f"accept its conditions at {page}, then {token_hint}"
                if not token_env
                else f"accept its conditions at {page} with the account of that token",
            )
        if isinstance(exc, RevisionNotFoundError):
            return UsageError(f"{ref.uri}: no revision {revision!r}", hint="set `revision:` to a branch, tag or commit")
        if isinstance(exc, RepositoryNotFoundError):
            private = "" if token_env else "; if it is private, " + token_hint
            return UsageError(
                f"{ref.uri}: no such dataset on {HUB_NAMES['hf']}",
                hint=f"check the owner/name{private}",
            )
        if isinstance(exc, EntryNotFoundError) and not isinstance(exc, LocalEntryNotFoundError):
            return DataError(f"{ref.uri}@{revision}: a file listed by the hub is gone: {exc}")
        if isinstance(exc, OfflineModeIsEnabled):
            return DataError(
                f"{ref.uri}: HF_HUB_OFFLINE is set, so nothing can be fetched",
                hint="unset HF_HUB_OFFLINE to fetch, or build with --offline from data/raw and the lock",
            )
        if isinstance(exc, httpx2.TransportError | LocalEntryNotFoundError):
            return DataError(
                f"{ref.uri}: cannot reach {_endpoint()} ({type(exc).__name__})",
                hint="check the network (or HF_ENDPOINT); files already fetched build with --offline",
            )
        if isinstance(exc, HfHubHTTPError):
            status = exc.response.status_code if exc.response is not None else "?"
            return DataError(f"{ref.uri}: the hub answered HTTP {status}: {str(exc).splitlines()[0]}")
        return None


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT
