#!/usr/bin/env python
"""Packing throughput, efficiency and cost: dataforge's `pack` against trl's `pack_dataset(strategy="bfd")`, and
against the render it follows.

Data (seeded, generated) for (1)–(3): token lengths drawn log-uniform between 16 and 2,048 tokens (median ~180,
like single-turn SFT chats), with labels that train the second half of each row; `max_length` 2,048 by default,
so no row is too long and trl (which truncates) and dataforge (which never splits) see exactly the same rows.

Measured, each best of `--repeat`, on one process:

1. **bin assignment**: `pack.assign(lengths, …)` on a numpy array of `--length-rows` lengths (1,000,000 by
   default), rows/s, for `bfd`, `greedy` (first-fit in order) and `none`;
2. **packed rows**: `pack.pack(rows, …)` on an Arrow table of `--rows` rendered-like rows (100,000): assignment
   plus building `input_ids`, `labels`, `position_ids`, `seq_lengths`, `row_ids`, without and with the unpack
   check (`verify`, what the build runs); then trl's `pack_dataset(Dataset, max_length, strategy="bfd")` on a
   `datasets.Dataset` of the same rows' `input_ids` and `labels` (what `SFTTrainer` runs when `packing=True`):
   as SFTTrainer calls it (the map's default batches of 1,000 rows, each packed on its own), and with
   `map_kwargs={"batch_size": None}` (one batch: the whole set); trl's `_pack_bfd` alone on the whole table;
3. **efficiency**: tokens ÷ (bins × max_length), for each of the above;
4. **cost against a render**: `--render-rows` generated Alpaca-like Examples (bench_render.py's generator and
   seed) rendered as bench_render.py measures dataforge (`render_rows` in the stage's batches of 512, the
   Arrow → Python conversion included, Qwen2.5 fixture tokenizer, one core: a fresh subprocess with
   OMP/RAYON threads 1 and TOKENIZERS_PARALLELISM=false); then, in the same process, `pack.pack_rendered` on
   those rendered rows (what the render stage runs for a target with `pack:`: filter + pack + unpack check),
   also with a `loss_weights` column added (1.0 on trained tokens, as `train_on: weighted` writes it).
   Cost = pack time ÷ render time (wall; CPU too); the issue's target is under 5%.

Checks (the script exits non-zero when one fails): dataforge's BFD bins equal trl's whole-set BFD bins row for
row; every row is packed once; trained tokens are unchanged; the rendered rows pack without a row left out.

    python benchmarks/bench_pack.py                      # 1,000,000 lengths, 100,000 rows, 20,000 rendered
    python benchmarks/bench_pack.py --rows 20000 --length-rows 200000 --render-rows 3000 --repeat 1

Results: a Markdown table on stdout and in benchmarks/out/pack.md; every number in benchmarks/out/pack.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from dataforge import pack as P  # noqa: E402

RENDER_SEED = 20240601  # bench_render.py's default seed: the same generated Examples
TARGET_COST = 0.05  # pack + check ÷ render (the issue)


def lengths_of(n: int, seed: int, low: int = 16, high: int = 2048) -> np.ndarray:
    """`n` lengths, log-uniform in [low, high]."""
    rng = np.random.default_rng(seed)
    return np.exp(rng.uniform(np.log(low), np.log(high), n)).astype(np.int64)


def rows_of(lengths: np.ndarray, seed: int) -> pa.Table:
    """Rendered-like rows (`id`, `input_ids`, `labels`) built column-wise, so generation is quick."""
    rng = np.random.default_rng(seed)
    total = int(lengths.sum())
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int32)
    ids = rng.integers(0, 50_000, total, dtype=np.int32)
    within = np.arange(total) - np.repeat(offsets[:-1], lengths)
    labels = np.where(within >= np.repeat(lengths // 2, lengths), ids, -100).astype(np.int32)
    return pa.table(
        {
            "id": pa.array([f"r{i}" for i in range(len(lengths))]),
            "input_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(ids)),
            "labels": pa.ListArray.from_arrays(pa.array(offsets), pa.array(labels)),
        }
    )


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """(fastest wall seconds, fastest CPU seconds, the last result) of `repeat` calls (a shared machine's slow
    spells lengthen some calls: the fastest is the one closest to the work itself)."""
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        start, cpu = time.perf_counter(), cpu_seconds()
        result = fn()
        walls.append(time.perf_counter() - start)
        cpus.append(cpu_seconds() - cpu)
    return min(walls), min(cpus), result


def efficiency(tokens: int, bins: int, max_length: int) -> float:
    return tokens / (bins * max_length) if bins else 0.0


def bins_from_trl(table: pa.Table) -> list[list[int]]:
    """Row indices per trl bin, recovered from each segment's first token (rows carry their index in it)."""
    out = []
    ids = table["input_ids"].to_pylist()
    for row, seq in zip(ids, table["seq_lengths"].to_pylist(), strict=True):
        starts = np.r_[0, np.cumsum(seq)[:-1]]
        out.append([row[s] for s in starts])
    return out


