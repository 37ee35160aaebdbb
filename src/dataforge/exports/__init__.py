"""Exports: a build's splits written so a trainer can use them without edits.

An export is either a trainer (`trl`, `llamafactory`, `ms-swift`, `axolotl`: data files per row kind plus the
trainer's own dataset description) or any registered format (its JSON Lines). Every export states what it had
to drop (`losses`) or change (`transforms`), per split and row kind; the build report carries both.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import formats
from . import axolotl, llamafactory, swift, trl
from .base import Exported, Splits, format_export

TRAINERS: dict[str, Callable[[Splits, str], Exported]] = {
    "trl": trl.export,
    "llamafactory": llamafactory.export,
    "ms-swift": swift.export,
    "axolotl": axolotl.export,
}

__all__ = ["TRAINERS", "Exported", "Splits", "export", "export_names"]


def export_names() -> list[str]:
    """Every name `outputs.exports` and `dataforge convert --to` accept: trainers, then formats."""
    return [*TRAINERS, *formats.names()]


def export(name: str, splits: Splits, dataset: str) -> Exported:
    """`splits` (split name → EXAMPLE_SCHEMA rows as dicts) exported as `name`; `dataset` names the data in
    descriptions that need a name (LLaMA-Factory's dataset_info.json)."""
    make: Callable[[Splits, str], Exported] | None = TRAINERS.get(name)
    if make is not None:
        return make(splits, dataset)
    return format_export(name, splits)
