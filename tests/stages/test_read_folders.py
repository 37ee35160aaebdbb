"""What a folder or glob source reads: every file read, skipped by rule and named, or an error naming it; one
format per source, checked per file; messages that say what was looked for."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from builders import quiet
from dataforge import formats
from dataforge.checking import check_files
from dataforge.errors import DataError, UsageError
from dataforge.recipe import Source
from dataforge.stages.read import make_read, resolve_format, source_files

ALPACA = [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(10)]
SHAREGPT = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}


def dataforge(*args, cwd=None):
    proc = subprocess.run(
        [sys.executable, "-m", "dataforge", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"COLUMNS": "250", "PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
    )
    return proc.returncode, proc.stdout, proc.stderr


def jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def source(**fields) -> Source:
    return Source.model_validate({"name": "s", **fields})


@pytest.fixture
def three_kinds(tmp_path: Path) -> Path:
    """The user's folder: the same ten records as JSON and gzipped JSONL, five more as CSV."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps(ALPACA))
    (folder / "a.jsonl.gz").write_bytes(gzip.compress(jsonl(ALPACA).encode()))
    (folder / "a.csv").write_text("instruction,input,output\n" + "".join(f"c{i},,d{i}\n" for i in range(5)))
    return folder


def test_a_folder_reads_every_file_whatever_its_type(three_kinds, tmp_path):
    checked = check_files("data", root=tmp_path)
    assert checked.records == 25
    assert checked.examples["file"].value_counts().to_pylist() == [
        {"values": "data/a.csv", "counts": 5},
        {"values": "data/a.json", "counts": 10},
        {"values": "data/a.jsonl.gz", "counts": 10},
    ]
    code, out, err = dataforge("validate", "data", cwd=tmp_path)
    assert (code, out.strip(), err) == (0, "data: alpaca, 25 records, 25 valid, all valid", "")


def test_a_build_lists_every_file_of_the_folder_in_the_manifest(three_kinds, tmp_path):
    (tmp_path / "r.yaml").write_text("name: f\nsources:\n  - {name: s, from: data}\nsplit: {validation: 0}\n")
    code, out, err = dataforge("build", "-q", "r.yaml", cwd=tmp_path)
    assert code == 0, err
    manifest = json.loads((tmp_path / "data/processed/f/manifest.json").read_text())
    assert [(f["file"], f["records"]) for f in manifest["sources"][0]["files"]] == [
        ("data/a.csv", 5),
        ("data/a.json", 10),
        ("data/a.jsonl.gz", 10),
    ]
    assert "Built f: 15 train, 0 val from 25 records" in out  # the JSON and JSONL copies are duplicates
    assert "skipped" not in manifest["sources"][0]


def test_files_the_folder_rule_skips_are_named_in_the_manifest(three_kinds, tmp_path):
    (three_kinds / "README.md").write_text("# my data\n")
    (three_kinds / "dataset_info.json").write_text('{"mine": {"file_name": "a.json"}}')
    (tmp_path / "r.yaml").write_text("name: f\nsources:\n  - {name: s, from: data}\nsplit: {validation: 0}\n")
    code, out, err = dataforge("build", "-q", "r.yaml", cwd=tmp_path)
    assert code == 0, err
    manifest = json.loads((tmp_path / "data/processed/f/manifest.json").read_text())
    skipped = manifest["sources"][0]["skipped"]
    assert [s["file"] for s in skipped] == ["data/README.md", "data/dataset_info.json"]
    assert skipped[0]["why"] == "documentation"
    assert skipped[1]["why"].startswith("dataset metadata")
    assert len(manifest["sources"][0]["files"]) == 3


