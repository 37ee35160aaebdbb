"""The build a training run reads: brought up to date first, then its rendered rows and canonical examples.

Training never prepares data itself. `current_build` runs the recipe's graph (every cached stage is reused, so
an unchanged build costs only the key check) and writes the build when its outputs are not current, so what is
trained on is exactly what `manifest.json` describes, down to the sha256 of each rendered file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError
from ..recipe import LoadedRecipe, RenderTarget, Train

# The rendered row kinds each method trains on: SFT learns from conversations and plain text alike.
KINDS: dict[str, tuple[str, ...]] = {"sft": ("sft", "pretrain"), "dpo": ("preference",), "kto": ("kto",)}
SPLITS = ("train", "val")


@dataclass
class TrainingData:
    """One render target's rows of a current build, as the trainers need them."""

    dir: Path
    manifest: dict[str, Any]
    manifest_sha256: str
    spec: RenderTarget
    rendered: dict[str, pa.Table]  # split → RENDERED_SCHEMA rows (all kinds)
    examples: dict[str, pa.Table]  # split → canonical EXAMPLE_SCHEMA rows (all kinds)
    render_rejects: pa.Table
    packed: dict[str, pa.Table] | None = None  # split → packed rows, when the target packs (`pack:`)

    def kind_counts(self) -> dict[str, int]:
        """Rendered train rows per kind."""
        kinds = self.rendered["train"]["kind"].to_pylist()
        return {k: kinds.count(k) for k in sorted(set(kinds))}

    def rendered_rows(self, split: str, kinds: tuple[str, ...]) -> pa.Table:
        """The split's rendered rows of `kinds`, in build order."""
        table = self.rendered[split]
        keep = pa.array([k in kinds for k in table["kind"].to_pylist()], type=pa.bool_())
        return table.filter(keep)

    def examples_rendered(self, split: str, kinds: tuple[str, ...]) -> list[dict[str, Any]]:
        """The canonical examples of `kinds` that the target rendered (rows it dropped stay out), in the
        rendered order, so trl's own tokenization sees the same rows the build checked."""
        ids = self.rendered_rows(split, kinds)["id"].to_pylist()
        wanted = set(ids)
        by_id = {row["id"]: row for row in self.examples[split].to_pylist() if row["id"] in wanted}
        return [by_id[i] for i in ids]


def target_spec(loaded: LoadedRecipe, train: Train) -> RenderTarget:
    """The render target `train` names, or the recipe's only one (the recipe check guarantees one exists)."""
    targets = {t.name: t for t in loaded.recipe.render}
    name = train.target or next(iter(targets))
    return targets[name]


def current_build(loaded: LoadedRecipe) -> dict[str, Any]:
    """Run the recipe's graph (cached stages are reused) and write the build unless it is current; its manifest."""
    from ..engine.runner import run
    from ..stages.write import is_current, write_build, write_key

    result = run(loaded, None)
    if is_current(loaded, write_key(loaded, result.entries)):
        return json.loads((loaded.build_dir / "manifest.json").read_text(encoding="utf-8"))
    return write_build(loaded, result.stages, result.entries)


def training_data(loaded: LoadedRecipe, spec: RenderTarget) -> TrainingData:
    """The current build's rows for render target `spec`, checked against the manifest's digests."""
    manifest = current_build(loaded)
    out = loaded.build_dir
    if spec.name not in manifest.get("render", {}):
        raise DataError(f"the build in {out} has no rendered rows for target {spec.name!r}")
    rendered = {split: _read_checked(out, f"rendered/{spec.name}/{split}.parquet", manifest) for split in SPLITS}
    examples = {split: _read_checked(out, f"{split}.parquet", manifest) for split in SPLITS}
    rejects = _read_checked(out, f"rendered/{spec.name}/rejects.parquet", manifest)
    packed = None
    if spec.pack is not None:
        packed = {
            split: _read_checked(out, f"rendered/{spec.name}/packed_{split}.parquet", manifest) for split in SPLITS
        }
    digest = hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest()
    return TrainingData(out, manifest, digest, spec, rendered, examples, rejects, packed)


def _read_checked(out: Path, name: str, manifest: dict[str, Any]) -> pa.Table:
    """A build file, refused when its bytes are not the ones the manifest recorded (edited after the build)."""
    path = out / name
    recorded = manifest.get("outputs", {}).get(name)
    data = path.read_bytes() if path.is_file() else b""
    if recorded is None or hashlib.sha256(data).hexdigest() != recorded:
        raise DataError(
            f"{path}: not the file the build's manifest records",
            hint="run `dataforge build` again; never edit files under the build directory",
        )
    return pq.read_table(pa.BufferReader(data))
