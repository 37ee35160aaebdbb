"""Declared tools: parsed from the spellings formats use, stored as a JSON array of function specs."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from .. import jsonsafe


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


def canonical_tools(column: pa.Array) -> tuple[pa.Array, dict[int, tuple[str, str]]]:
    """Canonical tools JSON text per row from a column of JSON text, and {row: (reason, problem)} for bad ones:
    `invalid_tool_call`, or `too_deep` / `non_finite_number` for text that cannot be parsed or written safely."""
    problems: dict[int, tuple[str, str]] = {}
    if column.null_count == len(column):
        return column.cast(pa.string()), problems
    out: list[str | None] = []
    for i, text in enumerate(column.to_pylist()):
        if text is None or not text.strip():
            out.append(None)
            continue
        try:
            specs = canonical_tool_list(jsonsafe.loads(text, field="tools"))
        except jsonsafe.JsonValueError as exc:
            problems[i] = (exc.reason, exc.message)
            out.append(None)
            continue
        except ValueError as exc:
            problems[i] = ("invalid_tool_call", f"tools: {exc}")
            out.append(None)
            continue
        try:
            out.append(jsonsafe.dumps(specs, ensure_ascii=False) if specs else None)
        except ValueError:  # 1e999 parses as an infinity, which JSON cannot write back
            problems[i] = ("non_finite_number", "tools: a number is an infinity (e.g. 1e999), which JSON cannot write")
            out.append(None)
    return pa.array(out, pa.string()), problems


def tools_text(canonical: str) -> str:
    """LLaMA-Factory's spelling: the function specs as JSON text (identical to the canonical form)."""
    return canonical


def openai_tools(canonical: str) -> list[dict[str, Any]]:
    """OpenAI's spelling: each spec wrapped as `{"type": "function", "function": spec}`."""
    return [{"type": "function", "function": spec} for spec in jsonsafe.loads(canonical, field="tools")]
