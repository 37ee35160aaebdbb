"""Every writer that pairs tool results with calls by id (OpenAI, trl, axolotl) gives id-less calls stable ids
and links each result to its call (issue 19): formats without ids (ShareGPT function_call turns, Hermes tags,
ms-swift) convert and export to OpenAI-style data whose results answer their calls. The canonical record keeps
what the source said (no ids), so id-less formats round-trip exactly and report no ids lost."""

from __future__ import annotations

import json
from pathlib import Path

from dataforge import formats
from dataforge.checking import check_files
from dataforge.exports import export
from dataforge.formats.toolids import call_id


def canonical_rows(path: Path) -> list[dict]:
    examples = check_files(str(path), None, root=path.parent).examples
    return examples.drop_columns([c for c in examples.column_names if c.startswith("__")]).to_pylist()


def calls_and_results(records: list[dict]) -> tuple[list[dict], list[dict]]:
    calls = [c for r in records for m in r["messages"] for c in m.get("tool_calls") or ()]
    results = [m for r in records for m in r["messages"] if m["role"] == "tool"]
    return calls, results


def test_glaive_tool_calls_get_stable_ids_and_results_answer_them(fixture_path):
    path = fixture_path("peers/llamafactory/glaive_toolcall_en_demo.json")
    rows = canonical_rows(path)
    written = formats.get("openai").from_examples(rows)
    calls, results = calls_and_results(written.records)
    assert (len(calls), len(results)) == (210, 210)
    assert all(c["id"] is not None and c["id"].startswith("call_") and len(c["id"]) == 13 for c in calls)
    assert len({c["id"] for c in calls}) == 210
    # Each result answers a call of its own conversation, the one made just before it (glaive: one call a turn).
    for record in written.records:
        pending = []
        for m in record["messages"]:
            pending += [c["id"] for c in m.get("tool_calls") or ()]
            if m["role"] == "tool":
                assert m["tool_call_id"] == pending.pop(0)
    # The ids come from the example id and the call's place, so a second run gives the same ones.
    again, _ = calls_and_results(formats.get("openai").from_examples(canonical_rows(path)).records)
    assert [c["id"] for c in again] == [c["id"] for c in calls]
    at = next(i for i, r in enumerate(rows) if any(m["tool_calls"] for m in r["messages"]))
    turn = next(i for i, m in enumerate(rows[at]["messages"]) if m["tool_calls"])
    assert rows[at]["messages"][turn]["tool_calls"][0]["id"] is None  # the canonical record keeps the source's
    assert written.records[at]["messages"][turn]["tool_calls"][0]["id"] == call_id(rows[at]["id"], "messages", turn, 0)
    # An id-less format written back to itself loses nothing: no generated ids to drop.
    assert "tool call ids" not in formats.get("sharegpt").from_examples(rows).losses


def test_every_export_that_carries_ids_carries_the_same_ones(fixture_path):
    rows = canonical_rows(fixture_path("peers/llamafactory/glaive_toolcall_en_demo.json"))
    ids = [c["id"] for r in formats.get("openai").from_examples(rows).records for m in r["messages"]
           for c in m.get("tool_calls") or ()]  # fmt: skip
    for name, file in (("openai", "train.jsonl"), ("trl", "sft/train.jsonl"), ("axolotl", "sft/train.jsonl")):
        text = export(name, {"train": rows}, "mix").files[file]
        records = [json.loads(line) for line in text.splitlines()]
        key = "messages" if "messages" in records[0] else "prompt"
        calls = [c["id"] for r in records for m in r[key] for c in m.get("tool_calls") or ()]
        results = [m["tool_call_id"] for r in records for m in r[key] if m["role"] == "tool"]
        assert calls == ids, name
        assert sorted(results) == sorted(ids), name


def test_ids_the_source_gave_are_kept_and_results_link_by_order(tmp_path):
    record = {
        "messages": [
            {"role": "user", "content": "two things"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "mine", "type": "function", "function": {"name": "a", "arguments": "{}"}},
                    {"type": "function", "function": {"name": "b", "arguments": "{}"}},
                ],
            },
            {"role": "tool", "content": "b says", "tool_call_id": "mine"},
            {"role": "tool", "content": "a says"},
            {"role": "tool", "content": "a third result answers no call"},
        ]
    }
    (tmp_path / "chat.jsonl").write_text(json.dumps(record) + "\n")
    [row] = formats.get("openai").from_examples(canonical_rows(tmp_path / "chat.jsonl")).records
    generated = call_id("input:0", "messages", 1, 1)
    assert [c["id"] for c in row["messages"][1]["tool_calls"]] == ["mine", generated]
    assert [m.get("tool_call_id") for m in row["messages"][2:]] == ["mine", generated, None]
