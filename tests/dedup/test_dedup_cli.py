"""`dataforge dedup FILES -o OUT`, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dataforge", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def alpaca(rows: list[tuple[str, str]]) -> str:
    """Alpaca records as JSON Lines: record i is on line i + 1."""
    return "".join(json.dumps({"instruction": q, "input": "", "output": a}) + "\n" for q, a in rows)


def test_dedup_writes_kept_rows_and_explains_every_removed_one(tmp_path):
    vocab = [f"w{i}" for i in range(2000)]
    texts = [" ".join(np.random.default_rng(i).choice(vocab, 50)) for i in range(6)]
    (tmp_path / "a.jsonl").write_text(alpaca([(f"Q{i}", t) for i, t in enumerate(texts)]))
    copies = [("Q0", texts[0]), ("Q1", texts[1] + " thanks"), ("Q5", texts[5] + " ok then")]
    (tmp_path / "b.jsonl").write_text(alpaca(copies + [("new", "a different answer entirely")]))
    done = run_cli("dedup", "a.jsonl", "b.jsonl", "-o", "out/kept.jsonl", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    kept = [json.loads(line) for line in (tmp_path / "out" / "kept.jsonl").read_text().splitlines()]
    assert [r["instruction"] for r in kept] == ["Q0", "Q1", "Q2", "Q3", "Q4", "Q5", "new"]
    removed = [json.loads(line) for line in (tmp_path / "out" / "kept.rejects.jsonl").read_text().splitlines()]
    assert [(r["at"], r["reason"], r["duplicate_of"]) for r in removed] == [
        ("b.jsonl:1", "exact_duplicate", "a.jsonl:1"),
        ("b.jsonl:2", "near_duplicate", "a.jsonl:2"),
        ("b.jsonl:3", "near_duplicate", "a.jsonl:6"),
    ]
    assert removed[0]["similarity"] == 1.0 and all(0.8 <= r["similarity"] < 1 for r in removed[1:])
    said = " ".join(done.stdout.split())
    assert "10 records (alpaca) → 7 kept" in said and "removed 1 exact and 2 near duplicates (2 clusters)" in said
    # One extra word leaves 46 of 47 word 5-grams shared (0.98), two leave 46 of 48 (0.96): a threshold of
    # 0.97 keeps the copy with two extra words.
    strict = run_cli("dedup", "a.jsonl", "b.jsonl", "-o", "strict.jsonl", "--threshold", "0.97", cwd=tmp_path)
    assert strict.returncode == 0
    assert len((tmp_path / "strict.rejects.jsonl").read_text().splitlines()) == 2


def test_dedup_says_what_is_wrong_with_its_options(tmp_path):
    (tmp_path / "a.jsonl").write_text(alpaca([("q", "a")]))
    bad = run_cli("dedup", "a.jsonl", "-o", "x.jsonl", "--threshold", "1.5", cwd=tmp_path)
    assert bad.returncode == 2 and "--threshold" in bad.stderr and "Traceback" not in bad.stderr
    wrong = run_cli("dedup", "a.jsonl", "-o", "x.txt", cwd=tmp_path)
    assert wrong.returncode == 2 and "unsupported output type" in wrong.stderr
