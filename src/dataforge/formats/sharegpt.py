"""ShareGPT: `conversations` of `{from, value}` turns (human, gpt, system), with an optional `system` column.

LLaMA-Factory's tool-calling flavour is read too: `function_call` turns hold `{"name", "arguments"}` JSON
(or a list of them), `observation` turns hold tool results, and a `tools` column holds the declared
functions as JSON text.

LLaMA-Factory's ranking rows add `chosen` and `rejected`, each one turn object (or, read and written when a
completion has several turns, a list of them): kind preference, `conversations` being the prompt. A boolean
`kto_tag` (LLaMA-Factory) or `label` (trl) makes a row a KTO example whose completion is its last turn;
written back, KTO rows use `kto_tag`.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import jsonsafe
from ..readers import RowShape
from ..record import TOOL_CALL_TYPE
from . import columnar as col
from .base import (
    INVALID_UNICODE,
    Converted,
    Format,
    RowProblems,
    Written,
    add_metadata,
    count_media,
    finish,
    first_per_row,
    lone_surrogate,
    unicode_problem,
)
from .preference import completion_lists, count_pretrain, kto_labels, present, row_kinds
from .tooling import tools_text

TURN = pa.struct([pa.field("from", pa.string()), pa.field("value", pa.string())])
ARROW = pa.schema(
    [
        pa.field("conversations", pa.list_(TURN)),
        pa.field("system", pa.string()),
        pa.field("tools", pa.string()),
        pa.field("chosen", pa.list_(TURN)),
        pa.field("rejected", pa.list_(TURN)),
        pa.field("kto_tag", pa.bool_()),
        pa.field("label", pa.bool_()),
    ]
)
LABELS = ("kto_tag", "label")
SIDES = ("chosen", "rejected")

# Spellings seen in the wild for each canonical role; `function_call` is an assistant turn holding calls.
ROLE_OF = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "system": "system",
    "observation": "tool",
    "tool": "tool",
    "function_call": "assistant",
}
_SPELLINGS = pa.array(list(ROLE_OF), pa.string())
_ROLES = pa.array(list(ROLE_OF.values()), pa.string())
WRITE_FROM = {"user": "human", "assistant": "gpt", "system": "system", "tool": "observation"}

_TURN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["from", "value"],
    "properties": {
        "from": {"type": "string", "description": f"One of {', '.join(ROLE_OF)}."},
        "value": {"type": "string"},
    },
}


def _completion_schema(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "anyOf": [{"type": "null"}, _TURN_SCHEMA, {"type": "array", "items": _TURN_SCHEMA}],
    }


JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://dataforge.dev/schemas/formats/sharegpt.schema.json",
    "title": "ShareGPT record",
    "type": "object",
    "required": ["conversations"],
    "properties": {
        "conversations": {"type": "array", "items": _TURN_SCHEMA},
        "chosen": _completion_schema("Preference: the better completion, one turn (or a list of turns)."),
        "rejected": _completion_schema("Preference: the worse completion, one turn (or a list of turns)."),
        "kto_tag": {"type": ["boolean", "null"], "description": "KTO: whether the last turn is desirable."},
        "label": {"type": ["boolean", "null"], "description": "KTO label, trl's spelling of kto_tag."},
        "system": {"type": ["string", "null"], "description": "Optional system prompt."},
        "tools": {
            "type": ["string", "array", "null"],
            "description": "Declared functions: JSON text (LLaMA-Factory) or an array of function specs.",
        },
    },
}


def _coerce(record: dict[str, Any]) -> dict[str, Any]:
    """Tools given as an array become JSON text; a completion given as one turn becomes a list of one."""
    out = record
    if isinstance(record.get("tools"), list):
        out = {**out, "tools": json.dumps(record["tools"], ensure_ascii=False)}
    for side in SIDES:
        if isinstance(record.get(side), dict):
            out = {**out, side: [record[side]]}
    return out


class ShareGPTFormat(Format):
    name = "sharegpt"
    description = "conversations of {from, value} turns: human/gpt/system (+ function_call/observation tools)"
    shape = RowShape(ARROW, JSON_SCHEMA, _coerce)
    signature = frozenset({"conversations"})

    def matches(self, record: dict[str, Any]) -> bool:
        conv = record.get("conversations")
        return isinstance(conv, list) and all(isinstance(t, dict) and "from" in t for t in conv)

    def to_examples(self, raw: pa.Table, source: str) -> Converted:
        n = raw.num_rows
        problems = RowProblems(n)
        conv = col.whole(raw["conversations"])
        problems.add_rows(
            col.is_null(conv), "schema_violation", "conversations", "'conversations' is required but missing"
        )
        system = col.whole(raw["system"])
        parts = [
            col.single(col.messages("system", system), col.non_empty(system), "system"),
            _turns(conv, "conversations", problems),
        ]
        messages, origins = col.conversations(n, parts)
        sides = {}
        for side in SIDES:
            turns = col.whole(raw[side])
            held = present(turns)
            # Completions are rare next to SFT rows, and null in them: converting a column of nulls is cheap.
            sides[side] = completion_lists(n, [_turns(turns, side, problems)], held)
        labels = kto_labels(raw, problems, LABELS)
        paired = present(sides["chosen"]) | present(sides["rejected"])
        kinds = row_kinds(paired, present(labels), problems, "kto_tag")
        return finish(raw, source, problems, messages=messages, origins=origins, kind=kinds, label=labels, **sides)

    def from_examples(self, examples: list[dict[str, Any]]) -> Written:
        records: list[dict[str, Any]] = []
        losses: Counter[str] = Counter()
        for ex in examples:
            if count_media(ex, losses):
                continue
            if count_pretrain(ex, losses):
                continue
            record: dict[str, Any] = {"conversations": _written_turns(ex["messages"] or (), losses)}
            if ex["kind"] == "preference":
                for side in SIDES:
                    turns = _written_turns(ex.get(side) or (), losses)
                    # LLaMA-Factory's spelling is one turn object; a longer completion is written as a list.
                    record[side] = turns[0] if len(turns) == 1 else turns
            elif ex["kind"] == "kto":
                record["kto_tag"] = ex["label"]
            if ex.get("tools"):
                record["tools"] = tools_text(ex["tools"])
            add_metadata(record, ex.get("metadata"), self.shape.arrow.names, losses)
            records.append(record)
        return Written(records, losses)


def _written_turns(messages: Any, losses: Counter[str]) -> list[dict[str, str]]:
    """ShareGPT turns for canonical messages, counting what a turn cannot carry."""
    turns = []
    for m in messages:
        if m.get("reasoning"):
            losses["reasoning"] += 1
        # ShareGPT turns have no place for these; they were dropped without a count before.
        if m.get("name"):
            losses["message names"] += 1
        if m.get("tool_call_id"):
            losses["tool result ids"] += 1
        if m.get("weight") is not None:
            losses["turn weights"] += 1
        if m.get("tool_calls"):
            if m.get("content"):
                losses["assistant text beside tool calls"] += 1
            calls = [{"name": c["name"], "arguments": jsonsafe.loads(c["arguments"])} for c in m["tool_calls"]]
            if any(c.get("id") for c in m["tool_calls"]):
                losses["tool call ids"] += 1
            value = json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False)
            turns.append({"from": "function_call", "value": value})
            continue
        turns.append({"from": WRITE_FROM[m["role"]], "value": m.get("content") or ""})
    return turns


def _turns(conv: pa.Array, field: str, problems: RowProblems) -> col.Part:
    """Canonical messages for every turn of a list column of turns (`conversations`, `chosen`, `rejected`);
    unknown roles, missing values and unreadable function calls are problems naming the turn."""
    turns = pc.list_flatten(conv)
    parents = pc.list_parent_indices(conv).to_numpy(zero_copy_only=False)
    spelled = pc.struct_field(turns, "from")
    lookup = pc.index_in(spelled, value_set=_SPELLINGS)
    content = pc.struct_field(turns, "value")
    origin = col.indexed_origin(field, conv, ".value")
    for r, i in first_per_row(col.is_null(lookup), parents).items():
        turn = origin[i].as_py().removesuffix(".value")
        message = f"unknown role {spelled[i].as_py()!r}; expected one of {', '.join(ROLE_OF)}"
        problems.add(r, "unknown_role", f"{turn}.from", message)
    for r, i in first_per_row(col.is_null(content), parents).items():
        problems.add(r, "schema_violation", origin[i].as_py(), "every turn needs a string 'value'")
    is_call = pc.fill_null(pc.equal(spelled, "function_call"), False).to_numpy(zero_copy_only=False)
    tool_calls = pa.nulls(len(turns), pa.list_(TOOL_CALL_TYPE))
    if is_call.any():
        # Only function_call turns are parsed in Python; they are a small share of any dataset.
        calls: list[list[dict[str, Any]] | None] = [None] * len(turns)
        texts = content.to_pylist()
        for i in np.flatnonzero(is_call):
            parsed, problem, reason = parse_calls(texts[i])
            if problem is not None:
                problems.add(int(parents[i]), reason, origin[i].as_py(), problem)
            calls[i] = parsed
        tool_calls = pa.array(calls, pa.list_(TOOL_CALL_TYPE))
        content = pc.if_else(pa.array(is_call), pa.nulls(len(turns), pa.string()), content)
    roles = pc.take(_ROLES, lookup)
    return col.many(col.messages(roles, content, tool_calls=tool_calls), parents, origin)


def parse_calls(text: str | None) -> tuple[list[dict[str, Any]] | None, str | None, str]:
    """Tool calls from a `function_call` turn's JSON text, or (None, what is wrong, its reason): the reason is
    `invalid_tool_call`, or `too_deep` / `non_finite_number` for text that cannot be parsed or written safely."""
    bad = "invalid_tool_call"
    try:
        value = jsonsafe.loads(text or "", field="function_call value")
    except jsonsafe.JsonValueError as exc:
        return None, exc.message, exc.reason
    except ValueError as exc:
        return None, f"function_call value is not valid JSON ({exc})", bad
    items = value if isinstance(value, list) else [value]
    calls = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            return None, 'function_call value must be {"name": ..., "arguments": {...}} (or a list of them)', bad
        args = item.get("arguments", {})
        if isinstance(args, str):
            try:
                args = jsonsafe.loads(args, field=f"arguments of {item['name']!r}")
            except jsonsafe.JsonValueError as exc:
                return None, exc.message, exc.reason
            except ValueError:
                return None, f"arguments of {item['name']!r} are a string that is not valid JSON", bad
        if not isinstance(args, dict):
            return None, f"arguments of {item['name']!r} must be a JSON object", bad
        try:
            text_args = jsonsafe.dumps(args, ensure_ascii=False)
        except ValueError:  # 1e999 parses as an infinity, which JSON cannot write back
            return None, f"arguments of {item['name']!r} hold an infinity, which JSON cannot write", "non_finite_number"
        if lone_surrogate(text_args) or lone_surrogate(item["name"]) or lone_surrogate(item.get("id")):
            return None, unicode_problem("the function_call value"), INVALID_UNICODE
        calls.append({"id": item.get("id"), "name": item["name"], "arguments": text_args})
    return calls, None, bad
