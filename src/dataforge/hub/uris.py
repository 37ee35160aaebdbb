"""Hub source addresses: `hf://owner/name` (Hugging Face Hub) and `ms://owner/name` (ModelScope).

Recipe validation calls into this module, so it imports nothing heavy: the hub clients are imported by the
modules that fetch and push.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Hub = Literal["hf", "ms"]
HUBS: dict[str, Hub] = {"hf://": "hf", "ms://": "ms"}
HUB_NAMES: dict[Hub, str] = {"hf": "the Hugging Face Hub", "ms": "ModelScope"}
DEFAULT_REVISION: dict[Hub, str] = {"hf": "main", "ms": "master"}
# The keys only a hub source may carry; a local source with one of them is a recipe error.
HUB_KEYS = ("revision", "subset", "split", "files", "token_env")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class HubRef:
    """A dataset repository on a hub."""

    hub: Hub
    repo: str  # owner/name

    @property
    def uri(self) -> str:
        return f"{self.hub}://{self.repo}"

    @property
    def hub_name(self) -> str:
        return HUB_NAMES[self.hub]


def parse_uri(text: str) -> HubRef | None:
    """The hub repository `text` names, or None for a local path or glob."""
    for prefix, hub in HUBS.items():
        if text.startswith(prefix):
            repo = text[len(prefix) :].strip("/")
            if not _REPO.match(repo):
                example = f"{prefix}mlabonne/FineTome-100k"
                raise ValueError(f"{text!r} is not a dataset address; expected {prefix}owner/name (e.g. {example})")
            return HubRef(hub, repo)
    return None


def check_uri(text: str) -> None:
    """Raise ValueError (a recipe problem) when `text` starts like a hub address but is not one."""
    parse_uri(text)


# How access tokens start (Hugging Face, ModelScope, OpenAI-style, GitHub, GitLab, Slack, AWS, JWTs …): a
# `token_env` starting like one is a pasted token, not a variable's name. Case matters: HF_TOKEN is a name.
TOKEN_PREFIXES = (
    "hf_", "ms-", "sk-", "sk_", "api_", "api-", "key-", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_",
    "glpat-", "xoxb-", "xoxp-", "AKIA", "ASIA", "ya29.", "eyJ",
)  # fmt: skip
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _glimpse(value: str) -> str:
    """What may be shown of a value that may be a secret: its first 3 characters and its length."""
    return f"`{value[:3]}…`, {len(value)} characters"


def token_env_problem(value: object) -> str | None:
    """Why `value` cannot be a `token_env` (the name of an environment variable), or None when it can.

    The message never holds the value: a token pasted here must not reach a terminal, a CI log or a report.
    """
    if not isinstance(value, str):
        return "must be the name of an environment variable (text, e.g. HF_TOKEN)"
    looks_random = len(value) >= 24 and "_" not in value and not value.isupper() and any(c.isdigit() for c in value)
    if value.startswith(TOKEN_PREFIXES) or looks_random:
        return (
            f"this looks like a token ({_glimpse(value)}); put the NAME of an environment variable holding it "
            "(e.g. HF_TOKEN), never the token itself"
        )
    if not ENV_NAME.match(value):
        return (
            f"this is not the name of an environment variable ({_glimpse(value)}; letters, digits and '_', not "
            "starting with a digit); put the NAME of the variable holding the token (e.g. HF_TOKEN)"
        )
    return None


def check_token_env(value: object) -> str | None:
    """`token_env` names an environment variable; anything else (a token above all) is refused, unechoed."""
    if value is None:
        return None
    problem = token_env_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value  # type: ignore[return-value]  # a str: token_env_problem refuses the rest


def source_key_problems(source: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, message) for hub-only keys on a local source and for `files` mixed with `subset`/`split`."""
    origin = source.get("from")
    try:
        ref = parse_uri(origin) if isinstance(origin, str) else None
    except ValueError:
        return []  # reported by the field validator
    problems = []
    if ref is None:
        for key in HUB_KEYS:
            if source.get(key) not in (None, []):
                problems.append((key, "only hf:// and ms:// sources take this key (`from` is a local path)"))
        return problems
    if source.get("files") and (source.get("subset") is not None or source.get("split") is not None):
        key = "subset" if source.get("subset") is not None else "split"
        problems.append((key, "give either `files` (glob patterns) or `subset`/`split`, not both"))
    return problems


def raw_dir(root: Path, source_name: str) -> Path:
    """Where a hub source's files are fetched to: data/raw/<source>/ under the recipe's root."""
    return root / "data" / "raw" / source_name


def token_from(token_env: str | None, ref: HubRef) -> str | None:
    """The token in the environment variable `token_env` (None when no variable is named).

    A named but unset variable is an error: the recipe says a token is needed, so fetching anonymously would
    only fail later with a less helpful message.
    """
    from ..errors import UsageError

    if token_env is None:
        return None
    token = os.environ.get(token_env, "").strip()
    if not token:
        raise UsageError(
            f"{ref.uri}: `token_env: {token_env}` names an environment variable that is not set",
            hint=f"export {token_env}=<your {ref.hub_name} access token> and run the build again",
        )
    return token