def with_loss_weights(rendered: pa.Table) -> pa.Table:
    """`rendered` plus `loss_weights` as `train_on: weighted` writes it: float32 per token, 1.0 where trained."""
    labels = rendered["labels"].combine_chunks()
    values = labels.values.to_numpy(zero_copy_only=False)
    weights = pa.array(np.where(values != P.IGNORE, 1.0, 0.0).astype(np.float32))
    column = pa.ListArray.from_arrays(labels.offsets, weights)
    if "loss_weights" in rendered.column_names:  # render writes it, null outside `train_on: weighted`
        return rendered.set_column(rendered.column_names.index("loss_weights"), "loss_weights", column)
    return rendered.append_column("loss_weights", column)


def render_worker(rows: int, max_length: int, repeat: int, data_dir: Path) -> dict[str, Any]:
    """Render `rows` Alpaca-like Examples as bench_render.py measures dataforge, then pack the rendered rows as
    the render stage does (`pack_rendered`), in this process (started with one-core settings by `main`)."""
    import bench_render as R

    for key, value in R.ONE_CORE.items():  # before transformers / tokenizers are imported
        os.environ[key] = value
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    import dataforge.render.engine  # noqa: F401 - imports are never timed

    path = R.generate("alpaca", rows, RENDER_SEED, data_dir)
    table, _, target = R._load(path, R.default_tokenizer())
    start, cpu = time.perf_counter(), cpu_seconds()
    results, _ = R._dataforge_pass(table, target)
    render_wall, render_cpu = time.perf_counter() - start, cpu_seconds() - cpu
    rendered = pa.concat_tables([r.table for r in results])  # one chunk per batch, as the stage's shards give
    tokens = int(pc_sum(rendered["n_tokens"]))
    out: dict[str, Any] = {
        "file": path.name,
        "rows": table.num_rows,
        "rendered": rendered.num_rows,
        "tokens": tokens,
        "render": {"seconds": render_wall, "cpu": render_cpu},
    }
    wall, cpu, (kept, packed) = timed(lambda: P.pack_rendered(rendered, max_length, "bfd", True), repeat)
    out["pack_rendered"] = {"seconds": wall, "cpu": cpu, "bins": packed.stats["bins"]}
    out["efficiency"] = packed.stats["efficiency"]
    out["rows_packed"] = packed.stats["rows_packed"]
    out["left_out"] = {k: len(v) for k, v in packed.left_out.items()}
    out["balanced"] = packed.stats["trained_tokens"]["balanced"] and kept.num_rows == rendered.num_rows
    rows_in = rendered.select(["id", "input_ids", "labels"])
    wall, cpu, built = timed(lambda: P.pack(rows_in, max_length, "bfd", verify=False), repeat)
    out["build"] = {"seconds": wall, "cpu": cpu}
    wall, cpu, problems = timed(lambda: P.check_unpack(rows_in, built.table, []), repeat)
    out["check"] = {"seconds": wall, "cpu": cpu, "problems": problems}
    weighted = with_loss_weights(rendered)
    wall, cpu, (_, packed_weighted) = timed(lambda: P.pack_rendered(weighted, max_length, "bfd", True), repeat)
    out["pack_rendered_loss_weights"] = {"seconds": wall, "cpu": cpu}
    out["loss_weights_carried"] = "loss_weights" in packed_weighted.table.column_names
    return out


def pc_sum(column: pa.ChunkedArray) -> int:
    import pyarrow.compute as pc

    return pc.sum(column).as_py() or 0


