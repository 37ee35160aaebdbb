#!/usr/bin/env python
"""Ingest throughput: dataforge's read → convert → validate against a naive per-row Python baseline.

Generates deterministic (seeded) JSONL files in the alpaca, sharegpt and openai formats, then measures each
method in a fresh subprocess, so that nothing (Arrow's thread pools, allocator state, peak RSS) leaks from one
measurement into the next:

* `json.loads`            every line parsed, nothing else (a reference, not a method);
* `naive`                 per line: `json.loads` + `jsonschema` (a pre-built Draft202012Validator on the
                          format's JSON Schema) + a per-row converter to `{role, content}` messages with the
                          structural checks of dataforge's validate stage;
* `dataforge (all cores)` `stages.read.read_source` → `stages.convert.convert_raw` →
                          `stages.validate.validate_examples`, exactly what a build runs per source;
* `dataforge (1 core)`    the same with Arrow's CPU and I/O pools restricted to one thread.

rows/s is rows ÷ wall seconds; rows/s per core is rows ÷ CPU seconds (user + system, all threads), i.e. what
one fully busy core delivers. The ratio is a method's rows/s ÷ the naive baseline's rows/s for the same file
in the same run.

    python benchmarks/bench_ingest.py                        # 200,000 rows per format
    python benchmarks/bench_ingest.py --rows 50000 --formats alpaca,openai

Results: a Markdown table on stdout and in benchmarks/out/ingest.md; every number in
benchmarks/out/ingest.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
FORMATS = ("alpaca", "sharegpt", "openai")
GENERATOR_VERSION = 2  # bump when the generated data changes, so cached files are regenerated
TARGET_PER_CORE = 100_000  # rows/s per core, from the issue
SAMPLE = 2_000  # valid rows whose converted messages are compared between the two methods

# --- the generator ------------------------------------------------------------------------------------------

_WORDS = (
    "the of and to in is that for it as with was on be by this are or from at an which have not but they "
    "their one all can more has were we when there been if will would about so what also some into its "
    "model data training example answer question function value return list string number result first "
    "step then because however therefore each should could must user system assistant explain describe "
    "write summarize translate compare analyse calculate given following input output code python error "
    "file line table column row average total percent market policy history science energy water city "
    "student teacher patient doctor recipe ingredient minutes temperature country language music story "
    "customer product price order account password network server request response database query index "
    "e.g., i.e., etc. (see above) [1] 42 3.14 2024 100% $20 #3 — – … café naïve résumé Zürich São_Paulo "
    "数据 模型 训练 问题 回答 данные модель ответ δεδομένα 🙂 ✅ 🚀"
).split()
_PUNCT = (
    ". ",
    ". ",
    ", ",
    ", ",
    "? ",
    "! ",
    ": ",
    "; ",
    ".\n\n",
    ".\n- ",
    ' "',
    '" ',
    "\n```python\nx = f(y)\n```\n",
)


def _pool(rng: random.Random, chars: int) -> str:
    """A long stream of word-like text with punctuation, newlines, quotes and some non-ASCII."""
    parts: list[str] = []
    size = 0
    while size < chars:
        words = rng.choices(_WORDS, k=rng.randint(4, 18))
        sentence = " ".join(words)
        sentence = sentence[0].upper() + sentence[1:] + rng.choice(_PUNCT)
        parts.append(sentence)
        size += len(sentence)
    return "".join(parts)


class _Text:
    """Message texts of 100-1000 characters (log-uniform: median ~320) cut from a seeded pool."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.pool = _pool(rng, 4_000_000)

    def __call__(self, lo: int = 100, hi: int = 1000) -> str:
        rng = self.rng
        n = int(lo * (hi / lo) ** rng.random())
        start = self.pool.find(" ", rng.randrange(len(self.pool) - 2 * hi)) + 1
        return self.pool[start : start + n].strip() or "x"


def _alpaca(text: _Text, rng: random.Random, broken: bool) -> dict[str, Any]:
    # Sizes follow real Alpaca data (LLaMA-Factory's alpaca_en_demo: rows of 841 bytes on average, median
    # 633): short instructions, optional input, longer answers.
    rec: dict[str, Any] = {
        "instruction": text(20, 250),
        "input": text(20, 400) if rng.random() < 0.4 else "",
        "output": text(50, 2000),
    }
    if rng.random() < 0.1:
        rec["system"] = text(100, 300)
    if rng.random() < 0.05:
        rec["history"] = [[text(), text()] for _ in range(rng.randint(1, 2))]
    if broken:  # schema-valid, structurally invalid: both methods must reject it
        rec["output"] = ""
    return rec


