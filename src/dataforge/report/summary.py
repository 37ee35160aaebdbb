"""The summary report: `report.json` (every number, stable keys) and `report.md` (the headline, for CI)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc

from ..engine.cache import Entry
from ..recipe import LoadedRecipe
from ..rejects import count_by, location
from ..stages.base import Stage
from ..streams import Tables, as_tables
from .gates import describe, template_expected
from .mdkit import code, text

REPORT_VERSION = 1
EXAMPLES_PER_REASON = 3
EXCERPT_CHARS = 500  # characters of a removed row's raw text (or message) shown per example, in every report file
CUT_MARK = " … (cut)"


def _rows_by_source(tables: Tables, sources: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in tables(["source"]):
        for c in count_by(table, "source"):
            counts[c["source"]] = counts.get(c["source"], 0) + c["count"]
    return {s: counts.get(s, 0) for s in sources}


def stage_rows(stages: list[Stage], entries: dict[str, Entry], sources: list[str]) -> list[dict[str, Any]]:
    """Rows each stage passed on (per source for global stages) and rows it removed."""
    out = []
    for stage in stages:
        entry = entries[stage.name]
        stage_input = entry.as_input()
        row: dict[str, Any] = {"stage": stage.name, "kind": stage.kind, "source": stage.source}
        for name in entry.manifest["tables"]:
            if name == "signals":  # the quality stage's per-row signals: every row it read, not rows passed on
                continue
            if name == "rejects":
                row["removed"] = stage_input.num_rows(name)
            elif name.startswith("packed_"):  # packed rows mix sources; the target's packing stats count them
                continue
            elif stage.source is not None:
                row["out"] = stage_input.num_rows(name)
            else:
                key = f"{name}_by_source" if name != "examples" else "out_by_source"
                row[key] = _rows_by_source(Tables.parts(stage_input.parts(name)), sources)
        out.append(row)
    return out


EXAMPLE_COLUMNS = ["source", "file", "row", "line", "field", "message", "duplicate_of", "raw"]


def reject_groups(rejects: pa.Table | Tables) -> list[dict[str, Any]]:
    """Removed rows grouped by (stage, outcome, reason), each with a few examples and where they came from.

    One pass over the rejects, a piece at a time: counts are added up, and each group's first examples are
    taken from the pieces until it has EXAMPLES_PER_REASON."""
    keys = ("stage", "outcome", "reason")
    counts: dict[tuple, int] = {}
    examples: dict[tuple, list[dict[str, Any]]] = {}
    for table in as_tables(rejects)([*keys, *EXAMPLE_COLUMNS]):
        for g in count_by(table, *keys):
            key = tuple(g[k] for k in keys)
            counts[key] = counts.get(key, 0) + g["count"]
            have = examples.setdefault(key, [])
            if len(have) >= EXAMPLES_PER_REASON:
                continue
            # The same mask as over the whole table: a null key matches nothing, so its group shows no example.
            mask = pc.and_(
                pc.and_(pc.equal(table["stage"], g["stage"]), pc.equal(table["outcome"], g["outcome"])),
                pc.equal(table["reason"], g["reason"]),
            )
            sample = table.filter(mask).slice(0, EXAMPLES_PER_REASON - len(have))
            have += [_example(r) for r in sample.select(EXAMPLE_COLUMNS).to_pylist()]
    groups = [{**dict(zip(keys, key, strict=True)), "count": n} for key, n in counts.items()]
    groups.sort(key=lambda r: tuple(str(r[k]) for k in keys))  # count_by's order
    for g in groups:
        g["examples"] = examples[tuple(g[k] for k in keys)]
    order = {"rejected": 0, "filtered": 1, "deduplicated": 2, "downsampled": 3}
    return sorted(groups, key=lambda g: (order.get(g["outcome"], 9), -g["count"], g["stage"], g["reason"]))


def _example(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "where": location(r),
        "source": r["source"],
        "field": r["field"],
        "message": _snippet(r["message"]),
        "duplicate_of": r["duplicate_of"],
        "raw": _snippet(r["raw"]),
    }


def build_report(
    loaded: LoadedRecipe,
    stages: list[Stage],
    entries: dict[str, Entry],
    stage_stats: dict[str, dict[str, Any]],
    book: dict[str, Any],
    rejects: pa.Table | Tables,
    train: pa.Table | Tables,
    val: pa.Table | Tables,
    export_losses: dict[str, Any],
) -> dict[str, Any]:
    """Every number of the build summary, with stable keys (documented in the README). The tables are read a
    piece at a time (`streams.Tables`); whole tables in memory are taken too."""
    rejects, train, val = as_tables(rejects), as_tables(train), as_tables(val)
    sources = [s.name for s in loaded.recipe.sources]
    return {
        "report_version": REPORT_VERSION,
        "name": loaded.recipe.name,
        "rows": {"train": train.num_rows, "val": val.num_rows, "removed": rejects.num_rows},
        "ledger": book,
        "sources": [
            {
                "name": s,
                "format": stage_stats[f"read:{s}"]["format"],
                "files": stage_stats[f"read:{s}"]["files"],
                "unmodelled_fields": stage_stats[f"read:{s}"].get("unmodelled_fields", {}),
            }
            for s in sources
        ],
        "stages": stage_rows(stages, entries, sources),
        "removed_by_reason": reject_groups(rejects),
        "mix": stage_stats["mix"],
        "split": stage_stats["split"],
        "dedup": dedup_report(stage_stats["dedup"], stage_stats["split"]),
        "exports": export_losses,
        **({"quality": _quality(loaded, entries, stage_stats)} if loaded.recipe.quality is not None else {}),
    }


def _quality(loaded: LoadedRecipe, entries: dict[str, Entry], stage_stats: dict[str, dict[str, Any]]) -> dict:
    """The quality section, from each source's `quality:<source>` stage (README: Quality signals)."""
    from .quality import quality_report

    tables = {s.name: entries[f"quality:{s.name}"].as_input().parts("signals") for s in loaded.recipe.sources}
    return quality_report(loaded.recipe.quality, tables, stage_stats)


