"""The report's quality section: per signal its distribution and threshold, rows removed per source, the
language mix per source and role, and PII found — from the `quality:<source>` stages' `signals` tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

from ..quality.policy import threshold_rules
from ..streams import Tables
from .mdkit import code, text

# Shown even without a threshold: the signals people look at first.
DEFAULT_SIGNALS: tuple[tuple[str | None, str], ...] = (
    ("assistant", "dup_line_share"),
    ("assistant", "top_2gram_share"),
    ("assistant", "dup_5gram_share"),
    ("assistant", "lrs_share"),
    ("assistant", "non_alpha_share"),
    ("assistant", "bad_char_share"),
    (None, "answer_question_ratio"),
)
BINS = 20


def _distribution(values: np.ndarray) -> dict[str, Any]:
    if len(values) == 0:
        return {"rows": 0}
    hi = float(values.max())
    edges = np.linspace(0.0, hi if hi > 0 else 1.0, BINS + 1)
    counts, _ = np.histogram(values, bins=edges)
    q = np.quantile(values, [0.5, 0.9, 0.99])
    return {
        "rows": int(len(values)),
        "mean": round(float(values.mean()), 4),
        "p50": round(float(q[0]), 4),
        "p90": round(float(q[1]), 4),
        "p99": round(float(q[2]), 4),
        "max": round(hi, 4),
        "histogram": {"edges": [round(float(e), 4) for e in edges], "counts": counts.tolist()},
    }


def quality_report(
    policy: Any, signal_tables: dict[str, Path | list[Path]], stage_stats: dict[str, dict[str, Any]]
) -> dict:
    """The quality section of report.json: `signal_tables` maps each source to its signals.parquet (or its parts).

    Read a part at a time, two columns: per signal its values (an id-level float array, for exact percentiles)
    and the rows each source removed for it."""
    tables = {
        source: Tables.parts(path if isinstance(path, list) else [path]) for source, path in signal_tables.items()
    }
    rules = threshold_rules(policy)
    wanted = list(dict.fromkeys([*((r.role, r.signal) for r in rules), *DEFAULT_SIGNALS]))
    limits_of = {key: [{"op": r.op, "limit": r.limit} for r in rules if (r.role, r.signal) == key] for key in wanted}
    values: dict[tuple[str | None, str], list[np.ndarray]] = {key: [] for key in wanted}
    removed: dict[tuple[str | None, str], dict[str, int]] = {key: {} for key in wanted}
    for source, parts in tables.items():
        for key in wanted:
            removed[key][source] = 0
        for table in parts(["quality", "reason"]):
            for role, signal in wanted:
                path = [role, signal] if role else [signal]
                column = pc.struct_field(table["quality"], path)
                numbers = column.filter(pc.is_valid(column)).to_numpy(zero_copy_only=False).astype(np.float64)
                values[(role, signal)].append(numbers)
                if limits_of[(role, signal)]:
                    removed[(role, signal)][source] += int(pc.sum(pc.equal(table["reason"], signal)).as_py() or 0)
    signals = []
    for role, signal in wanted:
        found = values[(role, signal)]
        numbers = np.concatenate(found) if found else np.array([], dtype=np.float64)
        signals.append(
            {
                "signal": signal,
                "role": role,
                "limits": limits_of[(role, signal)],
                "removed": removed[(role, signal)],
                **_distribution(numbers),
            }
        )
    sources = {}
    for source in tables:
        stats = stage_stats.get(f"quality:{source}", {})
        sources[source] = {
            "rows": tables[source].num_rows,
            "filtered": stats.get("filtered", 0),
            "removed": stats.get("removed", {}),
            "pii_rows": stats.get("pii_rows", 0),
            "redacted": stats.get("redacted", 0),
            "lang": stats.get("lang", {}),
        }
    rows = sum(s["rows"] for s in sources.values())
    pii_rows = sum(s["pii_rows"] for s in sources.values())
    return {
        "pii": policy.pii,
        "rows": rows,
        "pii_rows": pii_rows,
        "pii_rate": round(pii_rows / rows, 4) if rows else 0.0,
        "sources": sources,
        "signals": signals,
    }


def _limits(limits: list[dict[str, Any]]) -> str:
    return ", ".join(f"{d['op']} {d['limit']:g}" for d in limits) or "–"


def render_quality_markdown(quality: dict[str, Any]) -> list[str]:
    """The quality section of report.md."""
    lines = [
        "## Quality signals",
        "",
        f"PII (`{quality['pii']}`): found in {quality['pii_rows']:,} of {quality['rows']:,} rows "
        f"({quality['pii_rate']:.2%}).",
        "",
        "| signal | role | p50 | p90 | p99 | max | threshold | removed |",
        "|---|---|--:|--:|--:|--:|---|--:|",
    ]
    for s in quality["signals"]:
        if not s.get("rows"):
            continue
        lines.append(
            f"| {code(s['signal'])} | {s['role'] or 'row'} | {s['p50']:.3g} | {s['p90']:.3g} | {s['p99']:.3g} | "
            f"{s['max']:.3g} | {_limits(s['limits'])} | {sum(s['removed'].values()):,} |"
        )
    lines += [
        "",
        "| source | rows | filtered | by reason | assistant languages | user languages |",
        "|---|--:|--:|---|---|---|",
    ]
    for name, s in quality["sources"].items():
        reasons = ", ".join(f"{code(r)} {n}" for r, n in s["removed"].items()) or "–"
        mixes = [", ".join(f"{lang} {n}" for lang, n in list(s["lang"].get(role, {}).items())[:5]) or "–"
                 for role in ("assistant", "user")]  # fmt: skip
        lines.append(f"| {text(name)} | {s['rows']:,} | {s['filtered']:,} | {reasons} | {mixes[0]} | {mixes[1]} |")
    return [*lines, ""]


QUALITY_GATES = ("max_pii_rate", "min_lang_share")


def _gate(gate: str, scope: str, limit: Any, value: Any, passed: bool, message: str) -> dict[str, Any]:
    return {"gate": gate, "scope": scope, "limit": limit, "value": value, "passed": passed, "message": message}


def lang_shares(quality: dict[str, Any], role: str = "assistant") -> dict[str, float]:
    """Share of each language among the kept rows that have text of `role`, over all sources."""
    counts: dict[str, int] = {}
    for source in quality["sources"].values():
        for code_, n in source["lang"].get(role, {}).items():
            counts[code_] = counts.get(code_, 0) + n
    total = sum(counts.values())
    return {c: round(n / total, 4) for c, n in sorted(counts.items(), key=lambda kv: -kv[1])} if total else {}


def quality_gates(report: dict[str, Any], checks: dict[str, Any]) -> list[dict[str, Any]]:
    """`max_pii_rate` (rows with PII / rows reaching the quality stage, in total and per source) and
    `min_lang_share` (language → least share of the kept rows' assistant turns); both fail without `quality:`."""
    out: list[dict[str, Any]] = []
    quality = report.get("quality")
    for gate in QUALITY_GATES:
        limit = checks.get(gate)
        if limit is not None and not quality:
            out.append(_gate(gate, "total", limit, None, False, "the build has no `quality:` section"))
    if not quality:
        return out
    limit = checks.get("max_pii_rate")
    if limit is not None:
        scopes = {"total": (quality["pii_rows"], quality["rows"])}
        scopes |= {name: (s["pii_rows"], s["rows"]) for name, s in sorted(quality["sources"].items())}
        for scope, (found, rows) in scopes.items():
            rate = round(found / rows, 4) if rows else 0.0
            msg = f"PII in {found:,} of {rows:,} rows, {rate:.2%} (limit {limit:.2%})"
            out.append(_gate("max_pii_rate", scope, limit, rate, rate <= limit, msg))
    wanted = checks.get("min_lang_share")
    if wanted:
        shares = lang_shares(quality)
        for lang, least in sorted(wanted.items()):
            got = shares.get(lang, 0.0)
            msg = f"{got:.2%} of assistant turns in {lang} (least {least:.2%})"
            out.append(_gate("min_lang_share", lang, least, got, got >= least, msg))
    return out


def _diff_row(what: str, old: Any, new: Any, kind: str) -> dict[str, Any]:
    change = round(new - old, 4) if isinstance(old, (int, float)) and isinstance(new, (int, float)) else None
    return {"section": "quality", "what": what, "kind": kind, "old": old, "new": new, "change": change}


def quality_diff(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """`dataforge diff` rows for the quality section: PII rate, rows removed per signal, assistant language mix."""
    oq, nq = old.get("quality") or {}, new.get("quality") or {}
    if not oq and not nq:
        return []
    rows = [_diff_row("PII rate", oq.get("pii_rate"), nq.get("pii_rate"), "rate")]

    def removed(q: dict[str, Any]) -> dict[str, int]:
        out: dict[str, int] = {}
        for source in (q.get("sources") or {}).values():
            for reason, n in source.get("removed", {}).items():
                out[reason] = out.get(reason, 0) + n
        return out

    o_removed, n_removed = removed(oq), removed(nq)
    for reason in dict.fromkeys([*sorted(o_removed), *sorted(n_removed)]):
        rows.append(_diff_row(f"removed by {reason}", o_removed.get(reason, 0), n_removed.get(reason, 0), "count"))
    o_lang = lang_shares(oq) if oq else {}
    n_lang = lang_shares(nq) if nq else {}
    for lang in dict.fromkeys([*o_lang, *n_lang]):
        rows.append(_diff_row(f"assistant {lang} share", o_lang.get(lang, 0.0), n_lang.get(lang, 0.0), "rate"))
    return rows


def signal_histogram(signal: dict[str, Any]) -> str:
    """One signal's distribution (rows per bin) with a red line at each threshold, as inline SVG."""
    from . import plots

    def draw(ax) -> None:
        h = signal["histogram"]
        ax.stairs(h["counts"], np.array(h["edges"]), fill=True, color=plots.COLOURS["total"], alpha=0.8)
        for limit in signal["limits"]:
            ax.axvline(limit["limit"], color="#c44e52", linewidth=1.5)
            ax.annotate(
                f"{limit['op']} {limit['limit']:g}",
                (limit["limit"], 1),
                xycoords=("data", "axes fraction"),
                xytext=(4, -12),
                textcoords="offset points",
                color="#c44e52",
                fontsize=8,
            )
        ax.set_xlabel(f"{signal['role'] or 'row'} {signal['signal']}")
        ax.set_ylabel("rows")

    return plots._draw(draw, 4, 2.2)


def quality_html(report: dict[str, Any]) -> str:
    """The report.html section for the quality signals (empty without a `quality:` section)."""
    from html import escape

    from .htmlkit import figure, table

    quality = report.get("quality")
    if not quality:
        return ""
    parts = [
        f"<p>PII (<code>{escape(quality['pii'])}</code>): found in {quality['pii_rows']:,} of {quality['rows']:,} "
        f"rows ({quality['pii_rate']:.2%}).</p>"
    ]
    rows = [
        [s["signal"], s["role"] or "row", s["p50"], s["p90"], s["p99"], s["max"], _limits(s["limits"]),
         sum(s["removed"].values())]
        for s in quality["signals"]
        if s.get("rows")
    ]  # fmt: skip
    parts.append(table(["signal", "role", "p50", "p90", "p99", "max", "threshold", "removed"], rows, {2, 3, 4, 5, 7}))
    for s in quality["signals"]:
        if s.get("rows"):
            parts.append(figure(signal_histogram(s), f"{s['role'] or 'row'} {s['signal']}: rows per value"))
    mix = []
    for name, s in quality["sources"].items():
        for role in ("assistant", "user"):
            langs = ", ".join(f"{lang} {n:,}" for lang, n in s["lang"].get(role, {}).items()) or "–"
            mix.append([name, role, langs])
    parts.append("<h3>Language mix of the kept rows</h3>")
    parts.append(table(["source", "role", "languages (rows)"], mix))
    removed = [[name, r, n] for name, s in quality["sources"].items() for r, n in s["removed"].items()]
    if removed:
        parts.append("<h3>Removed per source</h3>")
        parts.append(table(["source", "reason", "rows"], removed, {2}))
    return f'<section id="quality"><h2>Quality signals</h2>{"".join(parts)}</section>'