def _exchanges(text: _Text, rng: random.Random) -> list[tuple[str, str]]:
    return [(text(), text()) for _ in range(rng.randint(1, 3))]


def _sharegpt(text: _Text, rng: random.Random, broken: bool) -> dict[str, Any]:
    turns = []
    for u, a in _exchanges(text, rng):
        turns += [{"from": "human", "value": u}, {"from": "gpt", "value": a}]
    rec: dict[str, Any] = {"conversations": turns}
    if rng.random() < 0.15:
        rec["system"] = text(100, 300)
    if broken:
        if rng.random() < 0.5:
            turns[-1]["from"] = "bot"  # unknown role (rejected by convert)
        else:
            turns[0]["value"] = ""  # empty content (rejected by validate)
    return rec


def _openai(text: _Text, rng: random.Random, broken: bool) -> dict[str, Any]:
    msgs = [{"role": "system", "content": text(100, 300)}] if rng.random() < 0.5 else []
    for u, a in _exchanges(text, rng):
        msgs += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
    if broken:
        if rng.random() < 0.5:
            msgs = [m for m in msgs if m["role"] != "assistant"]  # no assistant turn
        else:
            msgs[-1]["content"] = ""  # empty content
    return {"messages": msgs}


_MAKERS = {"alpaca": _alpaca, "sharegpt": _sharegpt, "openai": _openai}


def generate(fmt: str, rows: int, seed: int, invalid_rate: float, directory: Path) -> tuple[Path, dict[str, Any]]:
    """The JSONL file for (fmt, rows, seed, invalid_rate), generated once and reused while it is intact."""
    stem = f"{fmt}-{rows}-s{seed}-i{invalid_rate:g}-v{GENERATOR_VERSION}"
    path = directory / f"{stem}.jsonl"
    manifest = directory / f"{stem}.manifest.json"
    if path.exists() and manifest.exists():
        meta = json.loads(manifest.read_text())
        if meta.get("bytes") == path.stat().st_size:
            return path, meta
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{seed}:{fmt}")
    text = _Text(rng)
    make = _MAKERS[fmt]
    invalid = 0
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for _ in range(rows):
            broken = rng.random() < invalid_rate
            invalid += broken
            fh.write(json.dumps(make(text, rng, broken), ensure_ascii=False))
            fh.write("\n")
    tmp.replace(path)
    meta = {
        "format": fmt,
        "rows": rows,
        "seed": seed,
        "invalid_rate": invalid_rate,
        "invalid": invalid,
        "bytes": path.stat().st_size,
        "generator_version": GENERATOR_VERSION,
    }
    manifest.write_text(json.dumps(meta, indent=2))
    return path, meta


# --- the naive baseline -------------------------------------------------------------------------------------

_ROLES = frozenset({"system", "user", "assistant", "tool"})
_SHAREGPT_ROLE = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "system": "system",
    "observation": "tool",
    "tool": "tool",
    "function_call": "assistant",
}


def _naive_alpaca(rec: dict[str, Any]) -> list[dict[str, Any]] | None:
    msgs = []
    if rec.get("system"):
        msgs.append({"role": "system", "content": rec["system"]})
    for user, assistant in rec.get("history") or ():
        msgs.append({"role": "user", "content": user})
        msgs.append({"role": "assistant", "content": assistant})
    instruction, extra = rec.get("instruction") or "", rec.get("input") or ""
    user = f"{instruction}\n{extra}" if instruction and extra else extra or instruction
    msgs.append({"role": "user", "content": user})
    msgs.append({"role": "assistant", "content": rec.get("output")})
    return msgs


def _naive_sharegpt(rec: dict[str, Any]) -> list[dict[str, Any]] | None:
    msgs = [{"role": "system", "content": rec["system"]}] if rec.get("system") else []
    for turn in rec["conversations"]:
        role = _SHAREGPT_ROLE.get(turn["from"])
        if role is None:
            return None
        msgs.append({"role": role, "content": turn["value"]})
    return msgs


