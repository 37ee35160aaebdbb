"""Exports: a build's splits written so a trainer can use them without edits.

An export is either a trainer (`trl`, `llamafactory`, `ms-swift`, `axolotl`: data files per row kind plus the
trainer's own dataset description) or any registered format (its JSON Lines). Every export states what it had
to drop (`losses`) or change (`transforms`), per split and row kind; the build report carries both.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import formats
from ..formats import media
from . import axolotl, llamafactory, swift, trl
from .base import Exported, Splits, Tally, format_export, merge

TRAINERS: dict[str, Callable[[Splits, str], Exported]] = {
    "trl": trl.export,
    "llamafactory": llamafactory.export,
    "ms-swift": swift.export,
    "axolotl": axolotl.export,
}

__all__ = ["TRAINERS", "Exported", "Splits", "export", "export_names"]


def export_names() -> list[str]:
    """Every name `outputs.exports` and `dataforge convert --to` accept, once each: trainers, then formats
    (`trl` is both; the name means the trainer export, whose files the `trl` format writes)."""
    return list(dict.fromkeys([*TRAINERS, *formats.names()]))


def export(name: str, splits: Splits, dataset: str) -> Exported:
    """`splits` (split name → EXAMPLE_SCHEMA rows as dicts) exported as `name`; `dataset` names the data in
    descriptions that need a name (LLaMA-Factory's dataset_info.json).

    Rows carrying image, video or audio inputs (which the convert stage rejects, so only rows from elsewhere)
    are left out and counted: no export writes text whose placeholders point at media its files do not map."""
    kept: Splits = {}
    held = Tally()
    for split, rows in splits.items():
        kept[split] = []
        for row in rows:
            if media.in_metadata(row.get("metadata")):
                held.leave(split, row, media.NOT_WRITTEN)
            else:
                kept[split].append(row)
    make: Callable[[Splits, str], Exported] | None = TRAINERS.get(name)
    exported = make(kept, dataset) if make is not None else format_export(name, kept)
    if held.left_out:
        exported.losses = merge(exported.losses, held.result())
        exported.left_out = held.left_out + exported.left_out
    return exported
