"""Quality gates: the recipe's `checks:` evaluated against a build's report.json.

The measured values (`metrics`) are derived from the report's own numbers, so `dataforge check` re-evaluates
a finished build exactly as `dataforge build` did, or against other limits, without rebuilding anything.
"""

from __future__ import annotations

from typing import Any

# Row notes of a render target that mean its template cannot be trusted (see render/engine.py).
FAILING_NOTES = ("round_trip_failure", "generation_markers_disagree", "prefix_unstable_history")
# What to do about each template problem: the gate's failure line says it (`{target}` is the target's name).
ADVICE = {
    "no end-of-turn token": "give render target {target!r} a `chat_template:` that ends each turn with a special token",
    "ignores the system prompt": "use a template that renders system messages, or drop the rows' system prompts",
    "round_trip_failure": "the tokenizer does not decode its tokens back to the text: use the model's own tokenizer",
    "generation_markers_disagree": "fix or remove the template's {{% generation %}} markers",
    "prefix_unstable_history": "set `train_on: last` on render target {target!r} to train only the last turn",
}
GATE_ORDER = (
    "min_rows",
    "max_reject_rate",
    "max_duplicate_rate",
    "max_overflow_rate",
    "min_trained_token_share",
    "min_packing_efficiency",
    "max_length_p99",
    "require_template_checks",
    "max_pii_rate",
    "min_lang_share",
)


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def duplicates_removed(report: dict[str, Any]) -> int:
    """Rows removed as duplicates: exact + near from the `dedup` section when the build has one, else the
    ledger's `deduplicated` count (which is the same rows, counted by the rejects table)."""
    dedup = report.get("dedup")
    if isinstance(dedup, dict):
        near = dedup.get("near") or {}
        return int((dedup.get("exact") or {}).get("removed", 0)) + int(near.get("removed", 0) if near else 0)
    return int(report["ledger"]["total"]["deduplicated"])


def template_problems(stats: dict[str, Any], target: str | None = None) -> list[str]:
    """What is wrong with a render target's chat template, from its checks (empty when nothing is).

    With `target` (its name), each problem ends with what to do about it. What the template does by design
    (`template_expected`) is not a problem.
    """
    checks = stats["checks"]
    problems = []
    if not checks.get("end_of_turn_token"):
        problems.append("no end-of-turn token")
    if checks.get("ignores_system_prompt"):
        problems.append("ignores the system prompt")
    notes = checks.get("row_notes") or {}
    by_design = _history_by_design(checks)
    problems += [
        f"{note}: {notes[note]} row(s)"
        for note in FAILING_NOTES
        if notes.get(note) and not (by_design and note == "prefix_unstable_history")
    ]
    if target is None:
        return problems
    return [f"{p} ({_advice(p, target)})" for p in problems]


def _history_by_design(checks: dict[str, Any]) -> bool:
    """Whether the template itself renders history unlike the latest turn (its probe says so): then rows noted
    `prefix_unstable_history` show that property, not a fault of the rows (Qwen3 drops earlier turns'
    reasoning, Phi-3 closes the last turn differently)."""
    return checks.get("history_renders_as_prefix") is False


def _advice(problem: str, target: str) -> str:
    key = problem.split(":", 1)[0]
    return ADVICE.get(key, "see the template checks in report.html").format(target=target)


def template_expected(stats: dict[str, Any], target: str) -> list[str]:
    """What the template does by design that a check notes, with what to do when it matters: reported beside
    the template gate, which does not fail on it."""
    checks = stats["checks"]
    if not _history_by_design(checks):
        return []
    n = (checks.get("row_notes") or {}).get("prefix_unstable_history", 0)
    rows = f"; {n} row(s) with several trained turns are trained on turns rendered as history" if n else ""
    return [
        "history renders unlike the latest turn, by the template's design (e.g. Qwen3 drops earlier turns' "
        f"reasoning){rows} (prefix_unstable_history): set `train_on: last` on render target {target!r} to train "
        "only the turn rendered as at inference"
    ]


def metrics(report: dict[str, Any]) -> dict[str, Any]:
    """Every value a gate compares, from the report's numbers (stable keys; stored in report.json too)."""
    book = report["ledger"]
    total = book["total"]
    reaching_dedup = total["in"] - total["rejected"] - total["filtered"]
    duplicates = duplicates_removed(report)
    targets = {}
    for name, stats in sorted((report.get("render") or {}).items()):
        rows_in = stats["rows"]["train"]["in"] + stats["rows"]["val"]["in"]
        share = (report.get("tokens") or {}).get(name, {}).get("share")
        targets[name] = {
            "rows": rows_in,
            "rows_over": stats["overflow"]["rows_over"],
            "overflow_rate": _rate(stats["overflow"]["rows_over"], rows_in),
            "trained_token_share": share,
            "length_p99": stats["lengths"]["total"].get("p99"),
            "packing_efficiency": (stats.get("pack") or {}).get("efficiency"),
            "template_problems": template_problems(stats, name),
            "template_expected": template_expected(stats, name),
        }
    return {
        "rows": {
            "total": total["train"] + total["val"],
            **{s: r["train"] + r["val"] for s, r in book["sources"].items()},
        },
        "reject_rate": {
            "total": _rate(total["rejected"], total["in"]),
            **{s: _rate(r["rejected"], r["in"]) for s, r in book["sources"].items()},
        },
        "duplicates": duplicates,
        "duplicate_rate": _rate(duplicates, reaching_dedup),
        "targets": targets,
    }


