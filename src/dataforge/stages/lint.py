"""lint: what a trainer would accept but learn wrong from — tool calls, reasoning tags, preference pairs, placeholders.

Structural validation (`validate.py`) asks "can this row be trained on at all"; linting asks "does it say
what it means": a call to a function the row never declared, arguments that break the function's own
JSON Schema, a tool result nobody asked for, `<think>` tags that do not pair up, reasoning on a turn that
cannot hold it, a preference pair whose sides are the same, a preference prompt that ends on the model's
own turn, a template placeholder (`{{name}}`) nobody filled. Each finding is a reject reason; a recipe
can demote reasons it accepts to counted warnings (`lint.ignore`). Only rows that have tools, tool turns,
reasoning, think tags, `{{` or preference sides are looked at in Python; the rest are ruled out by vector
operations first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import jsonsafe
from ..formats.columnar import ORIGIN, contains, rows_where, whole
from ..formats.inline import think_problem
from .substitute import messages_might_hold, placeholders

# Every reason this module can report, with what it means (documented in the README and `--help`).
REASONS: dict[str, str] = {
    "unknown_tool": "an assistant calls a function that the row's `tools` do not declare",
    "arguments_schema_violation": "tool-call arguments fail the declared function's JSON Schema (`parameters`)",
    "orphan_tool_result": "a tool result that answers no earlier tool call",
    "unbalanced_think": "`<think>` / `</think>` tags that do not pair up",
    "nested_think": "a `<think>` opened inside another (or inside the reasoning field)",
    "misplaced_reasoning": "reasoning on a turn other than the assistant's, which no chat template renders",
    "identical_pair": "a preference pair whose chosen and rejected completions are the same",
    "prompt_not_ending_on_user": "a preference or KTO prompt that does not end on a user or tool turn",
    "unfilled_placeholder": "a template placeholder such as `{{name}}` left in a message (fill it with `substitute:`)",
}


@dataclass(frozen=True)
class Finding:
    """One lint finding: the row (index in the table), reason, field and message."""

    row: int
    reason: str
    field: str
    message: str


def lint(examples: pa.Table, skip: np.ndarray) -> tuple[list[Finding], int]:
    """Findings for the rows of `examples` not in `skip` (first finding per row), and the count of tool
    parameter schemas that are not valid JSON Schema (their arguments cannot be checked; reported, not
    rejected: datasets in the wild write `"type": "dict"`)."""
    rows = np.flatnonzero(_candidates(examples) & ~skip)
    if len(rows) == 0:
        return [], 0
    columns = ["kind", "messages", "tools", "chosen", "rejected"]
    columns += [ORIGIN] if ORIGIN in examples.column_names else []
    picked = examples.select(columns).take(pa.array(rows)).to_pylist()
    findings: list[Finding] = []
    invalid_schemas: set[tuple[str, str]] = set()
    for r, row in zip(rows, picked, strict=True):
        try:
            found = _row(row, invalid_schemas)
        except jsonsafe.JsonValueError as exc:  # not from convert (which bounds these), but never a traceback
            found = (exc.reason, exc.field or "tools", exc.message)
        if found is not None:
            findings.append(Finding(int(r), *found))
    return findings, len(invalid_schemas)


def _candidates(examples: pa.Table) -> np.ndarray:
    """Rows worth a look: declared tools, tool calls or results, reasoning, think tags, a possible placeholder,
    preference sides."""
    mask = ~pc.is_null(whole(examples["tools"])).to_numpy(zero_copy_only=False)
    mask |= pc.equal(whole(examples["kind"]), "preference").to_numpy(zero_copy_only=False)
    mask |= pc.equal(whole(examples["kind"]), "kto").to_numpy(zero_copy_only=False)
    return mask | rows_where(whole(examples["messages"]), _worth_a_look)


def _worth_a_look(flat: pa.Array) -> np.ndarray:
    """Messages with think tags, reasoning, tool calls, a tool role, or what may be a placeholder."""

    def np_(arr: pa.Array) -> np.ndarray:
        return arr.to_numpy(zero_copy_only=False)

    hit = contains(pc.struct_field(flat, "content"), "</?think>")
    hit |= ~np_(pc.is_null(pc.struct_field(flat, "reasoning")))
    hit |= np_(pc.fill_null(pc.greater(pc.list_value_length(pc.struct_field(flat, "tool_calls")), 0), False))
    hit |= np_(pc.fill_null(pc.equal(pc.struct_field(flat, "role"), "tool"), False))
    return hit | messages_might_hold(flat)


def _row(row: dict[str, Any], invalid_schemas: set[tuple[str, str]]) -> tuple[str, str, str] | None:
    """(reason, field, message) of the row's first finding, or None."""
    specs = {s["name"]: s for s in jsonsafe.loads(row["tools"])} if row.get("tools") else None
    sides = [("messages", row["messages"] or [])]
    sides += [(side, row[side]) for side in ("chosen", "rejected") if row.get(side)]
    for side, messages in sides:
        # A completion continues the prompt: its tool results may answer calls made in the prompt.
        history = (row["messages"] or []) if side != "messages" else []
        # The source field each prompt message's content came from (`conversations[1].value`, `output`).
        origins = (row.get(ORIGIN) or []) if side == "messages" else []
        found = _messages(side, messages, history, specs, row.get("tools"), invalid_schemas, origins)
        if found is not None:
            return found
    kind = row["kind"]
    if kind == "preference":
        if same_completion(row.get("chosen") or [], row.get("rejected") or []):
            return "identical_pair", "rejected", "the rejected completion is identical to the chosen one"
        return _prompt_end(row["messages"] or [], "messages")
    if kind == "kto":
        msgs = row["messages"] or []
        last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
        if last is not None:
            return _prompt_end(msgs[:last], "messages")
    return None


