"""LLaMA-Factory export: data files per row kind and split, plus the `dataset_info.json` that describes them.

* sft, preference and kto rows are written as ShareGPT (the `sharegpt` format's writer): `conversations` of
  `{from, value}` turns with `function_call` / `observation` turns and a `tools` column; preference rows add
  `chosen` / `rejected` turn objects (`"ranking": true`), kto rows a boolean `kto_tag`.
* Reasoning goes inline, as a `<think>` block heading the assistant's answer: LLaMA-Factory reads chain of
  thought only from the response text (its data README: "the CoT needs to be placed in the model responses").
  Counted as a transform.
* pretrain rows are written as `{"text": …}`, described with `"columns": {"prompt": "text"}` (as its c4_demo).
* No `images` / `videos` / `audios` columns: dataforge does not carry media yet, so rows with them are rejected
  in the convert stage (`multimodal_unsupported`) and any that reach an export are left out and counted
  (`dataforge.exports.export`), rather than written as text whose `<image>` placeholders nothing maps.

Each `dataset_info.json` entry (`<dataset>_<kind>_<split>`) is derived from the records actually written, so
the columns it names are exactly the keys the file holds. Use it with `dataset_dir: <this folder>` and
`dataset: <entry name>`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .. import jsonsafe
from .base import Exported, Exporter, MemoryFiles, Splits, reasoning_inline, run_export, write_rows

# LLaMA-Factory's ShareGPT tags, spelled out so the description does not depend on its defaults.
TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}


class LlamaFactoryExporter(Exporter):
    def file_name(self, split: str, kind: str) -> str:
        return f"{kind}_{split}.jsonl"

    def records(self, split: str, kind: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if kind == "pretrain":
            return write_rows("text", rows, split, self.losses)
        moved = 0
        inlined = []
        for row in rows:
            copy, n = reasoning_inline(row)
            inlined.append(copy)
            moved += n
        self.transforms.add(split, kind, Counter({"reasoning moved inline as <think>": moved}))
        return write_rows("sharegpt", inlined, split, self.losses)

    def describe(self) -> None:
        info: dict[str, Any] = {}
        for split, kinds in self.kinds.items():
            for kind in kinds:
                name = self.file_name(split, kind)
                info[f"{self.dataset}_{kind}_{split}"] = described(name, kind, self.keys[(split, kind)])
        self.sink.write("dataset_info.json", jsonsafe.dumps(info, indent=2, ensure_ascii=False) + "\n")


def export(splits: Splits, dataset: str) -> Exported:
    sink = MemoryFiles()
    return run_export(LlamaFactoryExporter(sink, dataset), sink, splits)


def entry(file_name: str, kind: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The dataset_info.json entry describing `records` (as written to `file_name`)."""
    return described(file_name, kind, {k for r in records for k in r})


def described(file_name: str, kind: str, keys: set[str]) -> dict[str, Any]:
    """The dataset_info.json entry for a file of `kind` records whose keys, over all records, are `keys`."""
    if kind == "pretrain":
        return {"file_name": file_name, "columns": {"prompt": "text"}}
    columns = {"messages": "conversations"}
    for column in ("system", "tools", "chosen", "rejected", "kto_tag"):
        if column in keys:
            columns[column] = column
    described: dict[str, Any] = {"file_name": file_name, "formatting": "sharegpt"}
    if kind == "preference":
        described["ranking"] = True
    described["columns"] = columns
    described["tags"] = dict(TAGS)
    return described
