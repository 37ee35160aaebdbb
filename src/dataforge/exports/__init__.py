"""Exports: a build's splits written so a trainer can use them without edits.

An export is either a trainer (`trl`, `llamafactory`, `ms-swift`, `axolotl`: data files per row kind plus the
trainer's own dataset description) or any registered format (its JSON Lines). Every export states what it had
to drop (`losses`) or change (`transforms`), per split and row kind; the build report carries both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import formats
from ..formats import media
from . import axolotl, llamafactory, swift, trl
from .base import Exported, Exporter, FormatExporter, MemoryFiles, Sink, Splits, Tally, merge, run_export

# Each trainer's streaming exporter (`open_export`), and its whole-splits export (`export`).
TRAINER_EXPORTERS: dict[str, type[Exporter]] = {
    "trl": trl.TrlExporter,
    "llamafactory": llamafactory.LlamaFactoryExporter,
    "ms-swift": swift.SwiftExporter,
    "axolotl": axolotl.AxolotlExporter,
}
TRAINERS: dict[str, Callable[[Splits, str], Exported]] = {
    "trl": trl.export,
    "llamafactory": llamafactory.export,
    "ms-swift": swift.export,
    "axolotl": axolotl.export,
}

__all__ = ["TRAINERS", "Exported", "Exporter", "Sink", "Splits", "export", "export_names", "open_export"]


def export_names() -> list[str]:
    """Every name `outputs.exports` and `dataforge convert --to` accept, once each: trainers, then formats
    (`trl` is both; the name means the trainer export, whose files the `trl` format writes)."""
    return list(dict.fromkeys([*TRAINERS, *formats.names()]))


class MediaHold(Exporter):
    """Another exporter, fed only the rows that carry no image, video or audio inputs; those are counted and
    left out (the convert stage rejects them, so they only come from elsewhere): no export writes text whose
    placeholders point at media its files do not map."""

    def __init__(self, inner: Exporter) -> None:
        super().__init__(inner.sink, inner.dataset, keep_left_out=inner.keep_left_out)
        self.inner = inner
        self.held = Tally()
        self.any_held = False

    def add(self, split: str, rows: list[dict[str, Any]]) -> None:
        kept = []
        for row in rows:
            if media.in_metadata(row.get("metadata")):
                self.held.leave(split, row, media.NOT_WRITTEN)
                self.any_held = True
            else:
                kept.append(row)
        if not self.keep_left_out:
            self.held.left_out.clear()
        self.inner.add(split, kept)

    def finish(self) -> Exported:
        exported = self.inner.finish()
        if self.any_held:
            exported.losses = merge(exported.losses, self.held.result())
            exported.left_out = self.held.left_out + exported.left_out
        return exported


def open_export(name: str, sink: Sink, dataset: str, *, keep_left_out: bool = True) -> Exporter:
    """The export `name`, written batch by batch into `sink` (see `Exporter`); `dataset` names the data in
    descriptions that need a name (LLaMA-Factory's dataset_info.json)."""
    trainer = TRAINER_EXPORTERS.get(name)
    inner = (
        trainer(sink, dataset, keep_left_out=keep_left_out)
        if trainer is not None
        else FormatExporter(name, sink, dataset, keep_left_out=keep_left_out)
    )
    return MediaHold(inner)


def export(name: str, splits: Splits, dataset: str) -> Exported:
    """`splits` (split name → EXAMPLE_SCHEMA rows as dicts) exported as `name`, the files held as text (for
    `dataforge convert`; a build streams through `open_export`). Rows carrying media are left out and counted
    (`MediaHold`)."""
    sink = MemoryFiles()
    return run_export(open_export(name, sink, dataset), sink, splits)
