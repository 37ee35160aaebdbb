#!/usr/bin/env python
"""Quality signals: rows/s per signal and for the whole computation, side by side with datatrove.

**Rows.** Deterministic (seeded) SFT rows, one user and one assistant turn each, sized like chat data: questions
of 20–300 characters, answers of 80–1,500 (log-uniform), word-like English from a Zipf vocabulary with
punctuation and line breaks; 5% Chinese, 3% degenerate repetition (a line or a sentence repeated), 2% with PII
(an e-mail, a phone number, an IP), 2% refusals, 1% mojibake.

**Methods**, each timed in this process on one core (`pyarrow.set_cpu_count(1)`), best of `--repeat`, in CPU
seconds of the process (`time.process_time`), so that other work on a shared machine does not count:

| row | what runs |
|---|---|
| `turns` | per-role text from the `messages` column (`quality.turns.role_text`, user + assistant + all) |
| `lang` | fastText `lid.176.ftz` on the first `lang.MAX_CHARS` (80) characters of user and assistant text |
| `repetition` | every Gopher rule and the longest repeat, user and assistant (`quality.repetition`) |
| `pii` | every PII detector on all text (`quality.pii.pii_counts`) |
| `chars` | non-alphabetic and mojibake shares (`quality.ratios`) |
| `phrases` | refusal and boilerplate lists (`quality.phrases`) |
| `whole` | `quality.signals.compute_signals`: all of the above into the `quality` struct |

The peer, datatrove, runs in its own virtual environment (`--peer-python`, default /tmp/peer-venv/bin/python;
`pip install datatrove==0.10.1 spacy regex` there), in a subprocess, on the same rows (handed over as JSON):
`GopherRepetitionFilter.filter` on user and assistant text (the same rules; it stops at the first rule a text
fails, which only makes it faster on the 3% degenerate rows) and `PIIFormatter.format` on all text (e-mail and
IP only: fewer detectors than ours). datatrove's language filter downloads its model at run time, so no peer
row for `lang`. Skipped, with the reason printed, when the peer interpreter is missing.

    python benchmarks/bench_quality.py                 # 100,000 rows (the peer: the first 10,000)
    python benchmarks/bench_quality.py --rows 20000 --repeat 3

Results: Markdown on stdout and in benchmarks/out/quality.md; every number in benchmarks/out/quality.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from dataforge.quality import lang  # noqa: E402
from dataforge.quality.phrases import BOILERPLATE, REFUSAL, all_phrases, contains_any  # noqa: E402
from dataforge.quality.pii import pii_counts  # noqa: E402
from dataforge.quality.ratios import char_signals  # noqa: E402
from dataforge.quality.repetition import repetition_signals  # noqa: E402
from dataforge.quality.signals import compute_signals  # noqa: E402
from dataforge.quality.turns import role_text  # noqa: E402
from dataforge.record import Example, Kind, Message, Provenance, Role, examples_to_table  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
ZH = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可也你"

PEER = r"""
import json, sys, time
from datatrove.data import Document
from datatrove.pipeline.filters.gopher_repetition_filter import GopherRepetitionFilter
from datatrove.pipeline.formatters.pii import PIIFormatter

t = json.load(open(sys.argv[1], encoding="utf-8"))
repeat = int(sys.argv[2])
gopher, pii = GopherRepetitionFilter(), PIIFormatter()
docs = [Document(text=x, id=str(i)) for i, x in enumerate(t["user"] + t["assistant"]) if x]
every = [x for x in t["all"] if x]
gopher.filter(docs[0]); pii.format(every[0])  # load the word tokenizer before timing

def best(fn):
    times = []
    for _ in range(repeat):
        start = time.process_time(); fn(); times.append(time.process_time() - start)
    return min(times)

