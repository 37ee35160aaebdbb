"""axolotl export: data files per row kind and split, plus the `datasets:` YAML block that loads each.

* sft: OpenAI-style `messages` (+ `tools`, `reasoning_content`) loaded with `type: chat_template`, training the
  assistant turns and their end-of-turn token (`roles_to_train: [assistant]`, `train_on_eos: turn`). An
  assistant turn of weight 0 gets axolotl's per-message training flag `training: false`
  (`message_field_training: training`), which overrides `roles_to_train` for that turn; other weights train
  as every assistant turn does (no flag: an explicit `true` would say no more). A fractional weight trains at
  full weight there and a weight on a non-assistant turn (it trains nothing in dataforge) has no place: both
  counted. Render-target modes (`train_on: last|first_n|weighted`) are no
  property of the rows; the SFT hand-off carries them exactly through its pre-tokenized labels.
* preference: `messages` (the prompt) plus one `chosen` and one `rejected` assistant message, loaded with
  `type: chat_template.default` (axolotl's DPO strategy; `rl: dpo`). A completion of several messages cannot
  be carried (counted).
* kto: `system`, `prompt`, `completion`, `label`, loaded with axolotl's user-defined KTO type (`rl: kto`).
  Only a single-turn prompt fits; earlier turns are counted as dropped.
* pretrain: `{"text": …}` with `type: completion`.

`axolotl-<kind>.yaml` holds `datasets:` (train) and `test_datasets:` (val) for one kind, since one axolotl
run trains one method. Paths are relative to the export folder (the YAML's own folder): run axolotl from there.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import yaml

from ..formats.base import is_unwritten, unwritable
from .base import METADATA_KEYS, Exported, Exporter, MemoryFiles, Sink, Splits, Tally, run_export, write_rows


class AxolotlExporter(Exporter):
    def __init__(self, sink: Sink, dataset: str, *, keep_left_out: bool = True) -> None:
        super().__init__(sink, dataset, keep_left_out=keep_left_out)
        self.reasoning: set[tuple[str, str]] = set()  # (split, kind) of files with a `reasoning_content` turn
        self.training: set[tuple[str, str]] = set()  # (split, kind) of files with a per-turn `training` flag

    def records(self, split: str, kind: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        losses = self.losses
        if kind == "sft":
            records = write_rows("openai", rows, split, losses)
            if _turn_training(records, losses, split, kind):
                self.training.add((split, kind))
            return records
        if kind == "pretrain":
            losses.add(split, kind, Counter(METADATA_KEYS for row in rows if row.get("metadata")))
            return [{"text": row["text"]} for row in rows]
        records = []
        for row in rows:
            record, lost = (_preference if kind == "preference" else _kto)(row)
            unsafe = unwritable(record) if record is not None else None
            if unsafe is not None:  # never written as invalid JSON: left out, counted
                record, lost = None, Counter({unsafe: 1})
            if record is None:
                why = next(what for what in lost if is_unwritten(what))
                losses.leave(split, row, why)
                del lost[why]
            else:
                if row.get("metadata"):
                    lost[METADATA_KEYS] += 1
                records.append(record)
            losses.add(split, kind, lost)
        return records

    def seen(self, split: str, kind: str, records: list[dict[str, Any]]) -> None:
        super().seen(split, kind, records)
        if any("reasoning_content" in m for r in records for m in r.get("messages", ())):
            self.reasoning.add((split, kind))

    def describe(self) -> None:
        blocks: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for split, kinds in self.kinds.items():
            for kind in kinds:
                key = "datasets" if split == "train" else "test_datasets"
                block = _block(
                    kind,
                    self.file_name(split, kind),
                    self.keys[(split, kind)],
                    (split, kind) in self.reasoning,
                    (split, kind) in self.training,
                )
                blocks.setdefault(kind, {}).setdefault(key, []).append(block)
        for kind, block in blocks.items():
            header = {"preference": {"rl": "dpo"}, "kto": {"rl": "kto", "remove_unused_columns": False}}.get(kind, {})
            text = yaml.safe_dump({**header, **block}, sort_keys=False, allow_unicode=True)
            self.sink.write(f"axolotl-{kind}.yaml", text)


def export(splits: Splits, dataset: str) -> Exported:
    sink = MemoryFiles()
    return run_export(AxolotlExporter(sink, dataset), sink, splits)


def dataset_block(kind: str, path: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """One entry of axolotl's `datasets:` list for a file of `kind` records."""
    keys = {k for r in records for k in r}
    reasoning = any("reasoning_content" in m for r in records for m in r.get("messages", ()))
    training = any(TRAINING in m for r in records for m in r.get("messages", ()))
    return _block(kind, path, keys, reasoning, training)


