"""Render targets: a model's tokenizer and chat template, loaded without remote code unless asked, with digests."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..deps import as_missing_dependency
from ..errors import DataError


@dataclass
class LoadedTarget:
    """A tokenizer ready to render with, and what identifies it for the cache and the manifest."""

    name: str
    tokenizer: Any  # transformers PreTrainedTokenizerBase
    template: str | None
    tokenizer_digest: str
    template_digest: str | None
    source: str  # what the recipe named (local path, hub id, ms://id)

    @property
    def has_generation_markers(self) -> bool:
        return self.template is not None and "{% generation %}" in self.template.replace("{%-", "{%")


def load_target(
    name: str,
    tokenizer: str,
    root: Path,
    *,
    revision: str | None = None,
    chat_template: str | None = None,
    trust_remote_code: bool = False,
) -> LoadedTarget:
    """The tokenizer named by a local directory, a Hugging Face id or `ms://owner/name` (ModelScope).

    `chat_template` is an optional path to a Jinja file that replaces the tokenizer's own template.
    Remote code runs only with `trust_remote_code=True`.
    """
    from transformers import AutoTokenizer

    location = _locate(tokenizer, root, revision)
    try:
        tok = AutoTokenizer.from_pretrained(location, revision=revision, trust_remote_code=trust_remote_code)
    except ImportError as exc:  # e.g. a SentencePiece-only tokenizer without sentencepiece/protobuf installed
        raise as_missing_dependency(exc, f"loading the tokenizer of render target {name!r}") or exc from None
    except (OSError, ValueError) as exc:
        raise DataError(
            f"render target {name!r}: cannot load the tokenizer {tokenizer!r} ({str(exc).splitlines()[0]})",
            hint="use a local directory with tokenizer files, or a hub id that is cached or reachable",
        ) from None
    if chat_template is not None:
        path = Path(chat_template)
        path = path if path.is_absolute() else root / path
        try:
            tok.chat_template = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DataError(f"render target {name!r}: cannot read chat_template {chat_template!r} ({exc})") from None
    template = tok.chat_template if isinstance(tok.chat_template, str) else None
    return LoadedTarget(
        name=name,
        tokenizer=tok,
        template=template,
        tokenizer_digest=tokenizer_digest(tok),
        template_digest=hashlib.sha256(template.encode()).hexdigest() if template else None,
        source=tokenizer,
    )


def _locate(tokenizer: str, root: Path, revision: str | None) -> str:
    if tokenizer.startswith("ms://"):
        from modelscope.hub.snapshot_download import snapshot_download

        return snapshot_download(tokenizer.removeprefix("ms://"), revision=revision or "master")
    path = Path(tokenizer)
    candidate = path if path.is_absolute() else root / path
    if candidate.is_dir():
        return str(candidate.resolve())
    # Hub ids are `owner/name`; anything else is a local path, resolved against the recipe root only
    # (never the working directory, so a build means the same thing from anywhere).
    if tokenizer.startswith((".", "/")) or tokenizer.count("/") != 1:
        raise DataError(
            f"tokenizer directory {candidate} does not exist",
            hint="local tokenizers are directories relative to the recipe's root; hub ids look like owner/name",
        )
    return tokenizer


def tokenizer_digest(tok: Any) -> str:
    """sha256 of what decides token ids: the backend tokenizer's serialisation and the special tokens."""
    h = hashlib.sha256()
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:  # slow tokenizers: the vocabulary decides
        h.update(json.dumps(sorted(tok.get_vocab().items())).encode())
    h.update(json.dumps(tok.special_tokens_map, sort_keys=True, default=str).encode())
    return h.hexdigest()
