"""A missing package, said in one line: which package, what needs it, and the command that installs it.

The core install (`pip install -e .`) carries everything the data commands import. The training path
(torch, trl, peft) is the `train` extra, QLoRA adds bitsandbytes, and a few libraries import packages of their
own lazily (transformers needs jinja2 for chat templates, sentencepiece and protobuf for SentencePiece
tokenizers). Any of these missing at run time becomes a `MissingDependency`, never a traceback and never a
hint about the data.
"""

from __future__ import annotations

import re
from typing import Literal

from .errors import DataforgeError

Provider = Literal["core", "train", "ray", "own"]  # the core install, an extra (`train`, `ray`), or none

# Import name → (distribution to install, what brings it).
KNOWN: dict[str, tuple[str, Provider]] = {
    "torch": ("torch", "train"),
    "trl": ("trl", "train"),
    "peft": ("peft", "train"),
    "accelerate": ("accelerate", "train"),
    "bitsandbytes": ("bitsandbytes", "own"),
    "jinja2": ("jinja2", "core"),
    "sentencepiece": ("sentencepiece", "core"),
    "protobuf": ("protobuf", "core"),
    "tiktoken": ("tiktoken", "core"),
    "scipy": ("scipy", "core"),
    "ray": ("ray", "ray"),
}

# How libraries word a missing package in their own ImportErrors (transformers: "requires jinja2 to be
# installed", "requires the protobuf library", "requires the SentencePiece library").
_WORDED = [
    (re.compile(r"\bjinja2?\b", re.I), "jinja2"),
    (re.compile(r"\bsentencepiece\b", re.I), "sentencepiece"),
    (re.compile(r"\bprotobuf\b", re.I), "protobuf"),
    (re.compile(r"\bbitsandbytes\b", re.I), "bitsandbytes"),
    (re.compile(r"\btiktoken\b", re.I), "tiktoken"),
    (re.compile(r"\bpytorch\b|\btorch\b", re.I), "torch"),
    (re.compile(r"\btrl\b"), "trl"),
    (re.compile(r"\bpeft\b", re.I), "peft"),
    (re.compile(r"\baccelerate\b", re.I), "accelerate"),
]


class MissingDependency(DataforgeError):
    """A package dataforge (or a library it uses) needs is not installed (exit 2: fix the environment)."""

    exit_code = 2


def install_command(package: str) -> str:
    """The pip command that brings `package`: the dataforge extra when one carries it, else the package."""
    dist, provider = KNOWN.get(package, (package, "own"))
    if provider == "train":
        return 'pip install "dataforge[train]"  (on a machine without a GPU: pip install torch==2.13.0 first)'
    if provider == "ray":
        return 'pip install "dataforge[ray]"'
    if provider == "core":  # the environment lost it, or dataforge was installed with --no-deps
        return f'pip install "{dist}"  (part of the core install: pip install -e . brings it)'
    return f'pip install "{dist}"'


def missing_package(exc: ImportError) -> str | None:
    """The package an ImportError says is missing, or None when it does not name one we can tell."""
    name = getattr(exc, "name", None)
    if name:
        if name.startswith("google.protobuf"):
            return "protobuf"
        top = name.split(".")[0]
        return None if top in ("dataforge", "trainers") else top  # our own modules failing is a bug, not a package
    text = str(exc)
    for pattern, package in _WORDED:
        if pattern.search(text):
            return package
    return None


def as_missing_dependency(exc: ImportError, needed_for: str) -> MissingDependency | None:
    """`exc` as a one-line MissingDependency for `needed_for` (e.g. "rendering"), or None if it names no package."""
    package = missing_package(exc)
    if package is None:
        return None
    dist = KNOWN.get(package, (package, "own"))[0]
    message = f"{needed_for} needs the Python package {dist!r}, which is not installed or is too old"
    said = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if said and not isinstance(exc, ModuleNotFoundError):  # "No module named 'x'" adds nothing
        message += f" ({said})"  # e.g. a version requirement: "requires jinja2>=3.1.6 ... Your version is 3.0.3"
    return MissingDependency(message, hint=install_command(package))
