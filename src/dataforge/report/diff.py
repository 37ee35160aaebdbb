"""`dataforge diff`: what changed between two builds (rows, rates, token lengths, quality, gates), from reports."""

from __future__ import annotations

from typing import Any

from .gates import metrics
from .mdkit import code, text

PERCENTILES = ("p50", "p90", "p99", "max")


def _row(section: str, what: str, old: Any, new: Any, kind: str = "count") -> dict[str, Any]:
    """One compared value; `change` is new - old (percentage points for rates), None when either is missing."""
    change = None
    if isinstance(old, (int, float)) and isinstance(new, (int, float)) and not isinstance(old, bool):
        change = round(new - old, 4)
    return {"section": section, "what": what, "kind": kind, "old": old, "new": new, "change": change}


def _union(a: list[str], b: list[str]) -> list[str]:
    return list(dict.fromkeys([*a, *b]))


def compare(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """Every compared value, old and new, in a fixed order: rows, rates, per-target lengths, gates."""
    rows: list[dict[str, Any]] = []
    ob, nb = old["ledger"], new["ledger"]
    for col in ("in", "rejected", "filtered", "deduplicated", "downsampled", "train", "val"):
        rows.append(_row("rows", f"total {col}", ob["total"][col], nb["total"][col]))
    for src in _union(list(ob["sources"]), list(nb["sources"])):
        o, n = ob["sources"].get(src), nb["sources"].get(src)
        for col in ("in", "train", "val"):
            rows.append(_row("rows", f"{src} {col}", o and o[col], n and n[col]))
    om, nm = metrics(old), metrics(new)
    for scope in _union(list(om["reject_rate"]), list(nm["reject_rate"])):
        rows.append(
            _row("rates", f"reject rate {scope}", om["reject_rate"].get(scope), nm["reject_rate"].get(scope), "rate")
        )
    rows.append(_row("rates", "duplicate rate", om["duplicate_rate"], nm["duplicate_rate"], "rate"))
    old_render, new_render = old.get("render") or {}, new.get("render") or {}
    for target in _union(sorted(old_render), sorted(new_render)):
        ot, nt = om["targets"].get(target) or {}, nm["targets"].get(target) or {}
        ol = (old_render.get(target) or {}).get("lengths", {}).get("total", {})
        nl = (new_render.get(target) or {}).get("lengths", {}).get("total", {})
        for p in PERCENTILES:
            rows.append(_row(f"tokens {target}", f"length {p}", ol.get(p), nl.get(p)))
        rows.append(_row(f"tokens {target}", "rows over max_length", ot.get("rows_over"), nt.get("rows_over")))
        rows.append(_row(f"tokens {target}", "overflow rate", ot.get("overflow_rate"), nt.get("overflow_rate"), "rate"))
        rows.append(
            _row(
                f"tokens {target}",
                "trained-token share",
                ot.get("trained_token_share"),
                nt.get("trained_token_share"),
                "rate",
            )
        )
    from .quality import quality_diff  # only builds with `quality:` have the section

    rows += quality_diff(old, new)
    og, ng = old.get("gates") or {}, new.get("gates") or {}
    rows.append(_row("gates", "gates pass", og.get("passed"), ng.get("passed"), "flag"))
    return rows


def fmt(value: Any, kind: str) -> str:
    """A compared value as text: rates as percentages, counts with separators, `–` when absent."""
    if value is None:
        return "–"
    if kind == "flag":
        return "yes" if value else "no"
    if kind == "rate":
        return f"{value:.2%}"
    return f"{value:,}"


def fmt_change(row: dict[str, Any]) -> str:
    """The change as text: `+12`, `-1.25 pp` for rates, `added`/`removed`, or empty when nothing changed."""
    old, new, change = row["old"], row["new"], row["change"]
    if old == new:
        return ""
    if old is None:
        return "added"
    if new is None:
        return "removed"
    if change is None:
        return "changed"
    if row["kind"] == "rate":
        return f"{change * 100:+.2f} pp"
    return f"{change:+,}"


def changed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The compared values whose old and new differ."""
    return [r for r in rows if r["old"] != r["new"]]


def to_markdown(rows: list[dict[str, Any]], old_name: str, new_name: str, *, all_values: bool = False) -> str:
    """The comparison as a Markdown table (for a pull-request comment or a CI job summary): the values that
    changed, or all of them."""
    moved = changed(rows)
    lines = [
        f"## Data changes: {code(old_name)} → {code(new_name)}",
        "",
        f"{len(moved)} of {len(rows)} compared values changed.",
        "",
        "| section | value | old | new | change |",
        "|---|---|--:|--:|--:|",
    ]
    lines += [
        f"| {text(r['section'])} | {text(r['what'])} | {fmt(r['old'], r['kind'])} | {fmt(r['new'], r['kind'])} | "
        f"{('**' + fmt_change(r) + '**') if fmt_change(r) else ''} |"
        for r in (rows if all_values else moved)
    ]
    return "\n".join(lines) + "\n"
