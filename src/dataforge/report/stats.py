"""What the final data looks like: kinds, turns, roles, tool calls, reasoning, trained tokens, duplicates.

These are computed over train + val (the rows a trainer sees) with Arrow kernels over the flattened
messages, a piece (part or row group) at a time, merged: memory holds one piece and id-level arrays.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..rejects import Outcome
from ..streams import Tables, as_tables
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


CONTENT_COLUMNS = ["source", "kind", "messages", "chosen", "tools"]


def content_stats(examples: pa.Table | Tables, sources: list[str]) -> dict[str, Any]:
    """Kinds, turns per conversation, roles, tool-call and reasoning figures of train + val rows.

    Computed a piece at a time and merged: counts are added up; percentiles come from id-level arrays (assistant
    turns per row, calls per calling turn, reasoning characters per turn) joined once at the end."""
    n = 0
    kinds: Counter[str] = Counter()
    pairs: Counter[tuple[Any, Any]] = Counter()
    roles: Counter[str] = Counter()
    turn_arrays: list[np.ndarray] = []
    rows_with_system = 0
    tools = _ToolCalls()
    reasoning = _Reasoning()
    for table in as_tables(examples)(CONTENT_COLUMNS):
        rows = table.num_rows
        n += rows
        messages, row_of = _conversation(table)
        role = pc.struct_field(messages, "role") if len(messages) else pa.array([], pa.string())
        is_assistant = pc.fill_null(pc.equal(role, "assistant"), False).to_numpy(zero_copy_only=False)
        # Turns are assistant turns, as `filters.min_turns` counts them; rows without messages (pretrain) have 0.
        turn_arrays.append(np.bincount(row_of[is_assistant], minlength=rows) if rows else np.array([], np.int64))
        if rows:
            # Grouped over the two narrow columns: filtering the whole table per source would copy every message.
            grouped = table.select(["source", "kind"]).group_by(["source", "kind"]).aggregate([([], "count_all")])
            for r in grouped.to_pylist():
                pairs[(r["source"], r["kind"])] += r["count_all"]
        kinds.update(_counts(table["kind"].combine_chunks()))
        roles.update(_counts(role))
        rows_with_system += _rows_where(pc.fill_null(pc.equal(role, "system"), False), row_of)
        tools.add(table, messages, row_of)
        reasoning.add(messages, row_of)
    turns = np.concatenate(turn_arrays) if turn_arrays else np.array([], dtype=np.int64)
    kinds_by_source: dict[str, dict[str, int]] = {s: {} for s in sources}
    for (source, kind), count in sorted(pairs.items(), key=lambda kv: kv[0]):
        kinds_by_source.setdefault(source, {})[kind] = count
    values, counts = np.unique(turns, return_counts=True)
    return {
        "rows": n,
        "kinds": dict(sorted(kinds.items())),
        "kinds_by_source": kinds_by_source,
        "turns": {
            **summary(turns),
            # Turn counts are small integers: a mean rounded to one would hide the difference between 1.0 and 1.4.
            **({"mean": round(float(turns.mean()), 2)} if n else {}),
            "histogram": {str(int(k)): int(v) for k, v in zip(values, counts, strict=True)},
        },
        "roles": dict(sorted(roles.items())),
        "rows_with_system": rows_with_system,
        "tool_calls": tools.result(),
        "reasoning": reasoning.result(),
    }


def _rows_where(mask: pa.Array, row_of: np.ndarray) -> int:
    """How many distinct rows have at least one message where `mask` holds."""
    hits = mask.to_numpy(zero_copy_only=False) if len(mask) else np.array([], dtype=bool)
    return int(len(np.unique(row_of[hits])))


def _joined(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.array([], dtype=np.int64)


class _ToolCalls:
    """Rows that declare tools, rows and turns that call them, calls per calling turn, tool names; added up
    over pieces."""

    def __init__(self) -> None:
        self.declared = self.rows_with_calls = self.turns_with_calls = self.calls = self.tool_results = 0
        self.per_turn: list[np.ndarray] = []  # calls of each calling turn, for the percentiles
        self.by_name: Counter[str] = Counter()

    def add(self, examples: pa.Table, messages: pa.Array, row_of: np.ndarray) -> None:
        if "tools" in examples.column_names:
            self.declared += int(pc.sum(pc.is_valid(examples["tools"])).as_py() or 0)
        if not len(messages):
            return
        calls = pc.struct_field(messages, "tool_calls")
        per_turn = pc.fill_null(pc.list_value_length(calls), 0).to_numpy(zero_copy_only=False)
        names = pc.struct_field(pc.list_flatten(calls), "name") if int(per_turn.sum()) else pa.array([], pa.string())
        self.by_name.update(names.drop_null().to_pylist())
        self.rows_with_calls += int(len(np.unique(row_of[per_turn > 0])))
        self.turns_with_calls += int((per_turn > 0).sum())
        self.calls += int(per_turn.sum())
        self.tool_results += int(pc.sum(pc.equal(pc.struct_field(messages, "role"), "tool")).as_py() or 0)
        self.per_turn.append(per_turn[per_turn > 0])

    def result(self) -> dict[str, Any]:
        return {
            "rows_with_tools": self.declared,
            "rows_with_calls": self.rows_with_calls,
            "turns_with_calls": self.turns_with_calls,
            "calls": self.calls,
            "tool_results": self.tool_results,
            "calls_per_turn": summary(_joined(self.per_turn)),
            # The most frequent names, then by name: a stable order for the JSON.
            "by_name": dict(sorted(self.by_name.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_TOOLS]),
        }


def tool_call_stats(examples: pa.Table, messages: pa.Array, row_of: np.ndarray) -> dict[str, Any]:
    """Rows that declare tools, rows and turns that call them, calls per calling turn, tool names."""
    stats = _ToolCalls()
    stats.add(examples, messages, row_of)
    return stats.result()


class _Reasoning:
    """Rows and turns that carry reasoning (the field, or an inline <think> block), and its length in chars;
    added up over pieces."""

    def __init__(self) -> None:
        self.rows = self.turns = self.inline_turns = 0
        self.lengths: list[np.ndarray] = []

    def add(self, messages: pa.Array, row_of: np.ndarray) -> None:
        if not len(messages):
            return
        reasoning = pc.struct_field(messages, "reasoning")
        has_field = pc.fill_null(pc.greater(pc.utf8_length(reasoning), 0), False)
        content = pc.fill_null(pc.struct_field(messages, "content"), "")
        inline = pc.match_substring(content, "<think>")
        either = pc.or_(has_field, inline)
        self.lengths.append(pc.utf8_length(reasoning.filter(has_field)).to_numpy(zero_copy_only=False))
        self.rows += _rows_where(either, row_of)
        self.turns += int(pc.sum(has_field).as_py() or 0)
        self.inline_turns += int(pc.sum(inline).as_py() or 0)

    def result(self) -> dict[str, Any]:
        return {"rows": self.rows, "turns": self.turns, "inline_turns": self.inline_turns,
                "chars": summary(_joined(self.lengths))}  # fmt: skip


def reasoning_stats(messages: pa.Array, row_of: np.ndarray) -> dict[str, Any]:
    """Rows and turns that carry reasoning (the field, or an inline <think> block), and its length in chars."""
    stats = _Reasoning()
    stats.add(messages, row_of)
    return stats.result()


def token_share(rendered: pa.Table | Tables) -> dict[str, Any]:
    """Tokens and trained tokens (labels != -100) of a target's rendered rows, overall and per source; added up
    a piece at a time."""
    totals: dict[Any, list[int]] = {}  # source → [rows, tokens, trained]
    for table in as_tables(rendered)(["source", "n_tokens", "n_trained"]):
        if table.num_rows == 0:
            continue
        grouped = table.group_by(["source"]).aggregate([([], "count_all"), ("n_tokens", "sum"), ("n_trained", "sum")])
        for r in grouped.to_pylist():
            acc = totals.setdefault(r["source"], [0, 0, 0])
            acc[0] += r["count_all"]
            acc[1] += int(r["n_tokens_sum"] or 0)
            acc[2] += int(r["n_trained_sum"] or 0)

    def share(rows: int, tokens: int, trained: int) -> dict[str, Any]:
        return {"rows": rows, "tokens": tokens, "trained": trained,
                "share": round(trained / tokens, 4) if tokens else None}  # fmt: skip

    overall = [sum(acc[i] for acc in totals.values()) for i in range(3)]
    per_source = {s: share(*totals[s]) for s in sorted(s for s in totals if s is not None)}
    return {**share(*overall), "per_source": per_source}


MEMBER_COLUMNS = ["example_id", "source", "file", "row", "line", "reason", "duplicate_of"]


def duplicate_clusters(rejects: pa.Table | Tables, kept: pa.Table | Tables) -> dict[str, Any]:
    """Rows removed as duplicates, grouped by the row they duplicate, with a few clusters as examples.

    A cluster is the kept row and the rows removed as its duplicates (`duplicate_of`). The largest clusters
    are shown first; the kept row's text is shown when it is in train/val (a later stage may have dropped it).

    Three passes, a piece at a time: the id-level `duplicate_of` keys of every removed row (to size the
    clusters), the members of the clusters shown, and the kept rows' texts."""
    rejects, kept = as_tables(rejects), as_tables(kept)
    keys: list[pa.Array] = []
    reasons: Counter[str] = Counter()
    for table in rejects(["outcome", "duplicate_of", "reason"]):
        removed = table.filter(pc.equal(table["outcome"], Outcome.DEDUPLICATED.value))
        keys.append(_cluster_key(removed["duplicate_of"].combine_chunks()))
        reasons.update(_counts(removed["reason"].combine_chunks()))
    every = pa.concat_arrays(keys) if keys else pa.array([], pa.string())
    sizes_of = pc.value_counts(every)
    clusters = pa.table({"key": sizes_of.field("values"), "size": sizes_of.field("counts")})
    sizes = Counter((clusters["size"].to_numpy() + 1).tolist()) if len(clusters) else Counter()
    # Largest first, then by key (Arrow orders strings by their UTF-8 bytes: the order of Python's sort).
    order = clusters.sort_by([("size", "descending"), ("key", "ascending")]).slice(0, DUPLICATE_SAMPLES)
    order_keys = order["key"].to_pylist()
    groups: dict[str, list[dict[str, Any]]] = {key: [] for key in order_keys}
    if order_keys:
        wanted = pa.array(order_keys, pa.string())
        for table in rejects(["outcome", *MEMBER_COLUMNS]):
            removed = table.filter(pc.equal(table["outcome"], Outcome.DEDUPLICATED.value))
            shown = removed.filter(pc.is_in(_cluster_key(removed["duplicate_of"].combine_chunks()), wanted))
            for r in shown.select(MEMBER_COLUMNS).to_pylist():
                groups[r["duplicate_of"] or "?"].append(r)
    texts = _texts(kept, order_keys)
    samples = []
    for key in order_keys:
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
        "removed": len(every),
        "clusters": len(clusters),
        "cluster_sizes": {str(k): v for k, v in sorted(sizes.items())},
        "by_reason": dict(sorted(reasons.items())),
        "samples": samples,
    }


