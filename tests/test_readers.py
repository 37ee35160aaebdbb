"""Reading JSONL, JSON and Parquet into raw rows: provenance, rejects, column maps, extras."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from builders import kept, read, rejected
from dataforge import formats
from dataforge.errors import DataError
from dataforge.readers import (
    EXTRA,
    LINE,
    ROW,
    file_kind,
    read_file,
    resolve_files,
    sample_records,
)

BROKEN = '{"instruction": "unterminated'
BROKEN_MESSAGE = "broken JSON: Unterminated string starting at: line 1 column 17 (char 16)"


def rec(instruction: str, output: str = "ok", **extra) -> str:
    return json.dumps({"instruction": instruction, "output": output, **extra}, ensure_ascii=False)


def careful(text: str, wanted: bool) -> str:
    """`text`, plus a broken last line when `wanted` (which sends the whole file down the careful path)."""
    return text + BROKEN + "\n" if wanted else text


# --- JSONL ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("slow_path", [False, True], ids=["fast", "careful"])
@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_jsonl_line_numbers_skip_blank_and_whitespace_lines(write, slow_path, newline):
    text = newline.join([rec("a"), "", "   \t", rec("b"), "", rec("c")]) + newline
    result = read(write("blank.jsonl", careful(text, slow_path)))
    assert kept(result) == [(0, 1, "a"), (1, 4, "b"), (2, 6, "c")]
    if slow_path:
        assert rejected(result) == [(3, 7, "invalid_json", None, BROKEN_MESSAGE)]
        assert result.records == 4
    else:
        assert result.rejects.num_rows == 0
        assert result.records == 3


def test_jsonl_broken_line_is_one_reject_with_its_line_and_text(write):
    result = read(write("broken.jsonl", "\n".join([rec("a"), "", BROKEN, rec("b")]) + "\n"))
    assert kept(result) == [(0, 1, "a"), (2, 4, "b")]
    assert rejected(result) == [(1, 3, "invalid_json", None, BROKEN_MESSAGE)]
    reject = result.rejects.to_pylist()[0]
    assert (reject["stage"], reject["outcome"], reject["file"], reject["raw"]) == (
        "read",
        "rejected",
        "broken.jsonl",
        BROKEN,
    )


def test_jsonl_invalid_utf8_line_is_rejected_and_never_reaches_the_table(write):
    # Arrow's reader accepts invalid bytes inside strings: this file used to load with a corrupt string.
    bad = b'{"instruction": "caf\xe9", "output": "ok"}'
    data = (rec("a") + "\n").encode() + bad + b"\n" + (rec("b") + "\n").encode()
    result = read(write("latin1.jsonl", data))
    assert kept(result) == [(0, 1, "a"), (2, 3, "b")]
    assert rejected(result) == [
        (1, 2, "invalid_utf8", None, "invalid UTF-8 at byte 20 of the line; re-encode the file as UTF-8")
    ]
    assert result.rejects["raw"].to_pylist() == ['{"instruction": "caf\ufffd", "output": "ok"}']
    result.table.validate(full=True)


def test_jsonl_invalid_utf8_in_an_extra_column_is_rejected(write):
    data = (rec("a") + "\n").encode() + b'{"instruction": "b", "output": "ok", "note": "\xff"}\n'
    result = read(write("extra.jsonl", data))
    assert kept(result) == [(0, 1, "a")]
    assert [r[:3] for r in rejected(result)] == [(1, 2, "invalid_utf8")]


def test_jsonl_lone_surrogate_escape_is_a_reject_not_a_crash(write):
    # `\ud800` parses in Python but no Arrow string can hold it; this raised UnicodeEncodeError before.
    result = read(write("surrogate.jsonl", rec("a") + "\n" + '{"instruction": "\\ud800", "output": "ok"}\n'))
    assert kept(result) == [(0, 1, "a")]
    assert rejected(result) == [
        (
            1,
            2,
            "invalid_unicode",
            None,
            "a string holds a lone surrogate ('\\ud800'), which is not valid Unicode; fix the escape",
        )
    ]
    assert result.rejects["raw"].to_pylist() == ['{"instruction": "\\ud800", "output": "ok"}']


@pytest.mark.parametrize(
    ("line", "found"),
    [
        ("null", "null"),
        ("42", "a number"),
        ('"hello"', "a string"),
        ("[1, 2]", "an array"),
        ("true", "a boolean"),
    ],
)
def test_jsonl_scalar_or_array_line_is_not_an_object(write, line, found):
    result = read(write("scalar.jsonl", "\n".join([rec("a"), line, rec("b")]) + "\n"))
    assert kept(result) == [(0, 1, "a"), (2, 3, "b")]
    assert rejected(result) == [(1, 2, "not_an_object", None, f"expected a JSON object per record, found {found}")]
    assert result.rejects["raw"].to_pylist() == [line]


def test_jsonl_starting_with_null_is_read_not_crashed(write):
    # pyarrow's JSON reader segfaults on a first line `null`; the reader must never hand it such a file.
    # Run in a child process so that a regression fails this test instead of killing the whole run.
    path = write("null-first.jsonl", "null\n" + rec("a") + "\n")
    code = (
        "import json, sys; from pathlib import Path; from dataforge import formats; "
        "from dataforge.readers import read_file; p = Path(sys.argv[1]); "
        "r = read_file(p, p.name, formats.get('alpaca').shape); "
        "print(json.dumps([r.records, r.table['__line'].to_pylist(), r.rejects['reason'].to_pylist()]))"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == [2, [2], ["not_an_object"]]


@pytest.mark.parametrize(
    ("fmt", "good", "bad", "field", "message"),
    [
        (
            "alpaca",
            rec("a"),
            '{"instruction": 5, "output": "x"}',
            "instruction",
            "expected string, found a number",
        ),
        (
            "alpaca",
            rec("a"),
            '{"instruction": "a", "output": "x", "history": [["u", 5]]}',
            "history[0][1]",
            "expected string, found a number",
        ),
        (
            "alpaca",
            rec("a"),
            '{"instruction": "a", "output": "x", "system": ["s"]}',
            "system",
            "expected string or null, found an array",
        ),
        (
            "sharegpt",
            '{"conversations": [{"from": "human", "value": "hi"}]}',
            '{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": 7}]}',
            "conversations[1].value",
            "expected string, found a number",
        ),
        (
            "sharegpt",
            '{"conversations": []}',
            '{"conversations": "hi"}',
            "conversations",
            "expected array, found a string",
        ),
        (
            "openai",
            '{"messages": [{"role": "user", "content": "hi"}]}',
            '{"messages": [{"role": "user", "content": {"text": "hi"}}]}',
            "messages[0].content",
            "expected string or null, found an object",
        ),
        (
            "openai",
            '{"messages": []}',
            '{"messages": [], "tools": 3}',
            "tools",
            "expected string or array or null, found a number",
        ),
    ],
)
def test_wrong_type_is_a_schema_violation_naming_the_field(write, fmt, good, bad, field, message):
    result = read(write("typed.jsonl", f"{good}\n{bad}\n"), fmt)
    assert [(row, line) for row, line, _ in kept(result, result.table.column_names[0])] == [(0, 1)]
    assert rejected(result) == [(1, 2, "schema_violation", field, message)]
    assert result.rejects["raw"].to_pylist() == [json.dumps(json.loads(bad))]


@pytest.mark.parametrize(
    ("fmt", "record", "field"),
    [
        ("alpaca", '{"instruction": "a"}', "output"),
        ("alpaca", '{"output": "a"}', "instruction"),
        ("sharegpt", '{"system": "s"}', "conversations"),
        ("openai", '{"tools": null}', "messages"),
    ],
)
def test_missing_required_column_names_the_column_on_both_paths(write, check, fmt, record, field):
    good = {
        "alpaca": rec("a"),
        "sharegpt": '{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}',
        "openai": '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}',
    }[fmt]
    message = f"'{field}' is required but missing"
    # Fast path: Arrow reads the missing column as null; convert rejects the row.
    fast = check(write("fast.jsonl", f"{good}\n{record}\n"), fmt)
    assert [
        (r["stage"], r["row"], r["line"], r["reason"], r["field"], r["message"]) for r in fast.rejects.to_pylist()
    ] == [("convert", 1, 2, "schema_violation", field, message)]
    # Careful path (a broken line elsewhere): the JSON Schema rejects it at read, with the same field. Alpaca's
    # `output` is optional to the schema (preference rows answer in chosen/rejected): convert rejects it there.
    slow = check(write("slow.jsonl", f"{good}\n{record}\n{BROKEN}\n"), fmt)
    stage = "convert" if (fmt, field) == ("alpaca", "output") else "read"
    assert [
        (r["stage"], r["row"], r["line"], r["reason"], r["field"], r["message"]) for r in slow.rejects.to_pylist()
    ] == [
        (stage, 1, 2, "schema_violation", field, message),
        ("read", 2, 3, "invalid_json", None, BROKEN_MESSAGE),
    ]
    assert fast.examples["row"].to_pylist() == slow.examples["row"].to_pylist() == [0]


@pytest.mark.parametrize("slow_path", [False, True], ids=["fast", "careful"])
def test_jsonl_with_bom_numbers_lines_from_one(write, slow_path):
    data = "\ufeff" + rec("a") + "\n" + rec("b") + "\n"
    result = read(write("bom.jsonl", careful(data, slow_path).encode("utf-8")))
    assert kept(result) == [(0, 1, "a"), (1, 2, "b")]


def test_empty_and_blank_jsonl_files_hold_no_records(write):
    for name, text in [("empty.jsonl", ""), ("blank.jsonl", "\n \n\t\n")]:
        result = read(write(name, text))
        assert (result.records, result.table.num_rows, result.rejects.num_rows) == (0, 0, 0)
        assert result.table.column_names == [*formats.get("alpaca").shape.arrow.names, ROW, LINE, EXTRA]


# --- JSON arrays and objects ----------------------------------------------------------------------


def test_json_array_rows_carry_the_line_each_element_starts_on(write):
    records = [{"instruction": i, "output": "o"} for i in ("a", "b", "c")]
    result = read(write("pretty.json", records))  # indent=2: each element takes four lines
    assert kept(result) == [(0, 2, "a"), (1, 6, "b"), (2, 10, "c")]
    compact = "[" + ",\n ".join(json.dumps(r) for r in records) + "]\n"
    assert kept(read(write("compact.json", compact))) == [(0, 1, "a"), (1, 2, "b"), (2, 3, "c")]


def test_json_array_broken_element_costs_one_reject_and_reading_resumes(write):
    text = (
        "[\n"
        '  {\n    "instruction": "one",\n    "output": "1"\n  },\n'
        '  {\n    "instruction": "two",\n    "output": \n  },\n'
        '  {\n    "instruction": "three",\n    "output": "3"\n  }\n'
        "]\n"
    )
    result = read(write("broken.json", text))
    assert result.records == 3
    assert kept(result) == [(0, 2, "one"), (2, 10, "three")]
    assert rejected(result) == [
        (1, 6, "invalid_json", None, "broken JSON: Expecting value: line 9 column 3 (char 102)")
    ]
    assert result.rejects["raw"].to_pylist() == ['{\n    "instruction": "two",\n    "output": \n  },']


def test_json_array_broken_nested_element_costs_exactly_one_reject(write):
    # The inner turn objects of a broken ShareGPT record open lines too; each became a reject before.
    convs = [[{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": f"a{i}"}] for i in range(3)]
    text = json.dumps([{"conversations": c} for c in convs], indent=2)
    text = text.replace('"value": "q1"', '"value": q1')
    result = read(write("nested.json", text), "sharegpt")
    assert result.records == 3
    assert [(row, line) for row, line, _ in kept(result, "conversations")] == [(0, 2), (2, 26)]
    assert [r[:3] for r in rejected(result)] == [(1, 14, "invalid_json")]


def test_json_one_line_array_resumes_after_a_broken_element(write):
    # Everything after the broken element on its line was lost before (one reject, records undercounted).
    text = (
        '[{"instruction": "a", "output": "1"}, {"instruction": , "output": "2"}, {"instruction": "c", "output": "3"}]'
    )
    result = read(write("oneline.json", text))
    assert result.records == 3
    assert kept(result) == [(0, 1, "a"), (2, 1, "c")]
    assert rejected(result) == [
        (1, 1, "invalid_json", None, "broken JSON: Expecting value: line 1 column 55 (char 54)")
    ]
    assert result.rejects["raw"].to_pylist() == ['{"instruction": , "output": "2"},']


def test_json_broken_last_element_is_one_reject(write):
    text = '[\n  {"instruction": "a", "output": "1"},\n  {"instruction": "b", "output": }\n]\n'
    result = read(write("last.json", text))
    assert result.records == 2
    assert kept(result) == [(0, 2, "a")]
    assert [r[:3] for r in rejected(result)] == [(1, 3, "invalid_json")]


def test_json_array_element_that_is_not_an_object_is_rejected(write):
    result = read(write("mixed.json", '[\n  {"instruction": "a", "output": "1"},\n  "stray",\n  [1]\n]\n'))
    assert kept(result) == [(0, 2, "a")]
    assert rejected(result) == [
        (1, 3, "not_an_object", None, "expected a JSON object per record, found a string"),
        (2, 4, "not_an_object", None, "expected a JSON object per record, found an array"),
    ]


def test_json_text_after_the_array_is_a_reject_not_a_silent_skip(write):
    text = '[{"instruction": "a", "output": "1"}]\n[{"instruction": "b", "output": "2"}]\n'
    result = read(write("two-arrays.json", text))
    assert kept(result) == [(0, 1, "a")]
    assert rejected(result) == [(1, 2, "invalid_json", None, "unexpected text after the closing ']' of the array")]
    assert result.rejects["raw"].to_pylist() == ['[{"instruction": "b", "output": "2"}]\n']


def test_json_single_object_file_is_one_record_at_its_line(write, check):
    result = read(write("one.json", '\n\n{\n  "instruction": "solo",\n  "output": "1"\n}\n'))
    assert kept(result) == [(0, 3, "solo")]
    checked = check(write("one-again.json", '{"instruction": "solo", "output": "1"}'))
    assert (checked.format, checked.records, checked.examples["line"].to_pylist()) == ("alpaca", 1, [1])


def test_json_file_holding_json_lines_reads_every_object(write):
    # Only the first object was read before: JSON Lines saved as `.json` lost every further record silently.
    result = read(write("lines.json", "\n".join([rec("a"), rec("b"), "", rec("c")]) + "\n"))
    assert kept(result) == [(0, 1, "a"), (1, 2, "b"), (2, 4, "c")]
    assert result.records == 3


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('"just text"', "the top level is not an array of records (or an object): it starts with '\"just text\"'"),
        ("", "empty file"),
        (" \n\t\n", "empty file (only whitespace)"),
        ("42", "the top level is not an array of records (or an object): it starts with '42'"),
    ],
)
def test_json_file_that_is_not_an_array_or_object_is_one_unreadable_file_reject(write, text, why):
    # Was a DataError that failed the whole source (and build) for one bad file.
    result = read(write("scalar.json", text))
    assert result.records == 1 and result.table.num_rows == 0
    assert rejected(result) == [(None, None, "unreadable_file", None, f"the file cannot be read: {why}")]


def test_json_file_with_invalid_utf8_is_one_unreadable_file_reject_naming_the_byte(write):
    result = read(write("latin1.json", b'[\n  {"instruction": "caf\xe9", "output": "1"}\n]\n'))
    assert rejected(result) == [
        (
            None,
            None,
            "unreadable_file",
            None,
            "the file cannot be read: not UTF-8 at byte 24 (line 2); a JSON array file must be valid UTF-8",
        )
    ]


def test_json_empty_array_holds_no_records(write):
    result = read(write("empty.json", "[]"))
    assert (result.records, result.table.num_rows, result.rejects.num_rows) == (0, 0, 0)


def test_json_lone_surrogate_is_a_reject(write):
    result = read(
        write(
            "surrogate.json",
            '[{"instruction": "a", "output": "1"}, {"instruction": "\\udc00", "output": "2"}]',
        )
    )
    assert kept(result) == [(0, 1, "a")]
    assert [r[:3] for r in rejected(result)] == [(1, 1, "invalid_unicode")]


# --- Parquet --------------------------------------------------------------------------------------


def test_parquet_rows_have_row_numbers_no_lines_and_extras_as_metadata(write, check):
    path = write(
        "data.parquet",
        [
            {"instruction": "a", "output": "1", "score": 0.5, "tags": ["x"]},
            {"instruction": "b", "output": "2", "score": None, "tags": None},
        ],
    )
    result = read(path)
    assert kept(result) == [(0, None, "a"), (1, None, "b")]
    assert result.table[EXTRA].to_pylist() == ['{"score": 0.5, "tags": ["x"]}', None]
    assert result.table["input"].to_pylist() == [None, None]  # absent format columns read as null
    checked = check(path)
    assert (checked.format, checked.records) == ("alpaca", 2)
    assert checked.examples["metadata"].to_pylist() == ['{"score": 0.5, "tags": ["x"]}', None]
    assert checked.examples["line"].to_pylist() == [None, None]


def test_parquet_column_of_the_wrong_type_rejects_each_row(write):
    path = tmp = write("typed.parquet", b"")
    pq.write_table(pa.table({"instruction": pa.array([["a"], ["b", "c"]]), "output": ["1", "2"]}), tmp)
    result = read(path)
    assert result.table.num_rows == 0
    assert rejected(result) == [
        (0, None, "schema_violation", "instruction", "expected string, found an array"),
        (1, None, "schema_violation", "instruction", "expected string, found an array"),
    ]


def test_unreadable_parquet_is_one_unreadable_file_reject(write):
    (reject,) = rejected(read(write("junk.parquet", b"PAR1 not really")))
    assert reject[:4] == (None, None, "unreadable_file", None)
    assert reject[4] == "the file cannot be read: Parquet footer missing or cut (file ends at byte 15)"


# --- column maps and extras -----------------------------------------------------------------------


@pytest.mark.parametrize("slow_path", [False, True], ids=["fast", "careful"])
def test_column_map_renames_to_format_columns_and_rejects_name_the_file_column(write, slow_path):
    text = '{"prompt": "a", "response": "1", "id": 7}\n{"prompt": 5, "response": "2"}\n'
    if not slow_path:
        text = '{"prompt": "a", "response": "1", "id": 7}\n'
    result = read(write("mapped.jsonl", text), columns={"instruction": "prompt", "output": "response"})
    assert result.table.column_names == [
        "instruction",
        "input",
        "output",
        "system",
        "history",
        "chosen",
        "rejected",
        "kto_tag",
        "label",
        ROW,
        LINE,
        EXTRA,
    ]
    assert kept(result) == [(0, 1, "a")]
    assert result.table["output"].to_pylist() == ["1"]
    assert result.table[EXTRA].to_pylist() == ['{"id": 7}']  # the renamed columns are not extras
    if slow_path:
        assert rejected(result) == [(1, 2, "schema_violation", "prompt", "expected string, found a number")]


def test_column_map_with_detection_and_conversion(write, check):
    text = (
        '{"prompt": "Hi?", "response": "Hello."}\n{"prompt": "Bye?", "response": 5}\n{"prompt": "", "response": "?"}\n'
    )
    checked = check(write("mapped.jsonl", text), None, {"instruction": "prompt", "output": "response"})
    assert checked.format == "alpaca"
    assert [[(m["role"], m["content"]) for m in ms] for ms in checked.examples["messages"].to_pylist()] == [
        [("user", "Hi?"), ("assistant", "Hello.")]
    ]
    # Read rejects name the file's column; later stages name the format's.
    assert [(r["stage"], r["row"], r["field"], r["message"]) for r in checked.rejects.to_pylist()] == [
        ("read", 1, "response", "expected string, found a number"),
        ("validate", 2, "instruction", "user message has no content (empty string)"),
    ]


def test_column_map_applies_the_formats_coercion_under_the_files_names(write):
    # Tools given as an array are coerced to JSON text; the coercion must see the renamed column.
    text = json.dumps({"dialog": [{"from": "human", "value": "hi"}], "functions": [{"name": "f"}]}) + "\n" + BROKEN
    result = read(write("coerced.jsonl", text), "sharegpt", {"conversations": "dialog", "tools": "functions"})
    assert result.table["tools"].to_pylist() == ['[{"name": "f"}]']
    assert result.table["conversations"].to_pylist() == [[{"from": "human", "value": "hi"}]]


@pytest.mark.parametrize("slow_path", [False, True], ids=["fast", "careful"])
def test_extra_columns_land_in_metadata_exactly_as_written(write, check, slow_path):
    rows = [
        rec("a", id="r1", n=3, score=0.5, tags=["x", "y"], flag=True, gone=None),
        rec("b", id="r2", meta={"k": 1}, when="2020-01-01"),
        rec("c", meta={"j": [1, 2]}),
    ]
    checked = check(write("extras.jsonl", careful("\n".join(rows) + "\n", slow_path)))
    # Nested objects kept their own keys and ISO dates stayed strings; on the fast path Arrow's inference
    # used to add the other rows' keys as nulls, and a date column crashed the reader (TypeError).
    assert checked.examples["metadata"].to_pylist() == [
        '{"flag": true, "id": "r1", "n": 3, "score": 0.5, "tags": ["x", "y"]}',
        '{"id": "r2", "meta": {"k": 1}, "when": "2020-01-01"}',
        '{"meta": {"j": [1, 2]}}',
    ]
    assert checked.records == 3 + slow_path


def test_ledger_balances_for_a_messy_file(write, check):
    lines = [
        rec("fine"),  # kept
        "",  # blank: not a record
        BROKEN,  # read: invalid_json
        "[]",  # read: not_an_object
        '{"instruction": 1, "output": "x"}',  # read: schema_violation
        '{"instruction": "a", "output": "x", "history": [["only one"]]}',  # read: too short a pair
        rec("", ""),  # validate: empty_content
        rec("also fine", extra_col="kept in metadata"),  # kept
    ]
    checked = check(write("messy.jsonl", "\n".join(lines) + "\n"))
    assert checked.records == 7 == checked.examples.num_rows + checked.rejects.num_rows
    assert checked.examples["row"].to_pylist() == [0, 6]
    assert checked.examples["line"].to_pylist() == [1, 8]
    assert [(r["row"], r["line"], r["stage"], r["reason"]) for r in checked.rejects.to_pylist()] == [
        (1, 3, "read", "invalid_json"),
        (2, 4, "read", "not_an_object"),
        (3, 5, "read", "schema_violation"),
        (4, 6, "read", "schema_violation"),
        (5, 7, "validate", "empty_content"),
    ]


# --- files ----------------------------------------------------------------------------------------


def test_resolve_files_by_path_directory_and_glob(tmp_path, write):
    for name in ("b.jsonl", "a.json", "sub/c.parquet", "sub/d.ndjson", "README.md", "sub/.DS_Store"):
        write(name, "")
    assert resolve_files("b.jsonl", tmp_path) == [tmp_path / "b.jsonl"]
    assert resolve_files(".", tmp_path) == sorted(
        tmp_path / n for n in ("a.json", "b.jsonl", "sub/c.parquet", "sub/d.ndjson")
    )
    assert resolve_files("**/*.parquet", tmp_path) == [tmp_path / "sub/c.parquet"]
    assert resolve_files(str(tmp_path / "*.json*"), tmp_path) == [tmp_path / "a.json", tmp_path / "b.jsonl"]
    assert resolve_files("missing.jsonl", tmp_path) == []
    # A file dataforge cannot read is never passed over: the folder is an error naming it.
    write("notes.txt", "")
    with pytest.raises(DataError) as err:
        resolve_files(".", tmp_path)
    assert err.value.message == (
        "1 file in `.` cannot be read: notes.txt "
        "(plain text; dataforge reads records: put each document in a `text` field of a .jsonl file)"
    )


def test_file_kind_by_suffix_and_a_clear_error_for_others():
    assert [
        file_kind(Path(p))
        for p in ("x.jsonl", "x.NDJSON", "x.json", "x.parquet", "x.csv", "x.TSV", "x.jsonl.gz", "x.json.zst", "x.arrow")
    ] == ["jsonl", "jsonl", "json", "parquet", "csv", "tsv", "jsonl", "json", "arrow"]
    with pytest.raises(DataError) as err:
        file_kind(Path("data/x.gz"))
    assert err.value.message == (
        "data/x.gz: gzip-compressed data of unknown type ('.gz'); name it after what it holds (e.g. x.jsonl.gz) "
        "or decompress it"
    )
    assert err.value.hint.startswith("dataforge reads .jsonl, .ndjson, .json, .csv, .tsv (each also compressed: .gz")
    with pytest.raises(DataError, match=r"^data/x\.parquet\.gz: a compressed \.parquet file; \.parquet files are"):
        file_kind(Path("data/x.parquet.gz"))
    with pytest.raises(DataError, match=r"^data/x\.xlsx: a spreadsheet; export it as CSV"):
        file_kind(Path("data/x.xlsx"))


def test_sample_records_takes_readable_objects_from_the_head(write):
    path = write("sample.jsonl", "\n".join([BROKEN, "3", rec("a"), rec("b"), rec("c")]) + "\n")
    assert [r["instruction"] for r in sample_records(path, n=2)] == ["a", "b"]
    arr = write("sample.json", [{"instruction": "x", "output": "1"}, 7, {"instruction": "y", "output": "2"}])
    assert [r["instruction"] for r in sample_records(arr)] == ["x", "y"]
    pqf = write("sample.parquet", [{"instruction": "p", "output": "1"}])
    assert sample_records(pqf) == [{"instruction": "p", "output": "1"}]


def test_nested_fields_the_format_does_not_model_are_counted_on_every_path(write, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dataforge.formats import get

    shape = get("openai").shape
    line = json.dumps(
        {
            "messages": [
                {"role": "user", "content": "q", "refusal": "no"},
                {"role": "assistant", "content": "a", "refusal": "no"},
            ]
        }
    )
    fast = read_file(write("w.jsonl", line + "\n"), "w.jsonl", shape)
    careful = read_file(write("c.jsonl", line + "\nnot json\n"), "c.jsonl", shape)
    array = read_file(write("a.json", f"[{line}]"), "a.json", shape)
    pq.write_table(
        pa.table({"messages": [[{"role": "user", "content": "q", "refusal": "no"}]]}), tmp_path / "p.parquet"
    )
    parquet = read_file(tmp_path / "p.parquet", "p.parquet", shape)
    assert fast.unmodelled == careful.unmodelled == array.unmodelled == {"messages[].refusal": 2}
    assert parquet.unmodelled == {"messages[].refusal": 1}
    assert fast.table.num_rows == careful.table.num_rows == 1


def test_a_parquet_number_where_a_string_belongs_is_rejected_like_json(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dataforge.formats import get

    pq.write_table(pa.table({"instruction": [1, 2], "output": ["a", "b"]}), tmp_path / "n.parquet")
    result = read_file(tmp_path / "n.parquet", "n.parquet", get("alpaca").shape)
    assert result.table.num_rows == 0
    assert [(r["row"], r["field"], r["message"]) for r in result.rejects.to_pylist()] == [
        (0, "instruction", "expected string, found a number"),
        (1, "instruction", "expected string, found a number"),
    ]


# --- compressed text files ------------------------------------------------------------------------

CODECS = [c for c in ("gzip", "bz2", "zstd") if pa.Codec.is_available(c)]
SUFFIX = {"gzip": ".gz", "bz2": ".bz2", "zstd": ".zst"}


def compressed(path: Path, data: bytes, codec: str) -> Path:
    with pa.CompressedOutputStream(str(path), codec) as out:
        out.write(data)
    return path


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("bad", [False, True], ids=["fast", "careful"])
def test_compressed_jsonl_reads_like_the_plain_file_with_lines_of_the_decompressed_text(write, tmp_path, codec, bad):
    text = careful("\n".join([rec("a"), "", rec("b"), rec("c")]) + "\n", bad)
    plain = read(write("p.jsonl", text))
    packed = read(compressed(tmp_path / f"p.jsonl{SUFFIX[codec]}", text.encode(), codec))
    assert kept(packed) == kept(plain) == [(0, 1, "a"), (1, 3, "b"), (2, 4, "c")]
    assert rejected(packed) == rejected(plain) == ([(3, 5, "invalid_json", None, BROKEN_MESSAGE)] if bad else [])
    assert sample_records(tmp_path / f"p.jsonl{SUFFIX[codec]}")[0] == {"instruction": "a", "output": "ok"}


def test_a_compressed_json_array_and_a_broken_stream(tmp_path, write):
    rows = [{"instruction": f"q{i}", "output": "a"} for i in range(3)]
    path = compressed(tmp_path / "a.json.gz", json.dumps(rows, indent=2).encode(), "gzip")
    assert [(r, line, v) for r, line, v in kept(read(path))] == [(0, 2, "q0"), (1, 6, "q1"), (2, 10, "q2")]
    cut = write("cut.jsonl.gz", path.read_bytes()[:25])
    (reject,) = rejected(read(cut))  # one reject for the file, not an error for the whole source
    assert reject[:4] == (None, None, "unreadable_file", None)
    assert reject[4].startswith("the file cannot be read: not readable as gzip-compressed data (")


def test_a_compressed_file_named_as_plain_text_is_named_not_read_as_garbage(write):
    import gzip

    path = write("data.jsonl", gzip.compress((rec("a") + "\n").encode()))
    # One reject for the file, saying how to fix it; never its bytes read as broken JSON lines.
    assert rejected(read(path)) == [
        (
            None,
            None,
            "unreadable_file",
            None,
            "the file cannot be read: named like a jsonl file, but it is gzip-compressed; rename it to data.jsonl.gz",
        )
    ]
    assert sample_records(path) == []  # nothing to detect a format from


# --- CSV and TSV ----------------------------------------------------------------------------------

CSV_TEXT = (
    "\ufeffinstruction,input,output,lang\n"  # a BOM, and a column alpaca does not model
    '"multi\nline",,007,en\n'  # a quoted line break; `007` stays a string
    "q2,x,y,z,extra\n"  # five values: a reject, with its line
    "\n"  # blank: not a record
    'q3,,"a ""quoted"" one",de\n'
    "short\n"  # one value: a reject
    "q4,,a4,fr"  # no newline at the end
)


def test_csv_rows_become_records_and_wrong_rows_rejects_with_their_line(write):
    result = read(write("a.csv", CSV_TEXT))
    assert kept(result) == [(0, 2, "multi\nline"), (2, 6, "q3"), (4, 8, "q4")]
    assert result.table["output"].to_pylist() == ["007", 'a "quoted" one', "a4"]
    assert result.table["input"].to_pylist() == ["", "", ""]
    assert [json.loads(x) for x in result.table[EXTRA].to_pylist()] == [{"lang": "en"}, {"lang": "de"}, {"lang": "fr"}]
    message = (
        "expected 4 values (instruction, input, output, lang), found {}; "
        "quote values that hold ',', a quote or a line break"
    )
    assert rejected(result) == [
        (1, 4, "invalid_csv", None, message.format(5)),
        (3, 7, "invalid_csv", None, message.format(1)),
    ]
    assert result.rejects["raw"].to_pylist() == ["q2,x,y,z,extra", "short"]


def test_the_careful_csv_path_agrees_with_arrow(write):
    from dataforge.readers_csv import _read_careful, read_csv

    shape = formats.get("alpaca").shape
    data = write("a.csv", CSV_TEXT).read_bytes()
    fast, slow = read_csv(data, "a.csv", shape, ","), _read_careful(data, "a.csv", shape, ",")
    assert fast.table.equals(slow.table)
    assert fast.rejects.select(["row", "line", "reason", "message"]).equals(
        slow.rejects.select(["row", "line", "reason", "message"])
    )
    assert fast.records == slow.records == 5


def test_invalid_utf8_in_a_csv_row_costs_that_row(write):
    result = read(write("u.csv", b"instruction,output\nq\xff,a\nq2,a2\n"))
    assert kept(result) == [(1, 3, "q2")]
    assert rejected(result) == [(0, 2, "invalid_utf8", None, "invalid UTF-8 in this row; re-encode the file as UTF-8")]


def test_tsv_and_compressed_csv(tmp_path, write):
    tsv = read(write("a.tsv", "instruction\tinput\toutput\nq1\t\ta, with a comma\nq2\t\n"))
    assert kept(tsv) == [(0, 2, "q1")]
    assert tsv.table["output"].to_pylist() == ["a, with a comma"]
    assert rejected(tsv)[0][:3] == (1, 3, "invalid_csv")
    assert "quote values that hold a tab" in rejected(tsv)[0][4]
    packed = read(compressed(tmp_path / "a.csv.gz", b"instruction,output\nq,a\n", "gzip"))
    assert kept(packed) == [(0, 2, "q")]


def test_csv_values_the_format_types_as_lists_or_booleans_are_json_text(write):
    turns = json.dumps([{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}])
    quoted = '"' + turns.replace('"', '""') + '"'
    text = f"conversations,label,note\n{quoted},true,a\nnot json,False,b\n{quoted},,c\n"
    result = read(write("s.csv", text), "sharegpt")
    assert result.table["conversations"].to_pylist() == [json.loads(turns)] * 2
    assert result.table["label"].to_pylist() == [True, None]
    assert result.table[LINE].to_pylist() == [2, 4]
    assert rejected(result) == [
        (1, 3, "invalid_json", "conversations", "expected JSON text (a list) in this CSV value, found 'not json'")
    ]
    assert sample_records(write("s2.csv", text))[0]["conversations"] == json.loads(turns)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (
            b"instruction,output,output\nq,a,b\n",
            "d.csv:1: the header names the column 'output' twice; a CSV file's "
            "first row names each column once, so rename one of them",
        ),
        (b"instr\x80uction,output\nq,a\n", "d.csv:1: the header row is not valid UTF-8; re-encode the file as UTF-8"),
    ],
)
def test_a_csv_whose_header_is_unusable_is_one_unreadable_file_reject(write, data, why):
    result = read(write("d.csv", data))
    assert result.records == 1 and result.table.num_rows == 0
    assert rejected(result) == [(None, None, "unreadable_file", None, f"the file cannot be read: {why}")]


def test_an_empty_csv_has_no_records(write):
    assert read(write("e.csv", "\n\n")).records == 0


# --- Arrow (datasets save_to_disk), Feather ---------------------------------------------------------


def test_a_datasets_save_to_disk_folder_reads_its_arrow_files_by_row(tmp_path):
    import datasets

    conv = [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]
    rows = [{"conversations": conv, "id": i} for i in range(5)]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"), num_shards=2)
    shards = sorted((tmp_path / "saved").glob("*.arrow"))
    results = [read(p, "sharegpt") for p in shards]
    assert [r.table[ROW].to_pylist() for r in results] == [[0, 1, 2], [0, 1]]
    assert all(line is None for r in results for line in r.table[LINE].to_pylist())
    assert [json.loads(x)["id"] for r in results for x in r.table[EXTRA].to_pylist()] == [0, 1, 2, 3, 4]
    assert sample_records(shards[0], n=2) == rows[:2]


def test_arrow_ipc_files_and_feather(tmp_path):
    import pyarrow.feather as feather

    table = pa.table({"text": ["one", "two"]})
    with pa.ipc.new_file(str(tmp_path / "f.arrow"), table.schema) as w:
        w.write_table(table)
    feather.write_feather(table, tmp_path / "f.feather")
    for name in ("f.arrow", "f.feather"):
        assert kept(read(tmp_path / name, "text"), "text") == [(0, None, "one"), (1, None, "two")]
    (tmp_path / "bad.arrow").write_text("not arrow")
    (reject,) = rejected(read(tmp_path / "bad.arrow", "text"))
    assert reject[2] == "unreadable_file"
    assert reject[4].startswith("the file cannot be read: not a readable Arrow IPC (stream or file) or Feather file")


# --- column-oriented JSON ---------------------------------------------------------------------------


def test_column_oriented_json_is_read_as_its_rows(write):
    path = write("cols.json", {"instruction": ["q0", "q1", "q2"], "input": ["", "", ""], "output": ["a", "b", ""]})
    result = read(path)
    assert kept(result) == [(0, None, "q0"), (1, None, "q1"), (2, None, "q2")]
    assert [r["instruction"] for r in sample_records(path)] == ["q0", "q1", "q2"]


def test_column_oriented_json_with_columns_of_different_lengths_is_one_unreadable_file_reject(write):
    path = write("cols.json", {"instruction": ["q0", "q1", "q2"], "output": ["a", "b"]})
    (reject,) = rejected(read(path))
    assert reject[:4] == (None, None, "unreadable_file", None)
    assert reject[4] == (
        "the file cannot be read: column-oriented JSON (one object of lists, one list per column) whose columns "
        "differ in length: instruction 3, output 2; give every column one value per record, or write the records "
        "as a JSON array of objects or JSON Lines"
    )
    assert sample_records(path, display="cols.json") == []


def test_one_object_whose_lists_are_messages_is_one_record_not_columns(write):
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    one = read(write("one.json", {"messages": messages, "images": []}), "openai")
    assert one.table["messages"].to_pylist()[0][1]["content"] == "a"
    assert one.records == 1


def test_sampling_reads_past_the_head_when_the_first_records_are_large(write):
    big = [{"instruction": "x" * 50_000, "output": str(i)} for i in range(5)]
    assert [r["output"] for r in sample_records(write("big.json", big))] == ["0", "1", "2", "3", "4"]
    assert [r["output"] for r in sample_records(write("big.jsonl", big), n=3)] == ["0", "1", "2"]
