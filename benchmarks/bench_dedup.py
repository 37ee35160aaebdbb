#!/usr/bin/env python
"""Near-duplicate removal: accuracy on a labelled corpus, and speed side by side with datasketch.

**Corpus.** Deterministic (seeded) 200-word documents drawn from a Zipf-distributed 30,000-word vocabulary.
A share of the originals get copies, each labelled with how it was made:

* `exact`: the same text;
* `substitute p%`: p% of the words replaced by other words (p = 1, 2, 3, 5, 10, 20);
* `insert p%`: p% more words inserted at random places (p = 2, 5, 10);
* `reorder`: a block of 20 words moved elsewhere; `swap halves`: the two halves exchanged.

The truth is computed, not assumed: the exact Jaccard similarity of the word 5-gram sets of every pair inside
a family (an original and its copies). Pairs across families are unrelated random texts (Jaccard ~0).

**Accuracy**, at each threshold: pairs (dataforge's verified pairs against the pairs whose true Jaccard is at
or above the threshold) and documents (the rows dataforge removes against the rows an exact computation would
remove: all but the first of each connected group of true pairs). Next to it, per kind of edit: its mean true
Jaccard, the theoretical Jaccard of substituting a share p of words, (1-p)^n / (2 - (1-p)^n) for n-grams, and
the share of such copies each threshold removes.

**Speed**, on 200-word documents made the same way, in one process on one core unless a row says otherwise:
md5 of each text (exact dedup's floor), datasketch `MinHash.update()` per shingle and `MinHash.bulk()`
(signatures only), dataforge's whole near dedup — the recipe's default normalisation, signatures, candidate
search (datasketch `MinHashLSH`, or banded), verification, clusters — and its signature step alone. docs/s
is documents ÷ wall seconds (best of `--repeat`); ratios are against the datasketch loops of the same run.

    python benchmarks/bench_dedup.py                 # 40,000 originals (~52,000 documents)
    python benchmarks/bench_dedup.py --originals 20000 --repeat 3

Results: Markdown on stdout and in benchmarks/out/dedup.md; every number in benchmarks/out/dedup.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from dataforge.dedup.near import PARALLEL_FROM, NearSettings, compute_signatures, near_duplicates  # noqa: E402
from dataforge.dedup.text import normalise  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
WORDS = 200
NGRAM = 5
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
EDITS: list[tuple[str, float]] = [
    ("exact", 0.0),
    *[("substitute", p) for p in (0.01, 0.02, 0.03, 0.05, 0.10, 0.20)],
    *[("insert", p) for p in (0.02, 0.05, 0.10)],
    ("reorder", 0.0),
    ("swap halves", 0.0),
]
TARGET = 40_000  # docs/s per core, from the issue


# --- the labelled corpus --------------------------------------------------------------------------------------


def vocabulary(rng: np.random.Generator, size: int = 30_000) -> tuple[np.ndarray, np.ndarray]:
    """Word-like strings and Zipf probabilities (s = 1.1), so common words repeat as in real text."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = np.array(["".join(rng.choice(letters, int(rng.integers(2, 10)))) for _ in range(size)])
    weights = 1 / np.arange(1, size + 1) ** 1.1
    return words, weights / weights.sum()


def edit(words: list[str], kind: str, p: float, rng: np.random.Generator, vocab, probs) -> list[str]:
    out = list(words)
    if kind == "substitute":
        for i in rng.choice(len(out), max(1, round(p * len(out))), replace=False):
            out[i] = str(rng.choice(vocab, p=probs))
    elif kind == "insert":
        for _ in range(max(1, round(p * len(words)))):
            out.insert(int(rng.integers(0, len(out) + 1)), str(rng.choice(vocab, p=probs)))
    elif kind == "reorder":
        start = int(rng.integers(0, len(out) - 20))
        block, rest = out[start : start + 20], out[:start] + out[start + 20 :]
        at = int(rng.integers(0, len(rest) + 1))
        out = rest[:at] + block + rest[at:]
    elif kind == "swap halves":
        half = len(out) // 2
        out = out[half:] + out[:half]
    return out


def make_corpus(originals: int, seed: int, copy_share: float = 0.3) -> dict[str, Any]:
    """Documents with their family (original index) and the edit that made them."""
    rng = np.random.default_rng(seed)
    vocab, probs = vocabulary(rng)
    draws = rng.choice(len(vocab), size=(originals, WORDS), p=probs)
    docs: list[str] = []
    family: list[int] = []
    kinds: list[str] = []
    for f in range(originals):
        words = vocab[draws[f]].tolist()
        docs.append(" ".join(words))
        family.append(f)
        kinds.append("original")
        if rng.random() < copy_share:
            kind, p = EDITS[int(rng.integers(len(EDITS)))]
            docs.append(" ".join(edit(words, kind, p, rng, vocab, probs)))
            family.append(f)
            kinds.append(f"{kind} {p:.0%}" if p else kind)
    return {"docs": docs, "family": np.array(family), "kind": kinds}


