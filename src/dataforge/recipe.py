"""The recipe (`mix.yaml`): a typed model, loaded with every problem reported at once, each with its line.

Every section forbids unknown keys so that a typo is an error with a suggestion, never a silently ignored
setting. `schemas/recipe.schema.json` is generated from these models (`dataforge schema`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from . import formats
from .errors import RecipeError
from .quality.policy import LangRule, Quality

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


ReasoningPolicy = Literal["keep", "strip", "field", "inline"]
REASONING_HELP = (
    "What happens to assistant reasoning after conversion: `keep` it as the data has it; `strip` it (the "
    "reasoning field and inline <think> blocks); move inline <think> blocks at the head of assistant content "
    "to the reasoning `field`; or move the reasoning field `inline`, as a <think> block heading the content."
)


# `substitute:` fills template placeholders (`{{name}}`) in message text; see `dataforge.stages.substitute`.
PLACEHOLDER_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _placeholder_name(value: str) -> str:
    if not re.fullmatch(PLACEHOLDER_NAME, value):
        raise ValueError(f"{value!r} cannot be a placeholder name (letters, digits and '_', not starting with a digit)")
    return value


def _placeholder_value(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f'the value must be text (found {value!r}); quote it: "{value}"')
    return value


Substitutions = dict[
    Annotated[str, AfterValidator(_placeholder_name)], Annotated[str, BeforeValidator(_placeholder_value)]
]
SUBSTITUTE_HELP = (
    "Template placeholders to fill, name → text: `{{name}}` (or `{{ name }}`) outside code in every message's "
    "content and reasoning, and in pretrain text, is replaced after conversion, before validation."
)


class Source(_Section):
    """One input: a file, directory or glob in one format."""

    name: Annotated[str, Field(pattern=NAME_PATTERN, description="Unique name, used in ids and reports.")]
    from_: Annotated[
        str,
        Field(
            alias="from",
            min_length=1,
            description="Path, directory or glob, relative to the recipe's root; or hf://owner/name, ms://owner/name.",
        ),
    ]
    format: str | None = Field(
        default=None, description=f"One of {', '.join(formats.names())}; detected from the data when omitted."
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Renamed columns: the format's column name → the name used in these files.",
    )
    max_rows: Annotated[int, Field(gt=0)] | None = Field(
        default=None, description="Read at most this many records (in file order)."
    )
    allow_outside_root: bool = Field(
        default=False,
        description="Read files that resolve (through links, `..` or an absolute path) outside the recipe's root; "
        "refused by default.",
    )
    reasoning: ReasoningPolicy | None = Field(
        default=None, description="This source's reasoning policy; default: the recipe's `reasoning`."
    )
    substitute: Substitutions = Field(
        default_factory=dict,
        description=SUBSTITUTE_HELP + " Merged over the recipe's `substitute` (this source's values win).",
        json_schema_extra={"propertyNames": {"pattern": PLACEHOLDER_NAME}},
    )
    # Hub sources (`from: hf://owner/name` or `ms://owner/name`); cross-checked against `from` below.
    revision: str | None = Field(
        default=None, description="Hub sources: branch, tag or commit (default: main on hf://, master on ms://)."
    )
    subset: str | None = Field(
        default=None, description="Hub sources: the dataset config (subset) whose files to read; default: its default."
    )
    split: str | None = Field(
        default=None, description="Hub sources: the split to read (default: train), resolved to concrete files."
    )
    files: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="Hub sources: glob patterns of repository files to fetch and read, instead of subset/split.",
    )
    token_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = Field(
        default=None,
        description="Hub sources: the name of the environment variable holding the access token (never the token).",
    )

    @field_validator("from_")
    @classmethod
    def _hub_uri_shape(cls, value: str) -> str:
        from .hub.uris import check_uri

        check_uri(value)
        return value

    # `before`: runs ahead of the pattern check, whose error would echo the value (a token, maybe).
    @field_validator("token_env", mode="before")
    @classmethod
    def _not_a_token(cls, value: Any) -> str | None:
        from .hub.uris import check_token_env

        return check_token_env(value)

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str | None) -> str | None:
        if value is not None and value not in formats.names():
            raise ValueError(f"{formats.unknown(value)} (known formats: {', '.join(formats.names())})")
        return value


class Engine(_Section):
    """Where the build's shard functions run. Neither setting changes what is built: outputs are byte-identical
    for any engine and any number of workers, so the engine stays out of every cache key."""

    name: Literal["local", "ray"] = Field(
        default="local",
        description="`local`: worker processes on this machine. `ray`: Ray tasks on a cluster "
        '(`pip install "dataforge[ray]"`); the build folder must be on storage every node sees.',
    )
    workers: Annotated[int, Field(gt=0)] | None = Field(
        default=None, description="Worker processes (local) or tasks in flight (ray); default: every core."
    )
    address: str | None = Field(
        default=None,
        description="ray: the cluster to join (`auto`, `ray://head:10001`); default: start a local one.",
    )
    num_partitions: Annotated[int, Field(gt=0)] | None = Field(
        default=None, description="Partitions of the near-dedup band-key shuffle; default: from the row count."
    )


def _engine_shorthand(value: Any) -> Any:
    """`engine: ray` is `engine: {name: ray}`."""
    return {"name": value} if isinstance(value, str) else value


def _engine_schema(schema: dict[str, Any]) -> None:
    """The recipe's JSON Schema accepts the `engine: ray` shorthand that `_engine_shorthand` reads."""
    engine = schema["properties"]["engine"]
    ref = engine.pop("$ref", None) or engine.pop("allOf")[0]["$ref"]
    engine["anyOf"] = [{"$ref": ref}, {"type": "string", "enum": ["local", "ray"]}]


