"""report.html sections about the rows themselves: kinds, turns, roles, tools, duplicates, rejects, samples."""

from __future__ import annotations

from html import escape
from typing import Any

from . import plots
from .htmlkit import Markup, figure, section, table

STATS = ("count", "mean", "p50", "p90", "p99", "max")


def content_sections(report: dict[str, Any]) -> list[str]:
    """Formats and kinds; turns and roles; tool calls and reasoning."""
    content = report.get("content") or {}
    formats = []
    for s in report["sources"]:
        files = ", ".join(f"{f['file']} ({f['records']:,})" for f in s["files"])
        kinds = (content.get("kinds_by_source") or {}).get(s["name"], {})
        formats.append([s["name"], s["format"], files, ", ".join(f"{k} {n:,}" for k, n in kinds.items()) or "–"])
    unmodelled = [[s["name"], p, n] for s in report["sources"] for p, n in s["unmodelled_fields"].items()]
    body = table(["source", "format", "files (records)", "kinds in train + val"], formats)
    body += figure(plots.bars(content.get("kinds", {}), "kind"), "rows per kind (train + val)")
    if unmodelled:
        body += "<h3>Fields the formats do not model</h3>" + table(["source", "field", "values"], unmodelled, {2})
    turns = content.get("turns") or {"count": 0, "histogram": {}}
    conv = figure(plots.bars(turns["histogram"], "assistant turns per conversation"), "conversations by turns")
    conv += table(["assistant turns", *STATS], [["per row", *(turns.get(k) for k in STATS)]], set(range(1, 7)))
    roles = content.get("roles", {})
    conv += figure(plots.bars(roles, "role", "messages", "#55a868"), "messages per role (train + val)")
    conv += f"<p>{content.get('rows_with_system', 0):,} of {content.get('rows', 0):,} rows have a system prompt.</p>"
    return [section("formats", body), section("conversations", conv), _tools(content)]


def _tools(content: dict[str, Any]) -> str:
    calls = content.get("tool_calls") or {}
    reasoning = content.get("reasoning") or {}
    rows = [
        ["rows that declare tools", calls.get("rows_with_tools", 0)],
        ["rows with tool calls", calls.get("rows_with_calls", 0)],
        ["assistant turns with tool calls", calls.get("turns_with_calls", 0)],
        ["tool calls", calls.get("calls", 0)],
        ["tool results (tool messages)", calls.get("tool_results", 0)],
        ["rows with reasoning", reasoning.get("rows", 0)],
        ["turns with a reasoning field", reasoning.get("turns", 0)],
        ["turns with inline <think>", reasoning.get("inline_turns", 0)],
    ]
    body = table(["of train + val", "count"], rows, {1})
    if not calls.get("calls") and not reasoning.get("rows"):
        body += '<p class="muted">No row of this build calls a tool or carries reasoning.</p>'
    chars = reasoning.get("chars") or {}
    if chars.get("count"):
        body += "<h3>Reasoning length (characters)</h3>"
        body += table(list(STATS), [[chars.get(k) for k in STATS]], set(range(6)))
    per_turn = calls.get("calls_per_turn") or {}
    if per_turn.get("count"):
        body += "<h3>Calls per calling turn</h3>" + table(
            list(STATS), [[per_turn.get(k) for k in STATS]], set(range(6))
        )
    if calls.get("by_name"):
        body += figure(plots.bars(calls["by_name"], "tool", "calls", "#8172b3"), "calls per tool name")
    return section("tools", body)


def _files(files: list[str] | dict[str, Any] | None) -> str:
    """Decontamination files: a list of paths, or path → rows removed."""
    if isinstance(files, dict):
        return ", ".join(f"{path} ({n})" for path, n in files.items())
    return ", ".join(files or [])


def _similarity(value: float | None) -> str:
    """Estimated Jaccard similarity to the kept row, as 0.00–1.00 (`–` for the kept row itself)."""
    return "–" if value is None else f"{value:.2f}"


def _quote(text: str | None) -> str:
    return f"<blockquote>{escape(text)}</blockquote>" if text else ""


