"""validate: structural checks on canonical Examples, vectorised.

The checks are those of `schemas/example.schema.json` that Arrow's types do not already guarantee, plus the
rules a trainer needs: known roles and kinds, content in every message (an assistant turn may carry tool
calls instead), a system message only first, at least one assistant turn for sft, both sides of a
preference pair, a label for kto, text for pretrain. Rows that pass are then linted (`lint.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..formats.columnar import ORIGIN, list_positions, whole
from ..record import KINDS, ROLES
from ..rejects import Outcome, concat_rejects, rejects_from_examples
from ..tables import keep_rows
from .base import Progress, StageOutput
from .lint import lint

VERSION = 3  # 3: the lint rejects unfilled template placeholders (`unfilled_placeholder`)
_ROLES = pa.array(sorted(ROLES), pa.string())
_KINDS = pa.array(sorted(KINDS), pa.string())


def _np(arr: pa.Array) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False)


@dataclass(frozen=True)
class _Flags:
    """Per-message facts of a list-of-messages column, flattened: parent row, position in its list, role,
    content, and the masks the checks need."""

    parents: np.ndarray
    position: np.ndarray
    role: pa.Array
    content: pa.Array
    bad_role: np.ndarray
    is_assistant: np.ndarray
    empty: np.ndarray  # no content, except an assistant turn that calls tools instead

    @classmethod
    def of(cls, msgs: pa.Array) -> _Flags:
        flat = pc.list_flatten(msgs)
        role = pc.struct_field(flat, "role")
        content = pc.struct_field(flat, "content")
        calls = pc.struct_field(flat, "tool_calls")
        has_calls = _np(pc.fill_null(pc.greater(pc.list_value_length(calls), 0), False))
        is_assistant = _np(pc.fill_null(pc.equal(role, "assistant"), False))
        # Byte length, not utf8_length: emptiness is the same question, answered from the offsets alone.
        empty = ~_np(pc.fill_null(pc.greater(pc.binary_length(content), 0), False)) & ~(is_assistant & has_calls)
        return cls(
            parents=_np(pc.list_parent_indices(msgs)),
            position=_np(list_positions(msgs)),
            role=role,
            content=content,
            bad_role=~_np(pc.is_in(role, value_set=_ROLES)),
            is_assistant=is_assistant,
            empty=empty,
        )


def problems(examples: pa.Table) -> tuple[np.ndarray, list[str | None], list[str | None], list[str | None]]:
    """(bad mask, reason, field, message) per row; the first problem of a row is the one reported."""
    n = examples.num_rows
    reason: list[str | None] = [None] * n
    field: list[str | None] = [None] * n
    message: list[str | None] = [None] * n
    bad = np.zeros(n, dtype=bool)

    def mark(rows, why: str, where, what) -> None:
        for i, r in enumerate(rows):
            r = int(r)
            if not bad[r]:
                bad[r] = True
                reason[r] = why
                field[r] = where(i, r) if callable(where) else where
                message[r] = what(i, r) if callable(what) else what

    kind = whole(examples["kind"])
    unknown_kind = ~_np(pc.is_in(kind, value_set=_KINDS))
    mark(
        np.flatnonzero(unknown_kind),
        "unknown_kind",
        "kind",
        lambda i, r: f"unknown kind {kind[r].as_py()!r}; expected one of {', '.join(sorted(KINDS))}",
    )

    msgs = whole(examples["messages"])
    origin = whole(examples[ORIGIN]) if ORIGIN in examples.column_names else None
    flags = _Flags.of(msgs)
    parents, position, role, content = flags.parents, flags.position, flags.role, flags.content
    flat_origin = _np(pc.list_flatten(origin)) if origin is not None else None

    def where(suffix: str):
        def name(i: int, r: int) -> str:
            m = idx[i]
            if flat_origin is not None:
                base = flat_origin[m]
                if suffix == ".content":
                    return base
                # The origin names the content field (`conversations[2].value`); a role problem is about
                # the turn as a whole, so name the turn.
                head, _, _ = base.rpartition(".")
                return head if head.endswith("]") else base
            return f"messages[{position[m]}]{suffix}"

        return name

    # One problem per message at most; rows then take their first message problem.
    bad_role, is_assistant, empty = flags.bad_role, flags.is_assistant, flags.empty
    late_system = _np(pc.fill_null(pc.equal(role, "system"), False)) & (position > 0)

    idx = np.flatnonzero(bad_role)
    mark(
        parents[idx],
        "unknown_role",
        where(".role"),
        lambda i, r: f"unknown role {role[idx[i]].as_py()!r}; expected one of {', '.join(sorted(ROLES))}",
    )
    idx = np.flatnonzero(empty & ~bad_role)
    mark(
        parents[idx],
        "empty_content",
        where(".content"),
        lambda i, r: (
            f"{role[idx[i]].as_py()} message has no content"
            + (" (null)" if not content[idx[i]].is_valid else " (empty string)")
        ),
    )
    idx = np.flatnonzero(late_system)
    mark(
        parents[idx],
        "misplaced_system",
        where(".role"),
        lambda i, r: f"system message at position {position[idx[i]]}; only the first message may be a system prompt",
    )

    kind_np = _np(kind)
    sft = kind_np == "sft"
    assistants = np.bincount(parents[is_assistant], minlength=n)
    mark(
        np.flatnonzero(sft & (assistants == 0)),
        "no_assistant_turn",
        "messages",
        "an sft example needs at least one assistant turn to train on",
    )

    pref = kind_np == "preference"
    for side in ("chosen", "rejected"):
        length = _np(pc.fill_null(pc.list_value_length(whole(examples[side])), 0))
        mark(
            np.flatnonzero(pref & (length == 0)),
            "missing_preference",
            side,
            f"a preference example needs a non-empty `{side}` completion",
        )
        # The completion's own messages: known roles, and content unless an assistant turn calls tools.
        side_flags = _Flags.of(whole(examples[side]))
        for mask, why, suffix, what in (
            (side_flags.bad_role, "unknown_role", "role", "unknown role in the completion"),
            (
                side_flags.empty & ~side_flags.bad_role,
                "empty_content",
                "content",
                "a completion message has no content",
            ),
        ):
            at = np.flatnonzero(mask)
            mark(
                side_flags.parents[at],
                why,
                lambda i, r, at=at, side=side, suffix=suffix, pos=side_flags.position: f"{side}[{pos[at[i]]}].{suffix}",
                what,
            )
    label_missing = _np(pc.is_null(whole(examples["label"])))
    mark(
        np.flatnonzero((kind_np == "kto") & label_missing),
        "missing_label",
        "label",
        "a kto example needs a boolean `label`",
    )
    text_len = _np(pc.fill_null(pc.binary_length(whole(examples["text"])), 0))
    mark(
        np.flatnonzero((kind_np == "pretrain") & (text_len == 0)),
        "empty_text",
        "text",
        "a pretrain example needs non-empty `text`",
    )
    return bad, reason, field, message


def validate_examples(examples: pa.Table, progress: Progress, ignore: frozenset[str] = frozenset()) -> StageOutput:
    """Valid examples (without `__origin`) and a reject for every invalid one.

    Lint findings whose reason is in `ignore` keep their row and are counted in the stats instead.
    """
    progress(0, examples.num_rows, "")
    bad, reason, field, message = problems(examples)
    findings, unchecked = lint(examples, bad)
    warnings: dict[str, int] = {}
    for f in findings:
        if f.reason in ignore:
            warnings[f.reason] = warnings.get(f.reason, 0) + 1
            continue
        bad[f.row] = True
        reason[f.row], field[f.row], message[f.row] = f.reason, f.field, f.message
    progress(examples.num_rows, examples.num_rows, "")
    clean = examples.drop_columns([ORIGIN]) if ORIGIN in examples.column_names else examples
    invalid = clean.filter(pa.array(bad))
    rejects = rejects_from_examples(
        invalid,
        stage="validate",
        outcome=Outcome.REJECTED,
        reason=pa.array([r for r, b in zip(reason, bad, strict=True) if b], pa.string()),
        field=pa.array([f for f, b in zip(field, bad, strict=True) if b], pa.string()),
        message=pa.array([m for m, b in zip(message, bad, strict=True) if b], pa.string()),
    )
    if invalid.num_rows:
        rejects = _with_raw(rejects, invalid)
    kept = keep_rows(clean, ~bad)
    stats = {
        "invalid": int(bad.sum()),
        "lint_warnings": dict(sorted(warnings.items())),
        "tool_schemas_unchecked": unchecked,
    }
    return StageOutput({"examples": kept, "rejects": concat_rejects([rejects])}, stats)


def _with_raw(rejects: pa.Table, invalid: pa.Table) -> pa.Table:
    """Attach the canonical record (JSON) to validation rejects, so the reject explains itself."""
    import json

    rows = invalid.select(["kind", "messages", "tools", "chosen", "rejected", "label", "text"]).to_pylist()
    raw = pa.array([json.dumps(r, ensure_ascii=False) for r in rows], pa.string())
    return rejects.set_column(rejects.schema.get_field_index("raw"), "raw", raw)


def validate_table(examples: pa.Table, settings: dict[str, Any]) -> StageOutput:
    """One shard validated (the shard function of `validate`)."""
    from .sharding import quiet

    return validate_examples(examples, quiet, frozenset(settings["ignore"]))
