"""The canonical record: one `Example` type every format converts to and from.

Hot paths work on Arrow tables with `EXAMPLE_SCHEMA`; the dataclasses below are the same record as Python
objects, for writers, tests and anything that handles one row at a time. `Example.from_row` and
`Example.to_row` convert between the two exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pyarrow as pa

from . import jsonsafe


class Role(StrEnum):
    """Who speaks a message. A closed set: formats map their own spellings onto it."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class Kind(StrEnum):
    """What an example trains: chat SFT, a preference pair, a KTO-labelled completion, or plain text."""

    SFT = "sft"
    PREFERENCE = "preference"
    KTO = "kto"
    PRETRAIN = "pretrain"


ROLES: frozenset[str] = frozenset(r.value for r in Role)
KINDS: frozenset[str] = frozenset(k.value for k in Kind)

TOOL_CALL_TYPE = pa.struct(
    [
        pa.field("id", pa.string()),
        pa.field("name", pa.string()),
        # Arguments are a JSON object in the record; Arrow has no type for arbitrary JSON, so they are
        # stored as canonical JSON text (sorted keys are *not* imposed: the author's key order is content).
        pa.field("arguments", pa.string()),
    ]
)

MESSAGE_TYPE = pa.struct(
    [
        pa.field("role", pa.string()),
        pa.field("content", pa.string()),
        pa.field("reasoning", pa.string()),
        pa.field("tool_calls", pa.list_(TOOL_CALL_TYPE)),
        pa.field("tool_call_id", pa.string()),
        pa.field("name", pa.string()),
        # How much the turn counts in the loss (OpenAI's `weight`, LLaMA-Factory's `loss_weight`): null is
        # the trainer's default (assistant turns train, others do not); 0 marks an assistant turn not to train.
        pa.field("weight", pa.float64()),
    ]
)

MESSAGES_TYPE = pa.list_(MESSAGE_TYPE)

EXAMPLE_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("messages", MESSAGES_TYPE),
        pa.field("tools", pa.string()),  # JSON array of function specs, or null
        pa.field("chosen", MESSAGES_TYPE),  # preference: the preferred completion turns
        pa.field("rejected", MESSAGES_TYPE),  # preference: the dispreferred completion turns
        pa.field("label", pa.bool_()),  # kto: is the completion desirable
        pa.field("text", pa.string()),  # pretrain: raw text
        pa.field("source", pa.string(), nullable=False),
        pa.field("file", pa.string(), nullable=False),
        pa.field("row", pa.int64(), nullable=False),  # 0-based record index within `file`
        pa.field("line", pa.int64()),  # 1-based line where the record starts, when the file has lines
        pa.field("metadata", pa.string()),  # JSON object of columns the format does not model
    ],
    metadata={b"dataforge.record": b"example/1"},
)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call made by an assistant turn."""

    name: str
    arguments: dict[str, Any]
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of a conversation."""

    role: Role
    content: str | None
    reasoning: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    weight: float | None = None

    def to_row(self) -> dict[str, Any]:
        return {
            "role": self.role.value,
            "content": self.content,
            "reasoning": self.reasoning,
            "tool_calls": [
                {"id": c.id, "name": c.name, "arguments": jsonsafe.dumps(c.arguments, ensure_ascii=False)}
                for c in self.tool_calls
            ]
            or None,
            "tool_call_id": self.tool_call_id,
            "name": self.name,
            "weight": self.weight,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Message:
        calls = tuple(
            ToolCall(name=c["name"], arguments=jsonsafe.loads(c["arguments"]), id=c.get("id"))
            for c in (row.get("tool_calls") or ())
        )
        return cls(
            role=Role(row["role"]),
            content=row.get("content"),
            reasoning=row.get("reasoning"),
            tool_calls=calls,
            tool_call_id=row.get("tool_call_id"),
            name=row.get("name"),
            weight=row.get("weight"),
        )


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a record came from: source name, file, 0-based row and 1-based line."""

    source: str
    file: str
    row: int
    line: int | None = None

    def where(self) -> str:
        """`file:line` (or `file#row` for files without lines), for messages to people."""
        return f"{self.file}:{self.line}" if self.line is not None else f"{self.file}#{self.row}"


@dataclass(frozen=True, slots=True)
class Example:
    """The canonical training example."""

    id: str
    kind: Kind
    provenance: Provenance
    messages: tuple[Message, ...] = ()
    tools: list[dict[str, Any]] | None = None
    chosen: tuple[Message, ...] = ()
    rejected: tuple[Message, ...] = ()
    label: bool | None = None
    text: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        """This example as a dict matching `EXAMPLE_SCHEMA`."""
        return {
            "id": self.id,
            "kind": self.kind.value,
            "messages": [m.to_row() for m in self.messages],
            "tools": jsonsafe.dumps(self.tools, ensure_ascii=False) if self.tools is not None else None,
            "chosen": [m.to_row() for m in self.chosen] or None,
            "rejected": [m.to_row() for m in self.rejected] or None,
            "label": self.label,
            "text": self.text,
            "source": self.provenance.source,
            "file": self.provenance.file,
            "row": self.provenance.row,
            "line": self.provenance.line,
            "metadata": jsonsafe.dumps(self.metadata, ensure_ascii=False) if self.metadata else None,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Example:
        """The example stored in one `EXAMPLE_SCHEMA` row (as from `Table.to_pylist()`)."""
        return cls(
            id=row["id"],
            kind=Kind(row["kind"]),
            provenance=Provenance(row["source"], row["file"], row["row"], row.get("line")),
            messages=tuple(Message.from_row(m) for m in (row.get("messages") or ())),
            tools=jsonsafe.loads(row["tools"]) if row.get("tools") else None,
            chosen=tuple(Message.from_row(m) for m in (row.get("chosen") or ())),
            rejected=tuple(Message.from_row(m) for m in (row.get("rejected") or ())),
            label=row.get("label"),
            text=row.get("text"),
            metadata=jsonsafe.loads(row["metadata"]) if row.get("metadata") else {},
        )


def examples_to_table(examples: list[Example]) -> pa.Table:
    """Arrow table (EXAMPLE_SCHEMA) holding `examples` in order."""
    return pa.Table.from_pylist([e.to_row() for e in examples], schema=EXAMPLE_SCHEMA)


def table_to_examples(table: pa.Table) -> list[Example]:
    """Python `Example`s for every row of an EXAMPLE_SCHEMA table."""
    return [Example.from_row(r) for r in table.to_pylist()]


def empty_examples() -> pa.Table:
    return EXAMPLE_SCHEMA.empty_table()
