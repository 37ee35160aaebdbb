"""Small builders for canonical examples used across tests (real records, not mocks)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from dataforge import formats
from dataforge.readers import LINE, ROW, ReadResult, read_file
from dataforge.record import Example, Kind, Message, Provenance, Role, examples_to_table


def chat(source: str, row: int, *turns: tuple[str, str], system: str | None = None) -> Example:
    """An sft example from (role, content) pairs."""
    messages = [Message(Role.SYSTEM, system)] if system is not None else []
    messages += [Message(Role(role), content) for role, content in turns]
    return Example(
        id=f"{source}:{row}",
        kind=Kind.SFT,
        provenance=Provenance(source, f"{source}.jsonl", row, row + 1),
        messages=tuple(messages),
    )


def qa(source: str, row: int, question: str, answer: str) -> Example:
    return chat(source, row, ("user", question), ("assistant", answer))


def example(row: int, *messages: Message, kind=Kind.SFT, chosen=(), rejected=(), text=None) -> Example:
    """An example of source `s` (file `s.jsonl`, line row + 1) with these messages and, for pairs, completions."""
    return Example(
        id=f"s:{row}",
        kind=kind,
        provenance=Provenance("s", "s.jsonl", row, row + 1),
        messages=tuple(messages),
        chosen=tuple(chosen),
        rejected=tuple(rejected),
        text=text,
    )


def table(*examples: Example) -> pa.Table:
    return examples_to_table(list(examples))


def quiet(done: int, total: int, what: str) -> None:
    """A progress callback that ignores progress."""


def read(path: Path, fmt: str = "alpaca", columns: dict[str, str] | None = None) -> ReadResult:
    result = read_file(path, path.name, formats.get(fmt).shape, columns)
    # The ledger of one file: every record found is either a kept row or a reject.
    assert result.records == result.table.num_rows + result.rejects.num_rows
    return result


def kept(result: ReadResult, column: str = "instruction") -> list[tuple]:
    """(row, line, value of `column`) for every kept raw row."""
    t = result.table
    return list(zip(t[ROW].to_pylist(), t[LINE].to_pylist(), t[column].to_pylist(), strict=True))


def rejected(result: ReadResult) -> list[tuple]:
    """(row, line, reason, field, message) for every reject."""
    return [(r["row"], r["line"], r["reason"], r["field"], r["message"]) for r in result.rejects.to_pylist()]