def render_cost(args: argparse.Namespace) -> dict[str, Any]:
    """`render_worker` in a fresh subprocess with one-core settings (as bench_render.py runs each method)."""
    import bench_render as R

    cmd = [sys.executable, str(Path(__file__).resolve()), "--render-worker", "--render-rows", str(args.render_rows)]
    cmd += ["--max-length", str(args.max_length), "--repeat", str(args.repeat), "--data-dir", str(args.data_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **R.ONE_CORE})
    if done.returncode != 0:
        sys.exit(f"render worker failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--rows", type=int, default=100_000, help="rendered-like rows packed, dataforge and trl")
    parser.add_argument("--length-rows", type=int, default=1_000_000, help="lengths for the bin assignment alone")
    parser.add_argument("--render-rows", type=int, default=20_000, help="Alpaca-like Examples rendered (0 skips)")
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=OUT / "data", help="where generated Examples are cached")
    parser.add_argument("--render-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.render_worker:
        print(json.dumps(render_worker(args.render_rows, args.max_length, args.repeat, args.data_dir)))
        return 0
    failures: list[str] = []
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    results |= {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
    cap = args.max_length

    # (1) bin assignment
    many = lengths_of(args.length_rows, args.seed)
    bookkeeping = {}
    for strategy in P.STRATEGIES:
        repeat = 1 if strategy == "greedy" else args.repeat  # first-fit is per row in Python: one run is enough
        seconds, cpu, assignment = timed(lambda s=strategy: P.assign(many, cap, s), repeat)
        bookkeeping[strategy] = {
            "seconds": seconds,
            "cpu": cpu,
            "rows_per_s": args.length_rows / seconds,
            "bins": assignment.n_bins,
            "efficiency": efficiency(int(many.sum()), assignment.n_bins, cap),
        }
    results["bookkeeping"] = bookkeeping

    # (2) packed rows, dataforge
    lengths = lengths_of(args.rows, args.seed + 1)
    rows = rows_of(lengths, args.seed + 2)
    tokens = int(lengths.sum())
    built = {}
    for _ in range(args.repeat):  # interleaved, so a slow spell of a shared machine hits both
        for verify in (False, True):
            seconds, cpu, packed = timed(lambda v=verify: P.pack(rows, cap, "bfd", verify=v), 1)
            key = "verify" if verify else "build"
            if key not in built or seconds < built[key]["seconds"]:
                built[key] = {"seconds": seconds, "rows_per_s": args.rows / seconds}
            built[key]["cpu"] = min(cpu, built[key].get("cpu", cpu))
    stats = packed.stats
    if not stats["trained_tokens"]["balanced"] or stats["rows_packed"] != args.rows:
        failures.append(
            f"dataforge lost rows or trained tokens: {stats['rows_packed']} rows, {stats['trained_tokens']}"
        )
    built["bins"], built["efficiency"] = stats["bins"], stats["efficiency"]
    results["dataforge"] = built

    # (2) trl, same rows
    from datasets import Dataset
    from datasets.table import InMemoryTable
    from trl import pack_dataset
    from trl.data_utils import _pack_bfd

    dataset = Dataset(InMemoryTable(rows.select(["input_ids", "labels"])))  # the same Arrow rows, not copied
    trl_results = {}
    for name, kwargs in (
        ("pack_dataset (SFTTrainer: batches of 1,000)", {}),
        ("pack_dataset (one batch)", {"batch_size": None}),
    ):
        seconds, cpu, out = timed(
            lambda k=kwargs: pack_dataset(dataset, cap, "bfd", map_kwargs={**k, "load_from_cache_file": False}),
            args.repeat,
        )
        n_tokens = sum(sum(s) for s in out["seq_lengths"])
        trl_results[name] = {
            "seconds": seconds,
            "cpu": cpu,
            "rows_per_s": args.rows / seconds,
            "bins": out.num_rows,
            "efficiency": efficiency(n_tokens, out.num_rows, cap),
        }
        if n_tokens != tokens:
            failures.append(f"trl {name} packed {n_tokens} tokens, expected {tokens}")
    index_rows = pa.table(
        {
            "input_ids": pa.ListArray.from_arrays(
                rows["input_ids"].combine_chunks().offsets,
                pa.array(np.repeat(np.arange(args.rows), lengths).astype(np.int64)),
            )
        }
    )
    seconds, cpu, raw = timed(lambda: _pack_bfd(index_rows, cap), args.repeat)
    trl_results["_pack_bfd (whole table)"] = {
        "seconds": seconds,
        "cpu": cpu,
        "rows_per_s": args.rows / seconds,
        "bins": raw.num_rows,
        "efficiency": efficiency(tokens, raw.num_rows, cap),
    }
    results["trl"] = trl_results
    ours = P.assign(lengths, cap, "bfd")
    mine = [ours.order[a:b].tolist() for a, b in zip(ours.bin_offsets[:-1], ours.bin_offsets[1:], strict=True)]
    if mine != bins_from_trl(raw):
        failures.append("dataforge's BFD bins differ from trl's _pack_bfd bins")
    results["same_bins_as_trl"] = not any("differ" in f for f in failures)

    # (4) against a render of the same rows
    cost = render_cost(args) if args.render_rows > 0 else None
    results["render_cost"] = cost
    if cost is not None:
        if not cost["balanced"] or cost["rows_packed"] != cost["rendered"] or cost["check"]["problems"]:
            failures.append(f"the rendered rows did not pack whole: {cost['left_out']}, {cost['check']['problems']}")
        if not cost["loss_weights_carried"]:
            failures.append("packing the rendered rows with loss_weights did not carry them")

    lines = [
        f"Packing {args.rows:,} rows ({tokens:,} tokens, lengths log-uniform 16–2,048) into {cap:,}-token bins; "
        f"bin assignment on {args.length_rows:,} lengths. Best of {args.repeat} (wall and CPU time each), one "
        "process.",
        "",
        "| what | method | rows | rows/s | rows per CPU s | tokens/s | bins | efficiency |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]

    def row(what: str, method: str, n: int, r: dict[str, Any], bins: int, share: float, per_row: float) -> str:
        return (
            f"| {what} | {method} | {n:,} | {r['rows_per_s']:,.0f} | {n / r['cpu']:,.0f} "
            f"| {r['rows_per_s'] * per_row / 1e6:,.1f}M | {bins:,} | {share:.2%} |"
        )

    mean_many, mean = float(many.mean()), tokens / args.rows
    for strategy, r in bookkeeping.items():
        lines.append(
            row(
                "bin assignment",
                f"dataforge `assign` {strategy}",
                args.length_rows,
                r,
                r["bins"],
                r["efficiency"],
                mean_many,
            )
        )
    for key, label in (("build", "dataforge `pack` bfd"), ("verify", "dataforge `pack` bfd + unpack check")):
        lines.append(row("packed rows", label, args.rows, built[key], built["bins"], built["efficiency"], mean))
    for name, r in trl_results.items():
        function, how = name.split(" ", 1)
        lines.append(row("packed rows", f"trl `{function}` {how}", args.rows, r, r["bins"], r["efficiency"], mean))
    lines += ["", f"dataforge's BFD bins equal trl's whole-table BFD bins: {results['same_bins_as_trl']}."]
    if cost is not None:
        render = cost["render"]
        lines += [
            "",
            f"Against a render of the same rows: {cost['rows']:,} Alpaca-like Examples (bench_render.py's generator) "
            f"rendered by `render_rows` on one core, Qwen2.5 tokenizer ({cost['tokens']:,} tokens), then packed "
            f"into {cap:,}-token rows as the render stage does ({cost['pack_rendered']['bins']:,} bins, efficiency "
            f"{cost['efficiency']:.2%}). Packing best of {args.repeat}.",
            "",
            "| step | seconds | CPU s | rows/s | tokens/s | of the render (wall) | of the render (CPU) |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]

        def step(label: str, r: dict[str, Any]) -> str:
            return (
                f"| {label} | {r['seconds']:.3f} | {r['cpu']:.3f} | {cost['rendered'] / r['seconds']:,.0f} "
                f"| {cost['tokens'] / r['seconds'] / 1e6:,.2f}M | {r['seconds'] / render['seconds']:.2%} "
                f"| {r['cpu'] / render['cpu']:.2%} |"
            )

        lines += [
            step("render (`render_rows`, batches of 512)", render),
            step("**pack + unpack check** (`pack_rendered`, as the build runs it)", cost["pack_rendered"]),
            step("… packed rows alone (`pack`, verify off)", cost["build"]),
            step("… unpack check alone (`check_unpack`)", cost["check"]),
            step("pack + unpack check with `loss_weights` (`train_on: weighted`)", cost["pack_rendered_loss_weights"]),
        ]
        share = cost["pack_rendered"]["seconds"] / render["seconds"]
        results["cost_share"] = share
        lines += [
            "",
            f"Packing (with the check) costs {share:.2%} of the render's wall time: target < {TARGET_COST:.0%} "
            f"{'met' if share < TARGET_COST else 'NOT met'}.",
        ]
    text = "\n".join(lines)
    print(text)
    OUT.mkdir(exist_ok=True)
    (OUT / "pack.md").write_text(text + "\n", encoding="utf-8")
    (OUT / "pack.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    for failure in failures:
        print("FAILED:", failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
