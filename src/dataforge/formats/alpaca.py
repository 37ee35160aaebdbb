"""Alpaca: `instruction` (+ optional `input`) → `output`, with optional `system` and `history` pairs.

The user turn is `instruction` and `input` joined by a newline, as LLaMA-Factory does; `history` holds
earlier `[user, assistant]` pairs. LLaMA-Factory's preference rows hold `chosen` and `rejected` answers in
place of `output` (kind preference: the conversation is the prompt); a boolean `kto_tag` (LLaMA-Factory) or
`label` (trl) makes a row a KTO example whose completion is `output`. Written back, KTO rows use `kto_tag`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..readers import RowShape
from ..tables import keep_rows
from . import columnar as col
from .base import Converted, Format, RowProblems, Written, add_metadata, assemble, count_media, first_per_row
from .preference import completion_lists, count_pretrain, kto_labels, present, row_kinds

ARROW = pa.schema(
    [
        pa.field("instruction", pa.string()),
        pa.field("input", pa.string()),
        pa.field("output", pa.string()),
        pa.field("system", pa.string()),
        pa.field("history", pa.list_(pa.list_(pa.string()))),
        pa.field("chosen", pa.string()),
        pa.field("rejected", pa.string()),
        pa.field("kto_tag", pa.bool_()),
        pa.field("label", pa.bool_()),
    ]
)
LABELS = ("kto_tag", "label")

JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://dataforge.dev/schemas/formats/alpaca.schema.json",
    "title": "Alpaca record",
    "type": "object",
    "required": ["instruction"],
    # `output` is required unless the row is a preference pair: the converter checks it on both read paths
    # (a conditional here would not follow a recipe's column map, which renames top-level names only).
    "properties": {
        "instruction": {"type": "string", "description": "The user's request."},
        "input": {"type": ["string", "null"], "description": "Optional context, appended to the instruction."},
        "output": {"type": "string", "description": "The assistant's answer (required unless chosen/rejected)."},
        "system": {"type": ["string", "null"], "description": "Optional system prompt."},
        "history": {
            "type": ["array", "null"],
            "description": "Earlier turns as [user, assistant] pairs.",
            "items": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2},
        },
        "chosen": {"type": ["string", "null"], "description": "Preference: the better answer (in place of output)."},
        "rejected": {"type": ["string", "null"], "description": "Preference: the worse answer."},
        "kto_tag": {"type": ["boolean", "null"], "description": "KTO: whether `output` is desirable."},
        "label": {"type": ["boolean", "null"], "description": "KTO label, trl's spelling of kto_tag."},
    },
}


class AlpacaFormat(Format):
    name = "alpaca"
    description = "instruction/input/output records, optional system and history (Stanford Alpaca, LLaMA-Factory)"
    shape = RowShape(ARROW, JSON_SCHEMA)
    signature = frozenset({"instruction", "output"})

    def matches(self, record: dict[str, Any]) -> bool:
        return "instruction" in record and ("output" in record or ("chosen" in record and "rejected" in record))

    def to_examples(self, raw: pa.Table, source: str) -> Converted:
        problems = RowProblems(raw.num_rows)
        missing = col.is_null(col.whole(raw["instruction"]))
        problems.add_rows(missing, "schema_violation", "instruction", "'instruction' is required but missing")
        paired = present(col.whole(raw["chosen"])) | present(col.whole(raw["rejected"]))
        has_output = present(col.whole(raw["output"]))
        problems.add_rows(~has_output & ~paired, "schema_violation", "output", "'output' is required but missing")
        problems.add_rows(
            has_output & paired,
            "schema_violation",
            "output",
            "a row holds either 'output' (sft, kto) or 'chosen' and 'rejected' (preference), not both",
        )
        labels = kto_labels(raw, problems, LABELS)
        kinds = row_kinds(paired, present(labels), problems, "kto_tag")
        history = col.whole(raw["history"])
        pair_len = pc.list_value_length(pc.list_flatten(history)).to_numpy(zero_copy_only=False)
        pair_parent = pc.list_parent_indices(history).to_numpy(zero_copy_only=False)
        for r, i in first_per_row(pair_len != 2, pair_parent).items():
            position = int(col.list_positions(history)[i].as_py())
            problems.add(
                r,
                "schema_violation",
                f"history[{position}]",
                "every history item must be a [user, assistant] pair of two strings",
            )
        # History pairs of the wrong length would misalign the turns, so bad rows leave before conversion.
        good = keep_rows(raw.append_column("__kind", kinds).append_column("__label", labels), ~problems.bad)
        return Converted(self._convert(good, source), problems.rejects(raw))

    def _convert(self, raw: pa.Table, source: str) -> pa.Table:
        n = raw.num_rows
        instruction = col.whole(raw["instruction"])
        extra = col.whole(raw["input"])
        # Two passes over the big strings instead of three: empty parts become null, the join is null unless
        # both parts are present, and coalesce picks the join, else the instruction, else the input.
        # (Not `null_handling="skip"`: in pyarrow 26 it drops rows whose parts are all null.)
        has_input = col.non_empty(extra)
        if not has_input.all():
            extra = pc.if_else(pa.array(has_input), extra, pa.scalar(None, pa.string()))
        has_instruction = col.non_empty(instruction)
        if not has_instruction.all():
            instruction = pc.if_else(pa.array(has_instruction), instruction, pa.scalar(None, pa.string()))
        user = pc.coalesce(pc.binary_join_element_wise(instruction, extra, "\n"), instruction, extra, pa.scalar(""))
        system = col.whole(raw["system"])
        history = col.whole(raw["history"])
        pairs = pc.list_flatten(history)
        pair_parent = pc.list_parent_indices(history).to_numpy(zero_copy_only=False)
        turns = pc.list_flatten(pairs)  # user, assistant, user, assistant ...
        turn_roles = np.tile(np.array(["user", "assistant"], dtype=object), len(pairs))
        pair_index = col.list_positions(history).to_numpy(zero_copy_only=False)
        turn_origin = [f"history[{i}][{j}]" for i in pair_index.tolist() for j in (0, 1)]
        parts = [
            col.single(col.messages("system", system), col.non_empty(system), "system"),
            col.many(
                col.messages(pa.array(turn_roles, pa.string()), turns),
                np.repeat(pair_parent, 2),
                pa.array(turn_origin, pa.string()),
            ),
            col.single(col.messages("user", user), np.ones(n, dtype=bool), "instruction"),
        ]
        output = col.whole(raw["output"])  # null in preference rows, which answer in chosen/rejected
        parts.append(col.single(col.messages("assistant", output), present(output), "output"))
        messages, origins = col.conversations(n, parts)
        sides = {}
        for side in ("chosen", "rejected"):
            answer = col.whole(raw[side])
            held = present(answer)
            sides[side] = completion_lists(n, [col.single(col.messages("assistant", answer), held, side)], held)
        return assemble(
            raw,
            source,
            messages=messages,
            origins=origins,
            kind=col.whole(raw["__kind"]),
            label=col.whole(raw["__label"]),
            **sides,
        )

    def from_examples(self, examples: list[dict[str, Any]]) -> Written:
        records: list[dict[str, Any]] = []
        losses: Counter[str] = Counter()
        for ex in examples:
            if count_media(ex, losses):
                continue
            if count_pretrain(ex, losses):
                continue
            record = (_preference if ex["kind"] == "preference" else _conversation)(ex, losses)
            if record is None:
                continue
            if ex["kind"] == "kto":
                record["kto_tag"] = ex["label"]
            add_metadata(record, ex.get("metadata"), self.shape.arrow.names, losses)
            records.append(record)
        return Written(records, losses)


def _turns(ex: dict[str, Any], losses: Counter[str]) -> tuple[str | None, list[dict[str, Any]]]:
    """The system prompt and the user/assistant turns Alpaca can hold, counting what it cannot."""
    msgs = list(ex["messages"] or ())
    completions = [*(ex.get("chosen") or ()), *(ex.get("rejected") or ())]
    systems = [m for m in msgs if m["role"] == "system"]
    if len(systems) > 1:
        losses["system messages after the first"] += len(systems) - 1
    turns = [m for m in msgs if m["role"] != "system"]
    # Alpaca has no place for a speaker's name; it was dropped without a count before.
    named = sum(bool(m.get("name")) for m in [*msgs, *completions])
    if named:
        losses["message names"] += named
    for m in [*msgs, *completions]:
        if m.get("weight") is not None:
            losses["turn weights"] += 1
    for m in [*turns, *completions]:
        if m.get("reasoning"):
            losses["reasoning"] += 1
        if m.get("tool_calls"):
            losses["tool calls"] += 1
    if any(m["role"] == "tool" for m in turns):
        losses["tool results"] += sum(m["role"] == "tool" for m in turns)
        turns = [m for m in turns if m["role"] != "tool"]
    if ex.get("tools"):
        losses["tool declarations"] += 1
    return (systems[0]["content"] if systems else None), turns


def _history(turns: list[dict[str, Any]]) -> list[list[str]]:
    return [[turns[i]["content"] or "", turns[i + 1]["content"] or ""] for i in range(0, len(turns) - 1, 2)]


def _conversation(ex: dict[str, Any], losses: Counter[str]) -> dict[str, Any] | None:
    """An sft or kto row: the last user/assistant pair as instruction/output, earlier pairs as history."""
    system, turns = _turns(ex, losses)
    roles = [m["role"] for m in turns]
    if len(turns) < 2 or roles[-1] != "assistant" or roles != ["user", "assistant"] * (len(turns) // 2):
        losses["rows not shaped as alternating user/assistant turns (not written)"] += 1
        return None
    # An assistant turn that only called tools has no text: written as "" it made a record that
    # trains an empty answer (and fails validation when read back).
    if any(m["role"] == "assistant" and not m["content"] for m in turns):
        losses["rows with an assistant turn that only calls tools (not written)"] += 1
        return None
    record: dict[str, Any] = {} if system is None else {"system": system}
    record["instruction"] = turns[-2]["content"] or ""
    record["input"] = ""
    record["output"] = turns[-1]["content"] or ""
    if len(turns) > 2:
        record["history"] = _history(turns[:-2])
    return record


def _preference(ex: dict[str, Any], losses: Counter[str]) -> dict[str, Any] | None:
    """A preference row: the prompt's last user turn as instruction, one assistant answer per side."""
    system, turns = _turns(ex, losses)
    roles = [m["role"] for m in turns]
    if not turns or roles != ["user", "assistant"] * (len(turns) // 2) + ["user"]:
        losses[
            "preference rows whose prompt is not alternating user/assistant turns ending on a user turn (not written)"
        ] += 1
        return None
    answers = {}
    for side in ("chosen", "rejected"):
        completion = list(ex.get(side) or ())
        if len(completion) != 1 or completion[0]["role"] != "assistant" or not completion[0]["content"]:
            losses[f"preference rows whose {side} is not one assistant text turn (not written)"] += 1
            return None
        answers[side] = completion[0]["content"]
    if any(not m["content"] for m in turns):
        losses["rows with an assistant turn that only calls tools (not written)"] += 1
        return None
    record: dict[str, Any] = {} if system is None else {"system": system}
    record["instruction"] = turns[-1]["content"] or ""
    record["input"] = ""
    record.update(answers)
    if len(turns) > 1:
        record["history"] = _history(turns[:-1])
    return record
