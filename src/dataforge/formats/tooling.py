"""Declared tools: parsed from the spellings formats use, stored as a JSON array of function specs."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa


def canonical_tool_list(value: Any) -> list[dict[str, Any]]:
    """Function specs (`{name, description, parameters}`) from a list that may use OpenAI's wrapper.

    Raises ValueError naming what is wrong.
    """
    if not isinstance(value, list):
        raise ValueError("tools must be a JSON array of function specs")
    specs = []
    for i, item in enumerate(value):
        if isinstance(item, dict) and item.get("type") == "function" and isinstance(item.get("function"), dict):
            item = item["function"]
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValueError(f"tools[{i}] must be an object with a string 'name'")
        specs.append(item)
    return specs


def canonical_tools(column: pa.Array) -> tuple[pa.Array, dict[int, str]]:
    """Canonical tools JSON text per row from a column of JSON text, and {row: problem} for bad ones."""
    problems: dict[int, str] = {}
    if column.null_count == len(column):
        return column.cast(pa.string()), problems
    out: list[str | None] = []
    for i, text in enumerate(column.to_pylist()):
        if text is None or not text.strip():
            out.append(None)
            continue
        try:
            specs = canonical_tool_list(json.loads(text))
        except ValueError as exc:
            problems[i] = f"tools: {exc}"
            out.append(None)
            continue
        out.append(json.dumps(specs, ensure_ascii=False) if specs else None)
    return pa.array(out, pa.string()), problems


def tools_text(canonical: str) -> str:
    """LLaMA-Factory's spelling: the function specs as JSON text (identical to the canonical form)."""
    return canonical


def openai_tools(canonical: str) -> list[dict[str, Any]]:
    """OpenAI's spelling: each spec wrapped as `{"type": "function", "function": spec}`."""
    return [{"type": "function", "function": spec} for spec in json.loads(canonical)]