TRAINING = "training"  # axolotl's per-message flag (`message_field_training`)
FRACTIONAL = "fractional turn weights (not written; axolotl trains the turn at full weight)"
NOT_ASSISTANT = "turn weights on non-assistant turns (not written; they train nothing in dataforge either)"


def _turn_training(records: list[dict[str, Any]], losses: Tally, split: str, kind: str) -> bool:
    """Replace each message's `weight` (as the openai writer spells it) by axolotl's `training: false` on the
    assistant turns of weight 0, counting what the flag cannot say; whether any message got one."""
    lost: Counter[str] = Counter()
    any_flag = False
    for record in records:
        for m in record.get("messages", ()):
            if "weight" not in m:
                continue
            weight = m.pop("weight")
            if m.get("role") != "assistant":
                lost[NOT_ASSISTANT] += 1
                continue
            if weight == 0:
                m[TRAINING] = False
                any_flag = True
            elif weight != 1:
                lost[FRACTIONAL] += 1
    losses.add(split, kind, lost)
    return any_flag


def _block(kind: str, path: str, keys: set[str], reasoning: bool, training: bool = False) -> dict[str, Any]:
    """`dataset_block` from what it needs of the records: every key they hold, and whether any sft turn holds
    `reasoning_content` or a `training` flag."""
    base: dict[str, Any] = {"path": path, "ds_type": "json", "split": "train"}
    if kind == "sft":
        mappings = {"role": "role", "content": "content"}
        if reasoning:
            mappings["reasoning_content"] = "reasoning_content"
        block = {
            **base,
            "type": "chat_template",
            "field_messages": "messages",
            "message_property_mappings": mappings,
            "roles_to_train": ["assistant"],
            "train_on_eos": "turn",
        }
        if training:  # per-turn flags, which override roles_to_train for their turn
            block["message_field_training"] = TRAINING
        if "tools" in keys:
            block["field_tools"] = "tools"
        return block
    if kind == "preference":
        return {
            **base,
            "type": "chat_template.default",
            "field_messages": "messages",
            "field_chosen": "chosen",
            "field_rejected": "rejected",
            "message_property_mappings": {"role": "role", "content": "content"},
        }
    if kind == "kto":
        return {
            **base,
            "type": {
                "field_prompt": "prompt",
                "field_system": "system",
                "field_completion": "completion",
                "field_label": "label",
                "prompt_format": "{prompt}",
                "completion_format": "{completion}",
            },
        }
    return {**base, "type": "completion", "field": "text"}


def _message(m: dict[str, Any], lost: Counter[str]) -> dict[str, Any]:
    if m.get("tool_calls"):
        lost["tool calls"] += 1
    if m.get("reasoning"):
        lost["reasoning"] += 1
    return {"role": m["role"], "content": m.get("content") or ""}


def _preference(row: dict[str, Any]) -> tuple[dict[str, Any] | None, Counter[str]]:
    lost: Counter[str] = Counter()
    chosen, rejected = row.get("chosen") or [], row.get("rejected") or []
    if len(chosen) != 1 or len(rejected) != 1:
        lost["rows whose completion is not a single message (not written)"] += 1
        return None, lost
    if row.get("tools"):
        lost["declared tools"] += 1
    record = {
        "messages": [_message(m, lost) for m in row["messages"] or ()],
        "chosen": _message(chosen[0], lost),
        "rejected": _message(rejected[0], lost),
    }
    return record, lost


def _kto(row: dict[str, Any]) -> tuple[dict[str, Any] | None, Counter[str]]:
    lost: Counter[str] = Counter()
    msgs = list(row["messages"] or ())
    last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
    if last is None:
        lost["rows without a completion (not written)"] += 1
        return None, lost
    prompt, completion = msgs[:last], msgs[last]
    system = prompt[0]["content"] if prompt and prompt[0]["role"] == "system" else None
    turns = prompt[1:] if system is not None else prompt
    if len(turns) > 1:
        lost["earlier prompt turns (only the last user turn is kept)"] += 1
    if row.get("tools"):
        lost["declared tools"] += 1
    user = _message(turns[-1], lost)["content"] if turns else ""
    record: dict[str, Any] = {
        "prompt": user,
        "completion": _message(completion, lost)["content"],
        "label": row["label"],
    }
    if system is not None:
        record = {"system": system, **record}
    return record, lost
