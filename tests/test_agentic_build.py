"""A mixed agentic recipe: Alpaca + ShareGPT tool calls + OpenAI reasoning, built and rendered for Qwen3 (a
thinking template), with the tool calls and the reasoning reaching the rendered tokens."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from dataforge import formats
from dataforge.checking import check_files
from dataforge.engine.runner import run
from dataforge.recipe import load_recipe
from dataforge.render.target import load_target
from dataforge.stages.write import write_build

RECIPE = """\
name: agentic
seed: 3
sources:
  - name: alpaca
    from: {alpaca}
    allow_outside_root: true     # the fixture lies outside this test's folder
    max_rows: 40
  - name: tools
    from: {tools}
    allow_outside_root: true
    max_rows: 40
  - name: reasoning
    from: data/reasoning.jsonl
split:
  validation: 0.1
outputs:
  exports: [llamafactory, trl]
render:
  - name: qwen3
    tokenizer: {qwen3}
    max_length: 8192
    overflow: keep
    # Qwen3 drops the reasoning of turns before the last user message, so a multi-turn conversation's earlier
    # prompts are not prefixes of the whole; training the last turn (what Qwen3 itself does) keeps every row.
    train_on: last
"""


@pytest.fixture(scope="module")
def built(fixture_path, tmp_path_factory):
    alpaca = fixture_path("peers/llamafactory/alpaca_en_demo.json").resolve()
    tools = fixture_path("peers/llamafactory/glaive_toolcall_en_demo.json").resolve()
    typed_demo = fixture_path("peers/llamafactory/reason_tool_use_demo_50.jsonl").resolve()
    qwen3 = fixture_path("templates/qwen3").resolve()
    root = tmp_path_factory.mktemp("agentic")
    # The OpenAI reasoning source: LLaMA-Factory's typed-content reasoning/tool-use demo, written as OpenAI
    # messages (`reasoning_content`, `tool_calls`) by dataforge's own writer.
    typed = check_files(str(typed_demo), "typed", root=typed_demo.parent)
    written = formats.get("openai").from_examples(typed.examples.to_pylist()[:30])
    (root / "data").mkdir()
    (root / "data" / "reasoning.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in written.records), encoding="utf-8"
    )
    recipe = root / "mix.yaml"
    recipe.write_text(RECIPE.format(alpaca=alpaca, tools=tools, qwen3=qwen3), encoding="utf-8")
    loaded = load_recipe(recipe)
    result = run(loaded)
    manifest = write_build(loaded, result.stages, result.entries)
    return loaded, manifest, load_target("qwen3", str(qwen3), root)


def test_the_mixed_recipe_builds_with_a_balanced_ledger(built):
    loaded, manifest, _ = built
    ledger = manifest["ledger"]["sources"]
    assert ledger["alpaca"]["in"] == 40 and ledger["tools"]["in"] == 40 and ledger["reasoning"]["in"] == 30
    assert all(source["balanced"] for source in ledger.values())
    assert ledger["reasoning"]["train"] + ledger["reasoning"]["val"] > 20


def test_tool_calls_and_reasoning_reach_the_rendered_text(built):
    loaded, _, target = built
    out = loaded.build_dir
    rendered = pq.read_table(out / "rendered/qwen3/train.parquet").to_pylist()
    train = {r["id"]: r for r in pq.read_table(out / "train.parquet").to_pylist()}
    tok = target.tokenizer
    seen_call = seen_reasoning = 0
    for r in rendered:
        example = train[r["id"]]
        text = tok.decode(r["input_ids"])
        trained = tok.decode([t for t, label in zip(r["input_ids"], r["labels"], strict=True) if label != -100])
        assistants = [m for m in example["messages"] if m["role"] == "assistant"]
        for m in assistants:
            for call in m["tool_calls"] or ():
                # Qwen3 writes each call as <tool_call>{"name": …, "arguments": …}</tool_call>.
                assert f'"name": "{call["name"]}"' in text
                seen_call += 1
        last = assistants[-1]
        for call in last["tool_calls"] or ():
            assert f'"name": "{call["name"]}"' in trained
        if last["reasoning"]:
            # The final turn's reasoning is rendered inside <think> and trained with the answer.
            assert f"<think>\n{last['reasoning'].strip()}\n</think>" in text
            assert last["reasoning"].strip()[:200] in trained
            seen_reasoning += 1
    assert seen_call > 30 and seen_reasoning > 20
    assert pq.read_table(out / "rendered/qwen3/rejects.parquet").num_rows == 0


def test_the_report_names_the_sources_formats_and_render_target(built):
    loaded, _, _ = built
    report = json.loads((loaded.build_dir / "report/report.json").read_text())
    assert report["render"]["qwen3"]["rows"]["train"] == {"in": 98, "rendered": 98, "dropped": 0}
    formats_seen = {
        s["name"]: s["format"] for s in json.loads((loaded.build_dir / "manifest.json").read_text())["sources"]
    }
    assert formats_seen == {"alpaca": "alpaca", "tools": "sharegpt", "reasoning": "openai"}
