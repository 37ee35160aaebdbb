"""The report's sections beyond the build summary, and its three files (json, md, html) from one dict."""

from __future__ import annotations

import json
import math
from typing import Any

import pyarrow as pa

from ..recipe import LoadedRecipe
from ..streams import Tables, as_tables
from .gates import gate_section, metrics
from .html import render_html
from .samples import rendered_samples
from .stats import content_stats, duplicate_clusters, token_share
from .summary import render_markdown


def complete_report(
    report: dict[str, Any],
    loaded: LoadedRecipe,
    train: pa.Table | Tables,
    val: pa.Table | Tables,
    rejects: pa.Table | Tables,
    rendered: dict[str, pa.Table | Tables],
) -> dict[str, Any]:
    """Add what the HTML and the gates need: content statistics, trained-token shares, duplicate clusters,
    rendered samples, gate metrics and results. `rendered` maps each target to its train + val rows.

    Every table is read a piece at a time (`streams.Tables`), never whole."""
    sources = [s.name for s in loaded.recipe.sources]
    final = Tables.chain(as_tables(train), as_tables(val))
    report["content"] = content_stats(final, sources)
    report["duplicates"] = duplicate_clusters(rejects, final)
    report["tokens"] = {name: token_share(table) for name, table in sorted(rendered.items())}
    specs = {spec.name: spec for spec in loaded.recipe.render}
    report["samples"] = {name: rendered_samples(loaded, specs[name], table) for name, table in sorted(rendered.items())}
    report["metrics"] = metrics(report)
    report["gates"] = gate_section(report, loaded.recipe.checks.model_dump())
    return report


def report_files(report: dict[str, Any]) -> dict[str, str]:
    """report/report.json, and report.md and report.html rendered from that JSON text.

    Rendering from the parsed JSON, not the dict, makes both a function of report.json alone: a stage's
    statistics read back from the cache and fresh from the stage may order their keys differently.
    """
    text = json.dumps(_finite(report), indent=2, ensure_ascii=False, sort_keys=True, allow_nan=False) + "\n"
    parsed = json.loads(text)
    return {
        "report/report.json": text,
        "report/report.md": render_markdown(parsed),
        "report/report.html": render_html(parsed),
    }


def _finite(value: Any) -> Any:
    """`value` with every NaN/infinite float as null: a statistic of nothing (the mean of no rows) is unknown,
    and report.json must stay JSON that strict parsers (CI tools, browsers' JSON.parse) read."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