def shingles(text: str, n: int) -> set[tuple[str, ...]]:
    w = text.split()
    return {tuple(w[i : i + n]) for i in range(max(len(w) - n + 1, 1))}


def truth_pairs(corpus: dict[str, Any], n: int) -> dict[tuple[int, int], float]:
    """Exact Jaccard of every pair inside a family."""
    out: dict[tuple[int, int], float] = {}
    fam = corpus["family"]
    starts = np.flatnonzero(np.concatenate(([True], fam[1:] != fam[:-1])))
    ends = np.concatenate((starts[1:], [len(fam)]))
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        sets = [shingles(corpus["docs"][i], n) for i in range(s, e)]
        for a in range(s, e):
            for b in range(a + 1, e):
                x, y = sets[a - s], sets[b - s]
                out[(a, b)] = len(x & y) / len(x | y)
    return out


def truth_removed(n_docs: int, pairs: dict[tuple[int, int], float], t: float) -> set[int]:
    """Rows an exact computation removes at threshold t: all but the first of each connected group."""
    parent = list(range(n_docs))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for (a, b), j in pairs.items():
        if j >= t:
            ra, rb = find(a), find(b)
            parent[max(ra, rb)] = min(ra, rb)
    return {i for i in range(n_docs) if find(i) != i}


# --- accuracy -------------------------------------------------------------------------------------------------


def accuracy(corpus: dict[str, Any], ngram: int, engine: str, verify: str) -> dict[str, Any]:
    texts = pa.array(corpus["docs"])
    n = len(texts)
    pairs = truth_pairs(corpus, ngram)
    rows = []
    caught: dict[str, dict[str, float]] = {}
    for t in THRESHOLDS:
        clusters = near_duplicates(
            texts, np.arange(n), NearSettings(threshold=t, ngram=ngram, engine=engine, verify=verify)
        )
        found = {tuple(e) for e in clusters.edges.tolist()}
        true = {p for p, j in pairs.items() if j >= t}
        hit = len(found & true)
        removed = set(np.flatnonzero(clusters.removed).tolist())
        should = truth_removed(n, pairs, t)
        rows.append(
            {
                "threshold": t,
                "true_pairs": len(true),
                "found_pairs": len(found),
                "pair_precision": hit / len(found) if found else 1.0,
                "pair_recall": hit / len(true) if true else 1.0,
                "true_removed": len(should),
                "removed": len(removed),
                "doc_precision": len(removed & should) / len(removed) if removed else 1.0,
                "doc_recall": len(removed & should) / len(should) if should else 1.0,
            }
        )
        for i, kind in enumerate(corpus["kind"]):
            if kind != "original":
                caught.setdefault(kind, {}).setdefault(str(t), 0)
                caught[kind][str(t)] += int(i in removed)
    by_kind = {}
    for i, kind in enumerate(corpus["kind"]):
        if kind == "original":
            continue
        entry = by_kind.setdefault(kind, {"copies": 0, "jaccard": []})
        entry["copies"] += 1
        entry["jaccard"].append(pairs[(i - 1, i)])
    for kind, entry in by_kind.items():
        entry["mean_jaccard"] = float(np.mean(entry.pop("jaccard")))
        entry["removed_share"] = {t: caught[kind][t] / entry["copies"] for t in caught[kind]}
        if kind.startswith("substitute"):
            p = float(kind.split()[1].rstrip("%")) / 100
            keep = (1 - p) ** ngram
            entry["theory"] = keep / (2 - keep)
    return {"ngram": ngram, "engine": engine, "verify": verify, "thresholds": rows, "by_kind": by_kind}


