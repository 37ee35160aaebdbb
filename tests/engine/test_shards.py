"""Shards as the unit of work: resume after kill -9, appends re-run only new shards, any worker count gives the same
bytes, and a worker that dies fails its stage naming the shard."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dataforge.engine.builddir import LOCK, MARKER
from dataforge.engine.runner import run
from dataforge.errors import DataError
from dataforge.recipe import load_recipe
from project import RECIPE, build, make_project

ROWS = 2000
TINY = "data/processed/tiny"


def sharded(recipe: str = RECIPE, shard_mb: float = 0.02, workers: int | None = None) -> str:
    """The test recipe read in shards of `shard_mb` MiB (the sources of ROWS rows make several each)."""
    extra = f"shard_mb: {shard_mb}\n"
    if workers is not None:
        extra += f"engine: {{workers: {workers}}}\n"
    return recipe + extra


def outputs(build_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(build_dir)): p.read_bytes()
        for p in sorted(build_dir.rglob("*"))
        if p.is_file() and ".cache" not in p.parts and p.name not in (MARKER, LOCK)
    }


def shard_dirs(build_dir: Path, stage: str) -> dict[str, float]:
    """The shards the latest entry of `stage` is made of (folder name → mtime), or every finished shard of it
    when it has no entry yet."""
    folder = build_dir / ".cache" / stage.replace(":", "--")
    latest = folder / "LATEST"
    if latest.is_file():
        names = json.loads((folder / latest.read_text().strip() / "manifest.json").read_text())["shards"]
    else:
        names = [p.name for p in (folder / "shards").glob("[0-9a-f]*")]
    return {name: (folder / "shards" / name).stat().st_mtime_ns for name in names}


def test_sharded_outputs_equal_unsharded_ones_for_any_number_of_workers(tmp_path, monkeypatch):
    whole = build(make_project(tmp_path / "whole", rows=ROWS))[0].build_dir
    one = build(make_project(tmp_path / "one", sharded(workers=1), rows=ROWS))[0].build_dir
    monkeypatch.setenv("DATAFORGE_PARALLEL_BYTES", "0")  # tiny shards still go to worker processes
    two = build(make_project(tmp_path / "two", sharded(workers=2), rows=ROWS))[0].build_dir
    assert len(shard_dirs(one, "read:sgpt")) >= 4
    a, b, c = outputs(whole), outputs(one), outputs(two)
    assert a.keys() == b.keys() == c.keys()
    for name in a:
        if name == "manifest.json":  # names the recipe (its digest) and the stage keys: the data is compared
            continue
        assert a[name] == b[name] == c[name], name
    manifest_b, manifest_c = json.loads(b["manifest.json"]), json.loads(c["manifest.json"])
    assert manifest_b["ledger"] == manifest_c["ledger"] == json.loads(a["manifest.json"])["ledger"]
    assert manifest_b["outputs"] == manifest_c["outputs"]


def test_appending_rows_re_runs_only_the_new_shards_of_that_source(tmp_path):
    recipe = make_project(tmp_path, sharded(), rows=ROWS)
    loaded, _, _ = build(recipe)
    before = {s: shard_dirs(loaded.build_dir, s) for s in ("read:sgpt", "convert:sgpt", "read:alp")}
    path = tmp_path / "data" / "sharegpt.jsonl"
    new = [
        json.dumps(
            {"conversations": [{"from": "human", "value": f"New question {i}?"}, {"from": "gpt", "value": "Yes."}]}
        )
        for i in range(30)
    ]
    with path.open("a", encoding="utf-8") as fh:
        fh.write("\n".join(new) + "\n")
    _, result, manifest = build(recipe)
    assert "read:sgpt" in result.ran and "read:alp" not in result.ran and "convert:alp" not in result.ran
    after = {s: shard_dirs(loaded.build_dir, s) for s in before}
    for stage in ("read:sgpt", "convert:sgpt"):
        kept = set(before[stage]) & set(after[stage])
        # Every shard but the last is reused untouched; the last (which grew) and any new one are computed.
        assert len(kept) == len(before[stage]) - 1, stage
        assert all(before[stage][k] == after[stage][k] for k in kept)
        assert len(after[stage]) - len(kept) >= 1
    assert manifest["ledger"]["sources"]["sgpt"]["in"] == ROWS + 3 + 30


def test_a_build_killed_at_random_points_resumes_shard_by_shard_to_the_same_bytes(tmp_path):
    reference = build(make_project(tmp_path / "ref", sharded(shard_mb=0.05), rows=ROWS))[0].build_dir
    recipe = make_project(tmp_path / "run", sharded(shard_mb=0.05), rows=ROWS)
    out = tmp_path / "run" / TINY
    rng = random.Random(7)
    reused = 0
    for attempt in range(2):
        proc = subprocess.Popen(
            [sys.executable, "-m", "dataforge", "build", "-q", str(recipe)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Killed once a shard is finished (however slow the machine), then at a random later moment.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list((out / ".cache").glob("read--*/shards/[0-9a-f]*/shard.json")):
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.5) + attempt)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        for shard in (out / ".cache").glob("*/shards/*"):
            if not shard.name.startswith(".tmp-"):
                assert (shard / "shard.json").is_file(), shard  # every visible shard is whole
        reused = max(reused, sum(len(shard_dirs(out, s)) for s in ("read:alp", "read:sgpt", "read:oai")))
    _, result, _ = build(recipe)
    assert outputs(out).keys() == outputs(reference).keys()
    for name, data in outputs(reference).items():
        if name != "manifest.json":
            assert outputs(out)[name] == data, name
    assert reused > 0  # the kills left finished shards that the last build reused


def kill_the_worker(examples, settings):
    """validate's table function, replaced: its worker is killed the way the OOM killer does it."""
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_killed_mid_stage_fails_the_build_with_one_line_naming_the_shard(tmp_path, monkeypatch):
    import dataforge.stages.validate as validate

    recipe = make_project(tmp_path, sharded(workers=2), rows=ROWS)
    monkeypatch.setenv("DATAFORGE_PARALLEL_BYTES", "0")
    # The graph takes the function from here; workers unpickle it by name, from this (importable) test module.
    monkeypatch.setattr(validate, "validate_table", kill_the_worker)
    started = time.monotonic()
    with pytest.raises(DataError) as caught:
        run(load_recipe(recipe))
    assert time.monotonic() - started < 120
    assert re.fullmatch(
        r"the worker process holding shard validate:alp part \d+ of \d+ died \(killed by signal 9 \(SIGKILL\), likely "
        r"out of memory\)",
        caught.value.message,
    ), caught.value.message
    assert caught.value.hint is not None and "shard_mb" in caught.value.hint


