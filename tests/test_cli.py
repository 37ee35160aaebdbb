"""The command line, run as a user runs it (a subprocess), checking output and exit codes."""

import json
import subprocess
import sys

import pyarrow.parquet as pq

from dataforge import formats
from project import make_project


def dataforge(*args, cwd=None):
    proc = subprocess.run(
        [sys.executable, "-m", "dataforge", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_build_then_rebuild_says_everything_is_cached(tmp_path):
    recipe = make_project(tmp_path)
    code, out, _ = dataforge("build", "-q", recipe)
    assert code == 0
    assert "Built tiny: 72 train, 18 val from 96 records" in out
    code, out, _ = dataforge("build", "-q", recipe)
    assert code == 0
    assert "Everything is cached: 15 stages" in out
    report = (tmp_path / "data/processed/tiny/report/report.md").read_text()
    assert "| sgpt | sharegpt | 33 | 1 | 1 | 1 | 0 | 24 | 6 |" in report
    assert "Ledger balances." in report


def test_plan_lists_every_stage_with_its_state(tmp_path):
    recipe = make_project(tmp_path)
    code, out, _ = dataforge("plan", recipe)
    assert code == 0
    assert "15 stage(s) to run, 0 cached." in out
    dataforge("build", "-q", recipe)
    (tmp_path / "data/openai/part0.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n'
    )
    code, out, _ = dataforge("plan", recipe)
    assert "file changed data/openai/part0.jsonl" in out
    assert "7 stage(s) to run, 8 cached." in out


def test_bad_recipe_exits_2_with_all_problems(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("name: x\nsources:\n  - name: a\n    form: a.json\nsplit: {validation: 2}\n")
    code, out, err = dataforge("build", recipe)
    assert code == 2
    assert "3 problems in the recipe" in err
    assert "line 3: sources[0].from: required but missing" in err
    assert "line 4: sources[0].form: unknown key (did you mean `format`?)" in err
    assert "line 5: split.validation: Input should be less than 1 (found 2)" in err
    assert "Traceback" not in err


def test_a_source_matching_no_file_is_a_clear_error(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\nsources:\n  - {name: a, from: nothing/*.jsonl}\n")
    code, _, err = dataforge("build", recipe)
    assert code == 1
    assert "source 'a': `from: nothing/*.jsonl` matches no .jsonl, .json or .parquet file" in err
    assert "Traceback" not in err


def test_validate_names_file_line_and_field_of_each_bad_row(tmp_path):
    f = tmp_path / "chat.jsonl"
    f.write_text(
        "\n".join(
            [
                json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}),
                json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]}),
                "",
                "not json",
                json.dumps({"messages": [{"role": "user", "content": 5}]}),
                json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "fine"}]}),
            ]
        )
        + "\n"
    )
    code, out, _ = dataforge("validate", f.name, cwd=tmp_path)
    assert code == 1
    lines = out.splitlines()
    assert "chat.jsonl:2: messages[1].content: assistant message has no content (empty string) (empty_content)" in lines
    assert any(line.startswith("chat.jsonl:4: broken JSON: Expecting value") for line in lines)
    assert "chat.jsonl:5: messages[0].content: expected string or null, found a number (schema_violation)" in lines
    assert "chat.jsonl: openai, 5 records, 2 valid, 3 invalid" in lines


def test_validate_good_file_exits_0(tmp_path):
    f = tmp_path / "a.json"
    f.write_text(json.dumps([{"instruction": "q", "output": "a"}]))
    code, out, _ = dataforge("validate", f.name, cwd=tmp_path)
    assert code == 0
    assert "a.json: alpaca, 1 records, 1 valid, all valid" in out


def test_convert_round_trip_and_reports_what_cannot_be_carried(tmp_path):
    src = tmp_path / "tools.jsonl"
    src.write_text(
        json.dumps(
            {
                "conversations": [
                    {"from": "human", "value": "weather?"},
                    {"from": "function_call", "value": '{"name": "w", "arguments": {"city": "Oslo"}}'},
                    {"from": "observation", "value": '{"t": 3}'},
                    {"from": "gpt", "value": "3 degrees"},
                ]
            }
        )
        + "\n"
    )
    code, out, _ = dataforge("convert", src, "--to", "openai", "-o", tmp_path / "o.jsonl", cwd=tmp_path)
    assert code == 0, out
    record = json.loads((tmp_path / "o.jsonl").read_text())
    assert record["messages"][1]["tool_calls"][0]["function"] == {"name": "w", "arguments": '{"city": "Oslo"}'}
    assert record["messages"][2] == {"role": "tool", "content": '{"t": 3}'}
    code, out, _ = dataforge(
        "convert", tmp_path / "o.jsonl", "--to", "sharegpt", "-o", tmp_path / "back.json", cwd=tmp_path
    )
    assert code == 0
    back = json.loads((tmp_path / "back.json").read_text())
    assert back == [json.loads(src.read_text())]
    code, out, err = dataforge("convert", src, "--to", "alpaca", "-o", tmp_path / "a.parquet", cwd=tmp_path)
    assert code == 1  # the row cannot be an Alpaca record: said, and the exit code says so
    assert "not carried by alpaca: rows not shaped as alternating user/assistant turns (not written): 1 row(s)" in err
    assert pq.read_table(tmp_path / "a.parquet").num_rows == 0


def test_formats_and_schema_commands(tmp_path):
    code, out, _ = dataforge("formats")
    assert code == 0 and "alpaca" in out and "sharegpt" in out and "openai" in out
    code, out, _ = dataforge("schema", "-o", tmp_path / "s")
    assert code == 0
    written = sorted(p.relative_to(tmp_path / "s").as_posix() for p in (tmp_path / "s").rglob("*.json"))
    assert written == sorted(
        ["example.schema.json", "recipe.schema.json", *(f"formats/{name}.schema.json" for name in formats.names())]
    )
    assert {"formats/alpaca.schema.json", "formats/trl.schema.json", "formats/text.schema.json"} <= set(written)


def test_help_of_every_command_describes_it():
    for command in ["build", "plan", "validate", "convert", "formats", "schema"]:
        code, out, _ = dataforge(command, "--help")
        assert code == 0 and "Usage:" in out, command


def test_validate_warns_about_fields_the_format_does_not_carry(tmp_path):
    f = tmp_path / "w.jsonl"
    f.write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "q", "refusal": "no"},
                    {"role": "assistant", "content": "a", "refusal": "no"},
                ]
            }
        )
        + "\n"
    )
    code, out, err = dataforge("validate", f.name, cwd=tmp_path)
    assert code == 0
    assert "not carried: messages[].refusal (2 value(s)) is not a field of the openai format" in err


REPO_TOKENIZER = __import__("pathlib").Path(__file__).resolve().parents[1] / "data" / "tokenizers" / "demo-chatml"


def test_render_writes_rows_and_shows_the_trained_tokens(tmp_path):
    f = tmp_path / "chat.jsonl"
    f.write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "What is two plus two?"},
                    {"role": "assistant", "content": "Four."},
                ]
            }
        )
        + "\n"
    )
    code, out, err = dataforge(
        "render", f.name, "--template", REPO_TOKENIZER, "--show", "1", "-o", "r.parquet", cwd=tmp_path
    )
    assert code == 0, err
    assert "[[Four.<|im_end|>]]" in out  # not a terminal: trained spans are bracketed
    assert "<|im_start|>user\nWhat is two plus two?<|im_end|>" in out
    assert "end-of-turn token: '<|im_end|>'" in out
    rows = pq.read_table(tmp_path / "r.parquet").to_pylist()
    assert len(rows) == 1 and rows[0]["n_tokens"] == len(rows[0]["input_ids"])


def test_render_exits_1_when_rows_do_not_fit(tmp_path):
    f = tmp_path / "long.jsonl"
    f.write_text(
        json.dumps(
            {"messages": [{"role": "user", "content": "Say a lot."}, {"role": "assistant", "content": "word " * 200}]}
        )
        + "\n"
    )
    code, out, err = dataforge("render", f.name, "--template", REPO_TOKENIZER, "--max-length", "32", cwd=tmp_path)
    assert code == 1
    assert "not rendered input:0: overflow:" in err
