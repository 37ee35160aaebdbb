"""The `dataforge` command line. Heavy modules are imported inside commands so `--help` stays fast."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .deps import as_missing_dependency
from .errors import DataforgeError, UsageError

app = typer.Typer(
    name="dataforge",
    help="Prepare LLM fine-tuning data in one reproducible build: read, convert, validate, filter, "
    "deduplicate, mix and split, with every dropped row accounted for.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Data is printed as it is: no emoji codes (`:100:` in a `file:100:` location), no wrapping inside a line (rows
# of `validate` stay one line each in logs and pipes). Markup is written by us only; data in it is escaped.
out = Console(soft_wrap=True, emoji=False)
err = Console(stderr=True, soft_wrap=True, emoji=False)

RecipeArg = Annotated[Path, typer.Argument(help="The recipe (mix.yaml).", show_default=False)]


@app.command()
def build(
    recipe: RecipeArg,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    offline: Annotated[
        bool,
        typer.Option("--offline", help="No network: hub sources build from data/raw and the lock file."),
    ] = False,
    update_lock: Annotated[
        bool,
        typer.Option("--update-lock", help="Accept hub sources that moved since the lock file; rewrite it."),
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Build into an existing folder dataforge did not create (adopt it)."),
    ] = False,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="When another build holds the build directory, wait for it instead of failing."),
    ] = False,
) -> None:
    """Build a recipe: run every stage that is not cached, write train/val/rejects, report and manifest.

    Outputs go to data/processed/<name>/ under the recipe's root (or `outputs.dir`): a folder dataforge
    created, a new or empty one, or any other with --force. One build at a time holds it. Hub sources (hf://,
    ms://) are fetched into data/raw/<source>/ first and checked against <recipe>.lock. Exit 0 when the build
    is written, 1 on unusable data (no training rows, a failed gate), a hub source that moved or a build
    directory another build holds, 2 on a bad recipe or a folder that is not a build directory.
    """
    from .engine.builddir import build_dir_lock
    from .recipe import load_recipe

    if offline:
        from .hub.sync import go_offline

        go_offline()
    if quiet:
        from .hub.sync import quiet_progress

        quiet_progress()
    loaded = load_recipe(recipe)
    # Held for the whole build, write stage included: a second build into this folder fails at once (or waits).
    with build_dir_lock(loaded, force=force, wait=wait):
        _build_locked(loaded, quiet=quiet, offline=offline, update_lock=update_lock)


def _build_locked(loaded, *, quiet: bool, offline: bool, update_lock: bool) -> None:
    """The build itself, with the build directory held."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .engine.runner import run
    from .hub.sync import sync_sources
    from .stages.write import is_current, write_build, write_key

    sync_sources(
        loaded,
        offline=offline,
        update_lock=update_lock,
        quiet=quiet,
        say=lambda line: err.print(line, highlight=False, markup=False, soft_wrap=True),
    )
    with Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=err,
        disable=quiet,
        transient=False,
    ) as bars:

        def on_stage(stage, status):
            if status.state == "cached":
                bars.add_task(escape(stage.name), total=1, completed=1, note="[dim]cached[/]")
                return lambda done, total, what: None
            # Progress columns read markup: stage names carry source names, notes carry file names.
            task = bars.add_task(
                escape(stage.name), total=None, note=f"[yellow]{status.state}[/]: {escape(status.reason)}"
            )

            def progress(done: int, total: int, what: str) -> None:
                bars.update(task, completed=done, total=max(total, 1), note=escape(what))

            return progress

        result = run(loaded, on_stage)
    for warning in result.warnings:
        err.print(f"warning: {warning}", highlight=False, markup=False, soft_wrap=True)
    key = write_key(loaded, result.entries)
    ran = result.ran
    if not ran and is_current(loaded, key):
        out.print(
            f"[green]Everything is cached[/]: {len(result.stages)} stages, outputs in "
            f"{escape(str(loaded.build_dir))} are current."
        )
        _exit_on_unusable_build(loaded.build_dir)
        return
    manifest = write_build(loaded, result.stages, result.entries)
    total = manifest["ledger"]["total"]
    out.print(
        f"[green]Built[/] {escape(loaded.recipe.name)}: {total['train']:,} train, {total['val']:,} val from "
        f"{total['in']:,} records ({total['rejected']:,} rejected, {total['filtered']:,} filtered, "
        f"{total['deduplicated']:,} duplicates, {total['downsampled']:,} downsampled).",
        soft_wrap=True,
    )
    report = loaded.build_dir / "report"
    out.print(f"Re-ran {len(ran)} of {len(result.stages)} stages. Outputs: {loaded.build_dir}", markup=False)
    out.print(f"Report: {report / 'report.html'} (summary: {report / 'report.md'})", markup=False, soft_wrap=True)
    _exit_on_unusable_build(loaded.build_dir)