def _scope_order(scope: str) -> tuple[bool, str]:
    """`total` first, then sources by name: the same order at build time and after report.json is reloaded."""
    return scope != "total", scope


def _result(gate: str, scope: str, limit: Any, value: Any, passed: bool, message: str) -> dict[str, Any]:
    return {"gate": gate, "scope": scope, "limit": limit, "value": value, "passed": passed, "message": message}


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2%}"


def evaluate(report: dict[str, Any], checks: dict[str, Any]) -> list[dict[str, Any]]:
    """One result per gate and scope (total, a source, a target); unset gates are not evaluated."""
    m = metrics(report)
    out: list[dict[str, Any]] = []
    limit = checks.get("min_rows")
    if limit is not None:
        wanted = {"total": limit} if isinstance(limit, int) else limit
        for scope, least in sorted(wanted.items(), key=lambda kv: _scope_order(kv[0])):
            got = m["rows"].get(scope)
            if got is None:
                out.append(_result("min_rows", scope, least, None, False, f"no source named {scope!r} in this build"))
            else:
                ok = got >= least
                out.append(_result("min_rows", scope, least, got, ok, f"{got:,} rows ({'≥' if ok else '<'} {least:,})"))
    limit = checks.get("max_reject_rate")
    if limit is not None:
        for scope, got in sorted(m["reject_rate"].items(), key=lambda kv: _scope_order(kv[0])):
            ok = got <= limit
            out.append(_result("max_reject_rate", scope, limit, got, ok, f"{_pct(got)} rejected (limit {_pct(limit)})"))
    limit = checks.get("max_duplicate_rate")
    if limit is not None:
        got = m["duplicate_rate"]
        ok = got <= limit
        msg = f"{m['duplicates']:,} duplicates, {_pct(got)} of rows reaching dedup (limit {_pct(limit)})"
        out.append(_result("max_duplicate_rate", "total", limit, got, ok, msg))
    out += _target_gates(m["targets"], checks)
    from .quality import quality_gates  # quality gates read the report's `quality` section (README: Quality signals)

    out += quality_gates(report, checks)
    return out


def _target_gates(targets: dict[str, Any], checks: dict[str, Any]) -> list[dict[str, Any]]:
    """Gates that hold per render target; each fails when the build renders no target at all."""
    out: list[dict[str, Any]] = []
    specs = (
        ("max_overflow_rate", "overflow_rate", lambda v, lim: v <= lim, lambda t: f"{_pct(t['overflow_rate'])} of "
         f"rows over max_length ({t['rows_over']:,} of {t['rows']:,})"),
        ("min_trained_token_share", "trained_token_share", lambda v, lim: v is not None and v >= lim,
         lambda t: f"{_pct(t['trained_token_share'])} of tokens trained"),
        ("max_length_p99", "length_p99", lambda v, lim: v is not None and v <= lim,
         lambda t: f"p99 length {t['length_p99']} tokens"),
    )  # fmt: skip
    for gate, key, passes, describe in specs:
        limit = checks.get(gate)
        if limit is None:
            continue
        if not targets:
            out.append(_result(gate, "targets", limit, None, False, "the build renders no target (add `render:`)"))
        for name, t in targets.items():
            ok = bool(passes(t[key], limit))
            shown = _pct(limit) if isinstance(limit, float) else f"{limit}"
            out.append(_result(gate, name, limit, t[key], ok, f"{describe(t)} (limit {shown})"))
    out += _packing_gate(targets, checks.get("min_packing_efficiency"))
    if checks.get("require_template_checks"):
        if not targets:
            out.append(_result("require_template_checks", "targets", True, None, False, "the build renders no target"))
        for name, t in targets.items():
            problems = t["template_problems"]
            expected = t.get("template_expected") or []
            msg = "; ".join(problems) if problems else "every template check passes"
            if expected:
                msg += "; expected for this template, not failing: " + "; ".join(expected)
            out.append(_result("require_template_checks", name, True, not problems, not problems, msg))
    return out


def _packing_gate(targets: dict[str, Any], limit: float | None) -> list[dict[str, Any]]:
    """`min_packing_efficiency` for each target that packs; failing when none does (it cannot be measured)."""
    if limit is None:
        return []
    packing = {name: t for name, t in targets.items() if t.get("packing_efficiency") is not None}
    if not packing:
        return [
            _result("min_packing_efficiency", "targets", limit, None, False, "no render target packs (add `pack:`)")
        ]
    out = []
    for name, t in packing.items():
        got = t["packing_efficiency"]
        msg = f"{_pct(got)} of packed capacity filled (limit {_pct(limit)})"
        out.append(_result("min_packing_efficiency", name, limit, got, got >= limit, msg))
    return out


def gate_section(report: dict[str, Any], checks: dict[str, Any]) -> dict[str, Any]:
    """The report's `gates` section: the limits checked, every result (failed first), and the verdict."""
    set_checks = {k: v for k, v in checks.items() if v is not None and v is not False}
    results = evaluate(report, set_checks)
    results.sort(key=lambda r: (r["passed"], GATE_ORDER.index(r["gate"])))
    return {"checks": set_checks, "results": results, "passed": all(r["passed"] for r in results)}


def failed(section: dict[str, Any]) -> list[dict[str, Any]]:
    """The failed gates of a `gates` section."""
    return [r for r in section["results"] if not r["passed"]]


def describe(result: dict[str, Any]) -> str:
    """One line naming a gate result: `max_reject_rate [sharegpt]: 8.05% rejected (limit 5.00%)`."""
    scope = "" if result["scope"] == "total" else f" [{result['scope']}]"
    return f"{result['gate']}{scope}: {result['message']}"