# --- speed ----------------------------------------------------------------------------------------------------


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def speed(corpus: dict[str, Any], repeat: int, update_docs: int, bulk_docs: int) -> list[dict[str, Any]]:
    from datasketch import MinHash

    docs = corpus["docs"]
    texts = pa.array(docs)
    n = len(docs)

    def grams(text: str) -> list[bytes]:
        w = text.split()
        return [" ".join(w[i : i + NGRAM]).encode() for i in range(len(w) - NGRAM + 1)]

    def md5() -> None:
        for d in docs:
            hashlib.md5(d.encode()).digest()

    def update() -> None:
        for d in docs[:update_docs]:
            m = MinHash(num_perm=128)
            for g in grams(d):
                m.update(g)

    def bulk() -> None:
        MinHash.bulk([grams(d) for d in docs[:bulk_docs]], num_perm=128)

    one = {"workers": 1}
    steps = ["case", "punctuation", "whitespace"]  # the recipe's default normalisation

    def full(engine: str, workers: int) -> None:
        normalised = normalise(texts, steps, words=True)
        near_duplicates(normalised, np.arange(n), NearSettings(engine=engine, workers=workers))

    results = []
    measured = [
        ("md5 per document (exact dedup floor)", n, md5),
        ("datasketch MinHash.update() per shingle", update_docs, update),
        ("datasketch MinHash.bulk()", bulk_docs, bulk),
        (
            "dataforge signatures only",
            n,
            lambda: compute_signatures(texts, NearSettings(**one)),
        ),
        ("dataforge near dedup, engine lsh (datasketch MinHashLSH)", n, lambda: full("lsh", 1)),
        ("dataforge near dedup, engine banded (default)", n, lambda: full("banded", 1)),
    ]
    cores = os.cpu_count() or 1
    if cores > 1:
        measured.append(
            (
                f"dataforge near dedup, engine banded, {cores} worker processes"
                + ("" if n >= PARALLEL_FROM else f" (unused below {PARALLEL_FROM:,} documents)"),
                n,
                lambda: full("banded", cores),
            )
        )
    for name, count, fn in measured:
        seconds = best(fn, repeat)
        results.append({"method": name, "docs": count, "seconds": seconds, "docs_per_s": count / seconds})
    by = {r["method"]: r["docs_per_s"] for r in results}
    for r in results:
        r["x_update"] = r["docs_per_s"] / by["datasketch MinHash.update() per shingle"]
        r["x_bulk"] = r["docs_per_s"] / by["datasketch MinHash.bulk()"]
    return results


def same_clusters(corpus: dict[str, Any]) -> bool:
    texts = pa.array(corpus["docs"])
    n = len(texts)
    a = near_duplicates(texts, np.arange(n), NearSettings(engine="lsh"))
    b = near_duplicates(texts, np.arange(n), NearSettings(engine="banded"))
    return bool(np.array_equal(a.keeper, b.keeper) and np.array_equal(a.edges, b.edges))


# --- output ---------------------------------------------------------------------------------------------------


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Near dedup benchmark ({result['corpus']['docs']:,} documents of {WORDS} words)", ""]
    for acc in result["accuracy"]:
        lines += [
            f"## Accuracy: word {acc['ngram']}-grams, engine {acc['engine']}, verify {acc['verify']}",
            "",
            "| threshold | true pairs | found | pair precision | pair recall | docs to remove | removed "
            "| doc precision | doc recall |",
            "|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for r in acc["thresholds"]:
            lines.append(
                f"| {r['threshold']} | {r['true_pairs']:,} | {r['found_pairs']:,} | {r['pair_precision']:.4f} "
                f"| {r['pair_recall']:.4f} | {r['true_removed']:,} | {r['removed']:,} | {r['doc_precision']:.4f} "
                f"| {r['doc_recall']:.4f} |"
            )
        heads = " | ".join(f"removed at {t}" for t in THRESHOLDS)
        lines += ["", f"| copy made by | copies | true Jaccard | theory | {heads} |", "|---|--:|--:|--:|" + "--:|" * 5]
        for kind, e in sorted(acc["by_kind"].items(), key=lambda kv: -kv[1]["mean_jaccard"]):
            theory = f"{e['theory']:.3f}" if "theory" in e else ""
            shares = " | ".join(f"{e['removed_share'][str(t)]:.0%}" for t in THRESHOLDS)
            lines.append(f"| {kind} | {e['copies']:,} | {e['mean_jaccard']:.3f} | {theory} | {shares} |")
        lines.append("")
    lines += [
        "## Speed (one process unless stated; wall time, best of --repeat)",
        "",
        "| method | docs | seconds | docs/s | × update() | × bulk() |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for r in result["speed"]:
        lines.append(
            f"| {r['method']} | {r['docs']:,} | {r['seconds']:.3f} | {r['docs_per_s']:,.0f} | "
            f"{r['x_update']:.1f} | {r['x_bulk']:.1f} |"
        )
    lines += ["", f"Engines lsh and banded give the same clusters: {result['same_clusters']}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--originals", type=int, default=40_000)
    parser.add_argument("--accuracy-originals", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--update-docs", type=int, default=1_000)
    parser.add_argument("--bulk-docs", type=int, default=5_000)
    args = parser.parse_args()
    small = make_corpus(args.accuracy_originals, args.seed)
    accuracy_runs = [accuracy(small, 5, "lsh", "auto"), accuracy(small, 3, "lsh", "auto")]
    accuracy_runs.append(accuracy(small, 5, "lsh", "estimate"))
    big = make_corpus(args.originals, args.seed + 1)
    result = {
        "corpus": {"docs": len(big["docs"]), "words": WORDS, "accuracy_docs": len(small["docs"])},
        "accuracy": accuracy_runs,
        "speed": speed(big, args.repeat, args.update_docs, args.bulk_docs),
        "same_clusters": same_clusters(big),
        "target_docs_per_s_per_core": TARGET,
        "environment": {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine()},
    }
    OUT.mkdir(exist_ok=True)
    text = markdown(result)
    (OUT / "dedup.md").write_text(text, encoding="utf-8")
    (OUT / "dedup.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
