import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from dataforge.engine.builddir import LOCK, MARKER
from dataforge.engine.runner import plan
from dataforge.recipe import load_recipe
from project import RECIPE, build, make_project

BRANCH = ["read:{s}", "convert:{s}", "validate:{s}", "filter:{s}"]
GLOBAL = ["dedup", "mix", "split"]


def test_build_writes_outputs_and_a_balanced_ledger(tmp_path):
    loaded, result, manifest = build(make_project(tmp_path))
    out = loaded.build_dir
    assert out == tmp_path / "data" / "processed" / "tiny"
    for name in [
        "train.parquet",
        "val.parquet",
        "rejects.parquet",
        "manifest.json",
        "report/report.md",
        "report/report.json",
        "exports/openai/train.jsonl",
        "exports/sharegpt/val.jsonl",
    ]:
        assert (out / name).is_file(), name
    book = manifest["ledger"]
    assert book["sources"]["alp"] == {
        "in": 32,
        "rejected": 1,
        "filtered": 0,
        "deduplicated": 1,
        "downsampled": 0,
        "train": 24,
        "val": 6,
        "balanced": True,
    }
    assert book["sources"]["sgpt"] == {
        "in": 33,
        "rejected": 1,
        "filtered": 1,
        "deduplicated": 1,
        "downsampled": 0,
        "train": 24,
        "val": 6,
        "balanced": True,
    }
    assert book["sources"]["oai"] == {
        "in": 31,
        "rejected": 1,
        "filtered": 0,
        "deduplicated": 0,
        "downsampled": 0,
        "train": 24,
        "val": 6,
        "balanced": True,
    }
    rejects = pq.read_table(out / "rejects.parquet").to_pylist()
    where = {(r["source"], r["file"], r["line"], r["reason"], r["field"]) for r in rejects}
    assert ("sgpt", "data/sharegpt.jsonl", 32, "invalid_json", None) in where
    assert ("oai", "data/openai/part1.jsonl", 16, "unknown_role", "messages[0].role") in where
    assert ("alp", "data/alpaca.json", 157, "empty_content", "output") in where  # object 31: 2 + 5 * 31
    assert ("alp", "data/alpaca.json", 152, "exact_duplicate", None) in where
    dup = next(r for r in rejects if r["source"] == "sgpt" and r["reason"] == "exact_duplicate")
    assert dup["duplicate_of"] == "alp:1" and dup["line"] == 31
    assert manifest["sources"][2]["files"][1]["file"] == "data/openai/part1.jsonl"
    assert len(manifest["sources"][2]["files"][1]["sha256"]) == 64
    train = pq.read_table(out / "train.parquet")
    assert train.schema.names[:3] == ["id", "kind", "messages"]
    assert not set(train["id"].to_pylist()) & set(pq.read_table(out / "val.parquet")["id"].to_pylist())


def test_second_build_is_a_no_op(tmp_path):
    recipe = make_project(tmp_path)
    build(recipe)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "data" / "processed" / "tiny").rglob("*.parquet")}
    loaded, result, manifest = build(recipe)
    assert result.ran == []
    assert manifest is None
    assert all(s.state == "cached" for s in plan(loaded))
    after = {p: p.stat().st_mtime_ns for p in before}
    assert before == after


def test_editing_one_source_reruns_only_its_branch_and_what_follows(tmp_path):
    recipe = make_project(tmp_path)
    build(recipe)
    path = tmp_path / "data" / "sharegpt.jsonl"
    path.write_text(
        path.read_text()
        + json.dumps({"conversations": [{"from": "human", "value": "new?"}, {"from": "gpt", "value": "yes"}]})
        + "\n"
    )
    statuses = {s.name: s for s in plan(load_recipe(recipe))}
    assert statuses["read:sgpt"].state == "stale"
    assert statuses["read:sgpt"].reason == "file changed data/sharegpt.jsonl"
    assert statuses["convert:sgpt"].reason == "after read:sgpt re-runs"
    assert statuses["read:alp"].state == statuses["filter:oai"].state == "cached"
    loaded, result, manifest = build(recipe)
    assert result.ran == [b.format(s="sgpt") for b in BRANCH] + GLOBAL
    assert manifest["ledger"]["sources"]["sgpt"]["in"] == 34


def test_a_config_change_reruns_from_the_stage_that_reads_it(tmp_path):
    recipe = make_project(tmp_path)
    build(recipe)
    recipe.write_text(RECIPE.replace("max_chars: 400", "max_chars: 100000"))
    statuses = {s.name: s for s in plan(load_recipe(recipe))}
    assert statuses["validate:alp"].state == "cached"
    assert statuses["filter:alp"].reason == "config changed: max_chars"
    _, result, manifest = build(recipe)
    assert result.ran == [f"filter:{s}" for s in ("alp", "sgpt", "oai")] + GLOBAL
    assert manifest["ledger"]["sources"]["sgpt"]["filtered"] == 0