def _messages(
    side: str,
    messages: list[dict[str, Any]],
    history: list[dict[str, Any]],
    specs: dict[str, Any] | None,
    tools_text: str | None,
    invalid_schemas: set[tuple[str, str]],
    origins: Sequence[str] = (),
) -> tuple[str, str, str] | None:
    call_ids = {c["id"] for m in history for c in (m.get("tool_calls") or ()) if c.get("id")}
    open_calls = bool(history and history[-1]["role"] in ("assistant", "tool") and _called_since_user(history))
    for i, m in enumerate(messages):
        at = f"{side}[{i}]"
        role = m["role"]
        if m.get("reasoning") and role != "assistant":
            return "misplaced_reasoning", f"{at}.reasoning", f"a {role} message carries reasoning"
        for name, text in (("content", m.get("content")), ("reasoning", m.get("reasoning"))):
            problem = think_problem(text, inside_reasoning=name == "reasoning") if role == "assistant" else None
            if problem is not None:
                return problem[0], f"{at}.{name}", problem[1]
        for name, text in (("content", m.get("content")), ("reasoning", m.get("reasoning"))):
            names = placeholders(text)
            if names:
                where = origins[i] if name == "content" and i < len(origins) else f"{at}.{name}"
                return "unfilled_placeholder", where, _placeholder_message(names)
        if role == "user":
            open_calls = False
        for j, call in enumerate(m.get("tool_calls") or ()):
            where = f"{at}.tool_calls[{j}]"
            if call.get("id"):
                call_ids.add(call["id"])
            open_calls = True
            if specs is None:
                continue
            spec = specs.get(call["name"])
            if spec is None:
                declared = ", ".join(sorted(specs)) or "none"
                return (
                    "unknown_tool",
                    f"{where}.name",
                    f"{call['name']!r} is not a declared tool (declared: {declared})",
                )
            error = _arguments_error(tools_text or "", call["name"], call["arguments"], invalid_schemas)
            if error is not None:
                return "arguments_schema_violation", f"{where}.arguments", f"{call['name']}: {error}"
        if role == "tool":
            wanted = m.get("tool_call_id")
            if wanted and call_ids and wanted not in call_ids:
                return "orphan_tool_result", f"{at}.tool_call_id", f"no earlier tool call has the id {wanted!r}"
            if not open_calls:
                return "orphan_tool_result", at, "a tool result with no tool call before it (since the last user turn)"
    return None


def _placeholder_message(names: list[str]) -> str:
    shown = ", ".join("{{" + n + "}}" for n in names)
    fill = ", ".join(f"{n}: ..." for n in names)
    if len(names) == 1:
        return f"unfilled placeholder {shown}; fill it with `substitute: {{{fill}}}`"
    return f"unfilled placeholders {shown}; fill them with `substitute: {{{fill}}}`"


def _called_since_user(history: list[dict[str, Any]]) -> bool:
    for m in reversed(history):
        if m["role"] == "user":
            return False
        if m.get("tool_calls"):
            return True
    return False


def _prompt_end(prompt: list[dict[str, Any]], field: str) -> tuple[str, str, str] | None:
    if not prompt:
        return "prompt_not_ending_on_user", field, "the prompt is empty"
    last = prompt[-1]["role"]
    if last not in ("user", "tool"):
        return (
            "prompt_not_ending_on_user",
            f"{field}[{len(prompt) - 1}]",
            f"the prompt ends on a {last} turn; the completion must answer a user or tool turn",
        )
    return None


def same_completion(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Whether two completions (message rows) say the same thing: roles, text and reasoning up to surrounding
    whitespace, tool calls by name and parsed arguments."""

    def key(ms: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [
            (
                m["role"],
                (m.get("content") or "").strip(),
                (m.get("reasoning") or "").strip(),
                [(c["name"], jsonsafe.loads(c["arguments"])) for c in m.get("tool_calls") or ()],
            )
            for m in ms
        ]

    return key(a) == key(b)


def _arguments_error(tools_text: str, name: str, arguments: str, invalid: set[tuple[str, str]]) -> str | None:
    """Why `arguments` fail the function's `parameters` schema, or None (also when there is no usable schema)."""
    validator = _validator(tools_text, name)
    if validator is None:
        if _has_parameters(tools_text, name):
            invalid.add((tools_text, name))
        return None
    error = next(
        iter(sorted(validator.iter_errors(jsonsafe.loads(arguments)), key=lambda e: list(e.absolute_path))), None
    )
    if error is None:
        return None
    path = ".".join(str(p) for p in error.absolute_path)
    return f"{path + ': ' if path else ''}{error.message}"


@lru_cache(maxsize=4096)
def _validator(tools_text: str, name: str):
    """A JSON Schema validator for one declared function's parameters (cached: rows share their tools)."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    spec = next((s for s in jsonsafe.loads(tools_text) if s.get("name") == name), None)
    params = spec.get("parameters") if spec else None
    if not isinstance(params, dict) or not params:
        return None
    try:
        Draft202012Validator.check_schema(params)
    except SchemaError:
        return None
    return Draft202012Validator(params)


@lru_cache(maxsize=4096)
def _has_parameters(tools_text: str, name: str) -> bool:
    spec = next((s for s in jsonsafe.loads(tools_text) if s.get("name") == name), None)
    return bool(spec and isinstance(spec.get("parameters"), dict) and spec["parameters"])
