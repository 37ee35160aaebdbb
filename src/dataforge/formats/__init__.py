"""Formats, registered by name. Each module holds one format; `get` and `detect` are the way in."""

from __future__ import annotations

import difflib
from typing import Any

from ..errors import DataError, UsageError
from .alpaca import AlpacaFormat
from .base import Converted, Format, Written
from .hermes import HermesFormat
from .minimind import MiniMindFormat
from .openai import OpenAIFormat
from .sharegpt import ShareGPTFormat
from .swift import SwiftFormat
from .text import TextFormat
from .trl import TrlFormat
from .typed import TypedFormat

REGISTRY: dict[str, Format] = {
    f.name: f
    for f in (
        AlpacaFormat(),
        ShareGPTFormat(),
        OpenAIFormat(),
        HermesFormat(),
        MiniMindFormat(),
        SwiftFormat(),
        TypedFormat(),
        TrlFormat(),
        TextFormat(),
    )
}


def names() -> list[str]:
    """Registered format names, in registration order."""
    return list(REGISTRY)


def unknown(name: str, known: list[str] | None = None) -> str:
    """`unknown format 'x'`, with the closest known name when there is one (`; did you mean 'y'?`)."""
    close = difflib.get_close_matches(name, known if known is not None else list(REGISTRY), n=1)
    return f"unknown format {name!r}" + (f"; did you mean {close[0]!r}?" if close else "")


def get(name: str) -> Format:
    """The format registered as `name`; a UsageError suggesting the closest name otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError(unknown(name), hint=f"known formats: {', '.join(REGISTRY)}") from None


def detect(sample: list[dict[str, Any]], where: str) -> Format:
    """The format that most of `sample` is in; an error naming the candidates when none or several are.

    A format is a candidate when it accepts more than half of the sampled records, so one malformed record
    at the head of a file does not hide its format (that record is rejected later, with its line). A dialect
    (specificity > 0) claims only records that show it (tool tags in text), so it is a candidate as soon as it
    claims one sampled record while a container with the same columns accepts the majority: a Hermes file
    where a third of the conversations call tools is still Hermes. Among candidates the most specific wins
    (a dialect over the container it lives in), then the best score.
    """
    if not sample:
        raise DataError(f"{where}: no readable records to detect the format from", hint="set `format:` explicitly")
    matches = candidates(sample)
    if len(matches) == 1:
        return matches[0]
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


def candidates(sample: list[dict[str, Any]]) -> list[Format]:
    """The formats `detect` chooses among for `sample` (see there): one when detection succeeds, none when no
    format accepts the records, several when it cannot tell."""
    if not sample:
        return []
    scores = {f.name: sum(f.matches(r) for r in sample) for f in REGISTRY.values()}
    found = [REGISTRY[name] for name, score in scores.items() if 2 * score > len(sample)]
    containers = {f.signature for f in found if f.specificity == 0}
    found += [
        f
        for f in REGISTRY.values()
        if f.specificity > 0 and f not in found and scores[f.name] > 0 and f.signature in containers
    ]
    if found:
        top = max(f.specificity for f in found)
        found = [f for f in found if f.specificity == top]
        best = max(scores[f.name] for f in found)
        found = [f for f in found if scores[f.name] == best]
    return found


__all__ = ["Converted", "Format", "REGISTRY", "Written", "candidates", "detect", "get", "names", "unknown"]