def test_a_file_in_a_folder_that_cannot_be_read_is_an_error_naming_it(three_kinds, tmp_path):
    (three_kinds / "b.xlsx").write_bytes(b"PK")
    (three_kinds / "c.gz").write_bytes(gzip.compress(b"{}"))
    with pytest.raises(DataError) as err:
        source_files(source(**{"from": "data"}), tmp_path)
    assert err.value.message == (
        "source 's': 2 files in `from: data` cannot be read: data/b.xlsx (a spreadsheet; export it as CSV (one header "
        "row, one record per row)); data/c.gz (gzip-compressed data of unknown type ('.gz'); name it after what it "
        "holds (e.g. c.jsonl.gz) or decompress it)"
    )
    assert err.value.hint.endswith(
        "move the other files out of the way, or name the data files with a glob (e.g. `from: data/*.jsonl`)"
    )
    code, out, err_text = dataforge("validate", "data", cwd=tmp_path)
    assert code == 1 and out == "" and "2 files in `data` cannot be read: data/b.xlsx" in err_text
    assert "Traceback" not in err_text


def test_files_that_are_not_data_are_skipped_and_named(three_kinds, tmp_path):
    (three_kinds / "README.md").write_text("# about")
    (three_kinds / ".DS_Store").write_bytes(b"\0\1")
    (three_kinds / ".git").mkdir()
    (three_kinds / ".git" / "HEAD").write_text("ref")
    (three_kinds / "dataset_info.json").write_text(json.dumps({"a": {"file_name": "a.json"}}))
    (three_kinds / "img").mkdir()
    (three_kinds / "img" / "1.jpg").write_bytes(b"\xff\xd8")
    src = source(**{"from": "data"})
    out = make_read(src, tmp_path)({}, quiet)
    assert out.stats["records"] == 25
    assert out.stats["skipped"] == [
        {"file": "data/.DS_Store", "why": "hidden file"},
        {"file": "data/.git", "why": "hidden folder (not searched)"},
        {"file": "data/README.md", "why": "documentation"},
        {
            "file": "data/dataset_info.json",
            "why": "dataset metadata: LLaMA-Factory's dataset registry, or the features `datasets` saved",
        },
        {"file": "data/img/1.jpg", "why": "media (records may refer to it; it is not records)"},
    ]
    code, _, err = dataforge("validate", "data", cwd=tmp_path)
    assert code == 0
    assert err.strip() == (
        "note: data: skipped 5 files that are not data: data/.DS_Store (hidden file), data/.git (hidden folder), "
        "data/README.md (documentation), data/dataset_info.json (dataset metadata) and 1 more"
    )
    # A file named on its own is read whatever its name: the rule is for folders and globs.
    assert source_files(source(**{"from": "data/dataset_info.json"}), tmp_path) == [three_kinds / "dataset_info.json"]


def test_a_datasets_save_to_disk_folder_is_a_source(tmp_path):
    import datasets

    rows = [{**SHAREGPT, "id": i} for i in range(5)]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"), num_shards=2)
    checked = check_files("saved", root=tmp_path)
    assert (checked.format, checked.records, checked.examples.num_rows) == ("sharegpt", 5, 5)
    assert (
        checked.examples["file"].to_pylist()
        == ["saved/data-00000-of-00002.arrow"] * 3 + ["saved/data-00001-of-00002.arrow"] * 2
    )
    assert checked.examples["row"].to_pylist() == [0, 1, 2, 0, 1]
    assert [s["file"] for s in checked.skipped] == ["saved/dataset_info.json", "saved/state.json"]


def test_a_folder_mixing_formats_is_an_error_naming_each_file_before_reading(tmp_path):
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "a.json").write_text(json.dumps(ALPACA))
    (tmp_path / "mixed" / "b.jsonl").write_text(jsonl([SHAREGPT] * 300))
    (tmp_path / "mixed" / "c.jsonl").write_text(jsonl([{"question": "q", "answer": "a"}] * 3))
    src = source(**{"from": "mixed"})
    with pytest.raises(DataError) as err:
        resolve_format(src, source_files(src, tmp_path), tmp_path)
    assert err.value.message == (
        "source 's': the files of `from: mixed` are not all in one format; they look like alpaca: mixed/a.json; "
        "sharegpt: mixed/b.jsonl; no known format (columns ['answer', 'question']): mixed/c.jsonl"
    )
    assert err.value.hint == (
        "a source reads one format: give each format its own source (`from:` one file, or a glob that matches only "
        "that format's files), or set `format:` if detection chose wrongly"
    )
    (tmp_path / "mixed" / "c.jsonl").unlink()
    code, out, err_text = dataforge("validate", "mixed", cwd=tmp_path)
    assert code == 1 and out == ""
    assert "they look like alpaca: mixed/a.json; sharegpt: mixed/b.jsonl" in err_text