def dedup_report(dedup: dict[str, Any], split: dict[str, Any]) -> dict[str, Any]:
    """Exact and near deduplication and decontamination, from the dedup and split stages' statistics."""
    val = split["decontamination"]
    return {
        "exact": dedup["exact"],
        "near": dedup["near"],
        "decontamination": {
            "files": dedup["decontamination"].get("files", {}),
            "train_removed": dedup["decontamination"].get("removed", 0),
            "val_removed": val["val_removed"],
            "val_by_source": val.get("by_source", {}),
        },
    }


def render_markdown(report: dict[str, Any]) -> str:
    """The report's headline numbers as Markdown, short enough for a CI job summary."""
    book = report["ledger"]
    total = book["total"]
    lines = [
        f"# dataforge build {code(report['name'])}",
        "",
        *gate_lines(report.get("gates")),
        f"**{report['rows']['train']:,} train · {report['rows']['val']:,} val** from {total['in']:,} records; "
        f"{total['rejected']:,} rejected, {total['filtered']:,} filtered, {total['deduplicated']:,} duplicates, "
        f"{total['downsampled']:,} downsampled. "
        + ("Ledger balances." if total["balanced"] else "**Ledger does not balance.**"),
        "",
        "## Rows per source",
        "",
        "| source | format | in | rejected | filtered | duplicates | downsampled | train | val |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    formats = {s["name"]: s["format"] for s in report["sources"]}
    for name, r in source_order(report):
        lines.append(
            f"| {text(name)} | {text(formats[name])} | {r['in']:,} | {r['rejected']:,} | {r['filtered']:,} | "
            f"{r['deduplicated']:,} | {r['downsampled']:,} | {r['train']:,} | {r['val']:,} |"
        )
    lines.append(
        f"| **total** | | {total['in']:,} | {total['rejected']:,} | {total['filtered']:,} | "
        f"{total['deduplicated']:,} | {total['downsampled']:,} | {total['train']:,} | {total['val']:,} |"
    )
    if report["removed_by_reason"]:
        lines += [
            "",
            "## Removed rows by reason",
            "",
            "| stage | outcome | reason | rows | first example |",
            "|---|---|---|--:|---|",
        ]
        for g in report["removed_by_reason"]:
            ex = g["examples"][0] if g["examples"] else None
            shown = ""
            if ex:
                shown = code(ex["where"], cell=True)
                if ex["field"]:
                    shown += f" {code(ex['field'], cell=True)}"
                if ex["message"]:
                    shown += f": {_cell(ex['message'])}"
                if ex["duplicate_of"]:
                    shown += f" (duplicate of {code(ex['duplicate_of'], cell=True)})"
            lines.append(
                f"| {text(g['stage'])} | {text(g['outcome'])} | {text(g['reason'])} | {g['count']:,} | {shown} |"
            )
    if report.get("quality"):
        from .quality import render_quality_markdown

        lines += ["", *render_quality_markdown(report["quality"])][:-1]
    unmodelled = [(s["name"], path, n) for s in report["sources"] for path, n in s["unmodelled_fields"].items()]
    if unmodelled:
        lines += [
            "",
            "## Fields the formats do not model (values not carried)",
            "",
            "| source | field | values |",
            "|---|---|--:|",
        ]
        lines += [f"| {text(name)} | {code(path, cell=True)} | {n:,} |" for name, path, n in unmodelled]
    for name, stats in report.get("render", {}).items():
        lines += render_section(name, stats)
        share = report.get("tokens", {}).get(name)
        if share and share["tokens"]:
            lines += ["", f"Trained tokens: {share['trained']:,} of {share['tokens']:,} ({share['share']:.1%})."]
    for heading, key in (("What the exports could not carry", "losses"), ("What the exports changed", "transforms")):
        found = [
            f"- {code(name)} {text(split_name)}, {text(kind)} rows: {text(what)}: {n:,}"
            for name, export in report["exports"].items()
            for split_name, kinds in export.get(key, {}).items()
            for kind, counts in kinds.items()
            for what, n in counts.items()
        ]
        if found:
            lines += ["", f"## {heading}", "", *found]
    return "\n".join(lines) + "\n"


def source_order(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(source, ledger row) in the recipe's order: report.json sorts its keys, its `sources` list keeps the order."""
    book = report["ledger"]["sources"]
    return [(s["name"], book[s["name"]]) for s in report["sources"] if s["name"] in book]


def gate_lines(gates: dict[str, Any] | None) -> list[str]:
    """The failed gates first (they are why a CI run is red), then every result as a table."""
    if not gates or not gates["results"]:
        return []
    bad = [r for r in gates["results"] if not r["passed"]]
    lines: list[str] = []
    if bad:
        lines += [f"## ❌ {len(bad)} gate(s) failed", ""]
        lines += [f"- {text(describe(r))}" for r in bad]
    else:
        lines += [f"## ✅ All {len(gates['results'])} gate(s) pass"]
    lines += ["", "| result | gate | scope | measured |", "|---|---|---|---|"]
    lines += [
        f"| {'passed' if r['passed'] else '**FAILED**'} | {code(r['gate'], cell=True)} | {text(r['scope'])} | "
        f"{_cell(r['message'])} |"
        for r in gates["results"]
    ]
    return [*lines, ""]


def render_section(name: str, stats: dict[str, Any]) -> list[str]:
    """The Markdown lines for one render target: rows, lengths, overflow, template checks."""
    rows = stats["rows"]
    lengths = stats["lengths"]
    over = stats["overflow"]
    checks = stats["checks"]
    out = [
        "",
        f"## Rendered for {code(name)} ({text(stats['target']['tokenizer'])})",
        "",
        f"{rows['train']['rendered']:,} train and {rows['val']['rendered']:,} val rows rendered; "
        f"{rows['train']['dropped'] + rows['val']['dropped']:,} dropped. "
        f"Suggested max_length: {stats['suggested_max_length']['tokens']} "
        f"(keeps {stats['suggested_max_length']['keep_share']:.0%} of rows whole).",
        "",
        "| tokens | p50 | p90 | p99 | max |",
        "|---|--:|--:|--:|--:|",
    ]
    for part in ("total", "prompt", "trained"):
        s = lengths[part]
        if s.get("count"):
            out.append(f"| {part} | {s['p50']:,} | {s['p90']:,} | {s['p99']:,} | {s['max']:,} |")
    out += [
        "",
        f"Over max_length {over['max_length']:,}: {over['rows_over']:,} row(s); overflow policy "
        f"{code(over['policy'])} dropped {over['dropped']:,}"
        + (f" (e.g. {text(', '.join(over['ids'][:5]))})" if over["ids"] else "")
        + ".",
        "",
        f"![token lengths](../rendered/{quote(name)}/lengths.png)",
        *_axis_note(lengths, over["max_length"]),
        "",
        "Template checks: end-of-turn token "
        + (code(checks["end_of_turn_token"]) if checks["end_of_turn_token"] else "**none**")
        + ("; **ignores the system prompt**" if checks["ignores_system_prompt"] else "; honours the system prompt")
        + ("; has generation markers" if checks["has_generation_markers"] else "; no generation markers")
        + (
            f"; **{checks['row_notes']['round_trip_failure']} rows do not decode back to their text**"
            if checks["row_notes"].get("round_trip_failure")
            else "; rendered text round-trips through encode/decode"
        ),
    ]
    if stats.get("loss"):
        out += ["", *loss_lines(stats["loss"], checks["row_notes"]), ""]
    if stats.get("pack"):
        from ..pack import summary_lines

        out += ["", *summary_lines(stats["pack"]), ""]
    for note, n in checks["row_notes"].items():
        out.append(f"- {text(note)}: {n:,} row(s)")
    for reason, n in stats["dropped_by_reason"].items():
        out.append(f"- dropped, {text(reason)}: {n:,} row(s)")
    out += [f"- expected for this template (not failing): {text(e)}" for e in template_expected(stats, name)]
    return out


_ORDINALS = {"1": "1st", "2": "2nd", "3": "3rd", "4+": "4th and later"}


def loss_lines(loss: dict[str, Any], row_notes: dict[str, int]) -> list[str]:
    """The "Loss per turn" lines of a render target: its `train_on`, trained tokens per role, and a table of
    trained tokens per assistant-turn position (with the mean loss weight under `train_on: weighted`)."""
    mode = f"`train_on: {loss['train_on']}`" + (f" (`first_n: {loss['first_n']}`)" if loss.get("first_n") else "")
    roles = loss["by_role"]
    total = sum(roles.values())
    parts = [f"{role} {n:,} ({n / total:.1%})" for role, n in roles.items() if n] if total else ["none"]
    weighted = loss["train_on"] == "weighted"
    out = [
        "### Loss per turn",
        "",
        f"{mode}. Trained tokens by role: {', '.join(parts)}.",
        "",
        "| assistant turn | turns | trained turns | trained tokens | share |" + (" mean weight |" if weighted else ""),
        "|---|--:|--:|--:|--:|" + ("--:|" if weighted else ""),
    ]
    assistant = roles.get("assistant", 0)
    for bucket, cell in loss["by_turn"].items():
        share = f"{cell['tokens'] / assistant:.1%}" if assistant else "–"
        line = (
            f"| {_ORDINALS.get(bucket, bucket)} | {cell['turns']:,} | {cell['trained_turns']:,} | "
            f"{cell['tokens']:,} | {share} |"
        )
        if weighted:
            line += f" {cell['weight'] / cell['tokens']:.3f} |" if cell["tokens"] else " – |"
        out.append(line)
    ignored = row_notes.get("fractional_weight_ignored", 0)
    if ignored:
        out += [
            "",
            f"**{ignored:,} row(s) have a fractional loss weight (0 < w < 1 or w > 1) on a trained turn; under "
            f"{mode} it trains at full weight** — set `train_on: weighted` to scale those turns' loss by their weight.",
        ]
    return out


def _axis_note(lengths: dict[str, Any], max_length: int) -> list[str]:
    """A line under the length plot when max_length lies far beyond the data (the axis is scaled to the data)."""
    edges = (lengths.get("histogram") or {}).get("total", {}).get("edges") or [max_length]
    if max_length <= edges[-1]:
        return []
    return ["", f"The plot's axis ends at {edges[-1]:,} tokens, past the longest row; max_length {max_length:,} is "
            "marked at its right edge (→)."]  # fmt: skip


def _snippet(raw: str | None, limit: int = EXCERPT_CHARS) -> str | None:
    """The start of a removed record (or a long message) as it was read, to show beside its reason: at most
    `limit` characters, marked when cut. An unreadable row can be a whole file's worth of anything (a secret a
    link pointed at, a binary blob): the report shows an excerpt, never the row."""
    if raw is None:
        return None
    return raw if len(raw) <= limit else raw[:limit] + CUT_MARK


def _cell(value: str, limit: int = 120) -> str:
    """Data for a Markdown table cell: one line, at most `limit` characters, nothing read as HTML or Markdown."""
    return text(value, limit)
