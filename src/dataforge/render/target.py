"""Render targets: a model's tokenizer and chat template, loaded without remote code unless asked, with digests."""

from __future__ import annotations

import hashlib
import json
import re
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
        missing = _template_without_vocabulary(location)
        if missing:
            raise DataError(
                f"render target {name!r}: {missing}: transformers cannot build a tokenizer from it", hint=_NO_VOCAB_HINT
            ) from None
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
    _require_vocabulary(name, tok, location)
    template = tok.chat_template if isinstance(tok.chat_template, str) else None
    return LoadedTarget(
        name=name,
        tokenizer=tok,
        template=template,
        tokenizer_digest=tokenizer_digest(tok),
        template_digest=hashlib.sha256(template.encode()).hexdigest() if template else None,
        source=tokenizer,
    )


# Ordinary words in a few scripts: any real vocabulary encodes them to text that decodes back. A tokenizer
# built from a folder that holds only a chat template (transformers 5 then makes one of the added tokens alone)
# encodes them to nothing or to `<unk>`.
_PROBE_WORDS = "The quick brown fox jumps over the lazy dog, 42 times."
_PROBE_SCRIPTS = ("Der Fuchs springt über den Hund.", "Быстрая лиса прыгает.", "敏捷的狐狸跳过了懒狗。", "café déjà vu")
_VOCABULARY_FILES = "tokenizer.json, tokenizer.model or vocab.json + merges.txt"
_NO_VOCAB_HINT = (
    "point the target at a folder (or hub id) with the model's full tokenizer files, and keep the template "
    "there or name it with `chat_template:`"
)
_WHITESPACE = re.compile(r"\s+")


def _require_vocabulary(name: str, tok: Any, location: str) -> None:
    """Refuse a tokenizer that cannot encode ordinary text, before any row is rendered with it.

    The probe is cheap (two short encodes) and backend-agnostic: the English words must decode back (whitespace
    and case aside, so lower-casing or space-handling decoders pass) and `<unk>` may not be half of the probe's
    tokens in the other scripts (a Latin-only vocabulary without byte fallback still passes on the English).
    """
    try:
        ids = tok.encode(_PROBE_WORDS, add_special_tokens=False)
        back = tok.decode(ids, skip_special_tokens=True)
        other = tok.encode(" ".join(_PROBE_SCRIPTS), add_special_tokens=False)
    except Exception as exc:  # a tokenizer that raises on plain text cannot render rows either
        raise DataError(
            f"render target {name!r}: the tokenizer at {location} cannot encode plain text ({exc})", hint=_NO_VOCAB_HINT
        ) from None
    unk = tok.unk_token_id
    every = ids + other
    unknown = sum(1 for i in every if unk is not None and i == unk)
    decodes = _squash(back) == _squash(_PROBE_WORDS)
    if decodes and unknown * 2 < max(len(every), 1):
        return
    added = len(tok.get_added_vocab())
    what = _template_without_vocabulary(location)
    built = (
        f"transformers built a tokenizer of {len(tok):,} tokens, {added:,} of them added tokens"
        if len(tok) > added
        else f"transformers built a tokenizer of its {added:,} added tokens only"
    )
    seen = f"{_PROBE_WORDS!r} encodes to {len(ids)} token(s) decoding to {back[:60]!r}"
    if unknown:
        seen += f"; {unknown} of {len(every)} probe tokens are {tok.unk_token!r}"
    head = what or f"the tokenizer at {location} cannot encode ordinary text"
    raise DataError(f"render target {name!r}: {head}: {built} ({seen})", hint=_NO_VOCAB_HINT)


def _squash(text: str) -> str:
    return _WHITESPACE.sub("", text).casefold()


def _template_without_vocabulary(location: str) -> str | None:
    """What is missing from a local folder that has a chat template and none of the vocabulary files
    ("DIR has a chat template but no vocabulary (…)"), else None: hub ids and folders with vocabulary files
    are not judged by their file names (the probe judges them)."""
    folder = Path(location)
    if not folder.is_dir():
        return None
    names = {p.name for p in folder.iterdir()}
    vocabulary = {"tokenizer.json", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model", "vocab.txt"}
    if names & vocabulary or {"vocab.json", "merges.txt"} <= names or any(n.endswith(".tiktoken") for n in names):
        return None
    templated = bool(names & {"chat_template.jinja", "chat_template.json"}) or _config_has_template(folder)
    if not templated:
        return None
    return f"{folder} has a chat template but no vocabulary ({_VOCABULARY_FILES})"


def _config_has_template(folder: Path) -> bool:
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and bool(config.get("chat_template"))


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
