"""Every CLI command over a directory of hostile files (tests/hostile.py): no traceback, never a signal, the ledger
balances, and whatever is written is valid JSON/Parquet. One build and one subprocess per command: the point is
what a user's process does, including how it exits."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hostile import HTML, noise_files, openai_files, sharegpt_files

QWEN = Path(__file__).parent / "fixtures" / "templates" / "qwen2.5-instruct"  # vendored: always here


def run(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "dataforge", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def assert_clean_exit(done: subprocess.CompletedProcess[str], allowed: tuple[int, ...] = (0, 1)) -> str:
    """The process ended by itself with a documented code and printed no traceback; returns all it printed."""
    out = done.stdout + done.stderr
    assert done.returncode >= 0, f"killed by signal {-done.returncode}:\n{out[-3000:]}"
    assert done.returncode in allowed, f"exit {done.returncode}:\n{out[-3000:]}"
    assert "Traceback" not in out, out[-5000:]
    assert "💯" not in out  # `:100:` printed as an emoji code
    return out


def strict_json(text: str) -> object:
    def refuse(literal: str) -> object:
        raise AssertionError(f"{literal} written into JSON")

    return json.loads(text, parse_constant=refuse)


def assert_valid_outputs(folder: Path) -> int:
    """Every .jsonl/.json/.parquet under `folder` parses strictly; returns how many files were checked."""
    checked = 0
    for path in sorted(folder.rglob("*")):
        if ".cache" in path.parts or not path.is_file():
            continue
        if path.suffix == ".jsonl":
            for text in path.read_text(encoding="utf-8").splitlines():
                if text.strip():
                    strict_json(text)
            checked += 1
        elif path.suffix == ".json":
            strict_json(path.read_text(encoding="utf-8"))
            checked += 1
        elif path.suffix == ".parquet":
            pq.read_table(path)
            checked += 1
    return checked


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, int], dict[str, int]]:
    root = tmp_path_factory.mktemp("hostile")
    openai = openai_files(root / "openai")
    sharegpt = sharegpt_files(root / "sharegpt")
    noise_files(root / "noise")
    return root, openai, sharegpt


def recipe(root: Path, qwen: Path, **extra: str) -> Path:
    text = f"""name: hostile
seed: 1
sources:
  - {{name: openai, from: openai, format: openai}}
  - {{name: sharegpt, from: sharegpt, format: sharegpt}}
  - {{name: noise, from: noise, format: openai}}
dedup: {{exact: true, near: {{threshold: 0.8}}}}
split: {{validation: 0.2}}
outputs: {{exports: [openai, sharegpt, alpaca]}}
render:
  - {{name: qwen, tokenizer: {qwen}, max_length: 512, overflow: drop}}
