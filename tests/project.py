"""A tiny on-disk project (three sources in three formats, with planted problems) for build tests."""

from __future__ import annotations

import json
from pathlib import Path

from dataforge.engine.runner import run
from dataforge.recipe import load_recipe
from dataforge.stages.write import is_current, write_build, write_key

RECIPE = """\
name: tiny
seed: 11
sources:
  - name: alp
    from: data/alpaca.json
  - name: sgpt
    from: data/sharegpt.jsonl
    format: sharegpt
  - name: oai
    from: "data/openai/*.jsonl"
filters:
  max_chars: 400
split:
  validation: 0.2
outputs:
  exports: [openai, sharegpt]
"""


def _qa(i: int, topic: str) -> tuple[str, str]:
    return f"Question {i} about {topic}?", f"Answer {i}: {topic} is explained in a few words."


def make_project(root: Path, recipe: str = RECIPE, rows: int = 30) -> Path:
    """Write sources + recipe under `root`; return the recipe path."""
    data = root / "data"
    (data / "openai").mkdir(parents=True, exist_ok=True)
    alpaca = [{"instruction": q, "input": "", "output": a} for q, a in (_qa(i, "alpaca") for i in range(rows))]
    alpaca.append(
        {
            "instruction": "Question 0 about alpaca?",
            "input": "",
            "output": "Answer 0: alpaca is explained in a few words.",
        }
    )
    alpaca.append({"instruction": "Empty answer", "input": "", "output": ""})
    (data / "alpaca.json").write_text(json.dumps(alpaca, indent=2), encoding="utf-8")
    lines = []
    for i in range(rows):
        q, a = _qa(i, "sharegpt")
        lines.append(json.dumps({"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]}))
    q, a = _qa(1, "alpaca")  # cross-source duplicate of alp row 1
    lines.append(json.dumps({"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]}))
    lines.append('{"conversations": [broken')
    lines.append(
        json.dumps({"conversations": [{"from": "human", "value": "x" * 500}, {"from": "gpt", "value": "long"}]})
    )
    (data / "sharegpt.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for part in (0, 1):
        msgs = []
        for i in range(part * rows // 2, (part + 1) * rows // 2):
            q, a = _qa(i, "openai")
            msgs.append(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}))
        if part == 1:
            msgs.append(json.dumps({"messages": [{"role": "robot", "content": "beep"}]}))
        (data / "openai" / f"part{part}.jsonl").write_text("\n".join(msgs) + "\n", encoding="utf-8")
    path = root / "mix.yaml"
    path.write_text(recipe, encoding="utf-8")
    return path


def build(recipe: Path):
    """Run and, when something changed, write the build of `recipe` as `dataforge build` does (no lock)."""
    loaded = load_recipe(recipe)
    result = run(loaded)
    manifest = None
    if result.ran or not is_current(loaded, write_key(loaded, result.entries)):
        manifest = write_build(loaded, result.stages, result.entries)
    return loaded, result, manifest