def _naive_openai(rec: dict[str, Any]) -> list[dict[str, Any]] | None:
    msgs = []
    for m in rec["messages"]:
        msg = {"role": m["role"], "content": m.get("content")}
        if m.get("tool_calls"):
            msg["tool_calls"] = m["tool_calls"]
        msgs.append(msg)
    return msgs


_NAIVE = {"alpaca": _naive_alpaca, "sharegpt": _naive_sharegpt, "openai": _naive_openai}


def _naive_valid(msgs: list[dict[str, Any]] | None) -> bool:
    """dataforge's validate rules for sft rows: known roles, content (or tool calls), system only first,
    at least one assistant turn."""
    if msgs is None:
        return False
    assistant = False
    for i, m in enumerate(msgs):
        role = m["role"]
        if role not in _ROLES:
            return False
        if not m["content"] and not (role == "assistant" and m.get("tool_calls")):
            return False
        if role == "system" and i > 0:
            return False
        assistant = assistant or role == "assistant"
    return assistant


# --- workers (run in a fresh subprocess each) ---------------------------------------------------------------


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _sys() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def _digest(rows) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(int(r).to_bytes(8, "little"))
    return h.hexdigest()[:16]


def _sample_digest(pairs: list[tuple[int, list[tuple[str, str | None]]]]) -> str:
    return hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode()).hexdigest()[:16]


def worker_json(path: Path, fmt: str) -> dict[str, Any]:
    rows = 0
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                json.loads(line)
                rows += 1
    return {"rows": rows}