def test_a_declared_format_that_a_file_clearly_is_not_is_an_error(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.json").write_text(json.dumps(ALPACA))
    (tmp_path / "d" / "b.jsonl").write_text(jsonl([SHAREGPT] * 3))
    src = source(**{"from": "d", "format": "alpaca"})
    with pytest.raises(DataError) as err:
        resolve_format(src, source_files(src, tmp_path), tmp_path)
    assert err.value.message == (
        "source 's' declares `format: alpaca`, but d/b.jsonl looks like sharegpt: its records have none of "
        "alpaca's columns (instruction, output)"
    )
    # Columns the declared format reads itself are not another format: trl reads `messages`, hermes ShareGPT.
    (tmp_path / "m.jsonl").write_text(jsonl([{"messages": [{"role": "user", "content": "q"}]}]))
    assert resolve_format(source(**{"from": "m.jsonl", "format": "trl"}), [tmp_path / "m.jsonl"], tmp_path) == "trl"
    sharegpt = source(**{"from": "d/b.jsonl", "format": "hermes"})
    assert resolve_format(sharegpt, [tmp_path / "d" / "b.jsonl"], tmp_path) == "hermes"


def test_dialects_of_one_container_in_one_folder_are_one_format(tmp_path):
    plain = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    call = '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>'
    tagged = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": call}]}
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.jsonl").write_text(jsonl([plain] * 5))
    (tmp_path / "c" / "b.jsonl").write_text(jsonl([tagged] * 5))
    src = source(**{"from": "c"})
    # As one file holding both would be: Hermes, whose reader takes the plain conversations too.
    assert formats.candidates([plain]) == [formats.get("openai")]
    assert resolve_format(src, source_files(src, tmp_path), tmp_path) == "hermes"


def test_real_llamafactory_data_folder(fixture_path, tmp_path):
    folder = tmp_path / "lf"
    folder.mkdir()
    for name in ("alpaca_en_demo.json", "identity.json", "glaive_toolcall_en_demo.json", "dataset_info.json"):
        shutil.copy(fixture_path(f"peers/llamafactory/{name}"), folder / name)
    with pytest.raises(DataError) as err:
        check_files("lf", root=tmp_path)
    assert err.value.message == (
        "source 'input': the files of `from: lf` are not all in one format; they look like alpaca: "
        "lf/alpaca_en_demo.json, lf/identity.json; sharegpt: lf/glaive_toolcall_en_demo.json"
    )
    with pytest.raises(DataError, match=r"^source 'input' declares `format: alpaca`, but lf/glaive_toolcall_en_demo"):
        check_files("lf", "alpaca", root=tmp_path)
    (folder / "glaive_toolcall_en_demo.json").unlink()
    checked = check_files("lf", root=tmp_path)
    assert (checked.format, checked.records) == ("alpaca", 999 + 91)
    assert checked.skipped == [
        {
            "file": "lf/dataset_info.json",
            "why": "dataset metadata: LLaMA-Factory's dataset registry, or the features `datasets` saved",
        }
    ]


def test_what_was_looked_for_is_said_for_absolute_and_relative_paths(tmp_path):
    cases = {
        "/nonexistent/x.jsonl": (
            "source 's': `from: /nonexistent/x.jsonl`: no such file or folder: /nonexistent/x.jsonl",
            "check the path",
        ),
        "nope/x.jsonl": (
            f"source 's': `from: nope/x.jsonl`: no such file or folder: {tmp_path}/nope/x.jsonl",
            f"check the path; relative paths resolve against {tmp_path}",
        ),
        "*.parquet": (
            f"source 's': `from: *.parquet` matches no file: nothing matches {tmp_path}/*.parquet",
            f"check the pattern; relative paths resolve against {tmp_path}",
        ),
    }
    for pattern, (message, hint) in cases.items():
        with pytest.raises(DataError) as err:
            source_files(source(**{"from": pattern}), tmp_path)
        assert (err.value.message, err.value.hint) == (message, hint)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "README.md").write_text("x")
    with pytest.raises(DataError) as err:
        source_files(source(**{"from": "docs"}), tmp_path)
    assert err.value.message == (
        f"source 's': `from: docs`: the folder {tmp_path}/docs holds no file dataforge reads "
        "(skipped as not data: docs/README.md (documentation))"
    )
    assert err.value.hint.startswith("dataforge reads .jsonl, .ndjson, .json, .csv, .tsv (each also compressed: .gz")
    (tmp_path / "r.yaml").write_text("name: x\nsources:\n  - {name: a, from: /nonexistent/x.jsonl}\n")
    code, _, err_text = dataforge("build", "r.yaml", cwd=tmp_path)
    assert code == 1
    assert "error: source 'a': `from: /nonexistent/x.jsonl`: no such file or folder: /nonexistent/x.jsonl" in err_text
    assert "under" not in err_text


