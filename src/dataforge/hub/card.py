"""The dataset card (README.md) `dataforge push` uploads with a build's splits.

Its YAML front matter is what the Hub reads: `configs` (the splits' files, so `load_dataset` and the viewer
find them), `dataset_info.features` (written by `datasets` from the Parquet schema), `size_categories`,
and `license`, taken from the sources' own cards. The body holds the provenance: every source with its hub
address, revision and resolved commit, its files' hashes and row counts, and the recipe the build ran.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import UsageError

# Split name on the hub → file in the build directory.
SPLIT_FILES = {"train": "train.parquet", "validation": "val.parquet"}
SIZE_CATEGORIES = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
]


@dataclass(frozen=True)
class Upload:
    """What a push sends: repository path → local file, plus the card's text."""

    files: dict[str, Path]
    card: str


def size_category(rows: int) -> str:
    """The Hub's size bucket for a dataset of `rows` rows."""
    return next((label for limit, label in SIZE_CATEGORIES if rows < limit), "n>1B")


def load_manifest(build_dir: Path) -> dict[str, Any]:
    """The build's manifest; a usage error when `build_dir` holds no finished build."""
    path = build_dir / "manifest.json"
    if not path.is_file():
        raise UsageError(
            f"{build_dir}: no manifest.json, so this is not a finished build",
            hint="pass the build directory (data/processed/<name>) of a `dataforge build` that completed",
        )
    return json.loads(path.read_text(encoding="utf-8"))


def prepare_upload(build_dir: Path) -> Upload:
    """The files to upload (splits under data/, README.md) and the card describing them."""
    import pyarrow.parquet as pq

    manifest = load_manifest(build_dir)
    splits = {}
    for split, name in SPLIT_FILES.items():
        path = build_dir / name
        if path.is_file() and pq.read_metadata(path).num_rows > 0:
            splits[split] = path
    if "train" not in splits:
        raise UsageError(f"{build_dir}: train.parquet is missing or empty; there is nothing to push")
    files = {f"data/{split}.parquet": path for split, path in splits.items()}
    return Upload(files=files, card=dataset_card(manifest, splits))


def dataset_card(manifest: dict[str, Any], splits: dict[str, Path]) -> str:
    """README.md text: YAML front matter for the Hub, then the provenance and the recipe."""
    import datasets
    import pyarrow.parquet as pq
    from huggingface_hub import DatasetCard, DatasetCardData

    rows = {split: pq.read_metadata(path).num_rows for split, path in splits.items()}
    features = datasets.Features.from_arrow_schema(pq.read_schema(splits["train"]))
    sources = manifest["sources"]
    licenses = _licenses(sources)
    data = DatasetCardData(
        pretty_name=manifest["recipe"]["name"],
        license=licenses[0] if len(licenses) == 1 else "other",
        size_categories=[size_category(sum(rows.values()))],
        tags=["dataforge", "fine-tuning"],
        configs=[
            {
                "config_name": "default",
                "data_files": [{"split": split, "path": f"data/{split}.parquet"} for split in splits],
            }
        ],
        dataset_info={
            # The features block exactly as `datasets` writes it when it pushes a dataset itself.
            "features": features._to_yaml_list(),
            "splits": [
                {"name": split, "num_bytes": splits[split].stat().st_size, "num_examples": n}
                for split, n in rows.items()
            ],
        },
    )
    text = f"---\n{data.to_yaml()}\n---\n\n{_body(manifest, rows, licenses)}"
    DatasetCard(text)  # the Hub's own parser must accept it; it raises on malformed front matter
    return text


def _licenses(sources: list[dict[str, Any]]) -> list[str]:
    """The distinct licenses the sources' cards declare; ["unknown"] when a source declares none."""
    found = [(s.get("hub") or {}).get("license") or "unknown" for s in sources]
    return sorted(set(found))


def _body(manifest: dict[str, Any], rows: dict[str, int], licenses: list[str]) -> str:
    recipe = manifest["recipe"]
    ledger = manifest["ledger"]
    total = ledger["total"]
    lines = [
        f"# {recipe['name']}",
        "",
        f"Fine-tuning data built by dataforge {manifest.get('dataforge', '')} from the recipe below: "
        + ", ".join(f"{n:,} {split}" for split, n in rows.items())
        + " rows of dataforge's canonical `Example` record (messages with roles, reasoning and tool calls; tools; "
        "preference pairs; KTO labels; text).",
        "",
        f"Of {total['in']:,} source records, {total['rejected']:,} were rejected as invalid, "
        f"{total['filtered']:,} filtered, {total['deduplicated']:,} removed as duplicates and "
        f"{total['downsampled']:,} left out by the mix.",
        "",
        "## Provenance",
        "",
        "| source | from | revision | commit | license | format | files (sha256) | records | train | validation |",
        "|---|---|---|---|---|---|---|--:|--:|--:|",
    ]
    for s in manifest["sources"]:
        hub = s.get("hub") or {}
        counts = ledger["sources"].get(s["name"], {})
        files = "<br>".join(f"`{f['file']}` ({(f.get('sha256') or '')[:12]})" for f in s["files"])
        lines.append(
            f"| {s['name']} | {hub.get('uri', 'local file')} | {hub.get('revision') or '–'} | "
            f"{(hub.get('commit') or '–')[:12]} | {hub.get('license') or 'unknown'} | {s['format']} | {files} | "
            f"{counts.get('in', 0):,} | {counts.get('train', 0):,} | {counts.get('val', 0):,} |"
        )
    if len(licenses) > 1:
        lines += ["", f"The sources carry different licenses ({', '.join(licenses)}); each applies to its rows."]
    lines += [
        "",
        f"Recipe digest `{recipe['digest'][:16]}`, build key `{manifest['build_key'][:16]}`.",
        "",
        "## Recipe",
        "",
        "```yaml",
        yaml.safe_dump(
            _in_recipe_order(recipe.get("config", {"name": recipe["name"]})), sort_keys=False, allow_unicode=True
        ).rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def _in_recipe_order(config: dict[str, Any]) -> dict[str, Any]:
    """The recipe with its keys in the order a recipe is written (the manifest stores them sorted)."""
    from pydantic import ValidationError

    from ..recipe import Recipe

    try:
        return Recipe.model_validate(config).model_dump(mode="json", by_alias=True, exclude_defaults=True)
    except ValidationError:  # a build made by another dataforge version: keep what it recorded
        return config