def _exit_on_unusable_build(build_dir: Path) -> None:
    """Exit 1 when the build kept no training rows (saying why in one line) or a gate failed."""
    from .stages.write import no_rows_problem

    problem = no_rows_problem(build_dir)
    if problem is not None:
        err.print(f"[red]error:[/] {escape(problem)}", highlight=False, soft_wrap=True)
    _exit_on_failed_gates(build_dir)
    if problem is not None:
        raise typer.Exit(1)


def _exit_on_failed_gates(build_dir: Path) -> None:
    """Exit 1 (everything is written by now) when the report says a gate failed, naming each failed gate."""

    from .report.gates import describe, failed
    from .report.load import load_report

    gates = load_report(build_dir).get("gates") or {"results": [], "passed": True}
    for result in failed(gates):
        err.print(f"[red]gate failed[/]: {escape(describe(result))}", highlight=False, soft_wrap=True)
    if not gates["passed"]:
        raise typer.Exit(1)


BuildArg = Annotated[Path, typer.Argument(help="A build directory (data/processed/<name>) or its report.json.")]


@app.command()
def check(
    build_dir: BuildArg,
    recipe: Annotated[
        Path | None, typer.Option("--recipe", "-r", help="Check against this recipe's `checks:` instead.")
    ] = None,
) -> None:
    """Re-evaluate a finished build's quality gates from its report.json, without rebuilding.

    The limits are the ones recorded when the build ran, or a recipe's `checks:` with --recipe. Exit 0 when
    every gate passes, 1 when one fails.
    """

    from .recipe import load_recipe
    from .report.gates import gate_section
    from .report.load import load_report

    report = load_report(build_dir)
    if recipe is not None:
        checks = load_recipe(recipe).recipe.checks.model_dump()
    elif "gates" in report:
        checks = report["gates"]["checks"]
    else:
        raise UsageError(f"{build_dir}: the report records no gates", hint="pass --recipe with a `checks:` section")
    gates = gate_section(report, checks)
    if not gates["results"]:
        out.print("No gates are set: add a `checks:` section to the recipe.")
    else:
        table = Table(title=Text(f"{report['name']}: {len(gates['results'])} gate result(s)"))
        for column in ("result", "gate", "scope", "measured"):
            table.add_column(column)
        for r in gates["results"]:
            verdict = "[green]passed[/]" if r["passed"] else "[red]FAILED[/]"
            table.add_row(verdict, Text(r["gate"]), Text(r["scope"]), Text(r["message"]))
        out.print(table)
    n_failed = sum(not r["passed"] for r in gates["results"])
    out.print("[green]All gates pass.[/]" if not n_failed else f"[red]{n_failed} gate(s) failed.[/]")
    if n_failed:
        raise typer.Exit(1)


@app.command()
def diff(
    old: Annotated[Path, typer.Argument(help="The earlier build directory (or its report.json).")],
    new: Annotated[Path, typer.Argument(help="The later build directory (or its report.json).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print a Markdown table (for CI).")] = False,
    all_values: Annotated[bool, typer.Option("--all", help="Show unchanged values too.")] = False,
) -> None:
    """Show what changed between two builds: rows per source, reject and duplicate rates, token lengths, gates."""
    from .report.diff import changed, compare, fmt, fmt_change, to_markdown
    from .report.load import load_report

    if as_json and markdown:
        raise UsageError("choose one of --json and --markdown")
    before, after = load_report(old), load_report(new)
    rows = compare(before, after)
    shown = rows if all_values else changed(rows)
    if as_json:
        print(json.dumps({"old": before["name"], "new": after["name"], "changes": shown}, indent=2, ensure_ascii=False))
        return
    if markdown:
        print(to_markdown(rows, str(old), str(new), all_values=all_values), end="")
        return
    # The paths on a line of their own, not in a table title that would break them mid-word.
    out.print(f"{old} → {new}: {len(changed(rows))} of {len(rows)} values changed", markup=False, highlight=False)
    table = Table()
    for column in ("section", "value", "old", "new", "change"):
        table.add_column(column, justify="right" if column in ("old", "new", "change") else "left")
    for r in shown:
        cells = (r["section"], r["what"], fmt(r["old"], r["kind"]), fmt(r["new"], r["kind"]), fmt_change(r))
        table.add_row(*map(Text, cells))
    out.print(table)


@app.command()
def plan(recipe: RecipeArg) -> None:
    """Show the build graph and, for each stage, whether it is cached or stale and why."""
    from .engine.graph import build_graph
    from .engine.runner import plan as make_plan
    from .recipe import load_recipe

    loaded = load_recipe(recipe)
    stages = build_graph(loaded)
    statuses = make_plan(loaded, stages)
    table = Table(title=Text(f"{loaded.recipe.name}: {len(stages)} stages"))
    table.add_column("stage")
    table.add_column("after")
    table.add_column("state")
    table.add_column("why")
    colours = {"cached": "green", "stale": "yellow", "new": "cyan"}
    for s in statuses:
        table.add_row(
            Text(s.name), Text(", ".join(s.inputs) or "-"), Text(s.state, style=colours[s.state]), Text(s.reason)
        )
    out.print(table)
    todo = sum(s.state != "cached" for s in statuses)
    out.print(f"{todo} stage(s) to run, {len(statuses) - todo} cached.")