def test_a_mistyped_format_gets_a_suggestion_everywhere(tmp_path):
    known = ", ".join(formats.names())
    with pytest.raises(UsageError) as err:
        formats.get("sharegtp")
    assert (err.value.message, err.value.hint) == (
        "unknown format 'sharegtp'; did you mean 'sharegpt'?",
        f"known formats: {known}",
    )
    with pytest.raises(UsageError) as err:
        check_files("x.jsonl", "sharegtp", root=tmp_path)
    assert err.value.message == "unknown format 'sharegtp'; did you mean 'sharegpt'?"
    (tmp_path / "a.jsonl").write_text(jsonl(ALPACA))
    code, _, err_text = dataforge("validate", "a.jsonl", "--format", "sharegtp", cwd=tmp_path)
    assert code == 2
    assert err_text == f"error: unknown format 'sharegtp'; did you mean 'sharegpt'?\n  hint: known formats: {known}\n"
    code, _, err_text = dataforge("convert", "a.jsonl", "--to", "sharegtp", "-o", "out.jsonl", cwd=tmp_path)
    assert code == 2
    assert err_text.startswith("error: unknown target 'sharegtp'; did you mean 'sharegpt'?\n  hint: known: ")
    assert err_text.count("trl") == 1
    (tmp_path / "r.yaml").write_text("name: x\nsources:\n  - {name: a, from: a.jsonl, format: sharegtp}\n")
    code, _, err_text = dataforge("build", "r.yaml", cwd=tmp_path)
    assert code == 2
    expected = "line 3: sources[0].format: unknown format 'sharegtp'; did you mean 'sharegpt'?"
    assert f"{expected} (known formats: {known})" in err_text


def test_linked_folders_are_read_broken_links_named_and_loops_not_followed(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "a.jsonl").write_text(jsonl(ALPACA[:2]))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "linked").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "loop").symlink_to(tmp_path)
    src = source(**{"from": "src"})
    assert source_files(src, tmp_path) == [tmp_path / "src" / "linked" / "a.jsonl"]
    out = make_read(src, tmp_path)({}, quiet)
    assert out.stats["skipped"] == [
        {"file": "src/linked/loop", "why": "a link to a folder that holds this one (not followed)"}
    ]
    (tmp_path / "src" / "gone.jsonl").symlink_to(tmp_path / "missing.jsonl")
    with pytest.raises(DataError) as err:
        source_files(src, tmp_path)
    assert err.value.message == (
        "source 's': 1 file in `from: src` cannot be read: src/gone.jsonl "
        "(a broken link: the file it points to does not exist)"
    )
