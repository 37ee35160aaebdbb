"""The build directory (issue 15): a build writes only where it should, one at a time, and its manifest is true.

Faults of the OS (a read-only mount, a full disk) are simulated at the OS boundary (os.open, pyarrow's
writer) or, where the kernel allows it, made real with a read-only bind mount in a private mount namespace.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dataforge import cli
from dataforge.engine.builddir import LOCK, MARKER, BuildLocked, build_dir_lock
from dataforge.engine.runner import plan, run
from dataforge.errors import DataError, DataforgeError, RecipeError, UsageError
from dataforge.recipe import load_recipe, parse_recipe
from dataforge.stages.write import write_build
from project import RECIPE, build, make_project

TINY = "data/processed/tiny"


def dataforge(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """Run a CLI command in this process; (exit code, stdout + stderr, with an error's message as main() prints
    it). `cli.main` itself may leave with os._exit once native-threaded libraries are loaded, so the app is
    called the way main() calls it."""
    monkeypatch.setattr(sys, "argv", ["dataforge", *args])
    try:
        cli.app(list(args), standalone_mode=True)
        code, said = 0, ""
    except SystemExit as done:
        code, said = done.code or 0, ""
    except DataforgeError as exc:
        code, said = exc.exit_code, f"error: {exc}\n"
    captured = capsys.readouterr()
    return code, captured.out + captured.err + said


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- 1. where a build may write --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "folder, problem",
    [
        ("/", "line 4: outputs.dir: '/' is the filesystem root; a build needs a folder of its own"),
        ("..", "line 4: outputs.dir: '..' is the recipe's root or a folder above it"),
        (".", "line 4: outputs.dir: '.' is the recipe's root or a folder above it"),
        ("data/../..", "line 4: outputs.dir: 'data/../..' is the recipe's root or a folder above it"),
    ],
)
def test_the_filesystem_root_and_the_recipe_root_or_above_are_recipe_errors(tmp_path, folder, problem):
    text = f"name: t\nsources: [{{name: a, from: x.jsonl}}]\noutputs:\n  dir: {folder!r}\n"
    with pytest.raises(RecipeError) as caught:
        parse_recipe(text, tmp_path / "mix.yaml")
    assert caught.value.problems[0].startswith(problem)


def test_an_absolute_ancestor_of_the_root_is_refused_before_anything_is_written(tmp_path):
    recipe = make_project(tmp_path / "proj", RECIPE + f"  dir: {tmp_path}\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(UsageError) as caught:
        run(load_recipe(recipe))
    assert f"outputs.dir resolves to {tmp_path}, a folder above the recipe's root {tmp_path / 'proj'}" in str(
        caught.value
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_foreign_folder_is_refused_untouched_and_adopted_with_force(tmp_path, monkeypatch, capsys):
    recipe = make_project(tmp_path, RECIPE + "  dir: theirs\n")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "train.parquet").write_text("their own file")
    (theirs / "notes.txt").write_text("keep me")
    code, said = dataforge(monkeypatch, capsys, "build", "-q", str(recipe))
    assert code == 2
    assert f"refusing to build into {theirs}: it holds files dataforge did not write (notes.txt, train.parquet)" in said
    assert sorted(p.name for p in theirs.iterdir()) == ["notes.txt", "train.parquet"]
    assert (theirs / "train.parquet").read_text() == "their own file"
    code, said = dataforge(monkeypatch, capsys, "build", "-q", "--force", str(recipe))
    assert code == 0, said
    assert json.loads((theirs / MARKER).read_text())["how"] == "forced"
    assert pq.read_table(theirs / "train.parquet").num_rows == 72
    assert (theirs / "notes.txt").read_text() == "keep me"
    code, said = dataforge(monkeypatch, capsys, "build", "-q", str(recipe))  # marked now: no --force needed
    assert code == 0 and "Everything is cached" in said


def test_a_build_made_before_the_marker_is_adopted_silently(tmp_path):
    recipe = make_project(tmp_path)
    build(recipe)
    out = tmp_path / TINY
    (out / MARKER).unlink()
    _, result, manifest = build(recipe)
    assert result.ran == [] and manifest is None
    assert json.loads((out / MARKER).read_text())["how"] == "legacy"


def test_a_folder_holding_only_an_old_cache_is_adopted_silently(tmp_path):
    recipe = make_project(tmp_path)
    out = tmp_path / TINY
    build(recipe)
    for path in out.iterdir():  # what an old build stopped before its write stage left
        if path.name != ".cache":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    _, result, manifest = build(recipe)
    assert result.ran == [] and manifest["ledger"]["total"]["train"] == 72
    assert json.loads((out / MARKER).read_text())["how"] == "legacy"


# --- 2. one build at a time ---------------------------------------------------------------------------------


def test_a_second_build_fails_at_once_naming_the_holder(tmp_path, monkeypatch, capsys):
    recipe = make_project(tmp_path)
    out = tmp_path / TINY
    out.mkdir(parents=True)
    holder = {"pid": 4242, "host": "builder-7", "recipe": "/x/other.yaml", "since": "2026-01-02T03:04:05Z"}
    (out / LOCK).write_text(json.dumps(holder))
    fd = os.open(out / LOCK, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another build, as far as the kernel can tell
        with pytest.raises(BuildLocked) as caught:
            run(load_recipe(recipe))
        assert caught.value.message == (
            f"another build is writing {out}: pid 4242 on builder-7, building /x/other.yaml since 2026-01-02T03:04:05Z"
        )
        code, said = dataforge(monkeypatch, capsys, "build", "-q", str(recipe))
        assert code == 1 and "another build is writing" in said and "pid 4242 on builder-7" in said
        assert not (out / ".cache").exists()  # it wrote nothing
    finally:
        os.close(fd)
    _, result, manifest = build(recipe)  # released: builds
    assert manifest["ledger"]["total"]["train"] == 72


def test_the_lock_is_held_through_the_write_stage_and_names_this_build(tmp_path):
    recipe = make_project(tmp_path)
    loaded = load_recipe(recipe)
    with build_dir_lock(loaded):
        result = run(loaded)
        info = json.loads((loaded.build_dir / LOCK).read_text())
        assert (info["pid"], info["recipe"]) == (os.getpid(), str(recipe.resolve()))
        probe = os.open(loaded.build_dir / LOCK, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):  # another process (or descriptor) cannot take it meanwhile
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(probe)
        write_build(loaded, result.stages, result.entries)


# --- 3. the manifest lists exactly the files present ----------------------------------------------------


def test_an_export_taken_out_of_the_recipe_is_removed_and_the_manifest_lists_every_file(tmp_path):
    recipe = make_project(tmp_path)
    out = tmp_path / TINY
    build(recipe)
    assert (out / "exports/sharegpt/train.jsonl").is_file()
    recipe.write_text(RECIPE.replace("exports: [openai, sharegpt]", "exports: [openai]"))
    _, _, manifest = build(recipe)
    assert not (out / "exports/sharegpt").exists()
    present = {
        p.relative_to(out).as_posix(): sha256(p)
        for p in out.rglob("*")
        if p.is_file() and ".cache" not in p.relative_to(out).parts
    }
    assert {k for k in present if k not in (MARKER, LOCK, "manifest.json")} == set(manifest["outputs"])
    assert {k: present[k] for k in manifest["outputs"]} == manifest["outputs"]
    assert "exports/openai/train.jsonl" in manifest["outputs"]


def test_outputs_of_a_build_killed_while_writing_are_still_removed(tmp_path, monkeypatch):
    recipe = make_project(tmp_path)
    out = tmp_path / TINY
    build(recipe)
    # A second recipe's build is killed after its exports, before its report and manifest.
    recipe.write_text(RECIPE.replace("exports: [openai, sharegpt]", "exports: [openai, alpaca]"))
    import dataforge.stages.write as write_module

    def killed(report):
        raise KeyboardInterrupt

    monkeypatch.setattr(write_module, "report_files", killed)
    with pytest.raises(KeyboardInterrupt):
        build(recipe)
    monkeypatch.undo()
    assert not (out / "manifest.json").exists() and (out / "exports/alpaca/train.jsonl").is_file()
    recipe.write_text(RECIPE.replace("exports: [openai, sharegpt]", "exports: [openai]"))
    _, _, manifest = build(recipe)
    assert sorted(p.name for p in (out / "exports").iterdir()) == ["openai"]
    assert json.loads((out / MARKER).read_text())["pending_outputs"] == []
    assert set(manifest["outputs"]) == {
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and ".cache" not in p.relative_to(out).parts and p.name not in (MARKER, LOCK, "manifest.json")
    }


# --- 4. a read-only build directory ------------------------------------------------------------------


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason="needs `unshare -rm` (user + mount namespaces) for a read-only bind")
def test_a_read_only_build_dir_builds_when_cached_and_says_so_when_it_must_write(tmp_path):
    recipe = make_project(tmp_path)
    build(recipe)
    out = tmp_path / TINY
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}

    def read_only_build() -> subprocess.CompletedProcess:
        script = (
            f"mount --bind {out} {out} && mount -o remount,bind,ro {out} && "
            f"exec {sys.executable} -m dataforge build -q {recipe}"
        )
        return subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True)

    done = read_only_build()
    assert done.returncode == 0, done.stderr
    assert "Everything is cached" in done.stdout and "Traceback" not in done.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    recipe.write_text(RECIPE.replace("seed: 11", "seed: 12"))
    done = read_only_build()
    assert done.returncode == 1
    assert f"error: cannot write to {out}: read-only file system" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_build_dir_without_write_permission_is_a_data_error(tmp_path, monkeypatch):
    recipe = make_project(tmp_path)
    loaded = load_recipe(recipe)
    real_open = os.open

    def denied(path, flags, *args, **kwargs):  # what the OS says to a user without write permission
        if str(path).startswith(str(loaded.build_dir)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    loaded.build_dir.mkdir(parents=True)
    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(DataError) as caught:
        run(loaded)
    assert caught.value.message == f"cannot write to {loaded.build_dir}: permission denied"
    assert not (loaded.build_dir / ".cache").exists()


# --- 5. a full disk ---------------------------------------------------------------------------------------


def test_a_full_disk_says_where_how_much_and_leaves_the_cache_whole(tmp_path, monkeypatch):
    recipe = make_project(tmp_path)
    loaded = load_recipe(recipe)
    import dataforge.engine.cache as cache_module

    real_write = cache_module.pq.write_table
    calls = {"n": 0}

    def fills_up(table, where, **kwargs):  # the disk fills on the fourth table written
        calls["n"] += 1
        if calls["n"] == 4:
            real_write(table, where, **kwargs)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(table, where, **kwargs)

    monkeypatch.setattr(cache_module.pq, "write_table", fills_up)
    with pytest.raises(DataError) as caught:
        run(loaded)
    message = caught.value.message
    # Stages run in recipe order within a rank: read:alp wrote three tables (its shard's raw rows and rejects, then
    # the stage's rejects), read:sgpt's first fills the disk.
    assert message.startswith(f"cannot write to {loaded.build_dir / '.cache' / 'read--sgpt' / 'shards'}/.tmp-"), message
    assert ": no space left on device (" in message and " bytes free)" in message
    assert [p.name for p in (loaded.build_dir / ".cache").rglob(".tmp-*")] == []  # no half entry left
    monkeypatch.setattr(cache_module.pq, "write_table", real_write)
    result = run(loaded)
    assert "read:alp" not in result.ran and "read:sgpt" in result.ran  # the whole entry before is reused


# --- 6. a damaged cache entry ---------------------------------------------------------------------------


def test_a_truncated_cache_entry_is_removed_recomputed_and_reported(tmp_path, monkeypatch, capsys):
    recipe = make_project(tmp_path)
    _, _, first = build(recipe)
    entry = next((tmp_path / TINY / ".cache" / "convert--alp").glob("[0-9a-f]*"))
    part = json.loads((entry / "manifest.json").read_text())["table_parts"]["examples"][0]  # a shard's file
    assert part.startswith("shards/")
    table = entry.parent / part
    size = table.stat().st_size
    with table.open("r+b") as fh:
        fh.truncate(size // 2)
    statuses = {s.name: s for s in plan(load_recipe(recipe))}
    assert statuses["convert:alp"].reason == (
        f"cache entry damaged: {part} is {size // 2:,} bytes, {size:,} were stored"
    )
    code, said = dataforge(monkeypatch, capsys, "build", "-q", str(recipe))
    assert code == 0, said
    assert (
        f"warning: cache entry of convert:alp was damaged ({part} is {size // 2:,} bytes, {size:,} were "
        "stored); removed and recomputed"
    ) in said
    assert table.stat().st_size == size
    manifest = json.loads((tmp_path / TINY / "manifest.json").read_text())
    assert manifest["outputs"] == first["outputs"]


def test_a_same_size_altered_cache_entry_fails_its_digest(tmp_path):
    recipe = make_project(tmp_path)
    build(recipe)
    entry = next((tmp_path / TINY / ".cache" / "split").glob("[0-9a-f]*"))
    part = json.loads((entry / "manifest.json").read_text())["table_parts"]["train"][0]
    data = bytearray((entry.parent / part).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (entry.parent / part).write_bytes(bytes(data))
    _, result, _ = build(recipe)
    assert result.warnings == [
        f"cache entry of split was damaged ({part} does not match its recorded sha256); removed and recomputed"
    ]
    assert result.ran == ["split"]


# --- 7. what killed builds leave ----------------------------------------------------------------------------


def test_temporaries_of_killed_builds_are_removed_at_the_start_of_a_build(tmp_path):
    recipe = make_project(tmp_path)
    build(recipe)
    out = tmp_path / TINY
    orphan_entry = out / ".cache" / "read--alp" / ".tmp-0123abcd-99999"
    orphan_entry.mkdir()
    (orphan_entry / "raw.parquet").write_bytes(b"half")
    orphans = [out / ".train.parquet.99999.tmp", out / "report" / ".report.md.99999.tmp"]
    for path in orphans:
        path.write_bytes(b"half")
    keep = out / "report" / ".notes.tmp"  # not a name dataforge writes: left alone
    keep.write_bytes(b"x")
    _, result, _ = build(recipe)
    assert result.ran == []
    assert not orphan_entry.exists() and not any(p.exists() for p in orphans)
    assert keep.exists()


# --- 8. a build that keeps no rows -------------------------------------------------------------------------


def test_a_build_that_keeps_no_training_rows_exits_1_and_says_why(tmp_path, monkeypatch, capsys):
    (tmp_path / "data").mkdir()
    lines = [json.dumps({"messages": [{"role": "wizard", "content": f"hi {i}"}]}) for i in range(5)]
    (tmp_path / "data" / "bad.jsonl").write_text("\n".join(lines) + "\n")
    recipe = tmp_path / "mix.yaml"
    recipe.write_text("name: none\nsources:\n  - {name: bad, from: data/bad.jsonl, format: openai}\n")
    code, said = dataforge(monkeypatch, capsys, "build", "-q", str(recipe))
    assert code == 1
    error = next(line for line in said.splitlines() if line.startswith("error:"))
    assert error.startswith("error: the build kept no training rows: 5 of 5 records rejected (unknown_role 5: ")
    assert (tmp_path / "data/processed/none/report/report.md").is_file()  # the report explains it
    code, said = dataforge(monkeypatch, capsys, "build", "-q", str(recipe))
    assert code == 1 and "Everything is cached" in said and "kept no training rows" in said
