#!/usr/bin/env python
"""Scale: a whole `dataforge build` of generated sources at growing sizes — wall time, peak RSS of the process
tree, per-stage times and the growth exponent (issue 16).

For each size the sources are generated once (`scale_data.generate`, cached in the work folder by rows, seed and
generator version): ~1.2 KB per row in ShareGPT JSONL (two files), OpenAI-messages JSONL, Alpaca JSONL and a
ShareGPT Parquet file, with 3% exact and 3% near duplicates across files and sources. The recipe
(`scale_data.write_recipe`) runs read → convert → validate → filter → exact + near dedup → ratio mix → 5%
validation split → render (Qwen2.5 fixture tokenizer) → write with a trl export.

Each build is a cold `dataforge build -q` in a subprocess of its own (the build folder is removed first), with
`PYTHONPATH` set to the source tree being measured (this checkout's `src/`, or `--baseline-src`'s). While it runs,
the RSS of the whole process tree (the build and every descendant: worker processes, Ray, tokenizer pools) is
summed from /proc every `--interval` seconds and the peak kept. Per-stage times come from a thin wrapper around
the CLI (`_child` below): it timestamps the runner's per-stage callback, the cache's key and store calls and
`write_build`, because the CLI itself prints no durations (see the README section).

    python benchmarks/bench_scale.py                                 # 100k and 1M rows
    python benchmarks/bench_scale.py --rows 10000,30000              # quick
    python benchmarks/bench_scale.py --rows 100000 --workers 1,2     # worker scaling (engine: {workers: N})
    git archive HEAD | tar -x -C /tmp/base                           # the previous commit, to compare against
    python benchmarks/bench_scale.py --rows 10000,30000 --baseline-src /tmp/base
    python benchmarks/bench_scale.py --rows 100000 --append-check    # + 1% rows appended, incremental rebuild

Results: a Markdown table on stdout and in <work>/scale.md, every number in <work>/scale.json (or `--json`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CHILD_MARK = "_child"  # argv[1] of the wrapper run inside the measured subprocess
FIXTURE = "templates/qwen2.5-instruct"
STAGE_ORDER = ("read", "convert", "validate", "lint", "quality", "filter", "dedup", "mix", "split", "render", "write")
APPEND_SOURCE = ("openai.jsonl", "openai")  # the JSONL file (relative to the data folder) rows are appended to
sys.path.insert(0, str(HERE))  # scale_data, imported where needed (the measured child does not need pyarrow here)


# --- the wrapper run inside the measured process -----------------------------------------------------------


def _child(timings: Path, argv: list[str]) -> None:
    """Run `dataforge <argv>` in this process and write timestamps of its stages to `timings` at exit.

    Wraps, where the tree has them: `engine.runner.run` (its per-stage callback marks a stage's start),
    `Cache.key_parts` (hashing a stage's inputs), `Cache.store` / `Cache.store_sharded` (a stage's end) and
    `stages.write.write_build`. Nothing else changes: the CLI imports these names at call time."""
    import atexit

    started = time.time()
    events: list[dict[str, Any]] = []
    info: dict[str, Any] = {"started": started, "events": events, "patched": []}

    def dump() -> None:
        info["ended"] = time.time()
        timings.write_text(json.dumps(info), encoding="utf-8")

    atexit.register(dump)
    import dataforge
    import dataforge.cli as cli

    info["imported"] = time.time()
    info["dataforge"] = str(Path(dataforge.__file__).resolve().parent)
    _wrap_runner(events, info["patched"])
    sys.argv = ["dataforge", *argv]
    cli.main()


def _wrap_runner(events: list[dict[str, Any]], patched: list[str]) -> None:
    import dataforge.engine.cache as cache
    import dataforge.engine.runner as runner
    import dataforge.stages.write as write

    original_run = runner.run

    def run(loaded: Any, on_stage: Any = None, *args: Any, **kwargs: Any) -> Any:
        def timed(stage: Any, status: Any) -> Any:
            events.append({"what": "stage", "name": stage.name, "state": status.state, "t": time.time()})
            return on_stage(stage, status) if on_stage else (lambda done, total, what: None)

        events.append({"what": "run", "t": time.time()})
        result = original_run(loaded, timed, *args, **kwargs)
        events.append({"what": "run_end", "t": time.time()})
        return result

    runner.run = run
    patched.append("runner.run")
    for method in ("key_parts", "store", "store_sharded"):
        if hasattr(cache.Cache, method):
            setattr(cache.Cache, method, _timed_method(getattr(cache.Cache, method), method, events))
            patched.append(f"Cache.{method}")
    if hasattr(write, "write_build"):
        original_write = write.write_build

        def write_build(*args: Any, **kwargs: Any) -> Any:
            t = time.time()
            try:
                return original_write(*args, **kwargs)
            finally:
                events.append({"what": "write", "t": t, "end": time.time()})

        write.write_build = write_build
        patched.append("write.write_build")


def _timed_method(method: Any, what: str, events: list[dict[str, Any]]) -> Any:
    def timed(self: Any, stage: Any, *args: Any, **kwargs: Any) -> Any:
        t = time.time()
        try:
            return method(self, stage, *args, **kwargs)
        finally:
            events.append({"what": what, "name": getattr(stage, "name", str(stage)), "t": t, "end": time.time()})

    return timed


# --- measuring a process tree ------------------------------------------------------------------------------

PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(root: int) -> tuple[int, int, int, int]:
    """(summed RSS in bytes, number of processes, summed anonymous RSS, `root`'s own RSS) of `root` and all its
    descendants, read from /proc.

    Pages shared between processes (fork's copy-on-write, shared libraries) count once per process, as `ps` and
    the OOM killer's per-process figures do: an upper bound on the tree's real footprint. The anonymous part
    (resident minus file-backed and shared pages, from statm) leaves out memory-mapped files the kernel can drop."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_bytes()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    total, count, anon, own, todo = 0, 0, 0, 0, [root]
    while todo:
        pid = todo.pop()
        try:
            fields = Path(f"/proc/{pid}/statm").read_text().split()
            resident, shared = int(fields[1]) * PAGE, int(fields[2]) * PAGE
        except (OSError, IndexError, ValueError):
            continue  # exited meanwhile
        total += resident
        anon += resident - shared
        count += 1
        if pid == root:
            own = resident
        todo += children.get(pid, [])
    return total, count, anon, own


@dataclass
class Sampler:
    """Samples `tree_rss(pid)` every `interval` seconds in a thread until `stop()`."""

    pid: int
    interval: float
    # (time, tree RSS, processes, tree anonymous RSS, the root process's own RSS), bytes
    samples: list[tuple[float, int, int, int, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            rss, procs, anon, own = tree_rss(self.pid)
            if procs:
                self.samples.append((time.time(), rss, procs, anon, own))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, start: float = 0.0, end: float = math.inf, field: int = 1) -> int:
        """The largest sampled value between `start` and `end`: tree RSS (field 1), anonymous RSS (3), the root
        process's own RSS (4)."""
        return max((s[field] for s in self.samples if start <= s[0] <= end), default=0)


# --- one build ---------------------------------------------------------------------------------------------


@dataclass
class Tree:
    """A source tree to measure: a label and the folder put on PYTHONPATH (holding the `dataforge` package)."""

    label: str
    path: Path
    engine: bool  # whether the recipe may carry `engine: {workers: N}`


def package_root(src: Path) -> Path:
    """The folder holding `dataforge/`: `src` itself or its `src/` (a checkout or a `git archive` export)."""
    for candidate in (src / "src", src):
        if (candidate / "dataforge" / "__init__.py").is_file():
            return candidate.resolve()
    raise SystemExit(f"error: no dataforge package under {src} or {src / 'src'}")


def run_build(recipe: Path, tree: Tree, log: Path, interval: float, timeout: float | None) -> dict[str, Any]:
    """One `dataforge build -q recipe` under `tree`, measured; the result as a dict (see the README section)."""
    import resource

    timings = log.with_suffix(".timings.json")
    timings.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(tree.path), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [sys.executable, str(Path(__file__).resolve()), CHILD_MARK, str(timings), "build", "-q", str(recipe)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.time()
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=recipe.parent)
        sampler = Sampler(proc.pid, interval)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        finally:
            sampler.stop()
    wall = time.time() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # every reaped descendant, recursively
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result: dict[str, Any] = {
        "rc": rc,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "cpu_user_s": round(after.ru_utime - before.ru_utime, 2),
        "peak_rss_bytes": sampler.peak(),
        "peak_anon_bytes": sampler.peak(field=3),
        "peak_main_rss_bytes": sampler.peak(field=4),
        "peak_processes": max((s[2] for s in sampler.samples), default=0),
        "samples": len(sampler.samples),
        # (seconds since start, tree MB, main process MB): every 5th sample, to plot where the memory goes
        "rss_timeline_mb": [
            [round(s[0] - start, 1), round(s[1] / 1e6), round(s[4] / 1e6)] for s in sampler.samples[::5]
        ],
        "log": str(log),
    }
    if rc != 0:
        result["error_tail"] = log.read_text(encoding="utf-8", errors="replace")[-2000:]
    if timings.is_file():
        result.update(stage_times(json.loads(timings.read_text(encoding="utf-8")), start, sampler))
    return result


def stage_times(info: dict[str, Any], start: float, sampler: Sampler) -> dict[str, Any]:
    """Per-stage seconds and peak RSS from the wrapper's events.

    A stage runs from its callback (`stage` event) to the end of its store call (or, where that was not seen,
    to the next stage's callback); `key_s` is the hashing of its inputs before it. `startup_s` is interpreter
    start + imports + recipe load + source sync; `write_s` is train/val/rejects, exports, report and manifest."""
    events = info["events"]
    marks = [e for e in events if e["what"] in ("stage", "run_end")]
    stores = {e["name"]: e["end"] for e in events if e["what"] in ("store", "store_sharded")}
    keys: dict[str, float] = {}
    for e in events:
        if e["what"] == "key_parts":
            keys[e["name"]] = keys.get(e["name"], 0.0) + e["end"] - e["t"]
    stages = []
    for mark, following in zip(marks, marks[1:], strict=False):
        if mark["what"] != "stage":
            continue
        end = stores.get(mark["name"], following["t"]) if mark["state"] != "cached" else mark["t"]
        stages.append(
            {
                "name": mark["name"],
                "state": mark["state"],
                "seconds": round(max(0.0, end - mark["t"]), 3),
                "key_s": round(keys.get(mark["name"], 0.0), 3),
                "peak_rss_bytes": sampler.peak(mark["t"], end),
                "peak_anon_bytes": sampler.peak(mark["t"], end, field=3),
                "peak_main_rss_bytes": sampler.peak(mark["t"], end, field=4),
            }
        )
    out: dict[str, Any] = {
        "dataforge": info.get("dataforge"),
        "patched": info.get("patched", []),
        "stages": stages,
        "startup_s": round(next((e["t"] for e in events if e["what"] == "run"), info["ended"]) - start, 2),
        "import_s": round(info.get("imported", start) - info["started"], 2),
    }
    run = next((e for e in events if e["what"] == "run"), None)
    first = next((e for e in events if e["what"] in ("key_parts", "stage")), None)
    if run is not None and first is not None:
        out["prepare_s"] = round(first["t"] - run["t"], 2)  # executor start + graph, before the first stage
    write = next((e for e in events if e["what"] == "write"), None)
    if write is not None:
        out["write_s"] = round(write["end"] - write["t"], 2)
        out["write_peak_rss_bytes"] = sampler.peak(write["t"], write["end"])
        out["write_peak_anon_bytes"] = sampler.peak(write["t"], write["end"], field=3)
        out["write_peak_main_rss_bytes"] = sampler.peak(write["t"], write["end"], field=4)
    return out


def by_kind(result: dict[str, Any]) -> dict[str, float]:
    """Seconds per stage kind (`read:alpaca` → read), plus `key` (input hashing), `write` and `startup`."""
    kinds: dict[str, float] = {}
    for stage in result.get("stages", []):
        kind = stage["name"].split(":")[0]
        kinds[kind] = kinds.get(kind, 0.0) + stage["seconds"]
        kinds["key"] = kinds.get("key", 0.0) + stage["key_s"]
    for extra in ("write", "startup", "prepare"):
        if f"{extra}_s" in result:
            kinds[extra] = result[f"{extra}_s"]
    if kinds:
        kinds["other"] = max(0.0, result["wall_s"] - sum(kinds.values()))  # between stages, exit
    return {k: round(v, 2) for k, v in kinds.items()}


# --- the benchmark -----------------------------------------------------------------------------------------


def find_tokenizer(given: Path | None) -> Path:
    """The Qwen2.5 fixture: `--tokenizer`, else vendored, else $DATAFORGE_FIXTURES, else ../shared/fixtures."""
    if given is not None:
        return given.resolve()
    shared = os.environ.get("DATAFORGE_FIXTURES") or REPO.parent / "shared" / "fixtures"
    for root in (REPO / "tests" / "fixtures", Path(shared)):
        if (root / FIXTURE / "tokenizer_config.json").is_file():
            return (root / FIXTURE).resolve()
    raise SystemExit(f"error: the Qwen2.5 fixture tokenizer ({FIXTURE}) is not in tests/fixtures nor {shared}")


def dataset(work: Path, rows: int, seed: int) -> tuple[Path, dict[str, Any], float]:
    """The generated sources for (rows, seed), generated unless cached; (folder, info, seconds generating)."""
    import scale_data

    folder = work / f"{rows}-s{seed}" / "data"
    info = scale_data.cached(folder, rows, seed)
    if info is not None:
        return folder, info, 0.0
    print(f"generating {rows:,} rows (seed {seed}) into {folder} ...", file=sys.stderr, flush=True)
    start = time.time()
    info = scale_data.generate(folder, rows, seed)
    return folder, info, time.time() - start


def measure(args: argparse.Namespace, trees: list[Tree], tokenizer: Path) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    appends: list[dict[str, Any]] = []
    sizes = sorted(args.rows)
    for rows in sizes:
        data, info, gen_s = dataset(args.work, rows, args.seed)
        for tree in trees:
            for workers in args.workers if tree.engine else [None]:
                result = build_once(args, tree, tokenizer, data, rows, workers)
                result.update(tree=tree.label, rows=rows, workers=workers, data=_data_summary(info, gen_s))
                runs.append(result)
                _say(result)
                if args.append_check and rows == sizes[-1] and result["rc"] == 0:
                    appends.append(append_check(args, tree, tokenizer, data, rows, workers, result))
    return {"runs": runs, "appends": appends}


def build_once(
    args: argparse.Namespace, tree: Tree, tokenizer: Path, data: Path, rows: int, workers: int | None
) -> dict[str, Any]:
    """A cold build of the size's data under `tree`: the recipe written, the build folder removed, measured."""
    import scale_data

    label = tree.label + (f"-w{workers}" if workers else "")
    folder = data.parent
    build_dir = folder / "builds" / label
    shutil.rmtree(build_dir, ignore_errors=True)
    recipe = scale_data.write_recipe(
        folder / f"mix-{label}.yaml", data, tokenizer=tokenizer, build_dir=build_dir, workers=workers
    )
    print(f"building {rows:,} rows with {label} ...", file=sys.stderr, flush=True)
    return run_build(recipe, tree, folder / f"build-{label}.log", args.interval, args.timeout)


def append_check(
    args: argparse.Namespace,
    tree: Tree,
    tokenizer: Path,
    data: Path,
    rows: int,
    workers: int | None,
    cold: dict[str, Any],
) -> dict[str, Any]:
    """Append 1% new rows to one JSONL source, rebuild on the cold build's cache, time it; then undo the append
    (truncate the file back), so the cached data set stays the one `generate` wrote."""
    import scale_data

    label = tree.label + (f"-w{workers}" if workers else "")
    path = data / APPEND_SOURCE[0]
    size = path.stat().st_size
    added = max(1, rows // 100)
    try:
        scale_data.append_rows(path, APPEND_SOURCE[1], added, args.seed)
        print(f"rebuilding {label} after appending {added:,} rows to {path.name} ...", file=sys.stderr, flush=True)
        recipe = data.parent / f"mix-{label}.yaml"
        warm = run_build(recipe, tree, data.parent / f"append-{label}.log", args.interval, args.timeout)
    finally:
        with path.open("r+b") as f:
            f.truncate(size)
    rerun = [s["name"] for s in warm.get("stages", []) if s["state"] != "cached"]
    summary = {
        "tree": tree.label,
        "workers": workers,
        "rows": rows,
        "appended_rows": added,
        "source": APPEND_SOURCE[1],
        "cold_wall_s": cold["wall_s"],
        "rebuild_wall_s": warm["wall_s"],
        "ratio": round(warm["wall_s"] / cold["wall_s"], 3) if cold["wall_s"] else None,
        "stages_rerun": rerun,
        "stages_total": len(warm.get("stages", [])),
        "rebuild": warm,
    }
    print(
        f"  append: {summary['rebuild_wall_s']} s vs cold {summary['cold_wall_s']} s; re-ran {len(rerun)} stages",
        file=sys.stderr,
    )
    return summary


def _data_summary(info: dict[str, Any], gen_s: float) -> dict[str, Any]:
    return {
        "json_bytes": info["json_bytes"],
        "file_bytes": info["bytes"],
        "exact_duplicates": info["exact_duplicates"],
        "near_duplicates": info["near_duplicates"],
        "generated_s": round(gen_s, 1),
    }


def _say(result: dict[str, Any]) -> None:
    status = "ok" if result["rc"] == 0 else f"FAILED (exit {result['rc']}, see {result['log']})"
    print(
        f"  {result['rows']:,} rows, {result['tree']}: {result['wall_s']} s, peak RSS "
        f"{_gb(result['peak_rss_bytes'])}, {status}",
        file=sys.stderr,
        flush=True,
    )


# --- derived figures and the table -------------------------------------------------------------------------


def cores() -> int:
    return len(os.sched_getaffinity(0))


def derive(results: dict[str, Any]) -> None:
    """Add rows/s, rows/s per core, rows per CPU second and growth exponents (wall, RSS, per stage kind) between
    consecutive sizes of the same tree and workers."""
    available = cores()
    for run in results["runs"]:
        used = min(available, run["workers"] or available)
        run["cores"] = used
        run["rows_per_s"] = round(run["rows"] / run["wall_s"], 1)
        run["rows_per_s_per_core"] = round(run["rows"] / run["wall_s"] / used, 1)
        run["rows_per_cpu_s"] = round(run["rows"] / run["cpu_s"], 1) if run["cpu_s"] else None
        run["seconds_by_kind"] = by_kind(run)
    series: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for run in results["runs"]:
        if run["rc"] == 0:
            series.setdefault((run["tree"], run["workers"]), []).append(run)
    for runs in series.values():
        for small, large in zip(runs, runs[1:], strict=False):
            large["exponent"] = _exponent(small["wall_s"], large["wall_s"], small["rows"], large["rows"])
            large["rss_exponent"] = _exponent(
                small["peak_rss_bytes"], large["peak_rss_bytes"], small["rows"], large["rows"]
            )
            large["kind_exponents"] = {
                kind: _exponent(small["seconds_by_kind"].get(kind, 0), s, small["rows"], large["rows"])
                for kind, s in large["seconds_by_kind"].items()
            }


def _exponent(t1: float, t2: float, n1: int, n2: int) -> float | None:
    """log(t2/t1) / log(n2/n1): 1 is linear; None where a figure is zero."""
    if t1 <= 0 or t2 <= 0 or n1 == n2:
        return None
    return round(math.log(t2 / t1) / math.log(n2 / n1), 3)


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def _f(x: Any, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def markdown(results: dict[str, Any], env: dict[str, Any]) -> str:
    runs = results["runs"]
    lines = [
        f"# Scale benchmark ({env['cores']} cores, {env['memory_gb']} GB, load {env['load_before']} → "
        f"{env['load_after']})",
        "",
        "| tree | workers | rows | data | wall | CPU | peak RSS | procs | rows/s | rows/s/core | exponent | RSS exp. |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in runs:
        if r["rc"] != 0:
            lines.append(f"| {r['tree']} | {r['workers'] or '–'} | {r['rows']:,} | | failed (exit {r['rc']}) |||||||")
            continue
        lines.append(
            f"| {r['tree']} | {r['workers'] or 'default'} | {r['rows']:,} | {r['data']['json_bytes'] / 1e6:,.0f} MB "
            f"| {r['wall_s']:.1f} s | {r['cpu_s']:.1f} s | {_gb(r['peak_rss_bytes'])} | {r['peak_processes']} "
            f"| {r['rows_per_s']:,.0f} | {r['rows_per_s_per_core']:,.0f} | {_f(r.get('exponent'))} "
            f"| {_f(r.get('rss_exponent'))} |"
        )
    kinds = [
        k
        for k in ("startup", "prepare", *STAGE_ORDER, "key", "other")
        if any(k in r.get("seconds_by_kind", {}) for r in runs)
    ]
    if kinds:
        lines += [
            "",
            "Seconds per stage (summed over sources). `startup`: interpreter, imports, recipe, source sync; "
            "`prepare`: from the runner's start to the first stage (graph, executor start); `key`: hashing inputs "
            "for cache keys; "
            "`write`: train/val/rejects, exports, report, manifest; `other`: the rest of the wall time (between "
            "stages, exit):",
            "",
            "| tree | workers | rows | " + " | ".join(kinds) + " |",
            "|---|--:|--:|" + "--:|" * len(kinds),
        ]
        for r in runs:
            if r["rc"] == 0:
                cells = [_f(r["seconds_by_kind"].get(k), 1) for k in kinds]
                lines.append(
                    f"| {r['tree']} | {r['workers'] or 'default'} | {r['rows']:,} | " + " | ".join(cells) + " |"
                )
        for what, title in (
            ("rss", "Peak RSS of the process tree per stage"),
            ("anon", "Peak anonymous RSS of the process tree per stage (no file-backed or shared pages)"),
            ("main_rss", "Peak RSS of the build's own process per stage (its workers left out)"),
        ):
            lines += [
                "",
                f"{title} (GB, max over sources; – where a stage ended between samples):",
                "",
                "| tree | workers | rows | " + " | ".join(kinds) + " |",
                "|---|--:|--:|" + "--:|" * len(kinds),
            ]
            for r in runs:
                if r["rc"] == 0:
                    cells = " | ".join(_kind_peaks(r, kinds, what))
                    lines.append(f"| {r['tree']} | {r['workers'] or 'default'} | {r['rows']:,} | {cells} |")
    lines += _comparisons(runs)
    if results["appends"]:
        lines += [
            "",
            "| tree | rows | +rows | cold | rebuild | rebuild / cold | stages re-run |",
            "|---|--:|--:|--:|--:|--:|---|",
        ]
        for a in results["appends"]:
            lines.append(
                f"| {a['tree']} | {a['rows']:,} | {a['appended_rows']:,} ({a['source']}) | {a['cold_wall_s']:.1f} s "
                f"| {a['rebuild_wall_s']:.1f} s | {_f(a['ratio'])} | {len(a['stages_rerun'])} of {a['stages_total']}: "
                f"{', '.join(a['stages_rerun'])} |"
            )
    return "\n".join(lines) + "\n"


def _kind_peaks(run: dict[str, Any], kinds: list[str], what: str = "rss") -> list[str]:
    """Per stage kind, the largest `peak_<what>_bytes` over its stages, in GB."""
    peaks: dict[str, int] = {}
    for stage in run.get("stages", []):
        kind = stage["name"].split(":")[0]
        peaks[kind] = max(peaks.get(kind, 0), stage.get(f"peak_{what}_bytes", 0))
    peaks["write"] = run.get(f"write_peak_{what}_bytes", 0)
    return [f"{peaks[k] / 1e9:.2f}" if peaks.get(k) else "–" for k in kinds]


def _comparisons(runs: list[dict[str, Any]]) -> list[str]:
    """Baseline ÷ current and 1 worker ÷ N workers, per size, where both ran."""
    ok = {(r["tree"], r["workers"], r["rows"]): r for r in runs if r["rc"] == 0}
    lines: list[str] = []
    for (tree, _workers, rows), r in ok.items():
        cur = next((c for (t, _, n), c in ok.items() if t == "current" and n == rows), None)
        if tree == "current" or cur is None:
            continue
        n = cur["workers"]
        against = f"current ({n} worker{'s' if n > 1 else ''})" if n else "current"
        lines.append(
            f"| {rows:,} | {tree} vs {against} | {r['wall_s'] / cur['wall_s']:.2f}× | "
            f"{r['peak_rss_bytes'] / max(cur['peak_rss_bytes'], 1):.2f}× |"
        )
    if lines:
        lines = ["", "| rows | compared | wall: it ÷ current | peak RSS: it ÷ current |", "|--:|---|--:|--:|", *lines]
    scaling = []
    for (tree, workers, rows), r in ok.items():
        one = ok.get((tree, 1, rows))
        if workers and workers > 1 and one is not None:
            scaling.append(f"| {tree} | {rows:,} | {workers} | {one['wall_s'] / r['wall_s']:.2f}× |")
    if scaling:
        lines += ["", "| tree | rows | workers | speed-up over 1 worker |", "|---|--:|--:|--:|", *scaling]
    return lines


def environment() -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    with open("/proc/meminfo") as f:
        memory = int(next(line for line in f if line.startswith("MemTotal")).split()[1]) * 1024
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cores": cores(),
        "memory_gb": round(memory / 1e9, 1),
        "commit": commit,
        "load_before": round(os.getloadavg()[0], 2),
    }


def _ints(text: str) -> list[int]:
    return [int(float(x)) for x in text.replace("_", "").split(",") if x.strip()]


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == CHILD_MARK:
        _child(Path(sys.argv[2]), sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=_ints, default=[100_000, 1_000_000], help="sizes, e.g. 10000,100000")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workers", type=_ints, default=[None], help="engine: {workers: N} in the recipe; a list (1,2) runs each"
    )
    parser.add_argument("--baseline-src", type=Path, help="another source tree (checkout or git archive export)")
    parser.add_argument("--append-check", action="store_true", help="after the largest size: +1%% rows, rebuild")
    parser.add_argument("--json", type=Path, help="where every number goes (default <work>/scale.json)")
    parser.add_argument("--work", type=Path, default=HERE / "out" / "scale", help="generated data and builds")
    parser.add_argument("--tokenizer", type=Path, help="the tokenizer folder (default: the Qwen2.5 fixture)")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between RSS samples")
    parser.add_argument("--timeout", type=float, help="seconds a build may take before it is killed")
    args = parser.parse_args()
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    trees = [Tree("current", package_root(REPO), engine=True)]
    if args.baseline_src is not None:
        trees.append(Tree("baseline", package_root(args.baseline_src), engine=False))
    env = environment()
    env["trees"] = {t.label: str(t.path) for t in trees}
    results = measure(args, trees, find_tokenizer(args.tokenizer))
    env["load_after"] = round(os.getloadavg()[0], 2)
    derive(results)
    text = markdown(results, env)
    print(text)
    (args.work / "scale.md").write_text(text, encoding="utf-8")
    out = args.json or args.work / "scale.json"
    out.write_text(json.dumps({"environment": env, **results}, indent=2) + "\n", encoding="utf-8")
    print(f"every number: {out}", file=sys.stderr)
    if any(r["rc"] != 0 for r in results["runs"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
