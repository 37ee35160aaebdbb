"""What the final data looks like: kinds, turns, roles, tool calls, reasoning, trained tokens, duplicates.

These are computed over train + val (the rows a trainer sees) with Arrow kernels over the flattened
messages, so they cost a few passes over one column even for large builds.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..rejects import Outcome
from .lengths import summary

TOP_TOOLS = 20
DUPLICATE_SAMPLES = 5
SNIPPET = 300


def _counts(values: pa.Array) -> dict[str, int]:
    """value → count, for the non-null values, sorted by value so the JSON is stable."""
    out = {v["values"]: v["counts"] for v in pc.value_counts(values.drop_null()).to_pylist()}
    return dict(sorted(out.items()))


def _conversation(examples: pa.Table) -> tuple[pa.Array, np.ndarray]:
    """Every message of every row (`messages`, then a preference pair's `chosen` turns) and its row index."""
    parts, rows = [], []
    for column in ("messages", "chosen"):
        if column in examples.column_names:
            chunked = examples[column].combine_chunks()
            parts.append(pc.list_flatten(chunked))
            rows.append(pc.list_parent_indices(chunked).to_numpy())
    if not parts:
        return pa.array([], type=pa.struct([("role", pa.string())])), np.array([], dtype=np.int64)
    return pa.concat_arrays(parts), np.concatenate(rows)


def content_stats(examples: pa.Table, sources: list[str]) -> dict[str, Any]:
    """Kinds, turns per conversation, roles, tool-call and reasoning figures of train + val rows."""
    n = examples.num_rows
    messages, row_of = _conversation(examples)
    roles = pc.struct_field(messages, "role") if len(messages) else pa.array([], pa.string())
    is_assistant = pc.fill_null(pc.equal(roles, "assistant"), False).to_numpy(zero_copy_only=False)
    # Turns are assistant turns, as `filters.min_turns` counts them; rows without messages (pretrain) have 0.
    turns = np.bincount(row_of[is_assistant], minlength=n) if n else np.array([], dtype=np.int64)
    # Grouped over the two narrow columns: filtering the whole table per source would copy every message.
    pairs = examples.select(["source", "kind"]).group_by(["source", "kind"]).aggregate([([], "count_all")])
    kinds_by_source: dict[str, dict[str, int]] = {s: {} for s in sources}
    for r in sorted(pairs.to_pylist(), key=lambda r: (r["source"], r["kind"])):
        kinds_by_source.setdefault(r["source"], {})[r["kind"]] = r["count_all"]
    return {
        "rows": n,
        "kinds": _counts(examples["kind"].combine_chunks()),
        "kinds_by_source": kinds_by_source,
        "turns": {
            **summary(turns),
            # Turn counts are small integers: a mean rounded to one would hide the difference between 1.0 and 1.4.
            **({"mean": round(float(turns.mean()), 2)} if n else {}),
            "histogram": {str(k): int(v) for k, v in sorted(Counter(turns.tolist()).items())},
        },
        "roles": _counts(roles),
        "rows_with_system": _rows_where(pc.fill_null(pc.equal(roles, "system"), False), row_of),
        "tool_calls": tool_call_stats(examples, messages, row_of),
        "reasoning": reasoning_stats(messages, row_of),
    }


def _rows_where(mask: pa.Array, row_of: np.ndarray) -> int:
    """How many distinct rows have at least one message where `mask` holds."""
    hits = mask.to_numpy(zero_copy_only=False) if len(mask) else np.array([], dtype=bool)
    return int(len(np.unique(row_of[hits])))


def tool_call_stats(examples: pa.Table, messages: pa.Array, row_of: np.ndarray) -> dict[str, Any]:
    """Rows that declare tools, rows and turns that call them, calls per calling turn, tool names."""
    declared = int(pc.sum(pc.is_valid(examples["tools"])).as_py() or 0) if "tools" in examples.column_names else 0
    if not len(messages):
        return {"rows_with_tools": declared, "rows_with_calls": 0, "turns_with_calls": 0, "calls": 0,
                "tool_results": 0, "calls_per_turn": {"count": 0}, "by_name": {}}  # fmt: skip
    calls = pc.struct_field(messages, "tool_calls")
    per_turn = pc.fill_null(pc.list_value_length(calls), 0).to_numpy(zero_copy_only=False)
    names = pc.struct_field(pc.list_flatten(calls), "name") if int(per_turn.sum()) else pa.array([], pa.string())
    by_name = Counter(names.drop_null().to_pylist())
    return {
        "rows_with_tools": declared,
        "rows_with_calls": int(len(np.unique(row_of[per_turn > 0]))),
        "turns_with_calls": int((per_turn > 0).sum()),
        "calls": int(per_turn.sum()),
        "tool_results": int(pc.sum(pc.equal(pc.struct_field(messages, "role"), "tool")).as_py() or 0),
        "calls_per_turn": summary(per_turn[per_turn > 0]),
        # The most frequent names, then by name: a stable order for the JSON.
        "by_name": dict(sorted(by_name.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_TOOLS]),
    }


def reasoning_stats(messages: pa.Array, row_of: np.ndarray) -> dict[str, Any]:
    """Rows and turns that carry reasoning (the field, or an inline <think> block), and its length in chars."""
    if not len(messages):
        return {"rows": 0, "turns": 0, "inline_turns": 0, "chars": {"count": 0}}
    reasoning = pc.struct_field(messages, "reasoning")
    has_field = pc.fill_null(pc.greater(pc.utf8_length(reasoning), 0), False)
    content = pc.fill_null(pc.struct_field(messages, "content"), "")
    inline = pc.match_substring(content, "<think>")
    either = pc.or_(has_field, inline)
    lengths = pc.utf8_length(reasoning.filter(has_field)).to_numpy(zero_copy_only=False)
    return {
        "rows": _rows_where(either, row_of),
        "turns": int(pc.sum(has_field).as_py() or 0),
        "inline_turns": int(pc.sum(inline).as_py() or 0),
        "chars": summary(lengths),
    }


def token_share(rendered: pa.Table) -> dict[str, Any]:
    """Tokens and trained tokens (labels != -100) of a target's rendered rows, overall and per source."""

    def share(table: pa.Table) -> dict[str, Any]:
        tokens = int(pc.sum(table["n_tokens"]).as_py() or 0)
        trained = int(pc.sum(table["n_trained"]).as_py() or 0)
        return {"rows": table.num_rows, "tokens": tokens, "trained": trained,
                "share": round(trained / tokens, 4) if tokens else None}  # fmt: skip

    per_source = {s: share(rendered.filter(pc.equal(rendered["source"], s))) for s in _sorted(rendered["source"])}
    return {**share(rendered), "per_source": per_source}


def _sorted(column: pa.ChunkedArray) -> list[str]:
    return sorted(v for v in pc.unique(column).to_pylist() if v is not None)


def duplicate_clusters(rejects: pa.Table, kept: pa.Table) -> dict[str, Any]:
    """Rows removed as duplicates, grouped by the row they duplicate, with a few clusters as examples.

    A cluster is the kept row and the rows removed as its duplicates (`duplicate_of`). The largest clusters
    are shown first; the kept row's text is shown when it is in train/val (a later stage may have dropped it).
    """
    removed = rejects.filter(pc.equal(rejects["outcome"], Outcome.DEDUPLICATED.value))
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in removed.select(["example_id", "source", "file", "row", "line", "reason", "duplicate_of"]).to_pylist():
        groups.setdefault(r["duplicate_of"] or "?", []).append(r)
    sizes = Counter(len(members) + 1 for members in groups.values())
    order = sorted(groups, key=lambda k: (-len(groups[k]), k))[:DUPLICATE_SAMPLES]
    texts = _texts(kept, order)
    samples = []
    for key in order:
        members = [{"id": key, "where": None, "source": key.split(":", 1)[0], "kept": True, "reason": None}]
        members += [
            {
                "id": m["example_id"],
                "where": f"{m['file']}:{m['line']}" if m["line"] is not None else f"{m['file']}#{m['row']}",
                "source": m["source"],
                "kept": False,
                "reason": m["reason"],
            }
            for m in groups[key]
        ]
        samples.append({"kept": key, "text": texts.get(key), "members": members})
    return {
        "removed": removed.num_rows,
        "clusters": len(groups),
        "cluster_sizes": {str(k): v for k, v in sorted(sizes.items())},
        "by_reason": _counts(removed["reason"].combine_chunks()) if removed.num_rows else {},
        "samples": samples,
    }


def _texts(examples: pa.Table, ids: list[str]) -> dict[str, str]:
    """A snippet of each row's text (its messages joined), for the ids found in `examples`."""
    if not ids:
        return {}
    found = examples.filter(pc.is_in(examples["id"], pa.array(ids)))
    return {r["id"]: snippet(r) for r in found.to_pylist()}


def snippet(row: dict[str, Any], limit: int = SNIPPET) -> str:
    """A row's text, role-prefixed and cut to `limit` characters, for showing as an example."""
    if row.get("text"):
        text = row["text"]
    else:
        turns = (row.get("messages") or []) + (row.get("chosen") or [])
        text = "\n".join(f"{m['role']}: {m.get('content') or ''}" for m in turns)
    return text if len(text) <= limit else text[: limit - 1] + "…"