def _parse_columns(columns: list[str] | None) -> dict[str, str]:
    mapping = {}
    for item in columns or []:
        if "=" not in item:
            raise UsageError(f"--column {item!r}: expected FORMAT_COLUMN=FILE_COLUMN, e.g. conversations=dialog")
        key, value = item.split("=", 1)
        mapping[key.strip()] = value.strip()
    return mapping


FormatOpt = Annotated[
    str | None,
    typer.Option("--format", "-f", help="The files' format (detected when omitted); see `dataforge formats`."),
]
ColumnOpt = Annotated[
    list[str] | None,
    typer.Option("--column", "-c", help="Renamed column as FORMAT_COLUMN=FILE_COLUMN; repeatable."),
]


def _warn_unmodelled(found: dict[str, int], fmt: str) -> None:
    for path, n in found.items():
        err.print(
            f"[yellow]not carried[/]: {escape(path)} ({n} value(s)) is not a field of the {fmt} format",
            highlight=False,
            soft_wrap=True,
        )


@app.command()
def validate(
    files: Annotated[
        list[str],
        typer.Argument(
            help="Files, folders or globs (.jsonl, .json, .csv, .tsv, also .gz/.bz2/.zst; .parquet, .arrow)."
        ),
    ],
    format: FormatOpt = None,
    column: ColumnOpt = None,
    limit: Annotated[int, typer.Option(help="Print at most this many bad rows per input (0: all).")] = 50,
) -> None:
    """Check data files: every bad record is printed as FILE:LINE: FIELD: what is wrong.

    Exit 0 when every record is valid, 1 when any is not.
    """
    from .checking import check_files

    any_bad = False
    for pattern in files:
        checked = check_files(pattern, format, _parse_columns(column))
        bad = checked.rejects.num_rows
        any_bad |= bad > 0
        _print_reject_lines(checked.rejects.to_pylist(), limit=limit, what=f"bad rows in {pattern}")
        _warn_unmodelled(checked.unmodelled, checked.format)
        if checked.skipped:
            from .stages.read import skipped_note

            note = f"note: {pattern}: {skipped_note(checked.skipped)}"
            err.print(note, markup=False, highlight=False, soft_wrap=True)
        verdict = "[green]all valid[/]" if not bad else f"[red]{bad} invalid[/]"
        out.print(
            f"{escape(pattern)}: {checked.format}, {checked.records} records, {checked.examples.num_rows} valid, "
            f"{verdict}"
        )
    if any_bad:
        raise typer.Exit(1)