def _cluster_key(duplicate_of: pa.Array) -> pa.Array:
    """The cluster a removed row belongs to: the kept row's id, "?" when it is missing or empty."""
    known = pc.and_(pc.is_valid(duplicate_of), pc.not_equal(pc.fill_null(duplicate_of, ""), ""))
    return pc.if_else(known, duplicate_of, pa.scalar("?", pa.string()))


def _texts(examples: pa.Table | Tables, ids: list[str]) -> dict[str, str]:
    """A snippet of each row's text (its messages joined), for the ids found in `examples`."""
    if not ids:
        return {}
    wanted = pa.array(ids, pa.string())
    out: dict[str, str] = {}
    for table in as_tables(examples)(["id", "text", "messages", "chosen"]):
        found = table.filter(pc.is_in(table["id"], wanted))
        out.update((r["id"], snippet(r)) for r in found.to_pylist())
    return out


def snippet(row: dict[str, Any], limit: int = SNIPPET) -> str:
    """A row's text, role-prefixed and cut to `limit` characters, for showing as an example."""
    if row.get("text"):
        text = row["text"]
    else:
        turns = (row.get("messages") or []) + (row.get("chosen") or [])
        text = "\n".join(f"{m['role']}: {m.get('content') or ''}" for m in turns)
    return text if len(text) <= limit else text[: limit - 1] + "…"