class Mix(_Section):
    """How sources combine: `natural` keeps every row; `ratio` samples each source to its share."""

    strategy: Literal["natural", "ratio"] = "natural"
    ratios: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict,
        description="Source name → weight; weights are normalised to shares of the final set.",
    )
    total: Annotated[int, Field(gt=0)] | None = Field(
        default=None,
        description="Rows in the final set; default: the largest total the ratios allow without repeating rows.",
    )


class Filters(_Section):
    """Valid rows dropped by policy (counted as `filtered`, not rejected)."""

    min_turns: Annotated[int, Field(ge=0)] = Field(default=1, description="Fewest assistant turns a row may have.")
    max_turns: Annotated[int, Field(gt=0)] | None = Field(default=None, description="Most assistant turns.")
    max_chars: Annotated[int, Field(gt=0)] | None = Field(
        default=None, description="Most characters over all message contents (and reasoning)."
    )
    drop_empty: bool = Field(default=True, description="Drop rows with a message whose content is only whitespace.")


class Lint(_Section):
    """Lint findings (tool calls, think tags, preference pairs) reject their row unless their reason is ignored."""

    ignore: list[str] = Field(
        default_factory=list,
        description="Lint reasons to count as warnings instead of rejecting the row (see the README's list).",
    )

    @field_validator("ignore")
    @classmethod
    def _known_reasons(cls, value: list[str]) -> list[str]:
        from .stages.lint import REASONS

        unknown = [v for v in value if v not in REASONS]
        if unknown:
            raise ValueError(f"unknown lint reason(s) {unknown}; known: {', '.join(REASONS)}")
        return value


class NearDedup(_Section):
    """Near-duplicate removal with MinHash LSH; runs on the rows exact deduplication kept."""

    threshold: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.8, description="Jaccard similarity of shingle sets at or above which two rows are near-copies."
    )
    num_perm: Annotated[int, Field(ge=16, le=1024)] = Field(
        default=128, description="MinHash signature length: more is more accurate and slower."
    )
    ngram: Annotated[int, Field(ge=1, le=32)] = Field(default=5, description="Units per shingle.")
    shingle: Literal["word", "char"] = Field(
        default="word", description="Shingle unit: words (split on whitespace) or characters (use for CJK text)."
    )
    fields: Literal["conversation", "user", "first_user", "final_answer"] = Field(
        default="conversation",
        description="The text compared: every turn, the user turns, the first user turn, or the final answer.",
    )
    normalise: list[Literal["case", "punctuation", "whitespace", "digits"]] = Field(
        default_factory=lambda: ["case", "punctuation", "whitespace"],
        description="Applied before shingling: fold case, turn each punctuation mark or symbol into a space, "
        "collapse whitespace (Unicode separators included), map every decimal digit to 0.",
    )
    verify: Literal["auto", "exact", "estimate"] = Field(
        default="auto",
        description="How candidate pairs are checked: exact Jaccard, the signature estimate, or `auto` "
        "(exact only where the estimate is within 4 standard errors of the threshold).",
    )
    engine: Literal["banded", "lsh"] = Field(
        default="banded",
        description="Candidate search: banded (band keys grouped with one sort; no index, suited to sharding) or "
        "lsh (datasketch's in-memory MinHashLSH). Both find the same pairs; banded is faster.",
    )
    workers: Annotated[int, Field(gt=0)] | None = Field(
        default=None, description="Processes computing signatures; default: the machine's cores (at most 8)."
    )