out = {
    "repetition": best(lambda: [gopher.filter(d) for d in docs]),
    "pii": best(lambda: [pii.format(x) for x in every]),
}
out["whole"] = out["repetition"] + out["pii"]
print(json.dumps(out))
"""


def log_uniform(rng: random.Random, lo: int, hi: int) -> int:
    return int(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def make_rows(n: int, seed: int) -> pa.Table:
    """`n` deterministic SFT rows (see the module docstring)."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "tor", "an", "es", "ri", "pu", "ne", "sol", "ver", "di", "gra", "on", "te"]
    vocab = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(20_000)]
    cum_weights = list(itertools.accumulate(1 / (i + 1) for i in range(len(vocab))))

    def prose(chars: int) -> str:
        words, size = [], 0
        for w in rng.choices(vocab, cum_weights=cum_weights, k=chars // 4 + 2):
            if size >= chars:
                break
            if rng.random() < 0.08:
                w += rng.choice([".", ",", "?", ".\n", ".\n\n"])
            words.append(w)
            size += len(w) + 1
        return " ".join(words)

    examples = []
    for i in range(n):
        roll = rng.random()
        question = prose(log_uniform(rng, 20, 300))
        answer = prose(log_uniform(rng, 80, 1500))
        if roll < 0.05:
            question = "".join(rng.choice(ZH) for _ in range(log_uniform(rng, 10, 100)))
            answer = "".join(rng.choice(ZH) for _ in range(log_uniform(rng, 40, 600)))
        elif roll < 0.08:
            line = prose(60)
            answer = "\n".join([line] * rng.randint(3, 12))
        elif roll < 0.10:
            question += f" Mail {rng.choice(vocab)}@example.com or call 415-555-{rng.randint(1000, 9999)} from 8.8.4.4"
        elif roll < 0.12:
            answer = "I'm sorry, but I can't help with that. " + answer[:100]
        elif roll < 0.13:
            answer = answer.replace("a", "Ã©", 3)
        examples.append(
            Example(
                id=f"bench:{i}",
                kind=Kind.SFT,
                provenance=Provenance("bench", "bench.jsonl", i, i + 1),
                messages=(Message(Role.USER, question), Message(Role.ASSISTANT, answer)),
            )
        )
    return examples_to_table(examples)


def best_of(repeat: int, fn: Callable[[], Any]) -> float:
    times = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


def ours(table: pa.Table, repeat: int) -> dict[str, float]:
    user = role_text(table, "user").text
    assistant = role_text(table, "assistant").text
    every = role_text(table, "all").text
    lang.model()  # the one-off model load (~0.1 s) is not a per-row cost
    phrases = all_phrases(REFUSAL) + all_phrases(BOILERPLATE)
    return {
        "turns": best_of(repeat, lambda: [role_text(table, r) for r in ("user", "assistant", "all")]),
        "lang": best_of(repeat, lambda: [lang.detect_array(t) for t in (user, assistant)]),
        "repetition": best_of(repeat, lambda: [repetition_signals(t) for t in (user, assistant)]),
        "pii": best_of(repeat, lambda: pii_counts(every)),
        "chars": best_of(repeat, lambda: [char_signals(t) for t in (user, assistant)]),
        "phrases": best_of(repeat, lambda: [contains_any(t, phrases) for t in (user, assistant)]),
        "whole": best_of(repeat, lambda: compute_signals(table)),
    }


def peer(table: pa.Table, repeat: int, python: str) -> dict[str, float] | str:
    if not Path(python).exists():
        install = "python -m venv /tmp/peer-venv && /tmp/peer-venv/bin/pip install datatrove==0.10.1 spacy regex"
        return f"no peer interpreter at {python} ({install})"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.json"  # JSON: the peer's environment need not have pyarrow
        texts = {r: role_text(table, r).text.to_pylist() for r in ("user", "assistant", "all")}
        path.write_text(json.dumps(texts), encoding="utf-8")
        done = subprocess.run(
            [python, "-c", PEER, str(path), str(repeat)], capture_output=True, text=True, timeout=3600, check=False
        )
    if done.returncode != 0:
        return f"peer failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def peer_version(python: str) -> str:
    if not Path(python).exists():
        return "-"
    done = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('datatrove'))"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.stdout.strip() or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--peer-python", default="/tmp/peer-venv/bin/python")
    parser.add_argument("--peer-rows", type=int, default=10_000, help="the first N rows for the (slow) peer")
    args = parser.parse_args()
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    table = make_rows(args.rows, args.seed)
    mine = ours(table, args.repeat)
    peer_rows = min(args.peer_rows, args.rows)
    theirs = peer(table.slice(0, peer_rows), args.repeat, args.peer_python)
    rows = args.rows
    lines = [
        f"# Quality signals: {rows:,} rows, one core, best of {args.repeat}",
        "",
        f"dataforge vs datatrove {peer_version(args.peer_python)} on the first {peer_rows:,} of the same rows "
        "(see the docstring for what each runs)",
        "",
        "| signal | dataforge rows/s | µs/row | datatrove rows/s | ratio |",
        "|---|--:|--:|--:|--:|",
    ]
    for name, seconds in mine.items():
        other = theirs.get(name) if isinstance(theirs, dict) else None
        ratio = f"{(rows / seconds) / (peer_rows / other):.1f}×" if other else "-"
        other_rate = f"{peer_rows / other:,.0f}" if other else "-"
        lines.append(f"| `{name}` | {rows / seconds:,.0f} | {seconds / rows * 1e6:.1f} | {other_rate} | {ratio} |")
    if isinstance(theirs, str):
        lines += ["", f"Peer skipped: {theirs}"]
    lines += ["", "`whole` for datatrove is its repetition filter plus its PII formatter (no language ID, no ratios)."]
    report = "\n".join(lines)
    print(report)
    OUT.mkdir(exist_ok=True)
    (OUT / "quality.md").write_text(report + "\n", encoding="utf-8")
    env = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
    record = {
        "rows": rows,
        "peer_rows": peer_rows,
        "seed": args.seed,
        "repeat": args.repeat,
        "dataforge": mine,
        "datatrove": theirs,
    }
    (OUT / "quality.json").write_text(json.dumps({**record, "environment": env}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
