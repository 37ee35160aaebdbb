"""Conversational records for the trainers that tokenize themselves (DPO, KTO), made from the build's rows.

trl's DPOTrainer and KTOTrainer take conversations and apply the tokenizer's chat template; they are given the
canonical examples the render target rendered (rows it dropped stay out), shaped exactly as the render stage
shaped them (the target's reasoning policy, its tools and template arguments). `tokenized_as_rendered` then
checks on a sample that trl's tokenization gives the rendered ids, so both paths cannot disagree unseen.
"""

from __future__ import annotations

import json
from typing import Any

from ..formats.tooling import openai_tools
from ..render.engine import chat_messages
from .build import TrainingData
from .checks import TOKENIZATION_SAMPLE, check_trl_tokenization


def messages(side: list[dict[str, Any]] | None, reasoning: str) -> list[dict[str, Any]]:
    """Canonical messages in the shape chat templates take (as the render stage passes them)."""
    return chat_messages({"messages": side or []}, reasoning)


def with_context(records: list[dict[str, Any]], rows: list[dict[str, Any]], data: TrainingData) -> None:
    """Add each row's tools (as JSON, which trl decodes) and the target's template arguments to its record."""
    if any(row.get("tools") for row in rows):
        for record, row in zip(records, rows, strict=True):
            record["tools"] = json.dumps(openai_tools(row["tools"])) if row.get("tools") else None
    if data.spec.chat_template_kwargs:
        for record in records:
            record["chat_template_kwargs"] = dict(data.spec.chat_template_kwargs)


def to_dataset(records: list[dict[str, Any]]) -> Any | None:
    """A datasets.Dataset of `records`, or None when there are none (no eval split)."""
    if not records:
        return None
    from datasets import Dataset

    return Dataset.from_list(records)


def tokenized_as_rendered(
    dataset: Any, data: TrainingData, tokenizer: Any, split: str, kind: str, sides: dict[str, str]
) -> None:
    """Check trl's tokenization of `dataset` against the rendered ids (`sides`: record column → rendered column).

    Rows are read back from the Dataset, as trl will see them (Arrow fills absent message keys with None)."""
    rendered = data.rendered_rows(split, (kind,))
    whole = [i for i, truncated in enumerate(rendered["truncated"].to_pylist()) if not truncated]
    sample = whole[:TOKENIZATION_SAMPLE]
    rows = [dataset[i] for i in sample]
    ids = [rendered["id"][i].as_py() for i in sample]
    for side, column in sides.items():
        expected = [rendered[column][i].as_py() for i in sample]
        check_trl_tokenization(rows, expected, ids, tokenizer, side)