KEEP_POLICIES = ("first", "longest", "quality")


class Dedup(_Section):
    """Duplicate removal across all sources: exact (normalised text hash), then near (MinHash), if set."""

    exact: bool = Field(default=True, description="Remove rows whose normalised text (case, whitespace) repeats.")
    near: NearDedup | None = Field(default=None, description="Remove near-duplicates (MinHash LSH).")
    keep: str = Field(
        default="first",
        description="Which row of a duplicate group stays: `first` (source order, then row order), `longest`, "
        "`quality` (highest `quality_field` in the row's metadata), or a source's name (its rows win).",
    )
    quality_field: str = Field(default="quality", description="Metadata key holding a row's quality score.")
    decontaminate: list[str] = Field(
        default_factory=list,
        description="Files (e.g. eval sets) whose near-copies are removed from the data, before mixing.",
    )


class Split(_Section):
    """Train/validation split, per source so every source is represented in both."""

    validation: Annotated[float, Field(ge=0, lt=1)] = Field(
        default=0.0, description="Share of each source's rows held out for validation."
    )
    decontaminate: bool = Field(
        default=True,
        description="Remove validation rows with a near-copy in train (with dedup.near's settings or their defaults).",
    )


class Outputs(_Section):
    """Where the build writes and which exports it produces."""

    dir: str | None = Field(default=None, description="Build directory; default data/processed/<name> under root.")
    exports: list[str] = Field(
        default_factory=list,
        description="Exports of train/validation: a trainer (trl, llamafactory, ms-swift, axolotl) or any format.",
    )

    @field_validator("dir")
    @classmethod
    def _own_folder(cls, value: str | None) -> str | None:
        """Refuse a build dir that is the filesystem root, the recipe's root or a folder above it.

        Why: a build there would overwrite and mix with the project's own files. What the path resolves to
        (an absolute ancestor, a symlink) is checked again when the build takes the folder."""
        import posixpath

        if value is None:
            return None
        if not value.strip():
            raise ValueError("empty; leave it out for data/processed/<name>")
        norm = posixpath.normpath(value.replace("\\", "/"))
        if posixpath.isabs(norm) and norm.strip("/") == "":
            raise ValueError(f"{value!r} is the filesystem root; a build needs a folder of its own")
        if not posixpath.isabs(norm) and all(part in (".", "..") for part in norm.split("/")):
            raise ValueError(
                f"{value!r} is the recipe's root or a folder above it; a build needs a folder of its "
                "own, e.g. data/processed/<name>"
            )
        return value

    @field_validator("exports")
    @classmethod
    def _known_exports(cls, value: list[str]) -> list[str]:
        from .exports import export_names

        unknown = [v for v in value if v not in export_names()]
        if unknown:
            raise ValueError(f"unknown export(s) {unknown}; known: {', '.join(export_names())}")
        return value


class Unrendered(_Section):
    """What a render target does with a trained assistant turn whose tool calls or reasoning its chat template
    does not render (Phi-3/4 and SmolLM2/3 drop tool calls; most templates drop reasoning, Qwen3 that of
    earlier turns): `reject` the row (the trained reply would not be the one in the data), or `keep` it and
    train what the template renders (counted per target as the row note `tool_calls_not_rendered` /
    `reasoning_not_rendered`)."""

    tool_calls: Literal["reject", "keep"] = Field(
        default="reject", description="A trained turn whose tool calls the template drops: reject the row or keep it."
    )
    reasoning: Literal["reject", "keep"] = Field(
        default="reject",
        description="A trained turn whose reasoning the template drops: reject the row or keep it (or set "
        "`reasoning: strip` to train the answers without their reasoning).",
    )


class Pack(_Section):
    """Packing of a target's rendered SFT rows: whole rows into packed rows of at most `max_length` tokens, with
    labels -100 at every row's first token, position_ids restarting per row and the row lengths
    (`seq_lengths`), as trl's padding-free training takes them (see the README's Training)."""

    max_length: Annotated[int, Field(gt=0)] | None = Field(
        default=None, description="Tokens per packed row; default: the target's max_length."
    )
    strategy: Literal["bfd", "greedy", "none"] = Field(
        default="bfd",
        description="`bfd`: best-fit decreasing (trl's bins); `greedy`: first-fit in row order; `none`: one row "
        "per packed row (padding-free batches without packing).",
    )
    drop_longer: bool = Field(
        default=True,
        description="Rows longer than max_length (never split): leave them out, as rejects `too_long_to_pack`, "
        "or fail the build.",
    )


