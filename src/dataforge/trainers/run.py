"""`dataforge train`: the recipe's `train:` section run on its own build, with the checks first.

Order: check that a local model directory holds a model → bring the build up to date → check its quality
gates, the data kind, the untrained share and the render target's tokenizer and template → write the hand-off
configs for other trainers → load the model, check its tokenizer and vocabulary against the target's → train
with trl → save the adapter (or model), the tokenizer with its chat template, the training log and
`training.json` (what was trained on: the build manifest's sha256 and the rendered files' digests).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..engine.cache import library_versions
from ..errors import RecipeError, UsageError
from ..recipe import LoadedRecipe, Train
from ..render.target import LoadedTarget, load_target
from . import dpo, kto, sft
from .build import KINDS, TrainingData, target_spec, training_data
from .checks import (
    check_gates,
    check_kind,
    check_model_dir,
    check_model_tokenizer,
    check_target,
    check_untrained,
    check_vocabulary,
)
from .handoff import write_handoff

METHODS = {"sft": sft, "dpo": dpo, "kto": kto}
LIBRARIES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets")

Say = Callable[[str], None]


@dataclass
class Trained:
    """What a run wrote, and how it went."""

    output_dir: Path
    rows: dict[str, int]
    handoff: list[Path]
    skipped_handoff: list[str]
    training_loss: float | None = None
    log: list[dict[str, Any]] = field(default_factory=list)
    loss_weights: bool = False  # whether the trainer scaled each token's loss by the rows' `loss_weights`


def section(loaded: LoadedRecipe) -> Train:
    """The recipe's `train:` section; a UsageError when it has none."""
    if loaded.recipe.train is None:
        raise UsageError(
            f"{loaded.path}: the recipe has no `train:` section",
            hint="add train: {method: sft, model: <hub id or directory>} (see the README's Training)",
        )
    return loaded.recipe.train


def output_dir_of(loaded: LoadedRecipe, train: Train) -> Path:
    """Where the run writes: `train.output_dir` under root, or <build dir>/train/<method>."""
    if train.output_dir is None:
        return loaded.build_dir / "train" / train.method
    path = Path(train.output_dir)
    return path if path.is_absolute() else loaded.root / path


def train(loaded: LoadedRecipe, *, handoff_only: bool = False, say: Say = lambda _: None) -> Trained:
    """Run the recipe's training section on its build (or, with `handoff_only`, only check and write the
    hand-off configs)."""
    spec_train = section(loaded)
    spec = target_spec(loaded, spec_train)
    check_model_dir(spec_train, loaded.root)  # before the build: a folder no trainer can load is refused first
    say(f"build: bringing {loaded.build_dir} up to date")
    data = training_data(loaded, spec)
    check_gates(data)
    n_train = check_kind(spec_train.method, data)
    untrained = check_untrained(spec_train.method, data, spec_train.max_untrained_share)
    target = load_target(
        spec.name,
        spec.tokenizer,
        loaded.root,
        revision=spec.revision,
        chat_template=spec.chat_template,
        trust_remote_code=spec.trust_remote_code,
    )
    check_target(target, data)
    output_dir = output_dir_of(loaded, spec_train)
    written, skipped = write_handoff(
        loaded, spec_train, data, target.template, output_dir / "handoff", pad_token_id=target.tokenizer.pad_token_id
    )
    rows = {"train": n_train, "val": data.rendered_rows("val", KINDS[spec_train.method]).num_rows}
    result = Trained(output_dir, rows, written, skipped)
    if handoff_only:
        return result
    return _fit(loaded, spec_train, data, target, untrained, result, say)