@app.command()
def convert(
    input: Annotated[str, typer.Argument(help="File, directory or glob to convert.")],
    to: Annotated[
        str,
        typer.Option(
            "--to",
            "-t",
            help="Target: a trainer (trl, llamafactory, ms-swift, axolotl: a folder) or a format (see "
            "`dataforge formats`: a file); `trl` is the trainer's folder, written by the trl format.",
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Output file (.jsonl, .json, .parquet); a directory for a trainer.")
    ],
    format: FormatOpt = None,
    column: ColumnOpt = None,
) -> None:
    """Convert files from one format to another through the canonical record.

    Rows that cannot be read or are invalid are listed (and not written); rows with image, video or audio
    inputs are among them (dataforge does not carry media yet). What the target cannot carry (e.g. reasoning in
    Alpaca) is counted and printed; a row it cannot hold at all (e.g. plain text in a chat format) is named with
    the targets that can. A trainer target writes a directory: data files per row kind and the trainer's dataset
    description (LLaMA-Factory's dataset_info.json, axolotl's `datasets:` YAML). Exit 1 when any row was
    rejected or not written.
    """
    from . import formats
    from .checking import check_files, check_output_type, write_records
    from .exports import TRAINERS, export_names
    from .formats.base import is_unwritten, write_each

    if to in TRAINERS:
        checked = check_files(input, format, _parse_columns(column))
        _convert_for_trainer(checked, to, output)
        return
    if to not in export_names():
        import difflib

        close = difflib.get_close_matches(to, export_names(), n=1)
        raise UsageError(
            f"unknown target {to!r}" + (f"; did you mean {close[0]!r}?" if close else ""),
            hint=f"known: {', '.join(export_names())}",
        )
    target = formats.get(to)
    check_output_type(output)
    checked = check_files(input, format, _parse_columns(column))
    rows = checked.examples.to_pylist()
    written = write_each(target, rows)
    write_records(written.records, output)
    _print_rejects(checked)
    _warn_unmodelled(checked.unmodelled, checked.format)
    for what, n in sorted(written.losses.items()):
        if not is_unwritten(what):
            err.print(f"[yellow]not carried[/] by {to}: {escape(what)}: {n} row(s)", highlight=False)
    _print_left_out(to, written.left_out)
    left = len(written.left_out)
    out.print(
        f"{checked.records} records ({checked.format}) → {len(written.records)} {to} records in {output}; "
        f"{checked.rejects.num_rows} rejected" + (f", {left} not written" if left else ""),
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    _say_what_was_not_written(to, written.left_out, len(rows), len(written.records), str(output), checked.records)
    if checked.rejects.num_rows or left or not written.records:  # an output that holds nothing is no success
        raise typer.Exit(1)


def _print_rejects(checked) -> None:
    """Every rejected record as `rejected FILE:LINE: FIELD: message (reason)`, then a "not carried" line for
    rows left out because they carry media (dataforge does not model images, videos or audio yet)."""

    from .formats.media import REASON
    from .rejects import location

    media = 0
    for r in checked.rejects.to_pylist():
        field = f" {r['field']}:" if r["field"] else ""
        media += r["reason"] == REASON
        err.print(
            f"rejected {escape(location(r))}:{escape(field)} {escape(r['message'])} [dim]({r['reason']})[/]",
            highlight=False,
            soft_wrap=True,
        )
    if media:
        err.print(
            f"[yellow]not carried[/]: image, video or audio inputs: {media} row(s) left out ({REASON}); dataforge "
            "does not model media yet, so such rows are rejected rather than trained on as text",
            highlight=False,
            soft_wrap=True,
        )


def _unwritten_what(why: str) -> str:
    """A not-written loss as a phrase: "pretrain rows (plain text, not written)" → "pretrain rows (plain text)"."""
    import re

    return re.sub(r"[;,] not written\)$", ")", re.sub(r" \(not written\)$", "", why))


def _by_reason(left_out: list[tuple[dict, str]]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for row, why in left_out:
        groups.setdefault(why, []).append(row)
    return groups


def _print_left_out(to: str, left_out: list[tuple[dict, str]]) -> None:
    """One line per reason rows were not written: how many, where the first are (`file:line`)."""

    from .rejects import location

    for why, rows in sorted(_by_reason(left_out).items()):
        where = ", ".join(location(r) for r in rows[:3]) + (f" and {len(rows) - 3} more" if len(rows) > 3 else "")
        err.print(
            f"[yellow]not carried[/] by {to}: {escape(why)}: {len(rows)} row(s): {escape(where)}",
            highlight=False,
            soft_wrap=True,
        )


def _carriers(row: dict, besides: str) -> tuple[list[str], list[str]]:
    """The formats and the trainers that write `row` with nothing lost (else those that write it at all)."""
    from .exports import TRAINERS, export, export_names

    whole: list[str] = []
    some: list[str] = []
    for name in export_names():
        if name != besides:
            exported = export(name, {"train": [row]}, "probe")
            if sum(exported.rows.values()) == 1:
                (some if exported.losses else whole).append(name)
    names = whole or some
    return [n for n in names if n not in TRAINERS], [n for n in names if n in TRAINERS]


def _either(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _say_what_was_not_written(
    to: str, left_out: list[tuple[dict, str]], total: int, written: int, output: str, records: int
) -> None:
    """An error line when rows were not written (why, for how many) with the targets that carry them, and one
    when the output holds nothing at all (`records`: how many the input held)."""

    groups = _by_reason(left_out)
    empty = f"{escape(output)} holds no records" if not written else ""
    if not left_out:
        if empty:
            why = "every row was rejected" if records else "the input holds no records"
            err.print(f"[red]error:[/] {empty}: {why}", highlight=False, soft_wrap=True)
        return
    many = len(groups) > 1
    why = "; ".join(
        f"{to} cannot carry {escape(_unwritten_what(w))}" + (f" ({len(rows)})" if many else "")
        for w, rows in sorted(groups.items())
    )
    err.print(
        f"[red]error:[/] {len(left_out)} of {total} rows not written" + (f" ({empty})" if empty else "") + f": {why}",
        highlight=False,
        soft_wrap=True,
    )
    for w, rows in sorted(groups.items()):
        file_formats, trainers = _carriers(rows[0], to)
        ways = ([f"--to {_either(file_formats)}"] if file_formats else []) + (
            [f"a trainer's folder with --to {_either(trainers)}"] if trainers else []
        )
        if ways:
            hint = f"  hint: {_unwritten_what(w)} can be written {', or to '.join(ways)}"
            err.print(hint, highlight=False, markup=False)


def _convert_for_trainer(checked, to: str, output: Path) -> None:
    """`dataforge convert --to <trainer>`: the trainer's export of every row, as the `train` split."""
    from .exports import export
    from .formats.base import is_unwritten

    rows = checked.examples.to_pylist()
    exported = export(to, {"train": rows}, output.name or "data")
    for path, data in sorted(exported.files.items()):
        (output / path).parent.mkdir(parents=True, exist_ok=True)
        (output / path).write_text(data, encoding="utf-8")
    _print_rejects(checked)
    _warn_unmodelled(checked.unmodelled, checked.format)
    for key, label in (("losses", "not carried"), ("transforms", "changed")):
        for kinds in getattr(exported, key).values():
            for kind, counts in kinds.items():
                for what, n in counts.items():
                    if key == "losses" and is_unwritten(what):
                        continue  # named below with the rows
                    err.print(f"[yellow]{label}[/] by {to} ({kind} rows): {escape(what)}: {n}", highlight=False)
    _print_left_out(to, exported.left_out)
    written = sum(exported.rows.values())
    files = ", ".join(f"{p} ({n})" for p, n in sorted(exported.rows.items())) or "no data files"
    left = len(exported.left_out)
    out.print(
        f"{checked.records} records ({checked.format}) → {to} in {output}: {files}; "
        f"{checked.rejects.num_rows} rejected" + (f", {left} not written" if left else ""),
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    _say_what_was_not_written(to, exported.left_out, len(rows), written, f"{output}/", checked.records)
    if checked.rejects.num_rows or left or not written:  # an output that holds nothing is no success
        raise typer.Exit(1)


@app.command()
def render(
    input: Annotated[str, typer.Argument(help="File, directory or glob of data in any format dataforge reads.")],
    template: Annotated[
        str, typer.Option("--template", "-t", help="Tokenizer + chat template: local directory or hub id.")
    ],
    max_length: Annotated[int, typer.Option(help="Longest sequence in tokens.")] = 4096,
    overflow: Annotated[str, typer.Option(help="drop | truncate | keep | error, for rows over max-length.")] = "drop",
    train_on: Annotated[
        str,
        typer.Option(
            help="all | last | first_n | weighted: which assistant turns are trained (weighted: each turn's loss "
            "scaled by its weight, written as loss_weights)."
        ),
    ] = "all",
    first_n: Annotated[
        int | None, typer.Option("--first-n", help="With --train-on first_n: how many assistant turns train.")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write rendered rows to this .parquet.")] = None,
    show: Annotated[int, typer.Option(help="Print this many rows with trained tokens highlighted.")] = 0,
    keep_unrendered: Annotated[
        list[str] | None,
        typer.Option(
            "--keep-unrendered",
            help="tool_calls and/or reasoning: keep (train what the template renders) rows whose trained turn has "
            "tool calls or reasoning the template drops; rejected otherwise (the recipe's `unrendered:`).",
        ),
    ] = None,
    format: FormatOpt = None,
    column: ColumnOpt = None,
) -> None:
    """Render files through a model's chat template: token ids, labels (-100 where not trained), lengths.

    Prints the length summary and template checks; --show N prints rows with the trained tokens highlighted
    (green in a terminal, [[…]] otherwise), which is how to verify a loss mask by eye. Exit 1 when rows
    were rejected or could not be rendered.
    """
    from pydantic import ValidationError

    from .checking import check_files
    from .engine.cache import write_parquet
    from .recipe import RenderTarget

    _filter_transformers_logs()
    from .render.target import load_target
    from .report.lengths import RowLengths
    from .stages.render import SHOWN_OVERFLOW_IDS, options_of, render_split, render_stats

    kept = set(keep_unrendered or [])
    if kept - {"tool_calls", "reasoning"}:
        raise UsageError(
            f"--keep-unrendered {sorted(kept - {'tool_calls', 'reasoning'})[0]!r}: expected tool_calls or reasoning"
        )
    try:
        spec = RenderTarget.model_validate(
            {
                "name": "cli",
                "tokenizer": template,
                "max_length": max_length,
                "overflow": overflow,
                "train_on": train_on,
                "first_n": first_n,
                "unrendered": {part: "keep" for part in kept},
            }
        )
    except ValidationError as exc:  # an option's value (or two that do not go together), said as options
        problems = "; ".join(
            (f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: " if e["loc"] else "")
            + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        )
        raise UsageError(f"{problems} (options --train-on, --first-n)" if "first_n" in problems else problems) from None
    checked = check_files(input, format, _parse_columns(column))
    target = load_target("cli", template, Path.cwd())
    table, dropped, notes, turns = render_split(checked.examples, target, options_of(spec), lambda *_: None, "rows")
    stats = render_stats(
        RowLengths.of(table, spec.max_length, SHOWN_OVERFLOW_IDS),
        spec,
        target,
        options_of(spec),
        dropped,
        notes,
        {"rows": {"in": checked.examples.num_rows, "rendered": table.num_rows, "dropped": len(dropped)}},
        turns,
    )
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        write_parquet(table, output)
    for row in checked.rejects.to_pylist():
        where = f"{row['file']}:{row['line']}" if row["line"] is not None else f"{row['file']}#{row['row']}"
        err.print(f"rejected {where}: {row['field'] or ''} {row['message']}", highlight=False, markup=False)
    for d in dropped:
        err.print(f"not rendered {d['example_id']}: {d['reason']}: {d['message']}", highlight=False, markup=False)
    lengths = stats["lengths"]
    # The template (often a path) on its own line: a table title would break it mid-word.
    out.print(f"{table.num_rows} rows rendered for {template}", markup=False, highlight=False)
    summary = Table()
    for col_name in ("tokens", "p50", "p90", "p99", "max"):
        summary.add_column(col_name, justify="right" if col_name != "tokens" else "left")
    for part in ("total", "prompt", "trained"):
        s = lengths[part]
        if s.get("count"):
            summary.add_row(part, *(f"{s[k]:,}" for k in ("p50", "p90", "p99", "max")))
    out.print(summary)
    checks = stats["checks"]
    out.print(
        f"end-of-turn token: {checks['end_of_turn_token']!r}; "
        f"ignores system prompt: {checks['ignores_system_prompt']}; "
        f"generation markers: {checks['has_generation_markers']}; suggested max_length: "
        f"{stats['suggested_max_length']['tokens']}",
        highlight=False,
        markup=False,  # end-of-turn tokens such as Mistral's `[/INST]` look like markup
    )
    for note, n in checks["row_notes"].items():
        out.print(f"note: {note}: {n} row(s)", highlight=False, markup=False)
    loss = stats.get("loss")
    if loss:  # the report's "Loss per turn", in one line
        cells = [f"turn {bucket}: {cell['tokens']:,}" for bucket, cell in loss["by_turn"].items() if cell["turns"]]
        out.print(
            f"trained tokens by assistant turn (train_on: {loss['train_on']}): {', '.join(cells) or 'none'}",
            highlight=False,
            markup=False,
        )
    for row in table.slice(0, show).to_pylist():
        out.print(f"[bold]{escape(row['id'])}[/] ({row['n_tokens']} tokens, {row['n_trained']} trained)")
        out.print(
            highlighted(target.tokenizer, row["input_ids"], row["labels"], colour=out.is_terminal),
            highlight=False,
            markup=False,
        )
    if not table.num_rows:
        why = "every row was rejected or dropped" if checked.records else "the input holds no records"
        err.print(f"[red]error:[/] no rows rendered: {why}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    if checked.rejects.num_rows or dropped:
        raise typer.Exit(1)


def highlighted(tok, ids: list[int], labels: list[int], *, colour: bool):
    """The decoded row with trained spans marked: green in a terminal, [[…]] in plain text."""
    from rich.text import Text

    text = Text()
    run: list[int] = []
    trained_run = None
    for token, label in [*zip(ids, labels, strict=True), (None, None)]:
        trained = label is not None and label != -100
        if token is None or (trained_run is not None and trained != trained_run):
            piece = tok.decode(run)
            if colour:
                text.append(piece, style="bold green" if trained_run else "dim")
            else:
                text.append(f"[[{piece}]]" if trained_run else piece)
            run = []
        if token is not None:
            run.append(token)
            trained_run = trained
    return text


@app.command()
def train(
    recipe: RecipeArg,
    handoff_only: Annotated[
        bool, typer.Option("--handoff-only", help="Check and write the hand-off configs only; do not train.")
    ] = False,
) -> None:
    """Fine-tune on the build with the recipe's `train:` section (trl SFT, DPO or KTO; LoRA or QLoRA).

    Brings the build up to date, refuses to start when the data does not fit the method or the tokenizer is
    not the one the data was rendered with, writes ready-to-run LLaMA-Factory, axolotl and ms-swift configs
    under <output_dir>/handoff/, then trains and saves the adapter (or model), tokenizer, training log and
    training.json. Exit 1 on unusable data or a diverged run, 2 on a bad recipe.
    """
    import math

    from .errors import DataError
    from .recipe import load_recipe
    from .trainers.run import train as run_training

    _filter_transformers_logs()
    loaded = load_recipe(recipe)
    result = run_training(
        loaded, handoff_only=handoff_only, say=lambda line: err.print(line, highlight=False, markup=False)
    )
    for path in result.handoff:
        out.print(f"hand-off: {_shown(path)}", highlight=False, markup=False)
    for note in result.skipped_handoff:
        err.print(f"[yellow]no hand-off[/] for {escape(note)}", highlight=False)
    if handoff_only:
        return
    loss = result.training_loss
    if loss is None or not math.isfinite(loss):
        raise DataError(f"training diverged: the training loss is {loss}", hint="lower train.args.learning_rate")
    out.print(
        f"[green]Trained[/] on {result.rows['train']:,} rows ({result.rows['val']:,} val): training loss "
        f"{loss:.4f}. Saved to {escape(str(_shown(result.output_dir)))}",
        highlight=False,
    )


def _shown(path: Path) -> Path:
    """`path` relative to the working directory when it lies under it (shorter to read), else as it is."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


@app.command()
def merge(
    adapter: Annotated[Path, typer.Argument(help="A LoRA adapter folder (a `dataforge train` output_dir).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory for the merged model.")],
    base: Annotated[
        str | None, typer.Option(help="The base model (directory or hub id); default: the one the adapter names.")
    ] = None,
) -> None:
    """Merge a LoRA adapter into its base model and save the result (with the tokenizer) as one model."""
    from .trainers.merge import merge as merge_adapter

    merge_adapter(adapter, output, base=base)
    out.print(f"[green]Merged[/] {escape(str(adapter))} into its base model: {escape(str(output))}", highlight=False)


@app.command()
def dedup(
    files: Annotated[list[str], typer.Argument(help="Files, directories or globs; earlier inputs win ties.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Kept rows (.jsonl, .json, .parquet).")],
    threshold: Annotated[float, typer.Option(help="Jaccard similarity that makes two rows near-copies.")] = 0.8,
    ngram: Annotated[int, typer.Option(help="Units per shingle.")] = 5,
    shingle: Annotated[str, typer.Option(help="Shingle unit: word or char (CJK text).")] = "word",
    fields: Annotated[
        str, typer.Option(help="Text compared: conversation, user, first_user or final_answer.")
    ] = "conversation",
    num_perm: Annotated[int, typer.Option(help="MinHash signature length.")] = 128,
    keep: Annotated[str, typer.Option(help="Which row of a group stays: first, longest or quality.")] = "first",
    near: Annotated[bool, typer.Option(help="Near-duplicates too (--no-near: exact copies only).")] = True,
    to: Annotated[str | None, typer.Option("--to", "-t", help="Output format; default: the first input's.")] = None,
    seed: Annotated[int, typer.Option(help="Seeds the MinHash hashing.")] = 0,
) -> None:
    """Remove exact and near-duplicate rows (MinHash LSH) from files, across all of them.

    Kept rows go to OUTPUT; every removed row goes to OUTPUT's `<stem>.rejects.jsonl` with the row it
    duplicates (file:line) and the similarity. Exit 1 when a record could not be read or is invalid.
    """
    from pydantic import ValidationError

    from .dedup.command import dedup_files
    from .recipe import NearDedup

    try:
        settings = NearDedup(threshold=threshold, ngram=ngram, shingle=shingle, fields=fields, num_perm=num_perm)
    except ValidationError as exc:
        problems = "; ".join(f"--{'-'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UsageError(problems.replace("_", "-")) from None
    result = dedup_files(files, output, settings if near else None, exact=True, keep=keep, to=to, seed=seed)
    _print_reject_lines(result.problems, limit=50, what="unreadable or invalid rows")
    out.print(
        f"{result.records:,} records ({result.format}) → {result.kept:,} kept in {output}; removed "
        f"{result.exact:,} exact and {result.near:,} near duplicates ({result.clusters:,} clusters); "
        f"{result.unreadable:,} unreadable or invalid. Removed rows: {result.rejects_path}",
        markup=False,
    )
    if result.unreadable:
        raise typer.Exit(1)


def _print_reject_lines(rows: list[dict[str, Any]], *, limit: int, what: str) -> None:
    """Each reject as `FILE:LINE: FIELD: message (reason)`, at most `limit` of them (0: all), then how many more."""
    from .rejects import location

    shown = rows if not limit else rows[:limit]
    for r in shown:
        field = f" {r['field']}:" if r["field"] else ""
        out.print(
            f"{escape(location(r))}:{escape(field)} {escape(r['message'] or '')} [dim]({escape(r['reason'])})[/]",
            highlight=False,
        )
    if len(rows) > len(shown):
        out.print(f"... and {len(rows) - len(shown)} more {what}", markup=False)


@app.command()
def push(
    build_dir: Annotated[Path, typer.Argument(help="A finished build directory (data/processed/<name>).")],
    destination: Annotated[str, typer.Argument(help="hf://owner/name or ms://owner/name.")],
    private: Annotated[bool, typer.Option("--private", help="Create the dataset repository as private.")] = False,
    token_env: Annotated[
        str | None,
        typer.Option("--token-env", help="Variable holding the token (default HF_TOKEN / MODELSCOPE_API_TOKEN)."),
    ] = None,
    message: Annotated[str | None, typer.Option("--message", "-m", help="Commit message.")] = None,
) -> None:
    """Upload a build's train/validation splits with a generated dataset card (configs, features, license,
    provenance of every source, the recipe) to the Hugging Face Hub (one commit) or ModelScope."""
    from .hub.push import push as push_build

    url = push_build(
        build_dir,
        destination,
        private=private,
        token_env=token_env,
        message=message,
        say=lambda line: err.print(line, highlight=False, markup=False, soft_wrap=True),
    )
    out.print(f"[green]Pushed[/] {escape(str(build_dir))} to {escape(destination)}: {escape(url)}", highlight=False)


@app.command("formats")
def list_formats() -> None:
    """List the formats dataforge reads and writes."""
    from . import formats

    table = Table(title="formats")
    table.add_column("name")
    table.add_column("identified by")
    table.add_column("description")
    for name in formats.names():
        f = formats.get(name)
        table.add_row(name, ", ".join(sorted(f.signature)), f.description)
    out.print(table)


@app.command()
def schema(
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory to write the schemas into.")] = Path(
        "schemas"
    ),
) -> None:
    """Write the JSON Schemas: example, recipe and every format."""
    from .schemas import write_schemas

    for path in write_schemas(output):
        out.print(f"wrote {path}", markup=False)


# Libraries that start native (C++) threads; with one of them imported the process ends with `os._exit` once
# everything is flushed: a thread pool still alive while C++ runs its static destructors at exit aborts the
# process ("terminate called without an active exception", SIGABRT) after the command has done its work.
NATIVE_THREADED = ("torch", "trl", "peft", "accelerate", "bitsandbytes", "datasets")
# Messages of transformers (and the libraries it uses) that say nothing to a dataforge user; silenced in the
# CLI only (the library, used from Python, keeps them).
HARMLESS_WARNINGS = (
    r".*`torch_dtype` is deprecated.*",  # trl/transformers' own argument renames
    r".*padding_side.*",  # trl pads itself
    r"None of PyTorch, TensorFlow .* have been found.*",  # data commands never need torch
    r".*You are using the default legacy behaviour.*",  # sentencepiece tokenizers we do not re-save
    r".*Special tokens have been added in the vocabulary.*",  # the tokenizer's own added tokens, as shipped
    r".*generation flags are not valid.*",  # a model's generation_config, irrelevant to training data
)


def _quiet_known_warnings() -> None:
    """Silence transformers' advisory and info output and the known-harmless warnings (HARMLESS_WARNINGS):
    what dataforge checks itself it reports itself, in its own words."""
    import warnings

    # transformers advises at import that torch is missing; data commands never need it, and the train
    # command says so itself when it does.
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    for pattern in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def _filter_transformers_logs() -> None:
    """The same messages (HARMLESS_WARNINGS) dropped from transformers' log output, for the commands that load
    tokenizers and models (importing transformers costs a second, so only those)."""
    import logging
    import re

    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # rendering says so itself when it needs transformers
        return
    harmless = [re.compile(p) for p in HARMLESS_WARNINGS]

    class Harmless(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not any(p.match(record.getMessage()) for p in harmless)

    hf_logging.get_logger()  # creates transformers' own handler, which every transformers.* logger reaches
    for handler in logging.getLogger("transformers").handlers:
        handler.addFilter(Harmless())


def _flag_help_without_bool() -> None:
    """Flags show no `<bool>` in `--help` (typer prints every option's type, as if a flag took a value)."""
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None:  # typer releases before the typed help (our lower bound, 0.16) print no `<bool>`
        return

    def display_type_rich(self, ctx):
        return None if self.is_flag and not self.count else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich


_flag_help_without_bool()  # at import: `--help` run through typer's test runner shows the same


def main() -> None:
    """Entry point: run the app; errors about data or recipes are printed without a traceback. The exit is an
    exit status, never a signal (see NATIVE_THREADED)."""
    _quiet_known_warnings()
    try:
        _main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    _exit(code)


def _exit(code: int | str | None) -> None:
    """Exit with `code` (SystemExit's meaning: None is 0, text is printed and is 1); with a native-threaded
    library loaded, flush, run the atexit handlers, and leave with `os._exit` before C++ teardown can abort."""
    if isinstance(code, str):
        err.print(code, markup=False, highlight=False)
        code = 1
    code = 0 if code is None else int(code)
    if not any(name in sys.modules for name in NATIVE_THREADED):
        sys.exit(code)
    import atexit
    import logging

    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            pass
    os._exit(code)


def _main() -> None:
    try:
        try:
            app()  # standalone: usage errors print click's message and exit 2
        except ImportError as exc:  # an optional package (torch, trl, ...) or one a library imports lazily
            command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
            missing = as_missing_dependency(exc, f"`dataforge {command}`" if command else "dataforge")
            if missing is None:
                raise
            raise missing from None
    except DataforgeError as exc:
        # The message quotes data and commands (`dataforge[train]`, a role named `[/x]`): never markup or emoji.
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, markup=True, emoji=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted; completed stages are cached, run the build again to resume")
        sys.exit(130)