class RenderTarget(_Section):
    """A model to render for: its tokenizer and chat template, length limit and training policy."""

    name: Annotated[str, Field(pattern=NAME_PATTERN, description="Names rendered/<name>/.")]
    tokenizer: str = Field(
        min_length=1, description="Local directory (relative to root), Hugging Face id, or ms://owner/name."
    )
    revision: str | None = Field(default=None, description="Hub revision (branch, tag or commit).")
    chat_template: str | None = Field(default=None, description="A .jinja file replacing the tokenizer's template.")
    max_length: Annotated[int, Field(gt=0)] = Field(default=4096, description="Longest sequence, in tokens.")
    overflow: Literal["drop", "truncate", "keep", "error"] = Field(
        default="drop", description="What happens to rows longer than max_length."
    )
    train_on: Literal["all", "last", "first_n", "weighted"] = Field(
        default="all",
        description="Which assistant turns train: `all` (every turn whose weight is not 0), `last`, `first_n` "
        "(the first `first_n` turns), or `weighted` (every turn, its tokens' loss scaled by the turn's "
        "`weight`, written as `loss_weights`).",
    )
    first_n: Annotated[int, Field(gt=0)] | None = Field(
        default=None, description="With `train_on: first_n`: how many assistant turns, from the first, train."
    )
    reasoning: Literal["keep", "strip"] = Field(
        default="keep", description="Pass reasoning to the template (`reasoning_content`) or strip it."
    )
    chat_template_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Extra template variables, e.g. {enable_thinking: false}."
    )
    unrendered: Unrendered = Field(
        default_factory=Unrendered,
        description="Trained turns whose tool calls or reasoning the template does not render: reject or keep.",
    )
    trust_remote_code: bool = Field(default=False, description="Allow the tokenizer's own Python code to run.")
    pack: Pack | None = Field(
        default=None,
        description="Pack the rendered SFT rows (rendered/<name>/packed_{train,val}.parquet); `dataforge train` "
        "then trains on them, padding-free.",
    )
    workers: Annotated[int, Field(gt=0)] | None = Field(
        default=None,
        description="Ignored, accepted so that older recipes load: a build renders in its engine's workers "
        "(`engine.workers`).",
    )
    keep_share: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.99, description="Share of rows the suggested max_length keeps."
    )
    template_timeout_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=10.0,
        description="Seconds the chat template may take to render one row (all its renders together); a row "
        "that takes longer is rejected `template_timeout` (a template that loops without end) and the others go "
        "on. A rendering longer than 10,000,000 characters, or a `*`, `+` or `**` in the template building a "
        "value that big, is rejected `template_output_too_large`.",
    )

    @model_validator(mode="after")
    def _first_n_with_its_mode(self) -> RenderTarget:
        # `first_n` means something only with `train_on: first_n`, and that mode needs it: say so either way
        # rather than train a different set of turns than the recipe's author meant.
        if self.train_on == "first_n" and self.first_n is None:
            raise ValueError("train_on: first_n needs `first_n: N` (how many assistant turns train)")
        if self.first_n is not None and self.train_on != "first_n":
            raise ValueError(f"first_n is set but train_on is {self.train_on!r}; set train_on: first_n")
        return self


class Checks(_Section):
    """Quality gates: `dataforge build` and `dataforge check` exit 1 when one fails (see the README's Gates).

    Rates are shares (0.05 = 5%). An unset gate is not checked. Target gates (overflow, trained-token share,
    p99 length, template checks) apply to every render target, and fail when the build renders none.
    """

    max_reject_rate: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None, description="Most rows rejected (invalid) per rows read, in total and for each source."
    )
    max_duplicate_rate: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None, description="Most duplicates removed per row reaching deduplication (exact + near)."
    )
    max_overflow_rate: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None, description="Most rows longer than max_length per row rendered, for each target."
    )
    min_rows: Annotated[int, Field(ge=0)] | dict[str, Annotated[int, Field(ge=0)]] | None = Field(
        default=None,
        description="Fewest final rows (train + val): a number for the total, or `total` and source names → rows.",
    )
    min_trained_token_share: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None, description="Least share of rendered tokens that are trained (labels != -100), per target."
    )
    max_length_p99: Annotated[int, Field(gt=0)] | None = Field(
        default=None, description="Most tokens at the 99th percentile of row length, per target."
    )
    min_packing_efficiency: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None,
        description="Least share of packed capacity filled with tokens, per target that packs (`pack:`).",
    )
    max_pii_rate: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None,
        description="Most rows with PII found (before redaction) per row reaching the quality stage, in total and "
        "per source; needs `quality:`.",
    )
    min_lang_share: dict[str, Annotated[float, Field(ge=0, le=1)]] | None = Field(
        default=None,
        description="Language code → least share of the kept rows' assistant turns in it; needs `quality:`.",
    )
    require_template_checks: bool = Field(
        default=False,
        description="Every target's chat template has an end-of-turn token, honours the system prompt, renders "
        "history as a prefix, and its rows round-trip through encode/decode.",
    )


