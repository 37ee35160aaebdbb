"""The format registry: names, lookup, and detection from a sample of records."""

from __future__ import annotations

import pytest

from dataforge import formats
from dataforge.checking import check_files
from dataforge.errors import DataError, UsageError

ALPACA = {"instruction": "q", "input": "", "output": "a"}
SHAREGPT = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
OPENAI = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}


def test_registry_names_in_order_and_lookup():
    assert formats.names()[:3] == ["alpaca", "sharegpt", "openai"]
    assert {"trl", "text"} <= set(formats.names())
    assert [type(formats.get(n)).__name__ for n in ("alpaca", "sharegpt", "openai", "trl", "text")] == [
        "AlpacaFormat",
        "ShareGPTFormat",
        "OpenAIFormat",
        "TrlFormat",
        "TextFormat",
    ]
    with pytest.raises(UsageError) as err:
        formats.get("csv")
    assert (err.value.message, err.value.hint, err.value.exit_code) == (
        "unknown format 'csv'",
        f"known formats: {', '.join(formats.names())}",
        2,
    )


@pytest.mark.parametrize(("record", "name"), [(ALPACA, "alpaca"), (SHAREGPT, "sharegpt"), (OPENAI, "openai")])
def test_each_format_is_detected_from_its_records(record, name):
    assert formats.detect([record, record], "x.jsonl").name == name


def test_detect_says_which_columns_it_saw_when_nothing_matches():
    with pytest.raises(DataError) as err:
        formats.detect([{"question": "q", "answer": "a"}, {"question": "r"}], "source 's' (x.jsonl)")
    assert err.value.message == "source 's' (x.jsonl): could not detect the format from columns ['answer', 'question']"
    assert err.value.hint == (
        f"set `format:` to one of {', '.join(formats.names())} and map renamed columns with `columns:`"
    )


def test_detect_refuses_to_guess_between_several_formats():
    with pytest.raises(DataError) as err:
        formats.detect([{**SHAREGPT, **OPENAI}], "x.jsonl")
    assert err.value.message == "x.jsonl: records match several formats (sharegpt, openai)"
    assert err.value.hint == "set `format:` explicitly"


def test_detect_needs_records():
    with pytest.raises(DataError) as err:
        formats.detect([], "x.jsonl")
    assert err.value.message == "x.jsonl: no readable records to detect the format from"


def test_detect_rejects_near_misses():
    assert not formats.get("sharegpt").matches({"conversations": [{"role": "user", "content": "q"}]})
    assert not formats.get("openai").matches({"messages": "not a list"})
    assert not formats.get("alpaca").matches({"instruction": "q"})
    assert formats.get("alpaca").matches({"instruction": "q", "output": "a"})


@pytest.mark.parametrize(("record", "name"), [(ALPACA, "alpaca"), (SHAREGPT, "sharegpt"), (OPENAI, "openai")])
@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_files_are_detected_whatever_their_kind(write, check, record, name, suffix):
    checked = check(write("data" + suffix, [record]))
    assert (checked.format, checked.records, checked.examples.num_rows) == (name, 1, 1)


def test_detection_skips_unreadable_lines_at_the_head(write, check):
    path = write("head.jsonl", "{broken\n[1]\n" + '{"instruction": "q", "output": "a"}\n')
    checked = check(path)
    assert checked.format == "alpaca"
    assert [(r["row"], r["reason"]) for r in checked.rejects.to_pylist()] == [
        (0, "invalid_json"),
        (1, "not_an_object"),
    ]


def test_detection_sees_columns_through_the_column_map(write, check):
    path = write("renamed.jsonl", [{"dialog": SHAREGPT["conversations"]}])
    assert check(path, None, {"conversations": "dialog"}).format == "sharegpt"


def test_check_files_names_an_unknown_format_and_missing_files(tmp_path):
    with pytest.raises(UsageError) as err:
        check_files(str(tmp_path / "x.jsonl"), "yaml", root=tmp_path)
    assert err.value.message == "unknown format 'yaml'"
    with pytest.raises(DataError) as missing:
        check_files("nothing-here.jsonl", root=tmp_path)
    assert missing.value.message == f"`nothing-here.jsonl`: no such file or folder: {tmp_path}/nothing-here.jsonl"
    assert missing.value.hint == f"check the path; relative paths resolve against {tmp_path}"


def test_one_malformed_record_at_the_head_does_not_hide_the_format():
    sample = [{"instruction": "q"}] + [ALPACA] * 19
    assert formats.detect(sample, "x.jsonl").name == "alpaca"


def test_a_minority_is_not_enough_to_detect():
    with pytest.raises(DataError, match="could not detect"):
        formats.detect([ALPACA, {"question": "q"}, {"question": "r"}], "x.jsonl")
