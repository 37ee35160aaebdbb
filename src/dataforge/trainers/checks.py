"""Checks before spending compute: each refuses to start a run that would train on the wrong thing.

* the build must have passed the recipe's quality gates (`checks:`);
* the data kind must match the method (DPO needs preference pairs, KTO labelled completions, SFT conversations);
* not too many of the target's rows may have nothing to train (dropped by the render stage as
  `no_trained_tokens`, or rendered with zero trained tokens);
* the tokenizer must be the one the data was rendered with: the target's tokenizer and template digests against
  the manifest's (`check_target`), and the model's own tokenizer, when it ships one, against the target's;
* a local model directory must hold a model: a config.json naming its model_type or architectures, and every
  weight file (`*.safetensors`, `pytorch_model*.bin`, or the shards an index lists), none of them a Git LFS
  pointer or a truncated safetensors file — checked from the files' names and headers, without loading them;
* the model's embedding table must cover the tokenizer's ids;
* for DPO and KTO, which trl tokenizes itself, trl's tokenization of a sample must equal the rendered ids.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..recipe import Train
from .build import KINDS, TrainingData

# Rows whose trl tokenization is compared with the rendered ids (DPO/KTO): enough to catch a template or
# tokenizer mismatch, which shows on every row, without tokenizing the whole set twice.
TOKENIZATION_SAMPLE = 16


def check_gates(data: TrainingData) -> None:
    """Refuse when the build failed one of the recipe's quality gates (`checks:`): training comes after them.

    A gate of another render target (its template, overflow or lengths) does not concern this run: it trains on
    `data.spec`'s rendering only.
    """
    from ..report.gates import describe, failed

    report = json.loads((data.dir / "report" / "report.json").read_text(encoding="utf-8"))
    gates = report.get("gates") or {"results": [], "passed": True}
    others = set(report.get("render") or {}) - {data.spec.name}
    failures = [r for r in failed(gates) if r["scope"] not in others]
    if failures:
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise DataError(
            f"the build failed its quality gate {describe(failures[0])}{more}; not training on it",
            hint="`dataforge check` lists every gate; fix the data or the recipe's `checks:`",
        )


def check_kind(method: str, data: TrainingData) -> int:
    """Refuse when the target has no rendered train rows of the kinds `method` trains on; their count."""
    counts = data.kind_counts()
    wanted = KINDS[method]
    n = sum(counts.get(k, 0) for k in wanted)
    if n == 0:
        found = ", ".join(f"{k}: {v}" for k, v in counts.items()) or "no rows"
        need = {"sft": "conversations or text", "dpo": "preference pairs", "kto": "KTO rows (completion + label)"}
        raise DataError(
            f"train.method {method} needs {need[method]} ({' or '.join(wanted)} rows), but render target "
            f"{data.spec.name!r} has none in train ({found})",
            hint="add a source of that kind, or choose the method that matches the data",
        )
    return n


def check_untrained(method: str, data: TrainingData, max_share: float) -> dict[str, Any]:
    """Refuse when the share of rows with no trained token is above `max_share`; the counts."""
    kinds = KINDS[method]
    rendered = sum(data.rendered_rows(s, kinds).num_rows for s in ("train", "val"))
    zero = sum(
        sum(1 for n in data.rendered_rows(s, kinds)["n_trained"].to_pylist() if n == 0) for s in ("train", "val")
    )
    dropped = data.render_rejects["reason"].to_pylist().count("no_trained_tokens")
    total = rendered + dropped
    share = (zero + dropped) / total if total else 0.0
    counts = {"rows": total, "untrained": zero + dropped, "share": round(share, 6), "max_share": max_share}
    if share > max_share:
        raise DataError(
            f"render target {data.spec.name!r}: {zero + dropped} of {total} rows ({share:.1%}) have no trained "
            f"token ({dropped} dropped as no_trained_tokens, {zero} truncated to none); the limit is "
            f"train.max_untrained_share = {max_share:.1%}",
            hint="check the data's assistant turns and loss weights, raise max_length, or raise the limit",
        )
    return counts


def check_target(target: Any, data: TrainingData) -> None:
    """Refuse when the target's tokenizer or template is not the one the build rendered with."""
    built = data.manifest["render"][data.spec.name]
    if built.get("tokenizer_digest") != target.tokenizer_digest:
        raise DataError(
            f"render target {data.spec.name!r}: the tokenizer {target.source!r} is not the one the build rendered "
            f"with (digest {str(built.get('tokenizer_digest'))[:12]} in the manifest, {target.tokenizer_digest[:12]} "
            "now)",
            hint="run `dataforge build` again so the data is rendered with this tokenizer",
        )
    if built.get("template_digest") != target.template_digest:
        raise DataError(
            f"render target {data.spec.name!r}: the chat template is not the one the build rendered with",
            hint="run `dataforge build` again so the data is rendered with this template",
        )


def check_model_tokenizer(target: Any, data: TrainingData, model_tokenizer: Any | None) -> None:
    """Refuse when the model ships a tokenizer other than the render target's (None: it ships none)."""
    from ..render.target import tokenizer_digest

    if model_tokenizer is not None and tokenizer_digest(model_tokenizer) != target.tokenizer_digest:
        raise DataError(
            f"the model's tokenizer differs from render target {data.spec.name!r}'s ({target.source!r}): the "
            "token ids the data was rendered to would mean other tokens to this model",
            hint="render for the model's own tokenizer (a render target with tokenizer: <the model>)",
        )


WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt")
_MODEL_HINT = (
    "train.model is the model's own directory (config.json and weights, as save_pretrained writes them) or a "
    "hub id; a tokenizer alone belongs in a render target's `tokenizer:`"
)


def check_model_dir(train: Train, root: Path) -> Path | None:
    """Refuse a local `train.model` directory that no trainer could load; the directory, or None for a hub id
    (`owner/name`, `ms://owner/name`: not checkable offline, so not checked).

    Checked from names and headers only, so it holds for `--handoff-only` too, whose configs name this
    directory for the trainer that loads it: a config.json with a `model_type` or `architectures`, and
    weights that are all there (an index's shards exist; no Git LFS pointer; no truncated safetensors).
    """
    from .config import local_model_dir

    folder = local_model_dir(train, root)
    if folder is None:
        return None
    config = folder / "config.json"
    if not config.is_file():
        present = [name for name in TOKENIZER_FILES if (folder / name).is_file()]
        if (folder / "adapter_config.json").is_file():
            raise DataError(
                f"train.model: {folder} is a LoRA adapter (adapter_config.json), not a model: it has no config.json",
                hint=f"merge it first (`dataforge merge {folder} -o merged`) and train merged/, or name its base model",
            )
        what = f"only a tokenizer ({', '.join(present)})" if present else "no model"
        raise DataError(f"train.model: {folder} holds {what}: it has no config.json", hint=_MODEL_HINT)
    try:
        parsed = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"train.model: {config} is not valid JSON ({exc})", hint=_MODEL_HINT) from None
    if not isinstance(parsed, dict) or not (parsed.get("model_type") or parsed.get("architectures")):
        raise DataError(
            f"train.model: {config} names no model_type or architectures, so it is not a model's config",
            hint="use the config.json saved with the model (save_pretrained writes model_type and architectures)",
        )
    for weights in _weight_files(folder):
        _check_weight_file(weights)
    return folder


def _weight_files(folder: Path) -> list[Path]:
    """The weight files a loader would read: the shards of an index, else the files matching WEIGHT_PATTERNS."""
    for name in WEIGHT_INDEXES:
        index = folder / name
        if not index.is_file():
            continue
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
            raise DataError(
                f"train.model: {index} is not a weight index (JSON with a `weight_map`)",
                hint="download the model again",
            ) from None
        missing = [shard for shard in shards if not (folder / shard).is_file()]
        if missing:
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise DataError(
                f"train.model: {folder} lacks {len(missing)} of the {len(shards)} weight files {name} lists: {shown}",
                hint="the download is incomplete: fetch the missing files",
            )
        return [folder / shard for shard in shards]
    found = sorted(
        {p for pattern in WEIGHT_PATTERNS for p in folder.glob(pattern) if not p.name.startswith("adapter_model")}
    )
    if not found:
        raise DataError(
            f"train.model: {folder} has a config.json but no weights ({', '.join(WEIGHT_PATTERNS)} or an index)",
            hint="save the model with save_pretrained, or download its weight files",
        )
    return found


def _check_weight_file(path: Path) -> None:
    """Refuse a Git LFS pointer in place of weights, and a safetensors file shorter than its own header says."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if head.startswith(b"version "):
            raise DataError(
                f"train.model: {path} is a Git LFS pointer ({size} bytes), not the weights",
                hint="fetch the weights (`git lfs pull` in the model's repository), or download the model again",
            )
        if path.suffix != ".safetensors":
            return
        need = None
        if len(head) == 8:
            (length,) = struct.unpack("<Q", head)
            if length <= size - 8:
                try:
                    header = json.loads(f.read(length))
                    need = (
                        8
                        + length
                        + max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
                    )
                except (ValueError, TypeError, KeyError, IndexError, AttributeError):
                    need = None
    if need is None:
        raise DataError(f"train.model: {path} is not a safetensors file", hint="download the model again")
    if need > size:
        raise DataError(
            f"train.model: {path} is truncated ({size:,} bytes; its header describes {need:,})",
            hint="the download is incomplete: download the file again",
        )


def check_vocabulary(model: Any, tokenizer: Any) -> None:
    """Refuse when the tokenizer has ids past the model's embedding table."""
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        raise DataError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's embedding table only {rows}: "
            "ids past it would fail or train the wrong rows",
            hint="use the model's own tokenizer for the render target",
        )


def check_trl_tokenization(
    records: list[dict[str, Any]], rendered: list[list[int]], ids: list[str], tokenizer: Any, side: str
) -> None:
    """Refuse when trl's tokenization of `records` (prompt + `side`) differs from the `rendered` ids.

    DPOTrainer and KTOTrainer tokenize conversations themselves, with `apply_chat_template`; the build checked
    and measured its own rendering, so both must give the same tokens (callers pass a sample of whole rows).
    """
    for record, expected, row_id in zip(records, rendered, ids, strict=True):
        tools = json.loads(record["tools"]) if record.get("tools") else None
        got = tokenizer.apply_chat_template(
            record["prompt"] + record[side],
            tools=tools,
            tokenize=True,
            return_dict=False,
            **(record.get("chat_template_kwargs") or {}),
        )
        if list(got) != list(expected):
            raise DataError(
                f"trl would tokenize {row_id} differently from the build's rendering "
                f"({len(got)} tokens against {len(expected)})",
                hint="the render target's template must render prompt + completion as one conversation",
            )
