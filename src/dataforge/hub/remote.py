"""What a hub says about a dataset repository at one revision, in the same shape for both hubs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .uris import HubRef


@dataclass(frozen=True)
class Remote:
    """A repository at a revision: the commit it resolves to, its files and its card's metadata."""

    commit: str | None  # None where the hub gives no commit id (ModelScope datasets)
    paths: list[str]
    sha256: dict[str, str] = field(default_factory=dict)  # per path, where the listing gives it
    card: dict[str, Any] = field(default_factory=dict)  # the card's YAML front matter (configs, license, …)


class Client(Protocol):
    """One hub's operations, as the sync step uses them. Every method may raise the client's own errors;
    `explain` turns those into dataforge errors."""

    def resolve(self, ref: HubRef, revision: str, token: str | None, directory: Path) -> Remote: ...

    def download(
        self, ref: HubRef, revision: str, files: list[str], directory: Path, token: str | None, quiet: bool
    ) -> None: ...

    def transient(self, exc: BaseException) -> bool: ...

    def explain(self, exc: BaseException, ref: HubRef, revision: str, token_env: str | None) -> Exception | None: ...
