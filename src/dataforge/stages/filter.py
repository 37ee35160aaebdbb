"""filter: valid rows the recipe's policy drops (turn counts, length, blank messages), counted as `filtered`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..recipe import Filters
from ..rejects import Outcome, concat_rejects, rejects_from_examples
from ..tables import keep_rows
from .base import Progress, StageOutput

VERSION = 1


def _np(arr: pa.Array) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False)


def row_measures(examples: pa.Table) -> dict[str, np.ndarray]:
    """Per row: assistant turns, characters (content + reasoning, all messages), blank messages."""
    n = examples.num_rows
    msgs = examples["messages"].combine_chunks()
    flat = pc.list_flatten(msgs)
    parents = _np(pc.list_parent_indices(msgs))
    role = pc.struct_field(flat, "role")
    content = pc.struct_field(flat, "content")
    reasoning = pc.struct_field(flat, "reasoning")
    is_assistant = _np(pc.fill_null(pc.equal(role, "assistant"), False))
    chars = _np(pc.fill_null(pc.utf8_length(content), 0)) + _np(pc.fill_null(pc.utf8_length(reasoning), 0))
    blank = _np(pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(content)), 0), False))
    blank &= _np(pc.greater(pc.fill_null(pc.utf8_length(content), 0), 0))
    text_chars = _np(pc.fill_null(pc.utf8_length(examples["text"].combine_chunks()), 0))
    return {
        "turns": np.bincount(parents[is_assistant], minlength=n),
        "chars": np.bincount(parents, weights=chars, minlength=n).astype(np.int64) + text_chars,
        "blank": np.bincount(parents[blank], minlength=n),
    }


def filter_examples(examples: pa.Table, policy: Filters, progress: Progress) -> StageOutput:
    """The rows that pass `policy`, and a `filtered` entry for each row that does not, with the rule."""
    n = examples.num_rows
    progress(0, n, "")
    m = row_measures(examples)
    is_chat = _np(pc.is_in(examples["kind"].combine_chunks(), value_set=pa.array(["sft", "kto"])))
    rules: list[tuple[str, np.ndarray, str]] = []
    if policy.drop_empty:
        rules.append(("blank_message", m["blank"] > 0, "a message's content is only whitespace"))
    rules.append(
        (
            "too_few_turns",
            is_chat & (m["turns"] < policy.min_turns),
            f"fewer than min_turns={policy.min_turns} assistant turns",
        )
    )
    if policy.max_turns is not None:
        rules.append(
            ("too_many_turns", m["turns"] > policy.max_turns, f"more than max_turns={policy.max_turns} assistant turns")
        )
    if policy.max_chars is not None:
        rules.append(
            ("too_many_chars", m["chars"] > policy.max_chars, f"more than max_chars={policy.max_chars} characters")
        )
    dropped = np.zeros(n, dtype=bool)
    rejects = []
    for reason, hit, message in rules:
        hit = hit & ~dropped
        if hit.any():
            rejects.append(
                rejects_from_examples(
                    examples.filter(pa.array(hit)),
                    stage="filter",
                    outcome=Outcome.FILTERED,
                    reason=reason,
                    message=message,
                )
            )
        dropped |= hit
    progress(n, n, "")
    return StageOutput(
        {"examples": keep_rows(examples, ~dropped), "rejects": concat_rejects(rejects)},
        {"filtered": int(dropped.sum())},
    )


def filter_table(examples: pa.Table, settings: dict[str, Any]) -> StageOutput:
    """One shard filtered (the shard function of `filter`)."""
    from .sharding import quiet

    return filter_examples(examples, settings["policy"], quiet)
