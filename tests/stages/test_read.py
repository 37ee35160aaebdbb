import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from builders import quiet
from dataforge.errors import DataError
from dataforge.recipe import Source
from dataforge.stages.read import read_source, resolve_format, source_files


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_glob_reads_files_in_order_with_ordinals_across_files(tmp_path):
    (tmp_path / "d").mkdir()
    _write(tmp_path / "d" / "b.jsonl", [{"instruction": "b0", "output": "x"}])
    _write(tmp_path / "d" / "a.jsonl", [{"instruction": "a0", "output": "x"}, {"instruction": "a1", "output": "x"}])
    src = Source.model_validate({"name": "s", "from": "d/*.jsonl"})
    files = source_files(src, tmp_path)
    assert [f.name for f in files] == ["a.jsonl", "b.jsonl"]
    assert resolve_format(src, files, tmp_path) == "alpaca"
    out = read_source(src, files, tmp_path, "alpaca", quiet)
    raw = out.tables["raw"]
    assert raw["instruction"].to_pylist() == ["a0", "a1", "b0"]
    assert raw["__file"].to_pylist() == ["d/a.jsonl", "d/a.jsonl", "d/b.jsonl"]
    assert raw["__ordinal"].to_pylist() == [0, 1, 2]
    assert raw["__line"].to_pylist() == [1, 2, 1]
    assert out.stats == {
        "format": "alpaca",
        "records": 3,
        "files": [{"file": "d/a.jsonl", "records": 2}, {"file": "d/b.jsonl", "records": 1}],
        "skipped": [],
        "unmodelled_fields": {},
    }


def test_max_rows_stops_reading_and_counts_only_what_was_read(tmp_path):
    _write(tmp_path / "a.jsonl", [{"instruction": f"q{i}", "output": "x"} for i in range(5)])
    _write(tmp_path / "b.jsonl", [{"instruction": "late", "output": "x"}])
    src = Source.model_validate({"name": "s", "from": ".", "max_rows": 3})
    out = read_source(src, source_files(src, tmp_path), tmp_path, "alpaca", quiet)
    assert out.tables["raw"]["instruction"].to_pylist() == ["q0", "q1", "q2"]
    assert out.stats["records"] == 3
    assert out.stats["files"] == [{"file": "a.jsonl", "records": 3, "truncated_by_max_rows": True}]


def test_column_map_and_parquet_detection(tmp_path):
    table = pa.table({"dialog": [[{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]], "lang": ["en"]})
    pq.write_table(table, tmp_path / "c.parquet")
    src = Source.model_validate({"name": "s", "from": "c.parquet", "columns": {"conversations": "dialog"}})
    files = source_files(src, tmp_path)
    assert resolve_format(src, files, tmp_path) == "sharegpt"
    out = read_source(src, files, tmp_path, "sharegpt", quiet)
    raw = out.tables["raw"]
    assert raw["conversations"].to_pylist() == [[{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]]
    assert raw["__line"].to_pylist() == [None]
    assert json.loads(raw["__extra"][0].as_py()) == {"lang": "en"}


def test_undetectable_and_missing_sources_are_data_errors(tmp_path):
    _write(tmp_path / "x.jsonl", [{"question": "q", "answer": "a"}])
    src = Source.model_validate({"name": "s", "from": "x.jsonl"})
    with pytest.raises(DataError, match=r"could not detect the format from columns \['answer', 'question'\]"):
        resolve_format(src, source_files(src, tmp_path), tmp_path)
    with pytest.raises(DataError) as err:
        source_files(Source.model_validate({"name": "s", "from": "nope/*.jsonl"}), tmp_path)
    assert err.value.message == (
        f"source 's': `from: nope/*.jsonl` matches no file: nothing matches {tmp_path}/nope/*.jsonl"
    )
    assert err.value.hint == f"check the pattern; relative paths resolve against {tmp_path}"