def duplicates_section(report: dict[str, Any]) -> str:
    """Exact duplicate clusters (from the rejects table) and, when the build has them, near-duplicate ones."""
    dups = report.get("duplicates") or {"removed": 0, "clusters": 0, "cluster_sizes": {}, "samples": []}
    parts = [
        f"<p><b>{dups['removed']:,}</b> row(s) removed as duplicates in <b>{dups['clusters']:,}</b> cluster(s) "
        f"(a cluster = the kept row and the rows removed as its copies)"
        + "".join(f"; {reason}: {n:,}" for reason, n in (dups.get("by_reason") or {}).items())
        + ".</p>"
    ]
    if dups["cluster_sizes"]:
        parts.append(
            figure(plots.bars(dups["cluster_sizes"], "rows per cluster", "clusters", "#937860"), "cluster sizes")
        )
    for sample in dups["samples"]:
        members = [
            [m["id"], m["source"], "kept" if m["kept"] else f"removed ({m['reason']})", m["where"] or "in train/val"]
            for m in sample["members"]
        ]
        parts.append(
            f"<details open><summary>cluster of <code>{escape(sample['kept'])}</code>: {len(members)} rows</summary>"
            f"{_quote(sample['text'])}{table(['id', 'source', 'outcome', 'where'], members)}</details>"
        )
    near = (report.get("dedup") or {}).get("near") or {}
    if near.get("enabled"):
        parts.append(
            f"<h3>Near duplicates (MinHash, threshold {near.get('threshold')})</h3><p>{near.get('removed', 0):,} "
            f"removed in {near.get('clusters', 0):,} cluster(s); "
            f"{near.get('cross_source_clusters', 0):,} span sources.</p>"
        )
        by_source = [
            [s, v.get("rows"), v.get("removed"), v.get("rate")] for s, v in (near.get("by_source") or {}).items()
        ]
        if by_source:
            parts.append(table(["source", "rows", "removed", "rate"], by_source, {1, 2, 3}))
        for sample in near.get("samples") or []:
            rows = [
                [m.get("id"), m.get("source"), "kept" if m.get("kept") else "removed", _similarity(m.get("similarity")),
                 Markup(_quote(m.get("text")))]
                for m in sample.get("members") or []
            ]  # fmt: skip
            parts.append(
                f"<details><summary>near-duplicate cluster {escape(str(sample.get('cluster')))}</summary>"
                f"{table(['id', 'source', 'outcome', 'similarity', 'text'], rows, {3})}</details>"
            )
    decon = (report.get("dedup") or {}).get("decontamination") or {}
    if decon:
        parts.append(
            f"<p>Decontamination: {decon.get('val_removed', 0):,} val and {decon.get('train_removed', 0):,} train "
            f"row(s) removed against {escape(_files(decon.get('files'))) or 'no eval files'}.</p>"
        )
    return section("duplicates", "".join(parts))


def rejects_section(report: dict[str, Any]) -> str:
    """Removed rows grouped by stage, outcome and reason, each with examples and where they came from."""
    groups = report["removed_by_reason"]
    if not groups:
        return section("rejects", "<p>No row was removed.</p>")
    summary = table(
        ["stage", "outcome", "reason", "rows"],
        [[g["stage"], g["outcome"], g["reason"], g["count"]] for g in groups],
        {3},
    )
    parts = [summary]
    for g in groups:
        rows = [
            [
                Markup(f"<code>{escape(ex['where'])}</code>"),
                ex["source"],
                ex["field"] or "",
                (ex["message"] or "") + (f" (duplicate of {ex['duplicate_of']})" if ex["duplicate_of"] else ""),
                Markup(_quote(ex.get("raw"))),
            ]
            for ex in g["examples"]
        ]
        parts.append(
            f"<details><summary><b>{escape(g['reason'])}</b> ({escape(g['stage'])}, {escape(g['outcome'])}): "
            f"{g['count']:,} row(s)</summary>{table(['where', 'source', 'field', 'message', 'record'], rows)}</details>"
        )
    return section("rejects", "".join(parts))


def samples_section(report: dict[str, Any]) -> str:
    """A few rendered rows per target with the trained tokens highlighted."""
    samples = report.get("samples") or {}
    if not any(samples.values()):
        return section("samples", '<p class="muted">No rendered rows to show.</p>')
    parts = ['<p>Trained tokens (labels ≠ -100) are <span class="t">highlighted</span>; the rest is context.</p>']
    for target, rows in sorted(samples.items()):
        for r in rows:
            spans = "".join(
                f'<span class="{"t" if s["trained"] else "u"}">{escape(s["text"])}</span>' for s in r["segments"]
            )
            cut = f", first {r['shown_tokens']} shown" if r["shown_tokens"] < r["n_tokens"] else ""
            parts.append(
                f"<h3>{escape(target)} · <code>{escape(r['id'])}</code> <span class='muted'>({escape(r['kind'])}, "
                f"{r['n_tokens']:,} tokens, {r['n_trained']:,} trained{cut})</span></h3>"
                f'<pre class="sample">{spans}</pre>'
            )
    return section("samples", "".join(parts))
