"""Plain text for continued pretraining: `{"text": ...}` rows, and LLaMA-Factory's c4 demo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataforge import formats
from dataforge.checking import check_files
from dataforge.record import Example, Kind, Message, Provenance, Role

TEXT = formats.get("text")


def example(kind: Kind, text: str | None = None, metadata=None, messages=()) -> dict:
    return Example(
        id="src:0",
        kind=kind,
        provenance=Provenance("src", "f.jsonl", 0, 1),
        messages=tuple(messages),
        text=text,
        metadata=metadata or {},
    ).to_row()


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_text_rows_are_pretrain_examples(write, check, suffix):
    checked = check(write("t" + suffix, [{"text": "数据 🙂", "url": "https://x"}, {"text": "one\ntwo"}]))
    assert checked.format == "text"
    rows = checked.examples.to_pylist()
    assert [(r["kind"], r["messages"], r["text"], r["metadata"]) for r in rows] == [
        ("pretrain", [], "数据 🙂", '{"url": "https://x"}'),
        ("pretrain", [], "one\ntwo", None),
    ]


def test_missing_empty_or_non_text_is_rejected(write, check):
    checked = check(write("bad.jsonl", [{"text": "ok"}, {"body": "x"}, {"text": ""}, {"text": 3}]), "text")
    assert checked.examples["text"].to_pylist() == ["ok"]
    assert [(r["stage"], r["row"], r["reason"], r["field"], r["message"]) for r in checked.rejects.to_pylist()] == [
        ("read", 1, "schema_violation", "text", "'text' is required but missing"),
        ("validate", 2, "empty_text", "text", "a pretrain example needs non-empty `text`"),
        ("read", 3, "schema_violation", "text", "expected string, found a number"),
    ]
    # Read fast (every record an object Arrow accepts), a missing text is found on conversion instead.
    fast = check(write("fast.jsonl", [{"text": "ok"}, {"body": "x"}]), "text")
    assert [(r["stage"], r["field"]) for r in fast.rejects.to_pylist()] == [("convert", "text")]


def test_a_text_column_beside_another_format_is_that_format(write, check):
    # Many chat datasets keep a rendered `text` copy; the chat columns are the better reading.
    record = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "text": "q a"}
    assert check(write("both.jsonl", [record])).format == "openai"


def test_writes_pretrain_rows_and_counts_the_rest():
    written = TEXT.from_examples(
        [
            example(Kind.PRETRAIN, "plain", metadata={"url": "u"}),
            example(Kind.SFT, messages=[Message(Role.USER, "q"), Message(Role.ASSISTANT, "a")]),
            example(Kind.PRETRAIN, "more", metadata={"text": "shadow"}),
        ]
    )
    assert written.records == [{"text": "plain", "url": "u"}, {"text": "more"}]
    assert written.losses == {
        "sft rows (not plain text, not written)": 1,
        "metadata keys named like a format column": 1,
    }


def test_c4_demo_reads_whole_and_writes_back_unchanged(fixture_path, tmp_path):
    source = fixture_path("peers/llamafactory/c4_demo.jsonl").resolve()
    folder = source.parent
    original = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    checked = check_files(str(source), None, root=folder)
    assert checked.format == "text"
    assert checked.rejects.to_pylist() == []
    assert checked.examples["text"].to_pylist() == [r["text"] for r in original]
    written = TEXT.from_examples(checked.examples.to_pylist())
    assert written.losses == {}
    assert written.records == original
    path = Path(tmp_path) / "c4.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in written.records), encoding="utf-8")
    assert check_files(str(path), None, root=tmp_path).examples["text"].to_pylist() == [r["text"] for r in original]
