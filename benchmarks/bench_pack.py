#!/usr/bin/env python
"""Packing throughput and efficiency: dataforge's `pack` against trl's `pack_dataset(strategy="bfd")`, same rows.

Data (seeded, generated): token lengths drawn log-uniform between 16 and 2,048 tokens (median ~180, like
single-turn SFT chats), with labels that train the second half of each row; `max_length` 2,048 by default, so
no row is too long and trl (which truncates) and dataforge (which never splits) see exactly the same rows.

Measured, each best of `--repeat`, on one process:

* **length bookkeeping**: `pack.assign(lengths, …)` on a numpy array of `--length-rows` lengths (1,000,000 by
  default): the bin assignment alone, rows/s, for `bfd`, `greedy` (first-fit in order) and `none`;
* **packed rows**: `pack.pack(rows, …)` on an Arrow table of `--rows` rendered-like rows (100,000): assignment
  plus building `input_ids`, `labels`, `position_ids`, `seq_lengths`, `row_ids`; with and without the unpack
  check (`verify`);
* **trl**: `trl.pack_dataset(Dataset, max_length, strategy="bfd")` on a `datasets.Dataset` of the same rows'
  `input_ids` and `labels` (what `SFTTrainer` runs when `packing=True`): as SFTTrainer calls it (the map's
  default batches of 1,000 rows, each packed on its own), and with `map_kwargs={"batch_size": None}` (one batch:
  the whole set, trl's best efficiency). trl's `_pack_bfd` alone on the whole Arrow table is timed too.

Efficiency = tokens ÷ (bins × max_length). Checks (the script exits non-zero when one fails): dataforge's BFD
bins equal trl's whole-set BFD bins row for row; every row is packed once; trained tokens are unchanged.

    python benchmarks/bench_pack.py                      # 1,000,000 lengths, 100,000 rows
    python benchmarks/bench_pack.py --rows 20000 --length-rows 200000 --repeat 1

Results: a Markdown table on stdout and in benchmarks/out/pack.md; every number in benchmarks/out/pack.json.
"""

from __future__ import annotations

import argparse
import json
import platform
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

from dataforge import pack as P  # noqa: E402


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


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """(fastest wall time in seconds, the last result) of `repeat` calls."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--length-rows", type=int, default=1_000_000)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    failures: list[str] = []
    results: dict[str, Any] = {"args": vars(args), "python": platform.python_version(), "machine": platform.machine()}
    cap = args.max_length

    # length bookkeeping
    many = lengths_of(args.length_rows, args.seed)
    bookkeeping = {}
    for strategy in P.STRATEGIES:
        repeat = 1 if strategy == "greedy" else args.repeat  # first-fit is per row in Python: one run is enough
        seconds, assignment = best(lambda s=strategy: P.assign(many, cap, s), repeat)
        bookkeeping[strategy] = {
            "seconds": seconds,
            "rows_per_s": args.length_rows / seconds,
            "bins": assignment.n_bins,
            "efficiency": efficiency(int(many.sum()), assignment.n_bins, cap),
        }
    results["bookkeeping"] = bookkeeping

    # packed rows, dataforge
    lengths = lengths_of(args.rows, args.seed + 1)
    rows = rows_of(lengths, args.seed + 2)
    tokens = int(lengths.sum())
    built = {}
    for verify in (False, True):
        seconds, packed = best(lambda v=verify: P.pack(rows, cap, "bfd", verify=v), args.repeat)
        built["verify" if verify else "build"] = {"seconds": seconds, "rows_per_s": args.rows / seconds}
    stats = packed.stats
    if not stats["trained_tokens"]["balanced"] or stats["rows_packed"] != args.rows:
        failures.append(
            f"dataforge lost rows or trained tokens: {stats['rows_packed']} rows, {stats['trained_tokens']}"
        )
    built["bins"], built["efficiency"] = stats["bins"], stats["efficiency"]
    results["dataforge"] = built

    # trl, same rows
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
        seconds, out = best(
            lambda k=kwargs: pack_dataset(dataset, cap, "bfd", map_kwargs={**k, "load_from_cache_file": False}),
            args.repeat,
        )
        n_tokens = sum(sum(s) for s in out["seq_lengths"])
        trl_results[name] = {
            "seconds": seconds,
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
    seconds, raw = best(lambda: _pack_bfd(index_rows, cap), args.repeat)
    trl_results["_pack_bfd (whole table)"] = {
        "seconds": seconds,
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

    lines = [
        f"Packing {args.rows:,} rows ({tokens:,} tokens, lengths log-uniform 16–2,048) into {cap:,}-token bins; "
        f"length bookkeeping on {args.length_rows:,} lengths. Best of {args.repeat}, one process.",
        "",
        "| what | method | rows/s | bins | efficiency |",
        "|---|---|---:|---:|---:|",
    ]

    def row(what: str, method: str, r: dict[str, Any], bins: int, share: float) -> str:
        return f"| {what} | {method} | {r['rows_per_s']:,.0f} | {bins:,} | {share:.2%} |"

    for strategy, r in bookkeeping.items():
        lines.append(row("length bookkeeping", f"dataforge `assign` {strategy}", r, r["bins"], r["efficiency"]))
    lines.append(row("packed rows", "dataforge `pack` bfd", built["build"], built["bins"], built["efficiency"]))
    lines.append(
        row(
            "packed rows + unpack check",
            "dataforge `pack` bfd, verify",
            built["verify"],
            built["bins"],
            built["efficiency"],
        )
    )
    for name, r in trl_results.items():
        function, how = name.split(" ", 1)
        lines.append(row("packed rows", f"trl `{function}` {how}", r, r["bins"], r["efficiency"]))
    lines += ["", f"dataforge's BFD bins equal trl's whole-table BFD bins: {results['same_bins_as_trl']}."]
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