def worker_naive(path: Path, fmt: str) -> dict[str, Any]:
    from jsonschema import Draft202012Validator

    from dataforge import formats

    validator = Draft202012Validator(formats.get(fmt).json_schema())
    convert = _NAIVE[fmt]
    rows = 0
    valid: list[int] = []
    t0, c0, s0 = time.perf_counter(), _cpu(), _sys()
    with path.open("rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = rows
            rows += 1
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if not isinstance(rec, dict) or not validator.is_valid(rec):
                continue
            if _naive_valid(convert(rec)):
                valid.append(row)
    wall, cpu, sys_s = time.perf_counter() - t0, _cpu() - c0, _sys() - s0
    # Untimed: the converted messages of the first SAMPLE valid rows, to compare with dataforge's.
    sample = []
    keep = set(valid[:SAMPLE])
    with path.open("rb") as fh:
        for row, line in enumerate(x for x in fh if x.strip()):
            if row in keep:
                msgs = convert(json.loads(line))
                sample.append((row, [(m["role"], m["content"]) for m in msgs]))
            if len(sample) == len(keep):
                break
    return {
        "rows": rows,
        "valid": len(valid),
        "valid_digest": _digest(valid),
        "sample_digest": _sample_digest(sample),
        "wall": wall,
        "cpu": cpu,
        "sys": sys_s,
    }


def worker_dataforge(path: Path, fmt: str) -> dict[str, Any]:
    from dataforge.recipe import Source
    from dataforge.stages.convert import convert_raw
    from dataforge.stages.read import read_source, source_files
    from dataforge.stages.validate import validate_examples

    def quiet(done: int, total: int, what: str) -> None:
        return None

    root = path.parent
    source = Source.model_validate({"name": "bench", "from": path.name, "format": fmt})
    t0, c0, s0 = time.perf_counter(), _cpu(), _sys()
    files = source_files(source, root)
    read = read_source(source, files, root, fmt, quiet)
    t1, c1, s1 = time.perf_counter(), _cpu(), _sys()
    converted = convert_raw(read.tables["raw"], fmt, "bench", quiet)
    t2, c2, s2 = time.perf_counter(), _cpu(), _sys()
    validated = validate_examples(converted.tables["examples"], quiet)
    t3, c3, s3 = time.perf_counter(), _cpu(), _sys()
    examples = validated.tables["examples"]
    rows_col = examples["row"].to_numpy()
    head = examples.slice(0, SAMPLE).select(["row", "messages"]).to_pylist()
    sample = [(r["row"], [(m["role"], m["content"]) for m in r["messages"]]) for r in head]
    return {
        "rows": read.stats["records"],
        "valid": examples.num_rows,
        "valid_digest": _digest(rows_col),
        "sample_digest": _sample_digest(sample),
        "wall": t3 - t0,
        "cpu": c3 - c0,
        "sys": s3 - s0,
        "stages": {  # [wall, CPU, system CPU] seconds
            "read": [t1 - t0, c1 - c0, s1 - s0],
            "convert": [t2 - t1, c2 - c1, s2 - s1],
            "validate": [t3 - t2, c3 - c2, s3 - s2],
        },
    }


def run_worker(method: str, path: Path, fmt: str, threads: int | None, repeat: int) -> dict[str, Any]:
    if threads is not None:
        import pyarrow as pa

        pa.set_cpu_count(threads)
        pa.set_io_thread_count(threads)
    import pyarrow as pa  # noqa: F811 - loaded up front by every worker, so imports are never timed

    import dataforge.formats  # noqa: F401
    import dataforge.stages.validate  # noqa: F401

    fn = {"json.loads": worker_json, "naive": worker_naive, "dataforge": worker_dataforge}[method]
    best: dict[str, Any] | None = None
    for _ in range(repeat):
        t0, c0, s0 = time.perf_counter(), _cpu(), _sys()
        result = fn(path, fmt)
        result.setdefault("wall", time.perf_counter() - t0)
        result.setdefault("cpu", _cpu() - c0)
        result.setdefault("sys", _sys() - s0)
        if best is None or result["wall"] < best["wall"]:
            best = result
    assert best is not None
    best["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    best["arrow_threads"] = pa.cpu_count()
    return best


# --- the driver ---------------------------------------------------------------------------------------------

METHODS = [  # (label, worker method, Arrow threads or None for the default)
    ("json.loads only (reference)", "json.loads", None),
    ("naive: json.loads + jsonschema + per-row convert", "naive", None),
    ("dataforge read→convert→validate (all cores)", "dataforge", None),
    ("dataforge read→convert→validate (1 core)", "dataforge", 1),
]


def measure(method: str, path: Path, fmt: str, threads: int | None, repeat: int) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        method,
        "--file",
        str(path),
        "--formats",
        fmt,
        "--repeat",
        str(repeat),
    ]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"worker {method} on {path.name} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _check(ok: bool, message: str) -> None:
    """A sanity check that holds under `python -O` too."""
    if not ok:
        sys.exit(f"sanity check failed: {message}")


def _fmt_int(x: float) -> str:
    return f"{x:,.0f}"


def render(results: list[dict[str, Any]], env: dict[str, Any]) -> str:
    lines = [
        f"Ingest throughput, {env['rows']:,} generated rows per format (seed {env['seed']}, "
        f"{env['invalid_rate']:.1%} structurally invalid), best of {env['repeat']}; {env['cpus']} CPUs, "
        f"Python {env['python']}, pyarrow {env['pyarrow']}. Files: "
        + ", ".join(f"{r['format']} {r['bytes'] / 2**20:,.0f} MiB" for r in results if r["method"] == "naive")
        + ".",
        "",
        "| format | method | rows | valid | seconds | CPU s (sys) | rows/s | rows/s per core | vs naive "
        "| peak RSS MiB |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        valid = f"{r['valid']:,}" if r["valid"] is not None else "–"
        lines.append(
            f"| {r['format']} | {r['label']} | {r['rows']:,} | {valid} | {r['wall']:.2f} | "
            f"{r['cpu']:.2f} ({r['sys'] / r['cpu']:.0%}) | "
            f"{_fmt_int(r['rows_per_s'])} | {_fmt_int(r['rows_per_cpu_s'])} | {r['ratio']:.2f}× | "
            f"{r['peak_rss_mib']:,.0f} |"
        )
    lines += [
        "",
        "rows/s = rows ÷ wall seconds; rows/s per core = rows ÷ CPU seconds (user + system, all threads); "
        "vs naive = rows/s ÷ the naive baseline's rows/s on the same file in this run. "
        f"Target: {TARGET_PER_CORE:,} rows/s per core for dataforge. (sys) is the kernel's share of the CPU "
        "time: mostly first-touch page faults on freshly allocated memory, which the naive loop hardly has.",
        "",
        "dataforge by stage: wall s / CPU s (system share of the CPU); the last columns say whether the "
        "per-core target is met, and rows per user-CPU second (what the code itself costs, without the "
        "kernel's page-fault work):",
        "",
        "| format | run | read | convert | validate | target met (per core) | rows/s per core, user CPU only |",
        "|---|---|--:|--:|--:|---|--:|",
    ]
    for r in results:
        if "stages" in r:
            s = r["stages"]
            cell = " | ".join(
                f"{s[k][0]:.2f} / {s[k][1]:.2f} ({s[k][2] / s[k][1]:.0%})" for k in ("read", "convert", "validate")
            )
            run = "1 core" if r["threads"] == 1 else "all cores"
            met = "yes" if r["rows_per_cpu_s"] >= TARGET_PER_CORE else "**no**"
            lines.append(f"| {r['format']} | {run} | {cell} | {met} | {_fmt_int(r['rows_per_user_s'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000, help="rows per format (default 200,000)")
    ap.add_argument("--formats", default=",".join(FORMATS), help="comma-separated subset of " + ",".join(FORMATS))
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument(
        "--invalid-rate",
        type=float,
        default=0.005,
        help="share of schema-valid but structurally invalid rows (default 0.005)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="runs per measurement, the best wall time kept (default 1)")
    ap.add_argument("--data-dir", type=Path, default=OUT / "data", help="where generated files are cached")
    ap.add_argument("--out", type=Path, default=OUT, help="where ingest.md and ingest.json go")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        print(json.dumps(run_worker(args.worker, args.file, args.formats, args.threads, args.repeat)))
        return 0

    fmts = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = [f for f in fmts if f not in FORMATS]
    if unknown:
        ap.error(f"unknown formats {unknown}; choose from {', '.join(FORMATS)}")

    import pyarrow as pa

    env = {
        "rows": args.rows,
        "seed": args.seed,
        "invalid_rate": args.invalid_rate,
        "repeat": args.repeat,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "pyarrow": pa.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
    }
    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    for fmt in fmts:
        t0 = time.perf_counter()
        path, meta = generate(fmt, args.rows, args.seed, args.invalid_rate, args.data_dir)
        print(
            f"[{fmt}] {path} ({meta['bytes'] / 2**20:,.0f} MiB, {meta['invalid']:,} invalid rows; "
            f"{time.perf_counter() - t0:.1f}s to generate or find)",
            file=sys.stderr,
        )
        per_fmt = []
        for label, method, threads in METHODS:
            r = measure(method, path, fmt, threads, args.repeat)
            r.update(format=fmt, label=label, method=method, threads=threads, file=path.name, bytes=meta["bytes"])
            r.setdefault("valid", None)
            r["rows_per_s"] = r["rows"] / r["wall"]
            r["rows_per_cpu_s"] = r["rows"] / r["cpu"] if r["cpu"] > 0 else float("nan")
            user = r["cpu"] - r["sys"]
            r["rows_per_user_s"] = r["rows"] / user if user > 0 else float("nan")
            r["mib_per_s"] = meta["bytes"] / 2**20 / r["wall"]
            print(
                f"[{fmt}] {label}: {r['wall']:.2f}s wall, {r['cpu']:.2f}s CPU, {r['rows_per_s']:,.0f} rows/s",
                file=sys.stderr,
            )
            per_fmt.append(r)
        naive = next(r for r in per_fmt if r["method"] == "naive")
        for r in per_fmt:
            r["ratio"] = r["rows_per_s"] / naive["rows_per_s"]
        # Sanity (untimed): both methods read every row and keep the same valid rows with the same messages.
        expected_valid = args.rows - meta["invalid"]
        for r in per_fmt:
            what = f"{fmt}, {r['label']}"
            _check(r["rows"] == args.rows, f"{what}: read {r['rows']:,} rows, expected {args.rows:,}")
            if r["method"] != "json.loads":
                _check(
                    r["valid"] == expected_valid,
                    f"{what}: {r['valid']:,} valid rows, the generator made {expected_valid:,}",
                )
                _check(r["valid_digest"] == naive["valid_digest"], f"{what}: not the rows naive keeps")
                _check(
                    r["sample_digest"] == naive["sample_digest"],
                    f"{what}: messages of the first {SAMPLE:,} valid rows differ from naive's",
                )
        results.extend(per_fmt)
    env["total_seconds"] = time.perf_counter() - started

    table = render(results, env)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ingest.md").write_text(table)
    (args.out / "ingest.json").write_text(json.dumps({"env": env, "results": results}, indent=2) + "\n")
    print(
        f"wrote {args.out / 'ingest.md'} and {args.out / 'ingest.json'} ({env['total_seconds']:.0f}s)", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
