"""Formats, registered by name. Each module holds one format; `get` and `detect` are the way in."""

from __future__ import annotations

from typing import Any

from ..errors import DataError, UsageError
from .alpaca import AlpacaFormat
from .base import Converted, Format, Written
from .openai import OpenAIFormat
from .sharegpt import ShareGPTFormat

REGISTRY: dict[str, Format] = {f.name: f for f in (AlpacaFormat(), ShareGPTFormat(), OpenAIFormat())}


def names() -> list[str]:
    """Registered format names, in registration order."""
    return list(REGISTRY)


def get(name: str) -> Format:
    """The format registered as `name`."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown format {name!r}", hint=f"known formats: {', '.join(REGISTRY)}") from None


def detect(sample: list[dict[str, Any]], where: str) -> Format:
    """The one format whose detector accepts `sample`; an error naming the candidates otherwise."""
    matches = [f for f in REGISTRY.values() if f.detect(sample)]
    if len(matches) == 1:
        return matches[0]
    if not sample:
        raise DataError(f"{where}: no readable records to detect the format from", hint="set `format:` explicitly")
    keys = sorted({k for r in sample for k in r})
    if not matches:
        raise DataError(
            f"{where}: could not detect the format from columns {keys}",
            hint=f"set `format:` to one of {', '.join(REGISTRY)} and map renamed columns with `columns:`",
        )
    raise DataError(
        f"{where}: records match several formats ({', '.join(f.name for f in matches)})",
        hint="set `format:` explicitly",
    )


__all__ = ["Converted", "Format", "REGISTRY", "Written", "detect", "get", "names"]
