"""Reading source files cannot be broken by one record or one file (issue 15, the readers' part).

Each test names the finding it guards: deep nesting, NaN/Infinity, files changed while read, broken files,
mid-file BOMs, pandas index columns, paths leading outside the recipe's root, and capped raw excerpts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from builders import kept, read, rejected
from dataforge.engine.cache import Cache
from dataforge.engine.graph import build_graph, dedup_files
from dataforge.errors import DataError
from dataforge.jsonsafe import MAX_DEPTH
from dataforge.readers import ROW, sample_records
from dataforge.recipe import Source, load_recipe
from dataforge.stages.read import read_source, source_files

DEEP = 50_000  # levels: Python's parser raised RecursionError past ~1,000, Arrow's segfaulted past ~10,000
TOO_DEEP_MESSAGE = f"JSON nested {DEEP + 1} levels deep (dataforge reads at most {MAX_DEPTH} levels)"


def quiet(done: int, total: int, what: str) -> None:
    """A progress callback that says nothing."""


def rec(instruction: str, output: str = "ok", **extra) -> str:
    return json.dumps({"instruction": instruction, "output": output, **extra}, ensure_ascii=False)


def deep_rec(instruction: str, levels: int = DEEP) -> str:
    """An alpaca record whose unmodelled `meta` nests `levels` arrays (the record itself is one more level)."""
    return f'{{"instruction": "{instruction}", "output": "ok", "meta": {"[" * levels}{"]" * levels}}}'


# --- 1. deep nesting ----------------------------------------------------------------------------------


def test_a_deeply_nested_jsonl_line_is_one_too_deep_reject_and_never_reaches_arrow(write):
    # Every line opens an object, so the file went to Arrow's reader whole: it segfaulted (exit 139).
    path = write("deep.jsonl", "\n".join([rec("a"), deep_rec("b"), rec("c")]) + "\n")
    result = read(path)
    assert kept(result) == [(0, 1, "a"), (2, 3, "c")]
    assert rejected(result) == [(1, 2, "too_deep", None, TOO_DEEP_MESSAGE)]
    assert [r["instruction"] for r in sample_records(path)] == ["a", "c"]  # detection: RecursionError before


def test_a_deeply_nested_element_of_a_json_array_file_is_one_too_deep_reject(write):
    path = write("deep.json", "[\n" + ",\n".join([rec("a"), deep_rec("b"), rec("c")]) + "\n]\n")
    result = read(path)
    assert kept(result) == [(0, 2, "a"), (2, 4, "c")]
    assert rejected(result) == [(1, 3, "too_deep", None, TOO_DEEP_MESSAGE)]
    text = deep_rec("b")
    assert result.rejects["raw"][0].as_py() == text[:2000] + f"… [{len(text) - 2000} more characters]"
    assert [r["instruction"] for r in sample_records(path)] == ["a", "c"]


def test_a_deeply_nested_json_value_in_a_csv_cell_is_a_too_deep_reject_naming_the_column(write):
    deep = "[" * DEEP + "]" * DEEP
    good = json.dumps([{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]).replace('"', '""')
    path = write("deep.csv", f'conversations\n"{good}"\n"{deep}"\n')
    result = read(path, "sharegpt")
    assert result.table.num_rows == 1
    assert rejected(result) == [
        (
            1,
            3,
            "too_deep",
            "conversations",
            f"JSON nested {DEEP} levels deep in conversations (dataforge reads at most {MAX_DEPTH} levels)",
        )
    ]


def test_a_parquet_file_typed_deeper_than_parquet_reads_is_one_unreadable_file_reject(tmp_path):
    typ = pa.string()
    for _ in range(105):  # Parquet's readers stop at 100 levels (below MAX_DEPTH): the file is one reject
        typ = pa.list_(typ)
    table = pa.table({"instruction": ["a"], "output": ["ok"], "meta": pa.array([None], typ)})
    pq.write_table(table, tmp_path / "deep.parquet")
    (reject,) = rejected(read(tmp_path / "deep.parquet"))
    assert reject[:4] == (None, None, "unreadable_file", None)
    assert reject[4].startswith("the file cannot be read: not a readable Parquet file (")
    assert "too deeply nested" in reject[4]
    assert sample_records(tmp_path / "deep.parquet") == []


# --- 2. NaN / Infinity ----------------------------------------------------------------------------------


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_in_jsonl_are_rejects_naming_the_field(write, literal):
    # Arrow's reader accepts them as floats: the fast path kept the record, and exports wrote `NaN` (not JSON).
    path = write("nan.jsonl", rec("a") + "\n" + rec("b")[:-1] + f', "weight": {literal}}}\n')
    result = read(path)
    assert kept(result) == [(0, 1, "a")]
    message = f"`{literal}` at weight is not a JSON number (RFC 8259 has no NaN or Infinity); write a number or null"
    assert rejected(result) == [(1, 2, "non_finite_number", "weight", message)]


def test_nan_in_a_json_array_file_is_a_reject_naming_the_field(write):
    path = write("nan.json", "[" + rec("a") + ", " + rec("b")[:-1] + ', "meta": {"w": [1, NaN]}}]')
    result = read(path)
    assert kept(result) == [(0, 1, "a")]
    assert rejected(result)[0][:4] == (1, 1, "non_finite_number", "meta.w.1")


def test_nan_in_a_parquet_number_field_is_a_reject_naming_the_field(tmp_path):
    msg = pa.struct([("role", pa.string()), ("content", pa.string()), ("weight", pa.float64())])
    messages = [
        [{"role": "user", "content": "q", "weight": None}, {"role": "assistant", "content": "a", "weight": 1.0}],
        [
            {"role": "user", "content": "q", "weight": None},
            {"role": "assistant", "content": "a", "weight": float("nan")},
        ],
    ]
    pq.write_table(pa.table({"messages": pa.array(messages, pa.list_(msg))}), tmp_path / "w.parquet")
    result = read(tmp_path / "w.parquet", "openai")
    assert result.table.num_rows == 1 and result.table[ROW].to_pylist() == [0]
    assert rejected(result) == [
        (
            1,
            None,
            "non_finite_number",
            "messages[1].weight",
            "`NaN` at messages[1].weight is not a JSON number (RFC 8259 has no NaN or Infinity); "
            "write a number or null",
        )
    ]


def test_nan_in_an_unmodelled_float_column_is_pandas_missing_value_read_as_null(tmp_path):
    # pandas writes an absent `score` as NaN: the row is fine, the value is carried as null. Infinity is no
    # missing value and still rejects the row.
    messages = [[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]] * 3
    scores = pa.array([0.5, float("nan"), float("inf")], pa.float64())
    pq.write_table(pa.table({"messages": messages, "score": scores}), tmp_path / "s.parquet")
    result = read(tmp_path / "s.parquet", "openai")
    assert result.table[ROW].to_pylist() == [0, 1]
    assert result.table["__extra"].to_pylist() == ['{"score": 0.5}', None]  # null extras are not carried
    assert [r[2:4] for r in rejected(result)] == [("non_finite_number", "score")]


# --- 3. files changed while read ------------------------------------------------------------------------


def _one_source_project(tmp_path: Path, data: str, extra: str = "") -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "a.jsonl").write_text(data)
    recipe = tmp_path / "mix.yaml"
    recipe.write_text(f"name: t\nsources:\n  - name: src\n    from: data/a.jsonl\n    format: alpaca\n{extra}")
    return recipe


def _run_stage(stage, tmp_path, loaded):
    """Run one (sharded) stage as the engine does, in this process; its cache entry."""
    from dataforge.engine.executor import SerialExecutor
    from dataforge.engine.runner import run_sharded

    cache = Cache(tmp_path / "cache")
    parts = cache.key_parts(stage, {}, loaded.root)
    return run_sharded(stage, cache.key(parts), parts, {}, cache, SerialExecutor(), quiet)


def test_a_file_appended_to_after_the_key_was_computed_fails_the_source(tmp_path):
    recipe = _one_source_project(tmp_path, rec("a") + "\n")
    loaded = load_recipe(recipe)
    stage = next(s for s in build_graph(loaded) if s.kind == "read")
    Cache(tmp_path / "cache").key_parts(stage, {}, loaded.root)  # the key covers the file as it is now
    with (tmp_path / "data" / "a.jsonl").open("a") as fh:
        fh.write(rec("b") + "\n")
    with pytest.raises(DataError) as err:
        _run_stage(stage, tmp_path, loaded)
    assert err.value.message.startswith("source 'src': data/a.jsonl changed while the build read it (its sha256 ")
    assert err.value.message.endswith("; rerun when it is stable")


def test_an_unchanged_file_reads_and_its_hash_is_the_one_the_key_took(tmp_path):
    recipe = _one_source_project(tmp_path, rec("a") + "\n" + rec("b") + "\n")
    loaded = load_recipe(recipe)
    stage = next(s for s in build_graph(loaded) if s.kind == "read")
    parts = Cache(tmp_path / "cache").key_parts(stage, {}, loaded.root)
    entry = _run_stage(stage, tmp_path, loaded)
    assert entry.manifest["stats"]["records"] == 2
    path = tmp_path / "data" / "a.jsonl"
    assert read(path).sha256 == parts["files"]["data/a.jsonl"]


# --- 4. one broken file is one reject ---------------------------------------------------------------------


def test_a_broken_file_is_one_counted_reject_beside_the_other_files_rows(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.json").write_text(json.dumps([{"instruction": "a", "output": "ok"}]))
    (data / "b.json").write_bytes(b'[{"instruction": "caf\xe9", "output": "ok"}]')
    (data / "c.json").write_text("")
    (data / "d.jsonl").write_text("")  # empty JSON Lines: no records, no reject
    pq.write_table(pa.table({"instruction": ["p"], "output": ["ok"]}), data / "e.parquet")
    (data / "f.parquet").write_bytes((data / "e.parquet").read_bytes()[:-10])
    (data / "README.md").write_text("# not data\n")  # skipped by rule, as before
    source = Source.model_validate({"name": "s", "from": "data", "format": "alpaca"})
    files = source_files(source, tmp_path)
    out = read_source(source, files, tmp_path, "alpaca", quiet)
    assert out.tables["raw"]["instruction"].to_pylist() == ["a", "p"]
    rejects = out.tables["rejects"].to_pylist()
    assert [(r["file"], r["row"], r["line"], r["reason"], r["message"]) for r in rejects] == [
        (
            "data/b.json",
            None,
            None,
            "unreadable_file",
            "the file cannot be read: not UTF-8 at byte 21 (line 1); a JSON array file must be valid UTF-8",
        ),
        ("data/c.json", None, None, "unreadable_file", "the file cannot be read: empty file"),
        (
            "data/f.parquet",
            None,
            None,
            "unreadable_file",
            f"the file cannot be read: Parquet footer missing or cut (file ends at byte "
            f"{(data / 'f.parquet').stat().st_size})",
        ),
    ]
    assert out.stats["records"] == 5  # 2 rows + 3 unreadable files, each counted as one record rejected
    assert [f["records"] for f in out.stats["files"]] == [1, 1, 1, 0, 1, 1]


# --- 5. mid-file BOM ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("broken", [False, True])
def test_a_bom_mid_file_is_tolerated_in_jsonl(write, broken):
    # What `cat a.jsonl b.jsonl` gives when b starts with a BOM; the line was a reject before.
    text = "\ufeff" + rec("a") + "\n" + "\ufeff" + rec("b") + "\n" + ('{"broken\n' if broken else "")
    result = read(write("cat.jsonl", text.encode()))
    assert kept(result) == [(0, 1, "a"), (1, 2, "b")]
    assert [r[2] for r in rejected(result)] == (["invalid_json"] if broken else [])


def test_a_bom_mid_file_is_tolerated_in_csv(write):
    result = read(write("cat.csv", "\ufeffinstruction,output\nq1,a1\n\ufeffq2,a2\n".encode()))
    assert kept(result) == [(0, 2, "q1"), (1, 3, "q2")]


# --- 6. pandas index columns ------------------------------------------------------------------------------------


def test_pandas_index_columns_are_dropped_at_read(tmp_path):
    pandas_meta = {
        "index_columns": ["__index_level_0__"],
        "columns": [
            {"name": "instruction", "field_name": "instruction"},
            {"name": "output", "field_name": "output"},
            {"name": None, "field_name": "__index_level_0__"},
        ],
    }
    table = pa.table({"instruction": ["a", "b"], "output": ["x", "y"], "__index_level_0__": [5, 9]})
    table = table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
    pq.write_table(table, tmp_path / "pd.parquet")
    result = read(tmp_path / "pd.parquet")
    assert kept(result) == [(0, None, "a"), (1, None, "b")]
    assert result.table["__extra"].to_pylist() == [None, None]  # the index leaked into metadata before
    assert sample_records(tmp_path / "pd.parquet") == [
        {"instruction": "a", "output": "x"},
        {"instruction": "b", "output": "y"},
    ]


def test_a_named_pandas_index_is_data_and_kept(tmp_path):
    meta = {"index_columns": ["id"], "columns": [{"name": "id", "field_name": "id"}]}
    table = pa.table({"instruction": ["a"], "output": ["x"], "id": ["r1"]})
    pq.write_table(table.replace_schema_metadata({b"pandas": json.dumps(meta).encode()}), tmp_path / "pd.parquet")
    assert read(tmp_path / "pd.parquet").table["__extra"].to_pylist() == ['{"id": "r1"}']


# --- 7. paths outside the recipe's root ---------------------------------------------------------------------------


def _secret(tmp_path: Path) -> tuple[Path, Path]:
    root, outside = tmp_path / "project", tmp_path / "elsewhere"
    (root / "data").mkdir(parents=True)
    outside.mkdir()
    secret = outside / "secret.jsonl"
    secret.write_text("password=hunter2\n")
    (root / "data" / "ok.jsonl").write_text(rec("a") + "\n")
    return root, secret


def test_a_link_in_a_source_folder_that_leads_outside_the_root_is_refused(tmp_path):
    root, secret = _secret(tmp_path)
    os.symlink(secret, root / "data" / "link.jsonl")
    source = Source.model_validate({"name": "s", "from": "data"})
    with pytest.raises(DataError) as err:
        source_files(source, root)
    assert err.value.message == (
        f"source 's' reads 1 file outside the recipe's root {os.path.realpath(root)}: "
        f"data/link.jsonl leads to {os.path.realpath(secret)}"
    )
    assert "allow_outside_root: true" in err.value.hint
    allowed = Source.model_validate({"name": "s", "from": "data", "allow_outside_root": True})
    assert [p.name for p in source_files(allowed, root)] == ["link.jsonl", "ok.jsonl"]


@pytest.mark.parametrize("spelled", ["../elsewhere/secret.jsonl", "ABSOLUTE", "../elsewhere/*.jsonl"])
def test_dotdot_absolute_paths_and_globs_outside_the_root_are_refused(tmp_path, spelled):
    root, secret = _secret(tmp_path)
    pattern = str(secret) if spelled == "ABSOLUTE" else spelled
    with pytest.raises(DataError, match=r"^source 's' reads 1 file outside the recipe's root "):
        source_files(Source.model_validate({"name": "s", "from": pattern}), root)


def test_an_absolute_path_under_the_root_is_read(tmp_path):
    root, _ = _secret(tmp_path)
    source = Source.model_validate({"name": "s", "from": str(root / "data" / "ok.jsonl")})
    assert source_files(source, root) == [root / "data" / "ok.jsonl"]


def test_dedup_decontaminate_paths_use_the_same_rule(tmp_path):
    root, secret = _secret(tmp_path)
    os.symlink(secret, root / "data" / "link.jsonl")
    with pytest.raises(DataError, match=r"^dedup\.decontaminate reads 1 file outside the recipe's root "):
        dedup_files(["data"], root)


# --- 8. capped raw excerpts ---------------------------------------------------------------------------------


def test_the_raw_excerpt_of_a_huge_bad_line_is_capped(write):
    line = '{"instruction": "' + "x" * 10_000  # unterminated: a broken line of 10,017 characters
    result = read(write("big.jsonl", rec("a") + "\n" + line + "\n"))
    (raw,) = result.rejects["raw"].to_pylist()
    assert raw == line[:2000] + f"… [{len(line) - 2000} more characters]"


# --- odd files: each read, or one clear reject -------------------------------------------------------------------


def test_odd_but_readable_files(write):
    assert read(write("ws.jsonl", " \n\t\n\r\n")).records == 0
    crlf = read(write("crlf.jsonl", (rec("a") + "\r\n" + rec("b") + "\r\n").encode()))
    assert kept(crlf) == [(0, 1, "a"), (1, 2, "b")]
    crlf_csv = read(write("crlf.csv", b"instruction,output\r\nq,a\r\n"))
    assert kept(crlf_csv) == [(0, 2, "q")]


def test_a_nul_byte_is_one_reject(write):
    result = read(write("nul.jsonl", (rec("a") + "\n\x00" + rec("b") + "\n").encode()))
    assert kept(result) == [(0, 1, "a")]
    assert [r[:3] for r in rejected(result)] == [(1, 2, "invalid_json")]


def test_a_record_larger_than_arrows_block_is_read(write):
    from dataforge.readers import BLOCK_SIZE

    big = rec("a", "y" * (BLOCK_SIZE + 10))
    result = read(write("big.jsonl", big + "\n" + rec("b") + "\n"))
    assert kept(result) == [(0, 1, "a"), (1, 2, "b")]