class Peft(_Section):
    """Parameter-efficient fine-tuning: LoRA adapters, optionally on a 4-bit (NF4) base model (QLoRA, GPU only)."""

    type: Literal["none", "lora", "qlora"] = Field(
        default="lora", description="`none` trains the full model; `lora` an adapter; `qlora` an adapter on 4-bit."
    )
    r: Annotated[int, Field(gt=0)] = Field(default=16, description="LoRA rank.")
    alpha: Annotated[float, Field(gt=0)] = Field(default=32, description="LoRA alpha (scaling = alpha / r).")
    dropout: Annotated[float, Field(ge=0, lt=1)] = Field(default=0.05, description="Dropout on the LoRA input.")
    target_modules: str | list[str] = Field(
        default="all-linear",
        description="Modules to adapt: `all-linear` (every linear layer but the output head) or a list of names.",
    )


class Train(_Section):
    """The bundled training stage (`dataforge train`): trl SFT, DPO or KTO on this build's rendered data."""

    method: Literal["sft", "dpo", "kto"] = Field(description="trl trainer: SFTTrainer, DPOTrainer or KTOTrainer.")
    model: str = Field(
        min_length=1, description="Base model: local directory (relative to root), Hugging Face id or ms://owner/name."
    )
    revision: str | None = Field(default=None, description="Hub revision of the model.")
    target: str | None = Field(
        default=None,
        description="Render target whose tokenizer, template and rendered rows to train on; default: the only one.",
    )
    peft: Peft = Field(default_factory=Peft)
    args: dict[str, Any] = Field(
        default_factory=dict,
        description="Passed to trl's SFTConfig / DPOConfig / KTOConfig (num_train_epochs, learning_rate, "
        "per_device_train_batch_size, gradient_accumulation_steps, eval_steps, seed, …).",
    )
    output_dir: str | None = Field(
        default=None, description="Where the adapter or model goes; default <build dir>/train/<method>, under root."
    )
    max_untrained_share: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.01, description="Refuse to train when more of the target's rows than this have no trained token."
    )
    trust_remote_code: bool = Field(default=False, description="Allow the model's own Python code to run.")


class Recipe(_Section):
    """A dataforge build: sources in, one processed dataset out."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, json_schema_extra=_engine_schema)

    name: Annotated[str, Field(pattern=NAME_PATTERN, description="Names the build directory.")]
    seed: int = Field(default=0, description="Seeds every random choice (mix, split).")
    root: str = Field(default=".", description="Directory relative paths resolve against, relative to the recipe.")
    sources: Annotated[list[Source], Field(min_length=1)]
    reasoning: ReasoningPolicy = Field(default="keep", description=REASONING_HELP)
    substitute: Substitutions = Field(
        default_factory=dict,
        description=SUBSTITUTE_HELP + " The default of every source; a source's own wins.",
        json_schema_extra={"propertyNames": {"pattern": PLACEHOLDER_NAME}},
    )
    lint: Lint = Field(default_factory=Lint)
    mix: Mix = Field(default_factory=Mix)
    filters: Filters = Field(default_factory=Filters)
    quality: Quality | None = Field(  # type: ignore[valid-type]
        default=None,
        description="Quality signals per row and role (language, repetition, PII, ratios, refusals); rows breaking "
        "a threshold are filtered with the signal as reason (README: Quality signals).",
    )
    dedup: Dedup = Field(default_factory=Dedup)
    split: Split = Field(default_factory=Split)
    outputs: Outputs = Field(default_factory=Outputs)
    render: list[RenderTarget] = Field(default_factory=list, description="Targets to render train/val for.")
    train: Train | None = Field(default=None, description="Fine-tune on this build with `dataforge train`.")
    checks: Checks = Field(default_factory=Checks, description="Quality gates; a failed gate makes the build exit 1.")
    engine: Annotated[Engine, BeforeValidator(_engine_shorthand)] = Field(
        default_factory=Engine,
        description="Where shard functions run: `local` (default) or `ray`, alone or with their settings "
        "(README: Scale).",
    )
    shard_mb: Annotated[float, Field(gt=0, le=4096)] = Field(
        default=32,
        description="Source files are read in shards of about this many MiB (a byte range of a JSONL file, row "
        "groups of a Parquet file); each shard is cached on its own, so appending rows re-reads only the new shards.",
    )

    def source(self, name: str) -> Source:
        return next(s for s in self.sources if s.name == name)

    def substitutions(self, source: Source) -> dict[str, str]:
        """The placeholders `source` fills: the recipe's `substitute`, overridden key by key by the source's."""
        return dict(sorted({**self.substitute, **source.substitute}.items()))


class LoadedRecipe(BaseModel):
    """A validated recipe and where it lives."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    recipe: Recipe
    path: Path
    root: Path

    @property
    def build_dir(self) -> Path:
        out = self.recipe.outputs.dir
        return (self.root / out) if out else (self.root / "data" / "processed" / self.recipe.name)


