"""LLaMA-Factory's own demo datasets: read with zero rejects, and through OpenAI and back unchanged."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dataforge import formats
from dataforge.checking import Checked, check_files

FILES = [
    ("alpaca_en_demo.json", "alpaca"),
    ("alpaca_zh_demo.json", "alpaca"),
    ("identity.json", "alpaca"),
    ("glaive_toolcall_en_demo.json", "sharegpt"),
    ("glaive_toolcall_zh_demo.json", "sharegpt"),
]
# Real defects the linter finds in LLaMA-Factory's own glaive demos (checked by eye): arguments that break the
# declared function's schema (a list where a number is required, a missing required argument, a Chinese value
# outside an English enum), and, in the Chinese file, two conversations whose "call" is written as assistant
# text ("AI 计算折扣: {...}") so the tool result answers no call. Every other record converts.
# identity.json's rows are templates meant to be filled (`{{name}}`, `{{author}}` in 85 of 91 rows): the linter
# rejects them as unfilled placeholders, naming the source field `output` (tests/stages/test_lint_placeholders.py).
EXPLAINED = {
    "identity.json": {"unfilled_placeholder": 85},
    "glaive_toolcall_en_demo.json": {"arguments_schema_violation": 1},
    "glaive_toolcall_zh_demo.json": {"arguments_schema_violation": 6, "orphan_tool_result": 2},
}
TOOL_FILES = ["glaive_toolcall_en_demo.json", "glaive_toolcall_zh_demo.json"]


@pytest.fixture(scope="module")
def llamafactory(fixture_path: Callable[[str], Path]) -> Callable[[str], Path]:
    """`llamafactory(name)`: one of LLaMA-Factory's demo files, vendored or shared; skips when neither has it."""
    return lambda name: fixture_path(f"peers/llamafactory/{name}").resolve()


def canonical(checked: Checked) -> list[dict[str, Any]]:
    """What a conversion must keep: roles, contents, tool calls (arguments parsed) and declared tools."""
    return [
        {
            "messages": [
                (
                    m["role"],
                    m["content"],
                    [(c["name"], json.loads(c["arguments"])) for c in m["tool_calls"] or ()],
                )
                for m in row["messages"]
            ],
            "tools": json.loads(row["tools"]) if row["tools"] else None,
        }
        for row in checked.examples.to_pylist()
    ]


def through(checked: Checked, fmt: str, folder: Path, name: str) -> tuple[Checked, Any]:
    """`checked`'s examples written in `fmt`, then read back as a one-source build would."""
    written = formats.get(fmt).from_examples(checked.examples.to_pylist())
    path = folder / name
    path.write_text(json.dumps(written.records, ensure_ascii=False, indent=2), encoding="utf-8")
    return check_files(str(path), fmt, root=folder), written.losses


@pytest.mark.parametrize(("name", "fmt"), FILES)
def test_peer_file_survives_openai_and_back(llamafactory, tmp_path, name, fmt):
    source = llamafactory(name)
    original = check_files(str(source), None, root=source.parent)
    assert original.format == fmt
    assert original.records == len(json.loads(source.read_text(encoding="utf-8")))
    rejects = original.rejects.to_pylist()
    reasons: dict[str, int] = {}
    for r in rejects:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
        assert r["stage"] == "validate" and r["message"]
        assert r["field"].startswith("messages[") or (r["reason"], r["field"]) == ("unfilled_placeholder", "output")
    assert reasons == EXPLAINED.get(name, {})
    assert original.examples.num_rows + len(rejects) == original.records

    as_openai, losses = through(original, "openai", tmp_path, "openai.json")
    assert losses == {}
    assert as_openai.rejects.to_pylist() == []
    assert canonical(as_openai) == canonical(original)

    back, losses = through(as_openai, fmt, tmp_path, "back.json")
    # The peer files' tool calls have no ids; the openai writer gave them ids, which `fmt` cannot carry (counted).
    rows = original.examples.to_pylist()
    calls = sum(len(m["tool_calls"] or ()) for r in rows for m in r["messages"])
    results = sum(m["role"] == "tool" for r in rows for m in r["messages"])
    assert losses == ({"tool call ids": calls, "tool result ids": results} if calls else {})
    assert back.rejects.to_pylist() == []
    assert canonical(back) == canonical(original)


@pytest.mark.parametrize("name", TOOL_FILES)
def test_peer_tool_calls_arrive_as_tool_calls(llamafactory, name):
    source = llamafactory(name)
    checked = check_files(str(source), "sharegpt", root=source.parent)
    raw = kept_records(source, checked)
    calls = [c for row in checked.examples.to_pylist() for m in row["messages"] for c in m["tool_calls"] or ()]
    expected = [json.loads(t["value"]) for r in raw for t in r["conversations"] if t["from"] == "function_call"]
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [(e["name"], e["arguments"]) for e in expected]
    assert sum(row["tools"] is not None for row in checked.examples.to_pylist()) == sum(
        bool(json.loads(r["tools"] or "[]")) for r in raw
    )


def kept_records(path: Path, checked: Checked) -> list[dict[str, Any]]:
    """The file's records that became examples (the linter rejects a few; see EXPLAINED), in order."""
    kept = {row["row"] for row in checked.examples.to_pylist()}
    return [r for i, r in enumerate(json.loads(path.read_text(encoding="utf-8"))) if i in kept]


def _alternates(turns: list[dict[str, str]]) -> bool:
    """Whether the turns alpaca can hold (system and observations aside) alternate human/assistant."""
    sides = [
        "user" if t["from"] == "human" else "assistant" for t in turns if t["from"] not in ("system", "observation")
    ]
    return len(sides) >= 2 and sides == ["user", "assistant"] * (len(sides) // 2)


@pytest.mark.parametrize("name", TOOL_FILES)
def test_tool_data_written_as_alpaca_reports_every_loss(llamafactory, tmp_path, name):
    source = llamafactory(name)
    checked = check_files(str(source), "sharegpt", root=source.parent)
    raw = kept_records(source, checked)
    written = formats.get("alpaca").from_examples(checked.examples.to_pylist())

    def count(side: str) -> int:
        return sum(t["from"] == side for r in raw for t in r["conversations"])

    not_written = sum(not _alternates(r["conversations"]) for r in raw)
    assert written.losses == {
        "tool calls": count("function_call"),
        "tool results": count("observation"),
        "tool declarations": sum(bool(json.loads(r["tools"] or "[]")) for r in raw),
        "rows not shaped as alternating user/assistant turns (not written)": not_written,
    }
    assert written.losses["tool calls"] > 200 and not_written > 150  # the files really exercise tools
    assert len(written.records) == len(raw) - not_written
    # What was written holds only plain conversations, and reads back without a reject.
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps(written.records, ensure_ascii=False), encoding="utf-8")
    back = check_files(str(path), "alpaca", root=tmp_path)
    assert back.rejects.to_pylist() == []
    kept = [c for c, r in zip(canonical(checked), raw, strict=True) if _alternates(r["conversations"])]
    assert all(not calls and role != "tool" for c in kept for role, _, calls in c["messages"])
    assert [c["messages"] for c in canonical(back)] == [c["messages"] for c in kept]
