"""trl configs from the recipe's `train:` section, and the base model they train.

dataforge fills in what follows from the build (output directory, seed, the render target's max_length) and
from the machine (CPU: `use_cpu=True` and fp32, since trl's configs default to bf16 mixed precision; GPU: bf16
where the GPU supports it); `train.args` then override any of it. Unknown arguments are recipe errors that
name the closest real one.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any

from ..errors import DataError, RecipeError
from ..recipe import LoadedRecipe, RenderTarget, Train


def device_defaults() -> dict[str, Any]:
    """Precision and device arguments for this machine."""
    import torch

    if torch.cuda.is_available():
        return {"use_cpu": False, "bf16": torch.cuda.is_bf16_supported()}
    return {"use_cpu": True, "bf16": False}


def trl_config(config_class: type, loaded: LoadedRecipe, spec: RenderTarget, output_dir: Path) -> Any:
    """`config_class` (SFTConfig, DPOConfig or KTOConfig) for this recipe's run; RecipeError on bad `args`."""
    train = loaded.recipe.train
    assert train is not None
    fields = {f.name: f for f in dataclasses.fields(config_class) if f.init}
    known = set(fields)
    problems = []
    for key in train.args:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"did you mean `{close[0]}`?" if close else "see trl's documentation of the config"
            problems.append(f"train.args.{key}: not an argument of trl's {config_class.__name__} ({hint})")
    if "output_dir" in train.args:
        problems.append("train.args.output_dir: set `train.output_dir` instead")
    packed = spec.pack is not None and config_class.__name__ == "SFTConfig"
    if packed:
        from ..pack import TRL_PACKED_ARGS

        for key in sorted(set(train.args) & set(TRL_PACKED_ARGS)):
            problems.append(
                f"train.args.{key}: render target {spec.name!r} packs its rows (`pack:`), and dataforge sets "
                f"{key} for trl's padding-free training of them; remove it"
            )
    if problems:
        raise RecipeError(str(loaded.path), problems)
    args: dict[str, Any] = {
        "output_dir": str(output_dir),
        "seed": loaded.recipe.seed,
        "max_length": spec.max_length,
        "report_to": "none",
        # The finished adapter or model is saved once, at the end, with its tokenizer and provenance.
        "save_strategy": "no",
        **device_defaults(),
        **{key: _number(fields[key], value) for key, value in train.args.items()},
    }
    if packed:  # pre-packed rows: trl must neither pack again, truncate, nor re-prepare them
        args |= TRL_PACKED_ARGS
    try:
        return config_class(**args)
    except (ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RecipeError(
            str(loaded.path), [f"train.args: trl's {config_class.__name__} refused them: {first}"]
        ) from None


def _number(field: dataclasses.Field, value: Any) -> Any:
    """A float argument written as YAML reads `1e-4` (a string: YAML 1.1 wants `1.0e-4`), as the float it means."""
    if isinstance(value, str) and "float" in str(field.type):
        try:
            return float(value)
        except ValueError:
            return value  # trl's own validation says what is wrong with it
    return value


def local_model_dir(train: Train, root: Path) -> Path | None:
    """`train.model` as a local directory (relative to root), or None for a hub id (`owner/name`,
    `ms://owner/name`); a DataError when it names a directory that does not exist."""
    if train.model.startswith("ms://"):
        return None
    path = Path(train.model)
    candidate = path if path.is_absolute() else root / path
    if candidate.is_dir():
        return candidate.resolve()
    if train.model.startswith((".", "/")) or train.model.count("/") != 1:
        raise DataError(
            f"train.model: the directory {candidate} does not exist",
            hint="local models are directories relative to the recipe's root; hub ids look like owner/name",
        )
    return None


def model_location(train: Train, root: Path) -> str:
    """Where the base model loads from: a local directory (relative to root), a ModelScope snapshot or a hub id."""
    if train.model.startswith("ms://"):
        from modelscope.hub.snapshot_download import snapshot_download

        return snapshot_download(train.model.removeprefix("ms://"), revision=train.revision or "master")
    local = local_model_dir(train, root)
    return str(local) if local is not None else train.model


def model_tokenizer(location: str, train: Train) -> Any | None:
    """The tokenizer shipped with the model, or None when it ships none (the render target's is used)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(
            location, revision=train.revision, trust_remote_code=train.trust_remote_code
        )
    except (OSError, ValueError, TypeError):
        return None


def load_model(location: str, train: Train, quantization: Any | None) -> Any:
    """The base causal LM: bf16 on a GPU that has it, else fp32; 4-bit when `quantization` is given."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"revision": train.revision, "trust_remote_code": train.trust_remote_code}
    if torch.cuda.is_available():
        kwargs["dtype"] = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        kwargs["dtype"] = torch.float32
    if quantization is not None:
        kwargs["quantization_config"] = quantization
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    try:
        return AutoModelForCausalLM.from_pretrained(location, **kwargs)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"train.model: cannot load {train.model!r} ({str(exc).strip().splitlines()[0]})",
            hint="use a local directory with config.json and weights, or a hub id that is cached or reachable",
        ) from None
