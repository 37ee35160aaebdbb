"""The JSON Schemas dataforge publishes: the canonical example, every format's record, and the recipe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import formats
from .record import Kind, Role
from .stages.quality import quality_json_schema

_TEXT_OR_NULL = {"type": ["string", "null"]}

EXAMPLE_JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://dataforge.dev/schemas/example.schema.json",
    "title": "dataforge Example",
    "description": "The canonical record every format converts to and from (one row of train/val.parquet).",
    "type": "object",
    "required": ["id", "kind", "source", "file", "row"],
    "additionalProperties": False,
    "$defs": {
        "tool_call": {
            "type": "object",
            "required": ["name", "arguments"],
            "additionalProperties": False,
            "properties": {
                "id": _TEXT_OR_NULL,
                "name": {"type": "string", "minLength": 1},
                "arguments": {"type": "string", "description": "JSON text of the arguments object."},
            },
        },
        "message": {
            "type": "object",
            "required": ["role"],
            "additionalProperties": False,
            "properties": {
                "role": {"enum": [r.value for r in Role]},
                "content": {**_TEXT_OR_NULL, "description": "Null only for an assistant turn that calls tools."},
                "reasoning": {**_TEXT_OR_NULL, "description": "Reasoning (e.g. <think> content), apart from content."},
                "tool_calls": {"type": ["array", "null"], "items": {"$ref": "#/$defs/tool_call"}},
                "tool_call_id": _TEXT_OR_NULL,
                "name": _TEXT_OR_NULL,
                "weight": {
                    "type": ["number", "null"],
                    "description": "Loss weight of the turn; null = default (assistant turns train), 0 = do not train.",
                },
            },
        },
        "messages": {"type": ["array", "null"], "items": {"$ref": "#/$defs/message"}},
    },
    "properties": {
        "id": {"type": "string", "description": "`<source>:<ordinal>`, stable across runs."},
        "kind": {"enum": [k.value for k in Kind]},
        "messages": {"$ref": "#/$defs/messages", "description": "The conversation (the prompt, for preference)."},
        "tools": {
            **_TEXT_OR_NULL,
            "description": "JSON text: array of function specs {name, description, parameters}.",
        },
        "chosen": {"$ref": "#/$defs/messages"},
        "rejected": {"$ref": "#/$defs/messages"},
        "label": {"type": ["boolean", "null"], "description": "KTO: whether the completion is desirable."},
        "text": {**_TEXT_OR_NULL, "description": "Pretrain: the raw text."},
        "source": {"type": "string"},
        "file": {"type": "string", "description": "Path relative to the recipe root."},
        "row": {"type": "integer", "minimum": 0},
        "line": {"type": ["integer", "null"], "minimum": 1},
        "metadata": {**_TEXT_OR_NULL, "description": "JSON text: columns of the source the format does not model."},
        # Not part of the record (`EXAMPLE_SCHEMA`): a column of train/val.parquet when the recipe has `quality:`.
        "quality": quality_json_schema(),
    },
}


def all_schemas() -> dict[str, dict[str, Any]]:
    """File name → schema, for every schema dataforge publishes."""
    from .recipe import recipe_json_schema

    out = {"example.schema.json": EXAMPLE_JSON_SCHEMA, "recipe.schema.json": recipe_json_schema()}
    for name in formats.names():
        out[f"formats/{name}.schema.json"] = formats.get(name).json_schema()
    return out


def write_schemas(directory: Path) -> list[Path]:
    """Write every schema under `directory`; the paths written."""
    written = []
    for name, schema in all_schemas().items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written