def recipe_json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of a recipe file."""
    schema = Recipe.model_json_schema(by_alias=True)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://dataforge.dev/schemas/recipe.schema.json",
        **schema,
    }


def _missing_recipe(path: Path) -> str:
    """The message for a recipe path that does not exist, naming a recipe beside it with a close name."""
    import difflib

    folder = path.parent if path.parent.is_dir() else None
    near = (
        difflib.get_close_matches(path.name, sorted(p.name for p in folder.glob("*.y*ml")), n=1, cutoff=0.6)
        if folder is not None
        else []
    )
    return "the recipe file does not exist" + (f"; did you mean {(path.parent / near[0]).as_posix()}?" if near else "")


def load_recipe(path: str | Path) -> LoadedRecipe:
    """The recipe at `path`, or a RecipeError listing every problem with its line and a hint."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_RECIPE_BYTES:  # refused before reading: a recipe is never this big
            raise RecipeError(str(path), [_too_big(size)])
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(str(path), [_missing_recipe(path)]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(str(path), [f"cannot read the recipe: {exc}"]) from None
    return parse_recipe(text, path)


def parse_recipe(text: str, path: Path) -> LoadedRecipe:
    """Validate recipe YAML `text` (from `path`, used for messages and relative paths)."""
    try:
        _check_shape(text, path)  # size, nesting and aliases, before any node or object is built
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "line ?"
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(str(path), [f"{where}: not valid YAML: {problem}"]) from None
    if not isinstance(data, dict):
        raise RecipeError(str(path), ["line 1: a recipe is a mapping with at least `name` and `sources`"])
    lines = _line_index(node)
    problems: list[tuple[int, str]] = []
    recipe: Recipe | None = None
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            problems.append(_describe(err, lines, data))
    problems.extend(_cross_checks(data, lines))
    if problems or recipe is None:
        ordered = sorted(set(problems), key=lambda p: (p[0], p[1]))
        raise RecipeError(str(path), [f"line {line}: {msg}" for line, msg in ordered])
    root = (path.parent / recipe.root).resolve()
    return LoadedRecipe(recipe=recipe, path=path.resolve(), root=root)


# --- bounds on the YAML itself --------------------------------------------------------------------

# A recipe is a page or two of YAML. These bounds sit far above any real one and far below what hurts: a ~1 KB
# "billion laughs" alias bomb expands to 10^9 values in the line index and in validation, and a deeply nested
# document exhausts the stack of PyYAML's recursive composer.
MAX_RECIPE_BYTES = 1_000_000
MAX_RECIPE_DEPTH = 64  # nested mappings and lists
MAX_RECIPE_ALIASES = 100  # `*name` uses; merge keys (`<<: *defaults`) count too
MAX_RECIPE_VALUES = 100_000  # scalars, mappings and lists once every alias is expanded


def _too_big(size: int) -> str:
    return f"the recipe is {size:,} bytes; a recipe may be at most {MAX_RECIPE_BYTES:,} bytes"


def _check_shape(text: str, path: Path) -> None:
    """Raise a RecipeError (naming the line) when the YAML is too big, too deep or expands too far."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_RECIPE_BYTES:
        raise RecipeError(str(path), [_too_big(size)])
    try:
        problem = _shape_problem(yaml.parse(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError:
        return  # not valid YAML: the composer says where and why
    if problem is not None:
        line, message = problem
        raise RecipeError(str(path), [f"line {line}: {message}"])


def _shape_problem(events: Iterator[yaml.Event]) -> tuple[int, str] | None:
    """(line, message) for the first event past a bound, or None.

    PyYAML's event stream is produced without recursion and holds no document: the expanded size of every
    anchored node is counted as its events go by, so an alias costs one addition, never a copy.
    """
    depth = aliases = 0
    sizes: list[int] = [0]  # expanded values in each open mapping/list (itself included); [0] is the stream
    open_anchors: list[str | None] = []
    anchors: dict[str, int] = {}  # anchor → expanded values of its node, once the node is complete
    for event in events:
        line = event.start_mark.line + 1
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_RECIPE_DEPTH:
                return line, f"nested more than {MAX_RECIPE_DEPTH} levels deep (mappings and lists); a recipe needs few"
            sizes.append(1)
            open_anchors.append(event.anchor)
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
            count, anchor = sizes.pop(), open_anchors.pop()
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_RECIPE_ALIASES:
                return line, f"more than {MAX_RECIPE_ALIASES} aliases (`*name`); a recipe needs a few"
            if event.anchor in open_anchors:
                return line, f"alias *{event.anchor} is used inside the node it names (a recursive alias)"
            count, anchor = anchors.get(event.anchor, 0), None  # an undefined alias: the composer reports it
        elif isinstance(event, yaml.ScalarEvent):
            count, anchor = 1, event.anchor
        else:
            continue
        if anchor is not None:
            anchors[anchor] = count
        sizes[-1] += count
        if sum(sizes) > MAX_RECIPE_VALUES:
            return line, (
                f"aliases expand the recipe to more than {MAX_RECIPE_VALUES:,} values (an alias bomb?); "
                "write the values out, or nest fewer aliases"
            )
    return None


# --- error reporting -----------------------------------------------------------------------------


def _line_index(node: yaml.Node | None) -> dict[tuple[Any, ...], int]:
    """1-based line of every key and item in the YAML document, by path."""
    index: dict[tuple[Any, ...], int] = {}

    def walk(n: yaml.Node, path: tuple[Any, ...]) -> None:
        index.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            for key, value in n.value:
                index[(*path, key.value)] = key.start_mark.line + 1
                walk(value, (*path, key.value))
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                index[(*path, i)] = item.start_mark.line + 1
                walk(item, (*path, i))

    if node is not None:
        walk(node, ())
    return index


def _line_of(path: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int:
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path, 1)


def _dotted(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_FIELDS_OF: dict[str, type[BaseModel]] = {
    "": Recipe,
    "sources": Source,
    "mix": Mix,
    "lint": Lint,
    "filters": Filters,
    "quality": Quality,
    "lang": LangRule,
    "dedup": Dedup,
    "near": NearDedup,
    "split": Split,
    "outputs": Outputs,
    "render": RenderTarget,
    "train": Train,
    "peft": Peft,
    "checks": Checks,
}


def _allowed_keys(section_path: tuple[Any, ...]) -> list[str]:
    names = [p for p in section_path if isinstance(p, str)]
    model = _FIELDS_OF.get(names[-1] if names else "", Recipe)
    return [f.alias or name for name, f in model.model_fields.items()]


def _describe(err: dict[str, Any], lines: dict[tuple[Any, ...], int], data: dict[str, Any]) -> tuple[int, str]:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    line = _line_of(loc, lines)
    where = _dotted(loc) or "(recipe)"
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean `{close[0]}`?" if close else f"allowed keys here: {', '.join(allowed)}"
        return line, f"{where}: unknown key ({hint})"
    if kind == "missing":
        return line, f"{where}: required but missing"
    message = err["msg"].removeprefix("Value error, ")
    found = err.get("input")
    if loc[-1:] == ("token_env",):  # what was found there may be a token: never echo it
        return line, f"{where}: {message}"
    if kind in {"string_pattern_mismatch"}:
        message = f"{found!r} is not a valid name (letters, digits, '_', '.', '-'; starting with a letter or digit)"
    elif kind not in {"value_error"} and not isinstance(found, (dict, list)):
        message = f"{message} (found {found!r})"
    return line, f"{where}: {message}"


def _cross_checks(data: dict[str, Any], lines: dict[tuple[Any, ...], int]) -> list[tuple[int, str]]:
    """Checks that span fields: unique source names, mix ratios naming real sources."""
    names, problems = _source_names(data.get("sources"), lines)
    mix = data.get("mix")
    if isinstance(mix, dict):
        problems += _mix_problems(mix, list(dict.fromkeys(names)), lines)
    dedup = data.get("dedup")
    if isinstance(dedup, dict) and isinstance(dedup.get("keep"), str):
        keep = dedup["keep"]
        if keep not in KEEP_POLICIES and keep not in names:
            where = _line_of(("dedup", "keep"), lines)
            choices = ", ".join([*KEEP_POLICIES, *names])
            problems.append((where, f"dedup.keep: {keep!r} is neither a policy nor a source (choose: {choices})"))
    problems += _min_rows_problems(data.get("checks"), names, lines)
    problems += _hub_source_problems(data.get("sources"), lines)
    problems += _train_problems(data, lines)
    return problems


def _source_names(sources: Any, lines: dict[tuple[Any, ...], int]) -> tuple[list[str], list[tuple[int, str]]]:
    """The sources' names in order, and a problem for every name used twice."""
    names: list[str] = []
    problems: list[tuple[int, str]] = []
    first: dict[str, int] = {}
    for i, s in enumerate(sources if isinstance(sources, list) else []):
        if not (isinstance(s, dict) and isinstance(s.get("name"), str)):
            continue
        name = s["name"]
        if name in first:
            where = _line_of(("sources", i, "name"), lines)
            problems.append((where, f"sources[{i}].name: {name!r} is already the name of sources[{first[name]}]"))
        first.setdefault(name, i)
        names.append(name)
    return names, problems


def _mix_problems(mix: dict[str, Any], names: list[str], lines: dict[tuple[Any, ...], int]) -> list[tuple[int, str]]:
    """Ratios that name unknown sources, miss a source, sum to zero, or do not match the strategy."""
    problems: list[tuple[int, str]] = []
    ratios = mix.get("ratios")
    strategy = mix.get("strategy", "natural")
    ratios_line = _line_of(("mix", "ratios"), lines)
    if isinstance(ratios, dict):
        for key in ratios:
            if names and key not in names:
                known = ", ".join(names)
                where = _line_of(("mix", "ratios", key), lines)
                problems.append((where, f"mix.ratios.{key}: no source is named {key!r} (sources: {known})"))
        if strategy == "ratio":
            for name in names:
                if name not in ratios:
                    problems.append(
                        (
                            ratios_line,
                            f"mix.ratios: no weight for source {name!r}; "
                            "give every source a weight (0 to leave it out)",
                        )
                    )
            weights = [w for w in ratios.values() if isinstance(w, (int, float))]
            if weights and sum(weights) <= 0:
                problems.append((ratios_line, "mix.ratios: weights sum to zero"))
    if strategy == "ratio" and not ratios:
        problems.append((_line_of(("mix",), lines), "mix: strategy `ratio` needs `ratios` (source → weight)"))
    if strategy == "natural" and (ratios or mix.get("total")):
        where = _line_of(("mix", "strategy") if "strategy" in mix else ("mix",), lines)
        problems.append((where, "mix: `ratios` and `total` apply only with `strategy: ratio`"))
    return problems


def _min_rows_problems(checks: Any, names: list[str], lines: dict[tuple[Any, ...], int]) -> list[tuple[int, str]]:
    """`checks.min_rows` keys that are neither `total` nor a source's name."""
    min_rows = checks.get("min_rows") if isinstance(checks, dict) else None
    if not isinstance(min_rows, dict):
        return []
    known = ", ".join(["total", *names])
    return [
        (_line_of(("checks", "min_rows", key), lines), f"checks.min_rows.{key}: no source is named {key!r} ({known})")
        for key in min_rows
        if key != "total" and key not in names
    ]


def _train_problems(data: dict[str, Any], lines: dict[tuple[Any, ...], int]) -> list[tuple[int, str]]:
    """`train.target` naming no render target, or left out when there is not exactly one to default to."""
    train = data.get("train")
    if not isinstance(train, dict):
        return []
    render = data.get("render") if isinstance(data.get("render"), list) else []
    targets = [t["name"] for t in render if isinstance(t, dict) and isinstance(t.get("name"), str)]
    target = train.get("target")
    if target is None and len(targets) != 1:
        found = f"targets: {', '.join(targets)}" if targets else "the recipe has no `render:` target"
        return [(_line_of(("train",), lines), f"train.target: name the render target to train on ({found})")]
    if target is not None and target not in targets:
        known = ", ".join(targets) or "none"
        return [(_line_of(("train", "target"), lines), f"train.target: no render target is named {target!r} ({known})")]
    return []


def _hub_source_problems(sources: Any, lines: dict[tuple[Any, ...], int]) -> list[tuple[int, str]]:
    """Hub-only keys on a local source, and `files` given together with `subset`/`split`."""
    from .hub.uris import source_key_problems

    problems: list[tuple[int, str]] = []
    for i, s in enumerate(sources if isinstance(sources, list) else []):
        if isinstance(s, dict):
            for key, message in source_key_problems(s):
                problems.append((_line_of(("sources", i, key), lines), f"sources[{i}].{key}: {message}"))
    return problems