def _fit(
    loaded: LoadedRecipe,
    spec_train: Train,
    data: TrainingData,
    target: LoadedTarget,
    untrained: dict[str, Any],
    result: Trained,
    say: Say,
) -> Trained:
    """Load, check, train and save (the part that needs torch, trl and peft)."""
    from .config import load_model, model_location, model_tokenizer, trl_config
    from .lora import lora_config, quantization_config

    spec = data.spec
    location = model_location(spec_train, loaded.root)
    check_model_tokenizer(target, data, model_tokenizer(location, spec_train))
    method = METHODS[spec_train.method]
    if spec.train_on == "weighted" and spec_train.method != "sft":
        # DPO and KTO losses compare whole completions' log-probabilities; per-token weights have no place there.
        say(f"train: {spec.name!r} renders with train_on: weighted; {spec_train.method} ignores loss_weights")
    quantization = quantization_config() if spec_train.peft.type == "qlora" else None
    config = trl_config(method.config_class(), loaded, spec, result.output_dir)
    train_set, eval_set = method.datasets(data, target)
    say(f"model: loading {spec_train.model}")
    model = load_model(location, spec_train, quantization)
    check_vocabulary(model, target.tokenizer)
    try:
        trainer = method.trainer(model, target.tokenizer, config, lora_config(spec_train.peft), train_set, eval_set)
    except ValueError as exc:  # trl refuses settings that contradict each other or the data (e.g. eval without val)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RecipeError(str(loaded.path), [f"train: trl refused the run: {first}"]) from None
    result.loss_weights = bool(getattr(trainer, "uses_loss_weights", False))
    say(f"train: {spec_train.method} on {result.rows['train']} rows of {spec.name!r} ({spec_train.peft.type})")
    output = trainer.train()
    result.training_loss = float(output.training_loss)
    result.log = list(trainer.state.log_history)
    out = result.output_dir
    trainer.save_model(str(out))
    target.tokenizer.save_pretrained(str(out))  # with the chat template the data was rendered with
    (out / "training_log.jsonl").write_text(
        "".join(json.dumps(entry, sort_keys=True) + "\n" for entry in result.log), encoding="utf-8"
    )
    record = provenance(loaded, spec_train, data, location, untrained, result, output.metrics)
    (out / "training.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return result


def provenance(
    loaded: LoadedRecipe,
    spec_train: Train,
    data: TrainingData,
    location: str,
    untrained: dict[str, Any],
    result: Trained,
    metrics: dict[str, Any],
) -> dict[str, Any]:
    """`training.json`: what was trained, on which data (by digest), with what, and the final metrics."""
    outputs = data.manifest.get("outputs", {})
    name = data.spec.name
    files = [f"rendered/{name}/{split}.parquet" for split in ("train", "val")] + ["train.parquet", "val.parquet"]
    if data.packed is not None:
        files += [f"rendered/{name}/packed_{split}.parquet" for split in ("train", "val")]
    built = data.manifest["render"][name]
    return {
        "dataforge": __version__,
        "method": spec_train.method,
        "model": spec_train.model,
        "model_location": location,
        "peft": spec_train.peft.model_dump(),
        "args": dict(spec_train.args),
        "data": {
            "build_dir": str(data.dir),
            "manifest_sha256": data.manifest_sha256,
            "build_key": data.manifest.get("build_key"),
            "recipe_digest": data.manifest.get("recipe", {}).get("digest"),
            "render_target": name,
            "packed": built.get("pack"),
            "tokenizer_digest": built.get("tokenizer_digest"),
            "template_digest": built.get("template_digest"),
            "files": {f: outputs.get(f) for f in files},
            "rows": result.rows,
            "untrained": untrained,
            "train_on": data.spec.train_on,
            "first_n": data.spec.first_n,
        },
        "loss": loss_of(result),
        # JSON has no NaN: a diverged run records null (and the command exits 1).
        "training_loss": result.training_loss if _finite(result.training_loss) else None,
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))},
        "versions": library_versions(LIBRARIES),
    }


def loss_of(result: Trained) -> dict[str, Any]:
    """How the run's loss treated the tokens (training.json `loss`): scaled by `loss_weights` or not, and the
    normalisation (`sft.py` says why it is this one)."""
    return {
        "loss_weights": result.loss_weights,
        "normalisation": "sum(loss_weights * cross_entropy) / trained tokens"
        if result.loss_weights
        else "trl's default for the method",
    }


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
