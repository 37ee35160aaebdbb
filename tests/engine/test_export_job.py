"""The write stage's exports in a worker process: when that happens, that the files are the bytes the build's own
process writes, and that a failing export fails the build with its error and leaves no scratch files behind."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from dataforge.engine.builddir import HOUSEKEEPING
from dataforge.engine.runner import run
from dataforge.recipe import load_recipe
from dataforge.stages.export_job import SCRATCH, ExportJob
from dataforge.stages.write import write_exports
from dataforge.streams import Tables
from project import RECIPE, make_project


def _split_parts(recipe: Path) -> tuple[object, dict[str, list[Path]]]:
    loaded = load_recipe(recipe)
    entries = run(loaded).entries
    split = entries["split"].as_input()
    return loaded, {name: split.parts(name) for name in ("train", "val")}


@pytest.mark.parametrize(
    ("engine", "threshold", "runs_in_a_worker"),
    [
        ("engine: {workers: 2}\n", "0", True),
        ("engine: {workers: 1}\n", "0", False),  # one worker means one core: this process writes them
        ("engine: {workers: 2}\n", None, False),  # below the engine's 8 MiB threshold: not worth a process
    ],
)
def test_exports_go_to_a_worker_only_when_the_engine_has_a_core_to_spare(
    tmp_path, monkeypatch, engine, threshold, runs_in_a_worker
):
    if threshold is not None:
        monkeypatch.setenv("DATAFORGE_PARALLEL_BYTES", threshold)
    loaded, parts = _split_parts(make_project(tmp_path, RECIPE + engine))
    job = ExportJob.start(tmp_path / "out", loaded, parts)
    assert (job is not None) == runs_in_a_worker
    if job is not None:
        job.abandon()
        assert not (tmp_path / "out" / SCRATCH).exists()


def test_exports_written_in_a_worker_are_the_bytes_written_here(tmp_path, monkeypatch):
    monkeypatch.setenv("DATAFORGE_PARALLEL_BYTES", "0")
    loaded, parts = _split_parts(make_project(tmp_path / "p", RECIPE + "engine: {workers: 3}\n", rows=200))
    here, there = tmp_path / "here", tmp_path / "there"
    names = list(loaded.recipe.outputs.exports)
    assert names == ["openai", "sharegpt"]
    splits = {name: Tables.parts(paths) for name, paths in parts.items()}
    expected = write_exports(here, names, loaded.recipe.name, splits, lambda _name: None)
    noted: list[str] = []
    job = ExportJob.start(there, loaded, parts)
    assert job is not None
    got = job.collect(noted.append)
    assert list(got) == names
    files = sorted(f for _, hashes in got.values() for f in hashes)
    assert sorted(noted) == files and len(files) >= 4  # every file listed as pending before it is moved in
    for name in names:
        assert got[name][1] == expected[name][1]  # same files, same sha256
        assert got[name][0].rows == expected[name][0].rows
        assert got[name][0].losses == expected[name][0].losses
    for file in files:
        assert (there / file).read_bytes() == (here / file).read_bytes(), file
    assert not (there / SCRATCH).exists()
    assert SCRATCH in HOUSEKEEPING  # never taken for an output of the build, nor for a foreign file


def test_an_export_failing_in_its_worker_fails_with_its_error_and_leaves_no_scratch(tmp_path, monkeypatch):
    monkeypatch.setenv("DATAFORGE_PARALLEL_BYTES", "0")
    loaded, parts = _split_parts(make_project(tmp_path / "p", RECIPE + "engine: {workers: 2}\n"))
    parts["train"][0].write_bytes(b"not parquet")  # the worker cannot read the split it exports
    job = ExportJob.start(tmp_path / "out", loaded, parts)
    assert job is not None
    with pytest.raises(pa.ArrowInvalid, match="Parquet"):
        job.collect(lambda _name: None)
    assert not (tmp_path / "out" / SCRATCH).exists()