REPO = Path(__file__).resolve().parents[2]


def demo_copy(root: Path, extra: str) -> Path:
    """The demo (near dedup, decontamination, a render target) under `root`, its recipe with `extra` appended."""
    import shutil

    shutil.copytree(REPO / "data" / "raw" / "demo", root / "data" / "raw" / "demo")
    shutil.copytree(REPO / "data" / "tokenizers" / "demo-chatml", root / "data" / "tokenizers" / "demo-chatml")
    (root / "pipelines").mkdir()
    recipe = root / "pipelines" / "demo.yaml"
    recipe.write_text((REPO / "pipelines" / "demo.yaml").read_text() + extra)
    return recipe


def test_the_demo_is_the_same_whatever_the_shards_partitions_and_workers(tmp_path, monkeypatch):
    """Near-dedup clusters, decontamination, the ledger, the report and the render: one set of bytes."""
    builds = {}
    for name, extra in [
        ("plain", ""),
        ("shards", "\nshard_mb: 0.004\nengine: {workers: 1, num_partitions: 1}\n"),
        ("parallel", "\nshard_mb: 0.004\nengine: {workers: 2, num_partitions: 7}\n"),
    ]:
        if name == "parallel":
            monkeypatch.setenv("DATAFORGE_PARALLEL_BYTES", "0")
        loaded, _, manifest = build(demo_copy(tmp_path / name, extra))
        builds[name] = (outputs(loaded.build_dir), manifest)
    plain, _ = builds["plain"]
    assert len(shard_dirs(tmp_path / "shards" / "data/processed/demo", "read:alpaca")) > 3
    for name in ("shards", "parallel"):
        got, manifest = builds[name]
        assert got.keys() == plain.keys()
        for file in plain:
            if file != "manifest.json":
                assert got[file] == plain[file], (name, file)
        assert manifest["ledger"] == builds["plain"][1]["ledger"]
    assert builds["plain"][1]["ledger"]["total"]["deduplicated"] > 0
