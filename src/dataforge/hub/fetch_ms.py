"""Fetching from ModelScope: list a dataset's files with modelscope_hub, download with modelscope's
`dataset_snapshot_download` (the SDK's own resume, sha256 check and retries).

The endpoint is the SDK's own (`MODELSCOPE_ENDPOINT`). ModelScope's file listing gives every file's sha256 but
no commit id, so a ModelScope source is pinned by its revision and its files' hashes. `MsDataset` is not used:
it needs extras that would downgrade `datasets`, and dataforge reads the files itself.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import DataError, UsageError
from .remote import Remote
from .resolve import card_metadata
from .uris import HUB_NAMES, HubRef


def _api(token: str | None):
    from modelscope_hub import HubApi

    _quiet_logs()

    # An explicit empty token means "anonymous" to the SDK (no fall back to a stored login), as on hf://.
    return HubApi(token=token or "")


class MsClient:
    """ModelScope datasets."""

    def resolve(self, ref: HubRef, revision: str, token: str | None, directory: Path) -> Remote:
        """Every file at `revision` with its sha256, and the card's metadata when the dataset has a README.md."""
        api = _api(token)
        files = [f for f in api.list_repo_files(ref.repo, "dataset", revision=revision) if not f.is_dir]
        paths = sorted(f.path for f in files)
        card = {}
        if "README.md" in paths:
            readme = api.download_file(ref.repo, "dataset", "README.md", revision=revision, local_dir=directory)
            card = card_metadata(Path(readme).read_text(encoding="utf-8", errors="replace"))
        return Remote(commit=None, paths=paths, sha256={f.path: f.sha256 for f in files if f.sha256}, card=card)

    def download(
        self, ref: HubRef, revision: str, files: list[str], directory: Path, token: str | None, quiet: bool
    ) -> None:
        """Snapshot download of exactly `files` at `revision` into `directory`."""
        from modelscope.hub.snapshot_download import dataset_snapshot_download

        _quiet_logs()
        # Progress bars are the SDK's own tqdm bars; `dataforge build -q` silences them with TQDM_DISABLE.
        dataset_snapshot_download(
            ref.repo,
            revision=revision,
            local_dir=str(directory),
            allow_patterns=files,
            token=token or "",
            max_workers=4,
        )

    def transient(self, exc: BaseException) -> bool:
        """Network failures, timeouts, 5xx and 429 answers, and partial snapshots are retried."""
        import requests
        from modelscope_hub.errors import FileDownloadError, NetworkError, RateLimitError, ServerError

        if isinstance(exc, NetworkError | ServerError | RateLimitError | FileDownloadError):
            return True
        if isinstance(exc, requests.HTTPError):
            status = exc.response.status_code if exc.response is not None else None
            return status is None or status >= 500 or status == 429
        return isinstance(exc, requests.ConnectionError | requests.Timeout)

    def explain(self, exc: BaseException, ref: HubRef, revision: str, token_env: str | None) -> Exception | None:
        """A one-line dataforge error for a ModelScope failure (None when it is not one we know)."""
        import requests
        from modelscope_hub.errors import (
            AuthenticationError,
            FileIntegrityError,
            HubError,
            NetworkError,
            NotExistError,
            PermissionDeniedError,
        )

        page = f"https://www.modelscope.cn/datasets/{ref.repo}"
        status = getattr(exc, "status_code", None)
        if isinstance(exc, requests.HTTPError) and exc.response is not None:
            status = exc.response.status_code
        if isinstance(exc, AuthenticationError | PermissionDeniedError) or status in (401, 403):
            given = f"the token in {token_env} has no access" if token_env else "no token was given"
            return UsageError(
                f"{ref.uri} is private or needs approval and {given}",
                hint=f"request access at {page} and set `token_env:` to a variable holding a ModelScope token",
            )
        if isinstance(exc, NotExistError) or status == 404:
            return UsageError(
                f"{ref.uri}: no such dataset (or no revision {revision!r}) on {HUB_NAMES['ms']}",
                hint="check the owner/name and `revision:` (ModelScope's default branch is master)",
            )
        if isinstance(exc, FileIntegrityError):
            return DataError(f"{ref.uri}@{revision}: a download failed its sha256 check twice: {exc}")
        if isinstance(exc, NetworkError | requests.ConnectionError | requests.Timeout):
            return DataError(
                f"{ref.uri}: cannot reach {_endpoint()} ({type(exc).__name__})",
                hint="check the network (or MODELSCOPE_ENDPOINT); files already fetched build with --offline",
            )
        if isinstance(exc, HubError | requests.HTTPError):
            return DataError(f"{ref.uri}: ModelScope failed: {str(exc).splitlines()[0] if str(exc) else type(exc)}")
        return None


def _endpoint() -> str:
    from modelscope_hub.config import HubConfig

    return HubConfig().endpoint


def _quiet_logs() -> None:
    """The SDK logs every listing page at INFO; dataforge prints its own one line per source instead."""
    if not os.environ.get("MODELSCOPE_LOG_LEVEL"):
        for name in ("modelscope_hub", "modelscope"):
            logging.getLogger(name).setLevel(logging.WARNING)
