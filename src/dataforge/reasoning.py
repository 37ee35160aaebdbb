"""The reasoning policy: where an assistant turn's reasoning lives after conversion.

Datasets spell reasoning two ways: a separate field (`reasoning_content`, typed `reasoning` parts) or a
`<think>…</think>` block heading the assistant's content (DeepSeek-R1 and Qwen3 distillations, LLaMA-Factory's
advice for reasoning models). The canonical record keeps reasoning in `Message.reasoning`; a recipe decides
per source what to do with what it finds:

* `keep`   — leave both spellings as the data has them;
* `strip`  — drop reasoning: the field and any `<think>` block heading assistant content;
* `field`  — move a `<think>` block heading assistant content into the reasoning field;
* `inline` — move the reasoning field into the content, as a `<think>` block heading it.

Inline blocks are written as Qwen3's and DeepSeek-R1's templates write them:
`<think>\\n{reasoning}\\n</think>\\n\\n{content}`; reading strips the newlines next to the tags, so
`split_think(join_think(r, c)) == (r, c)` for any reasoning
without leading or trailing newlines and content without leading newlines.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .formats.columnar import contains, rows_where, whole

Policy = Literal["keep", "strip", "field", "inline"]
OPEN, CLOSE = "<think>", "</think>"
SIDES = ("messages", "chosen", "rejected")


def split_think(content: str | None) -> tuple[str | None, str | None]:
    """(reasoning, rest) when `content` starts with a `<think>` block (after whitespace), else (None, content).

    Only the head counts: a `<think>` later in the text is content (a model explaining its own tags), and an
    unclosed head block is left alone for the linter to report as unbalanced.
    """
    if not content:
        return None, content
    head = content.lstrip()
    if not head.startswith(OPEN):
        return None, content
    end = head.find(CLOSE)
    if end < 0:
        return None, content
    reasoning = head[len(OPEN) : end].strip("\n")
    rest = head[end + len(CLOSE) :].lstrip("\n")
    return reasoning, rest


def join_think(reasoning: str | None, content: str | None) -> str | None:
    """`content` headed by a `<think>` block holding `reasoning` (content unchanged when there is none)."""
    if not reasoning:
        return content
    return f"{OPEN}\n{reasoning}\n{CLOSE}\n\n{content or ''}"


def apply_policy(examples: pa.Table, policy: Policy) -> tuple[pa.Table, dict[str, int], list[tuple[int, str, str]]]:
    """`examples` with the policy applied to assistant turns, counts of what moved, and per-row problems
    (row, field, message) for turns that carry reasoning twice (a field and an inline block)."""
    counts: dict[str, int] = {}
    problems: list[tuple[int, str, str]] = []
    if policy == "keep" or examples.num_rows == 0:
        return examples, counts, problems
    rows = np.flatnonzero(_has_reasoning(examples))
    if len(rows) == 0:
        return examples, counts, problems
    picked = examples.select(list(SIDES)).take(pa.array(rows)).to_pylist()
    for r, row in zip(rows, picked, strict=True):
        for side in SIDES:
            for i, m in enumerate(row[side] or ()):
                if m["role"] != "assistant":
                    continue
                problem = _apply(m, policy, counts)
                if problem is not None:
                    problems.append((int(r), f"{side}[{i}].content", problem))
    table = examples
    for side in SIDES:
        column = whole(examples[side]).to_pylist()
        for r, row in zip(rows, picked, strict=True):
            column[r] = row[side]
        table = table.set_column(
            table.schema.get_field_index(side), side, pa.array(column, examples.schema.field(side).type)
        )
    return table, counts, problems


def _apply(m: dict[str, Any], policy: Policy, counts: dict[str, int]) -> str | None:
    inline, rest = split_think(m.get("content"))
    if policy == "strip":
        if m.get("reasoning"):
            m["reasoning"] = None
            counts["reasoning fields stripped"] = counts.get("reasoning fields stripped", 0) + 1
        if inline is not None:
            m["content"] = rest
            counts["inline <think> blocks stripped"] = counts.get("inline <think> blocks stripped", 0) + 1
    elif policy == "field" and inline is not None:
        if m.get("reasoning"):
            return "the turn has reasoning both in its reasoning field and as an inline <think> block"
        m["reasoning"], m["content"] = inline, rest
        counts["inline <think> blocks moved to the reasoning field"] = (
            counts.get("inline <think> blocks moved to the reasoning field", 0) + 1
        )
    elif policy == "inline" and m.get("reasoning"):
        if inline is not None:
            return "the turn has reasoning both in its reasoning field and as an inline <think> block"
        m["content"], m["reasoning"] = join_think(m["reasoning"], m.get("content")), None
        counts["reasoning fields moved inline"] = counts.get("reasoning fields moved inline", 0) + 1
    return None


def _has_reasoning(examples: pa.Table) -> np.ndarray:
    """Rows with a reasoning field or a `<think>` tag in any message of any side."""
    mask = np.zeros(examples.num_rows, dtype=bool)
    for side in SIDES:
        mask |= rows_where(whole(examples[side]), _reasoning_or_think)
    return mask


def _reasoning_or_think(flat: pa.Array) -> np.ndarray:
    hit = ~pc.is_null(pc.struct_field(flat, "reasoning")).to_numpy(zero_copy_only=False)
    return hit | contains(pc.struct_field(flat, "content"), re.escape(OPEN))
