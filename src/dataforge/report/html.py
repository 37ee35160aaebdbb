"""report.html: the build's report as one self-contained page, rendered from report.json alone.

No scripts, no external styles, fonts or images: plots are inline SVG, so the file opens offline, attaches
to a CI run as one artifact, and the same report.json always gives the same bytes.
"""

from __future__ import annotations

from html import escape
from typing import Any

from . import plots
from .content_html import content_sections, duplicates_section, rejects_section, samples_section
from .gates import describe
from .htmlkit import SECTIONS, Markup, figure, num, section, table
from .quality import quality_html
from .summary import source_order

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
main{max-width:1100px;margin:0 auto;padding:16px 24px 48px}
header{background:#24292f;color:#fff;padding:18px 24px}header h1{margin:0;font-size:22px}
header p{margin:6px 0 0;color:#d0d7de}
nav{background:#fff;border-bottom:1px solid #d0d7de;padding:8px 24px;font-size:13px}
nav a{margin-right:14px;color:#0969da;text-decoration:none}
section{background:#fff;border:1px solid #d0d7de;border-radius:6px;margin:16px 0;padding:4px 18px 14px}
h2{font-size:18px;border-bottom:1px solid #eaeef2;padding-bottom:6px}h3{font-size:15px;margin-bottom:6px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.n{text-align:right;font-variant-numeric:tabular-nums}
.fail{color:#cf222e;font-weight:600}.pass{color:#1a7f37}.muted{color:#656d76}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.badge.fail{background:#ffebe9;border:1px solid #ff8182}.badge.pass{background:#dafbe1;border:1px solid #4ac26b}
figure{margin:8px 0}figure svg{max-width:100%;height:auto}
pre.sample{white-space:pre-wrap;word-break:break-word;background:#f6f8fa;border:1px solid #d0d7de;padding:8px;
font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace}
.t{background:#dafbe1;color:#116329;border-bottom:2px solid #4ac26b}pre.sample .u{color:#656d76}
blockquote{margin:4px 0;padding:4px 10px;border-left:3px solid #d0d7de;color:#57606a;white-space:pre-wrap;
font-size:12px}
details{margin:4px 0}summary{cursor:pointer}
"""


def render_html(report: dict[str, Any]) -> str:
    """The whole page for one report.json."""
    total = report["ledger"]["total"]
    gates = report.get("gates") or {"results": [], "passed": True}
    verdict = (
        '<span class="badge pass">gates pass</span>'
        if gates["passed"]
        else f'<span class="badge fail">{sum(not r["passed"] for r in gates["results"])} gate(s) failed</span>'
    )
    headline = (
        f"{total['train']:,} train · {total['val']:,} val from {total['in']:,} records; {total['rejected']:,} "
        f"rejected, {total['filtered']:,} filtered, {total['deduplicated']:,} duplicates, "
        f"{total['downsampled']:,} downsampled. "
        + ("Ledger balances." if total["balanced"] else "LEDGER DOES NOT BALANCE.")
    )
    body = [
        gates_section(gates),
        overview_section(report),
        *content_sections(report),
        lengths_section(report),
        duplicates_section(report),
        rejects_section(report),
        quality_html(report),  # only with a `quality:` section
        templates_section(report),
        samples_section(report),
    ]
    nav = "".join(f'<a href="#{key}">{escape(title)}</a>' for key, title in SECTIONS)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>dataforge report: {escape(report['name'])}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>dataforge build <code>{escape(report['name'])}</code> {verdict}</h1>"
        f"<p>{escape(headline)}</p></header><nav>{nav}</nav><main>{''.join(body)}</main></body></html>\n"
    )


def gates_section(gates: dict[str, Any]) -> str:
    """Every gate result, failed first, with a one-line verdict."""
    if not gates["results"]:
        return section("gates", '<p class="muted">No gates are set (add a <code>checks:</code> section).</p>')
    rows = [
        [
            Markup('<span class="fail">FAILED</span>' if not r["passed"] else '<span class="pass">passed</span>'),
            r["gate"],
            r["scope"],
            r["message"],
        ]
        for r in gates["results"]
    ]
    failed = [describe(r) for r in gates["results"] if not r["passed"]]
    lead = (
        f'<p class="fail">Failed: {escape("; ".join(failed))}</p>'
        if failed
        else '<p class="pass">Every gate passes.</p>'
    )
    return section("gates", lead + table(["result", "gate", "scope", "measured"], rows))


def overview_section(report: dict[str, Any]) -> str:
    """The ledger as a flow and a table per source, and the rows each stage passed on and removed."""
    book = report["ledger"]
    cols = ["in", "rejected", "filtered", "deduplicated", "downsampled", "train", "val"]
    formats = {s["name"]: s["format"] for s in report["sources"]}
    rows = [[name, formats.get(name, ""), *(r[c] for c in cols)] for name, r in source_order(report)]
    rows.append(["total", "", *(book["total"][c] for c in cols)])
    numeric = set(range(2, 2 + len(cols)))
    stage_rows = []
    for s in report["stages"]:
        if "out" in s:
            passed = f"{s['out']:,}"
        else:
            parts = [(k.removesuffix("_by_source"), v) for k, v in s.items() if k.endswith("_by_source")]
            passed = "; ".join(f"{k}: " + ", ".join(f"{src} {n:,}" for src, n in v.items()) for k, v in parts)
        stage_rows.append([s["stage"], s["kind"], s["source"] or "all", passed, s.get("removed", 0)])
    return section(
        "overview",
        "<h3>Where every row went (the ledger)</h3>"
        + figure(
            plots.ledger_flow(dict(source_order(report)), book["total"]), "rows read per source, by where they ended up"
        )
        + table(["source", "format", *cols], rows, numeric)
        + "<h3>Rows per stage</h3>"
        + table(["stage", "kind", "source", "rows passed on", "removed"], stage_rows, {4}),
    )


def lengths_section(report: dict[str, Any]) -> str:
    """Per render target: the length histogram with max_length, percentiles, overflow, trained-token share."""
    render = report.get("render") or {}
    if not render:
        return section("lengths", '<p class="muted">No render targets (add <code>render:</code>).</p>')
    parts = []
    for name, stats in sorted(render.items()):
        over = stats["overflow"]
        lengths = stats["lengths"]
        share = (report.get("tokens") or {}).get(name, {})
        parts.append(f"<h3>{escape(name)} <span class='muted'>({escape(stats['target']['tokenizer'])})</span></h3>")
        parts.append(
            figure(
                plots.length_histogram(lengths, over["max_length"], over["rows_over"]),
                f"{name}: tokens per row; " + _max_length_note(lengths, over["max_length"]),
            )
        )
        pct = ["p50", "p90", "p99", "max", "mean", "count"]
        rows = [[part, *(lengths[part].get(k) for k in pct)] for part in ("total", "prompt", "trained")]
        rows += [
            [f"total · {src}", *(s["total"].get(k) for k in pct)] for src, s in sorted(lengths["per_source"].items())
        ]
        parts.append(table(["tokens", *pct], rows, set(range(1, 7))))
        shown = ", ".join(over["ids"][:10])
        parts.append(
            f"<p>Over max_length {over['max_length']:,}: <b>{over['rows_over']:,}</b> row(s) "
            f"({over['kept_over']:,} kept, {over['dropped']:,} dropped by overflow policy "
            f"<code>{escape(over['policy'])}</code>){': ' + escape(shown) if shown else ''}. Suggested max_length: "
            f"{num(stats['suggested_max_length']['tokens'])} (keeps {stats['suggested_max_length']['keep_share']:.0%}"
            " of rows whole).</p>"
        )
        if stats.get("pack"):
            parts.append(_packing_html(stats["pack"]))
        if share:
            rows = [["all", share["rows"], share["tokens"], share["trained"], share["share"]]]
            rows += [[s, v["rows"], v["tokens"], v["trained"], v["share"]] for s, v in share["per_source"].items()]
            parts.append("<h3>Trained-token share</h3>")
            parts.append(table(["source", "rows", "tokens", "trained tokens", "share trained"], rows, {1, 2, 3, 4}))
    return section("lengths", "".join(parts))


def _packing_html(pack: dict[str, Any]) -> str:
    """A packing target's figures: bins, efficiency, trained tokens before and after, the bin-fill histogram."""
    trained = pack["trained_tokens"]
    rows = [
        ["strategy", pack["strategy"]],
        ["max_length", pack["max_length"]],
        ["rendered rows packed", pack["rows_packed"]],
        ["packed rows", pack["bins"]],
        ["rows per packed row", pack["rows_per_bin"]],
        ["efficiency (tokens ÷ capacity)", f"{pack['efficiency']:.2%}"],
        ["rows too long to pack (rejected)", pack["rows_too_long"]],
        ["trained tokens unpacked / packed", f"{trained['unpacked']:,} / {trained['packed']:,}"],
        ["trained tokens balance", "yes" if trained["balanced"] else "NO: packing lost or added trained tokens"],
    ]
    counts = pack["fill_histogram"]["counts"]
    fill = [[f"{10 * i}–{10 * (i + 1)}%", c] for i, c in enumerate(counts)]
    return "<h3>Packing</h3>" + table(["", ""], rows, set()) + table(["bin fill", "packed rows"], fill, {1})


def _max_length_note(lengths: dict[str, Any], max_length: int) -> str:
    """How the length histogram shows max_length: a dashed line, or a mark at the edge when it lies far beyond."""
    edge = lengths["histogram"]["total"]["edges"][-1]
    if max_length <= edge:
        return f"dashed line: max_length {max_length:,}"
    return f"max_length {max_length:,} lies far beyond the longest row (axis up to {edge:,}), marked at the right edge"


def templates_section(report: dict[str, Any]) -> str:
    """Per render target: what the template checks found, and the problems that fail the template gate."""
    from .gates import template_expected, template_problems

    render = report.get("render") or {}
    if not render:
        return section("templates", '<p class="muted">No render targets.</p>')
    parts = []
    for name, stats in sorted(render.items()):
        checks = stats["checks"]
        problems = template_problems(stats, name)
        expected = template_expected(stats, name)
        rows = [
            ["end-of-turn token", checks.get("end_of_turn_token") or "none"],
            ["honours the system prompt", "no" if checks.get("ignores_system_prompt") else "yes"],
            [
                "history renders as a prefix",
                {True: "yes", False: "no"}.get(checks.get("history_renders_as_prefix"), "–"),
            ],
            ["generation markers", "yes" if checks.get("has_generation_markers") else "no"],
            ["token encoder", f"{checks.get('token_encoder', '–')} ({checks.get('token_encoder_why', '')})"],
            ["template digest", stats["target"].get("template_digest") or "–"],
        ]
        rows += [[f"row note: {note}", f"{n:,} row(s)"] for note, n in (checks.get("row_notes") or {}).items()]
        rows += [[f"dropped: {reason}", f"{n:,} row(s)"] for reason, n in stats["dropped_by_reason"].items()]
        loss = stats.get("loss")
        if loss:
            rows.append(["train_on", loss["train_on"] + (f" (first_n: {loss['first_n']})" if loss["first_n"] else "")])
            rows += [[f"trained tokens, {role}", f"{n:,}"] for role, n in loss["by_role"].items()]
            rows += [
                [
                    f"assistant turn {bucket}",
                    f"{c['trained_turns']:,} of {c['turns']:,} trained, {c['tokens']:,} tokens",
                ]
                for bucket, c in loss["by_turn"].items()
            ]
        verdict = (
            f'<p class="fail">Problems: {escape("; ".join(problems))}</p>'
            if problems
            else '<p class="pass">Every template check passes.</p>'
        )
        verdict += "".join(
            f'<p class="muted">Expected for this template (not failing): {escape(e)}</p>' for e in expected
        )
        parts.append(f"<h3>{escape(name)}</h3>{verdict}{table(['check', 'result'], rows)}")
    return section("templates", "".join(parts))
