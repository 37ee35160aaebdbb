"""Checks before spending compute: each refuses to start a run that would train on the wrong thing.

* the build must have passed the recipe's quality gates (`checks:`);
* the data kind must match the method (DPO needs preference pairs, KTO labelled completions, SFT conversations);
* not too many of the target's rows may have nothing to train (dropped by the render stage as
  `no_trained_tokens`, or rendered with zero trained tokens);
* the tokenizer must be the one the data was rendered with: the target's tokenizer and template digests against
  the manifest's (`check_target`), and the model's own tokenizer, when it ships one, against the target's;
* the model's embedding table must cover the tokenizer's ids;
* for DPO and KTO, which trl tokenizes itself, trl's tokenization of a sample must equal the rendered ids.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import DataError
from .build import KINDS, TrainingData

# Rows whose trl tokenization is compared with the rendered ids (DPO/KTO): enough to catch a template or
# tokenizer mismatch, which shows on every row, without tokenizing the whole set twice.
TOKENIZATION_SAMPLE = 16


def check_gates(data: TrainingData) -> None:
    """Refuse when the build failed one of the recipe's quality gates (`checks:`): training comes after them."""
    from ..report.gates import describe, failed

    report = json.loads((data.dir / "report" / "report.json").read_text(encoding="utf-8"))
    gates = report.get("gates") or {"results": [], "passed": True}
    if not gates["passed"]:
        failures = failed(gates)
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
