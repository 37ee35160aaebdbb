"""`dataforge push BUILD_DIR hf://owner/name` (or ms://): upload a build's splits and its dataset card.

The splits go to data/train.parquet and data/validation.parquet, the card to README.md (one commit on the
Hugging Face Hub; ModelScope's upload_folder may batch a large upload into several).
The token comes from an environment variable (by default the hub's own: HF_TOKEN, MODELSCOPE_API_TOKEN;
huggingface_hub also finds a stored `hf auth login`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import DataforgeError, UsageError
from .card import Upload, prepare_upload
from .uris import HubRef, parse_uri, token_env_problem

DEFAULT_TOKEN_ENV = {"hf": "HF_TOKEN", "ms": "MODELSCOPE_API_TOKEN"}


def push(
    build_dir: Path,
    destination: str,
    *,
    private: bool = False,
    token_env: str | None = None,
    message: str | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> str:
    """Upload the build in `build_dir` to `destination`; returns the dataset's address."""
    try:
        ref = parse_uri(destination)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if ref is None:
        raise UsageError(f"{destination!r}: push to hf://owner/name or ms://owner/name")
    upload = prepare_upload(build_dir)
    token = _token(ref, token_env)
    message = message or f"dataforge push of {build_dir.name}"
    say(f"pushing {', '.join(sorted(upload.files))} and README.md to {ref.uri}")
    try:
        send = _push_hf if ref.hub == "hf" else _push_ms
        return send(ref, upload, token, private, message)
    except DataforgeError:
        raise
    except Exception as exc:
        from .sync import client_for

        explained = client_for(ref.hub).explain(exc, ref, "main", token_env)
        if explained is None:
            raise
        raise explained from None


def _token(ref: HubRef, token_env: str | None) -> str | None:
    problem = token_env_problem(token_env) if token_env is not None else None
    if problem is not None:  # a pasted token: refused without echoing it
        raise UsageError(f"--token-env: {problem}")
    name = token_env or DEFAULT_TOKEN_ENV[ref.hub]
    token = os.environ.get(name, "").strip()
    if token_env and not token:
        raise UsageError(f"--token-env {token_env}: the variable is not set", hint=f"export {token_env}=<token>")
    return token or None


def _push_hf(ref: HubRef, upload: Upload, token: str | None, private: bool, message: str) -> str:
    """One commit on the Hugging Face Hub with every file, creating the dataset repository when needed."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=token)
    api.create_repo(ref.repo, repo_type="dataset", private=private, exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(f)) for p, f in sorted(upload.files.items())]
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=upload.card.encode("utf-8")))
    info = api.create_commit(ref.repo, repo_type="dataset", operations=operations, commit_message=message)
    return info.commit_url


def _push_ms(ref: HubRef, upload: Upload, token: str | None, private: bool, message: str) -> str:
    """Upload to ModelScope: the files are laid out in a temporary folder and sent with `upload_folder`."""
    from modelscope_hub import HubApi

    api = HubApi(token=token or "")
    if not api.repo_exists(ref.repo, "dataset"):
        api.create_repo(ref.repo, "dataset", visibility="private" if private else "public")
    with tempfile.TemporaryDirectory(prefix="dataforge-push-") as tmp:
        folder = Path(tmp)
        for path_in_repo, path in upload.files.items():
            (folder / path_in_repo).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, folder / path_in_repo)
        (folder / "README.md").write_text(upload.card, encoding="utf-8")
        api.upload_folder(ref.repo, "dataset", folder, commit_message=message, disable_tqdm=True)
    return f"https://www.modelscope.cn/datasets/{ref.repo}"
