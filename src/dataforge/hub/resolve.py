"""Which repository files a hub source reads: its `files` globs, or its subset (config) and split.

A dataset's card (README.md front matter) may declare `configs:` with `data_files` per split, as the Hub's
dataset viewer and `datasets.load_dataset` read them. Without configs, split names are found in file and
folder names the way `datasets` does (`data/train-00000-of-00001.parquet`, `test.jsonl`, `valid/…`), and a
repository with no split in any name is one `train` split. Only files dataforge reads are kept.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import PurePosixPath
from typing import Any

from ..errors import DataError, UsageError
from ..readers_files import SUFFIXES, skip_reason, supported
from .uris import HubRef

# Split keywords as `datasets` recognises them in file and folder names.
SPLIT_KEYWORDS = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "dev", "val"),
    "test": ("test", "testing", "eval", "evaluation"),
}


def match_patterns(paths: list[str], patterns: list[str]) -> list[str]:
    """The `paths` matched by any glob in `patterns` (a pattern ending in "/" matches everything below), sorted."""
    expanded = [p + "*" if p.endswith("/") else p for p in patterns]
    return sorted(p for p in paths if any(fnmatch.fnmatch(p, pat) for pat in expanded))


def readable(paths: list[str]) -> list[str]:
    """The repository files dataforge reads as data: by suffix, with the folder rule of local sources (hidden
    files, dataset metadata such as `dataset_info.json`, documentation and media are not data)."""
    return sorted(
        p
        for p in paths
        if any(p.lower().endswith(s) for s in SUFFIXES)
        and skip_reason(PurePosixPath(p)) is None
        and not any(part.startswith(".") for part in p.split("/")[:-1])  # hidden folders (`.github/`)
    )


def card_metadata(readme: str | None) -> dict[str, Any]:
    """The YAML front matter of a dataset card, parsed by huggingface_hub ({} when there is none)."""
    if not readme or not readme.startswith("---"):
        return {}
    from huggingface_hub import DatasetCard

    try:
        return DatasetCard(readme, ignore_metadata_errors=True).data.to_dict()
    except ValueError:
        return {}


def resolve_files(
    ref: HubRef,
    paths: list[str],
    *,
    patterns: tuple[str, ...],
    subset: str | None,
    split: str | None,
    card: dict[str, Any],
    revision: str,
) -> list[str]:
    """The repository files the source reads; a one-line error naming what is missing and what exists."""
    where = f"{ref.uri}@{revision}"
    if patterns:
        matched = readable(match_patterns(paths, list(patterns)))
        if not matched:
            raise UsageError(
                f"{where}: `files: {list(patterns)}` matches no data file dataforge reads ({supported()})",
                hint=f"files there: {_sample(readable(paths))}",
            )
        return matched
    split = split or "train"
    configs = card.get("configs")
    if isinstance(configs, list) and configs:
        return _from_configs(where, paths, configs, subset, split)
    if subset is not None:
        raise UsageError(
            f"{where}: `subset: {subset}` cannot be resolved: the dataset card declares no configs",
            hint='name the files instead, e.g. `files: ["data/*.parquet"]`',
        )
    by_split = _splits_by_name(readable(paths))
    if split not in by_split:
        raise UsageError(
            f"{where}: no split {split!r}; splits found: {', '.join(sorted(by_split)) or 'none'}",
            hint="set `split:` to one of them, or name the files with `files:`",
        )
    return by_split[split]


def _from_configs(where: str, paths: list[str], configs: list[Any], subset: str | None, split: str) -> list[str]:
    by_name = {c.get("config_name", "default"): c for c in configs if isinstance(c, dict)}
    if subset is not None:
        config = by_name.get(subset)
        if config is None:
            raise UsageError(f"{where}: no subset {subset!r}; subsets: {', '.join(sorted(by_name))}")
    else:
        defaults = [c for c in by_name.values() if c.get("default")]
        config = defaults[0] if defaults else by_name.get("default")
        if config is None and len(by_name) == 1:
            config = next(iter(by_name.values()))
        if config is None:
            raise UsageError(
                f"{where}: the dataset has several subsets and no default: {', '.join(sorted(by_name))}",
                hint="choose one with `subset:`",
            )
    splits = _config_splits(config.get("data_files"))
    if split not in splits:
        name = config.get("config_name", "default")
        raise UsageError(
            f"{where}: subset {name!r} has no split {split!r}; splits: {', '.join(splits) or 'none'}",
            hint="set `split:` to one of them",
        )
    matched = readable(match_patterns(paths, splits[split]))
    if not matched:
        raise DataError(
            f"{where}: split {split!r} names {splits[split]}, which match no .jsonl, .json or .parquet file",
            hint="name readable files with `files:`",
        )
    return matched


def _config_splits(data_files: Any) -> dict[str, list[str]]:
    """A config's `data_files` as split → patterns (a bare string or list is the `train` split)."""
    if isinstance(data_files, str):
        return {"train": [data_files]}
    out: dict[str, list[str]] = {}
    for item in data_files if isinstance(data_files, list) else []:
        if isinstance(item, str):
            out.setdefault("train", []).append(item)
        elif isinstance(item, dict) and "split" in item:
            path = item.get("path", [])
            out.setdefault(str(item["split"]), []).extend([path] if isinstance(path, str) else list(path))
    return out


def _splits_by_name(paths: list[str]) -> dict[str, list[str]]:
    """Files grouped by the split their name or folder names; everything is `train` when nothing is named."""
    found: dict[str, list[str]] = {}
    for path in paths:
        stem = path.rsplit(".", 1)[0].lower()
        for split, words in SPLIT_KEYWORDS.items():
            if any(re.search(rf"(?:^|[-._ /0-9]){w}(?:[-._ /0-9]|$)", stem) for w in words):
                found.setdefault(split, []).append(path)
                break
    if not found and paths:
        return {"train": list(paths)}
    return found


def _sample(paths: list[str], n: int = 5) -> str:
    if not paths:
        return "none"
    more = f" … ({len(paths) - n} more)" if len(paths) > n else ""
    return ", ".join(paths[:n]) + more