def test_same_recipe_and_inputs_give_byte_identical_outputs(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    build(make_project(a))
    build(make_project(b))
    out_a, out_b = a / "data/processed/tiny", b / "data/processed/tiny"
    # The marker and the lock name the recipe, the pid and the time: housekeeping, not outputs.
    files = sorted(
        p.relative_to(out_a)
        for p in out_a.rglob("*")
        if p.is_file() and ".cache" not in p.parts and p.name not in (MARKER, LOCK)
    )
    assert len(files) >= 9
    for rel in files:
        assert (out_a / rel).read_bytes() == (out_b / rel).read_bytes(), rel


def test_a_different_seed_changes_the_split(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    build(make_project(a))
    build(make_project(b, RECIPE.replace("seed: 11", "seed: 12")))
    val_a = pq.read_table(a / "data/processed/tiny/val.parquet")["id"].to_pylist()
    val_b = pq.read_table(b / "data/processed/tiny/val.parquet")["id"].to_pylist()
    assert len(val_a) == len(val_b) and val_a != val_b


def test_a_killed_build_leaves_no_partial_output_and_resumes(tmp_path):
    recipe = make_project(tmp_path, rows=20000)
    reference = tmp_path / "ref"
    build(make_project(reference, rows=20000))
    proc = subprocess.Popen(
        [sys.executable, "-m", "dataforge", "build", "-q", str(recipe)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    cache = tmp_path / "data" / "processed" / "tiny" / ".cache"
    deadline = time.time() + 60
    while time.time() < deadline and not (cache / "convert--alp" / "LATEST").exists():
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    out = tmp_path / "data" / "processed" / "tiny"
    assert not (out / "manifest.json").exists()  # killed before the edge stage: nothing half-written there
    for entry in cache.glob("*/*"):
        if entry.is_dir() and not entry.name.startswith((".tmp-", ".scratch-")) and entry.name != "shards":
            assert (entry / "manifest.json").is_file(), entry  # every visible entry is complete
    for shard in cache.glob("*/shards/*"):
        if not shard.name.startswith(".tmp-"):
            assert (shard / "shard.json").is_file(), shard  # and every visible shard
    _, result, manifest = build(recipe)
    assert "read:alp" not in result.ran  # finished before the kill: reused
    ref_out = reference / "data" / "processed" / "tiny"
    for name in ["train.parquet", "val.parquet", "rejects.parquet", "manifest.json"]:
        assert (out / name).read_bytes() == (ref_out / name).read_bytes(), name


def test_several_render_targets_side_by_side_and_a_template_change_reruns_only_its_render(tmp_path):
    import shutil

    demo_tok = Path(__file__).resolve().parents[2] / "data" / "tokenizers" / "demo-chatml"
    shutil.copytree(demo_tok, tmp_path / "tok")
    (tmp_path / "short.jinja").write_text((demo_tok / "chat_template.jinja").read_text())
    recipe = make_project(
        tmp_path,
        RECIPE
        + "render:\n"
        + "  - {name: wide, tokenizer: tok, max_length: 4096}\n"
        + "  - {name: narrow, tokenizer: tok, chat_template: short.jinja, max_length: 24, overflow: truncate}\n",
    )
    loaded, result, manifest = build(recipe)
    out = loaded.build_dir
    wide = pq.read_table(out / "rendered/wide/train.parquet")
    narrow = pq.read_table(out / "rendered/narrow/train.parquet")
    assert wide["id"].to_pylist() == narrow["id"].to_pylist()
    assert max(len(x) for x in narrow["input_ids"].to_pylist()) == 24
    assert all(narrow["truncated"].to_pylist())  # every tiny-project row is longer than 24 tokens
    assert manifest["render"]["wide"]["template_digest"] == manifest["render"]["narrow"]["template_digest"]
    (tmp_path / "short.jinja").write_text(
        (demo_tok / "chat_template.jinja").read_text().replace("# Tools", "# Functions")
    )
    statuses = {s.name: s for s in plan(load_recipe(recipe))}
    assert statuses["render:narrow"].state == "stale"
    assert statuses["render:narrow"].reason == "config changed: template_digest"
    assert statuses["render:wide"].state == "cached"
    _, result, manifest = build(recipe)
    assert result.ran == ["render:narrow"]
    assert manifest["render"]["wide"]["template_digest"] != manifest["render"]["narrow"]["template_digest"]