"""
    path = root / "hostile.yaml"
    path.write_text(text + "".join(f"{k}: {v}\n" for k, v in extra.items()), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def built(corpus) -> tuple[Path, subprocess.CompletedProcess[str]]:
    root, _, _ = corpus
    path = recipe(root, QWEN)
    return root, run("build", path.name, cwd=root, timeout=600)


def test_build_over_hostile_sources_exits_cleanly_and_the_ledger_balances(corpus, built):
    root, openai, sharegpt = corpus
    _, done = built
    out = assert_clean_exit(done)
    build = root / "data" / "processed" / "hostile"
    report = json.loads((build / "report" / "report.json").read_text(encoding="utf-8"))
    ledger = report["ledger"]["sources"]
    for name, files in (("openai", openai), ("sharegpt", sharegpt)):
        row = ledger[name]
        outcomes = sum(row[k] for k in ("train", "val", "rejected", "filtered", "deduplicated", "downsampled"))
        assert row["in"] == outcomes, (name, row)
        assert row["in"] == sum(files.values()), (name, row, files)
    noise = ledger["noise"]
    assert noise["in"] >= 3 and noise["rejected"] == noise["in"], noise  # nothing of it is kept, all counted
    rejects = pq.read_table(build / "rejects.parquet").to_pylist()
    reasons = {(Path(r["file"]).name, r["reason"]) for r in rejects}
    for expected in [
        ("deep_record.jsonl", "too_deep"),
        ("deep_content.jsonl", "too_deep"),
        ("deep_tools.jsonl", "too_deep"),
        ("deep_arguments.jsonl", "too_deep"),
        ("non_finite.jsonl", "non_finite_number"),
        ("latin1_array.json", "unreadable_file"),
        ("empty.json", "unreadable_file"),
        ("scalar.json", "unreadable_file"),
        ("cut_footer.parquet", "unreadable_file"),
        ("tools.jsonl", "too_deep"),
        ("tools.jsonl", "non_finite_number"),
    ]:
        assert expected in reasons, (expected, sorted(reasons))
    # A mid-file BOM is tolerated: all four records of bom_mid.jsonl are read (none rejected for it).
    assert not [r for r in rejects if Path(r["file"]).name == "bom_mid.jsonl" and r["stage"] == "read"]
    # Raw excerpts are capped: the 2 MB line is not copied whole into the rejects table or the report.
    assert max(len(r["raw"] or "") for r in rejects) < 10_000
    assert (build / "report" / "report.json").stat().st_size < 2_000_000
    assert assert_valid_outputs(build) >= 8
    md = (build / "report" / "report.md").read_text(encoding="utf-8")
    # Outside code spans (where GitHub shows HTML as text) no tag from the data is left to run.
    prose = re.sub(r"(`+).*?\1", "", md)
    assert "<script" not in prose and "<img" not in prose
    assert "alert(1)" in md  # shown as text, not dropped
    assert "Built hostile:" in out


@pytest.mark.parametrize(
    "args",
    [
        ("validate", "openai", "--format", "openai"),
        ("validate", "sharegpt", "--format", "sharegpt"),
        ("validate", "openai"),
        ("convert", "openai", "--format", "openai", "--to", "alpaca", "-o", "out/alpaca.jsonl"),
        ("convert", "openai", "--format", "openai", "--to", "sharegpt", "-o", "out/sharegpt.json"),
        ("convert", "sharegpt", "--format", "sharegpt", "--to", "openai", "-o", "out/openai.jsonl"),
        ("convert", "sharegpt", "--format", "sharegpt", "--to", "llamafactory", "-o", "out/lf"),
        ("convert", "openai", "--format", "openai", "--to", "trl", "-o", "out/trl"),
        ("dedup", "openai", "sharegpt", "-o", "out/dedup.jsonl"),
        ("render", "openai", "--format", "openai", "-t", "{qwen}", "--show", "3", "-o", "out/render.parquet"),
        ("render", "sharegpt", "--format", "sharegpt", "-t", "{qwen}", "--show", "3"),
    ],
    ids=lambda a: " ".join(a[:2]) + (" " + a[a.index("--to") + 1] if "--to" in a else ""),
)
def test_every_data_command_over_the_hostile_files_exits_cleanly(corpus, args, tmp_path):
    root, _, _ = corpus
    qwen = str(QWEN)
    args = tuple(a.replace("{qwen}", qwen) for a in args)
    out_dir = tmp_path / "out"
    args = tuple(str(out_dir / a[4:]) if a.startswith("out/") else a for a in args)
    done = run(*args, cwd=root)
    out = assert_clean_exit(done)
    assert done.returncode == 1  # every command here meets bad rows, and says so with exit 1
    if out_dir.exists():
        assert_valid_outputs(out_dir)
    if args[0] in ("validate", "convert", "dedup") and "openai" in args[1]:
        assert "deep_record.jsonl:4" in out  # the too-deep record is named with its line


@pytest.mark.parametrize(
    "args",
    [
        ("check", "{build}"),
        ("plan", "hostile.yaml"),
        ("diff", "{build}", "{build}"),
        ("diff", "{build}", "{build}", "--markdown"),
        ("build", "hostile.yaml"),
    ],
)
def test_commands_on_the_hostile_build_exit_cleanly(built, args):
    root, first = built
    assert_clean_exit(first)
    build = str(root / "data" / "processed" / "hostile")
    done = run(*(a.replace("{build}", build) for a in args), cwd=root)
    out = assert_clean_exit(done)
    if args[0] == "diff" and "--markdown" in args:
        assert "<script" not in re.sub(r"(`+).*?\1", "", out)
    if args[0] == "build":
        assert "Everything is cached" in out  # the second build is served from the cache
        assert done.returncode == first.returncode


ALIAS_BOMB = """name: bomb
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
sources: [{name: x, from: x.jsonl}]
"""


@pytest.mark.parametrize(
    "name,text",
    [
        ("alias_bomb", ALIAS_BOMB),
        ("deep", "name: deep\nsources: " + "[" * 50_000 + "]" * 50_000 + "\n"),
        ("outputs_root", "name: r\nsources: [{name: x, from: x.jsonl}]\noutputs: {dir: /}\n"),
        ("outputs_parent", "name: r\nsources: [{name: x, from: x.jsonl}]\noutputs: {dir: ..}\n"),
        ("not_yaml", "name: [unclosed\n\t- : :\n"),
        ("binary", "\x00\x01\x02\xff"),
    ],
)
def test_hostile_recipes_are_recipe_errors(tmp_path, name, text):
    (tmp_path / "x.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "q"}]}) + "\n")
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text)
    for command in ("build", "plan"):
        done = run(command, path.name, cwd=tmp_path, timeout=120)
        out = assert_clean_exit(done, allowed=(2,))
        assert path.name in out


def test_a_symlink_out_of_the_root_is_refused_and_nothing_of_it_is_copied(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-TOKEN-hf_abcdefghijklmnop\n")
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "data" / "ok.jsonl").write_text(
        json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}) + "\n"
    )
    (project / "data" / "leak.jsonl").symlink_to(secret)
    (project / "mix.yaml").write_text("name: leak\nsources: [{name: d, from: data, format: openai}]\n")
    done = run("build", "mix.yaml", cwd=project)
    out = assert_clean_exit(done, allowed=(1, 2))
    assert "leak.jsonl" in out and "outside" in out
    assert "SECRET-TOKEN" not in out
    for path in project.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert b"SECRET-TOKEN" not in path.read_bytes(), path
    assert HTML  # the corpus module is importable on its own (the names above come from it)
