"""The command line, run as a user runs it (a subprocess), checking output and exit codes."""

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from dataforge import formats
from dataforge.exports import TRAINERS, export_names
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
    assert f"source 'a': `from: nothing/*.jsonl` matches no file: nothing matches {tmp_path}/nothing/*.jsonl" in err
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
    call = record["messages"][1]["tool_calls"][0]
    assert call["function"] == {"name": "w", "arguments": '{"city": "Oslo"}'}
    # The source has no ids: a stable one is made, and the tool's result names it.
    assert call["id"].startswith("call_") and len(call["id"]) == len("call_") + 8
    assert record["messages"][2] == {"role": "tool", "content": '{"t": 3}', "tool_call_id": call["id"]}
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


# --- convert: rows a target cannot carry, and rows with media -----------------------------------------------------


def test_convert_of_text_rows_to_a_chat_format_names_every_row_and_exits_1(tmp_path):
    """c4-style text to openai wrote a 0-byte file and exited 0; now each row is counted, located and explained."""
    (tmp_path / "c4.jsonl").write_text("".join(json.dumps({"text": f"Document {i}."}) + "\n" for i in range(5)))
    code, out, err = dataforge("convert", "c4.jsonl", "--to", "openai", "-o", "o.jsonl", cwd=tmp_path)
    assert code == 1
    assert "5 records (text) → 0 openai records in o.jsonl; 0 rejected, 5 not written" in out
    assert (
        "not carried by openai: pretrain rows (plain text, not written): 5 row(s): c4.jsonl:1, c4.jsonl:2, c4.jsonl:3 "
        "and 2 more" in err
    )
    assert (
        "error: 5 of 5 rows not written (o.jsonl holds no records): openai cannot carry pretrain rows (plain text)"
        in err
    )
    assert (
        "hint: pretrain rows (plain text) can be written --to text, or to a trainer's folder with --to trl, "
        "llamafactory, ms-swift or axolotl" in err
    )
    assert (tmp_path / "o.jsonl").read_text() == ""  # this run's output, said to be empty, never a stale file
    assert "Traceback" not in err


def test_convert_of_mixed_kinds_writes_what_fits_and_names_the_rest(tmp_path):
    rows = [
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
        {
            "messages": [{"role": "user", "content": "q"}],
            "chosen": [{"role": "assistant", "content": "good"}],
            "rejected": [{"role": "assistant", "content": "bad"}],
        },
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "label": False},
    ]
    (tmp_path / "mix.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, err = dataforge("convert", "mix.jsonl", "--to", "hermes", "-o", "h.jsonl", cwd=tmp_path)
    assert code == 1
    assert "3 records (openai) → 1 hermes records in h.jsonl; 0 rejected, 2 not written" in out
    assert "not carried by hermes: kto rows (hermes holds sft only; not written): 1 row(s): mix.jsonl:3" in err
    assert "not carried by hermes: preference rows (hermes holds sft only; not written): 1 row(s): mix.jsonl:2" in err
    assert (
        "error: 2 of 3 rows not written: hermes cannot carry kto rows (hermes holds sft only) (1); "
        "hermes cannot carry preference rows (hermes holds sft only) (1)" in err
    )
    assert len((tmp_path / "h.jsonl").read_text().splitlines()) == 1


MLLM = [  # the shape of LLaMA-Factory's mllm_demo.json, with a text row beside the image rows
    {
        "messages": [
            {"content": "<image>Who are they?", "role": "user"},
            {"content": "They're Kane and Gretzka from Bayern Munich.", "role": "assistant"},
            {"content": "What are they doing?<image>", "role": "user"},
            {"content": "They are celebrating on the soccer field.", "role": "assistant"},
        ],
        "images": ["mllm_demo_data/1.jpg", "mllm_demo_data/1.jpg"],
    },
    {
        "messages": [{"content": "<image>Who is he?", "role": "user"}, {"content": "Muller.", "role": "assistant"}],
        "images": ["mllm_demo_data/2.jpg"],
    },
    {"messages": [{"content": "What is 2+2?", "role": "user"}, {"content": "4.", "role": "assistant"}]},
]


def test_convert_of_image_rows_to_llamafactory_rejects_them_plainly(tmp_path):
    """The images column was carried beside the text while dataset_info.json mapped only the messages: LLaMA-Factory
    would have trained on a bare <image>. Now each such row is a reject that says so, and the export is text only."""
    (tmp_path / "mllm.json").write_text(json.dumps(MLLM, indent=2))
    code, out, err = dataforge("convert", "mllm.json", "--to", "llamafactory", "-o", "lf", cwd=tmp_path)
    assert code == 1
    assert (
        "rejected mllm.json:2: images: row has 2 images (images[0] 'mllm_demo_data/1.jpg', images[1] "
        "'mllm_demo_data/1.jpg'): dataforge does not carry image, video or audio inputs yet; the row is left out "
        "rather than trained on bare <image> placeholders (multimodal_unsupported)" in err
    )
    assert (
        "rejected mllm.json:26: images: row has 1 image (images[0] 'mllm_demo_data/2.jpg'): dataforge does not carry "
        "image, video or audio inputs yet; the row is left out rather than trained on a bare <image> placeholder "
        "(multimodal_unsupported)" in err
    )
    assert "not carried: image, video or audio inputs: 2 row(s) left out (multimodal_unsupported)" in err
    assert "3 records (openai) → llamafactory in lf: sft_train.jsonl (1); 2 rejected" in out
    info = json.loads((tmp_path / "lf/dataset_info.json").read_text())
    assert info["lf_sft_train"]["columns"] == {"messages": "conversations"}
    written = (tmp_path / "lf/sft_train.jsonl").read_text()
    assert "<image>" not in written and "images" not in written
    assert json.loads(written)["conversations"][0] == {"from": "human", "value": "What is 2+2?"}


def test_convert_of_typed_image_parts_says_image_parts_are_not_carried(tmp_path):
    row = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image_url", "value": "data/1.jpg"}, {"type": "text", "value": "Who?"}],
            },
            {"role": "assistant", "content": [{"type": "text", "value": "Kane."}]},
        ]
    }
    (tmp_path / "v1.jsonl").write_text(json.dumps(row) + "\n")
    code, out, err = dataforge("convert", "v1.jsonl", "--to", "sharegpt", "-o", "s.jsonl", cwd=tmp_path)
    assert code == 1
    assert (
        "rejected v1.jsonl:1: messages[0].content[0]: row has 1 image (messages[0].content[0] 'data/1.jpg'): "
        "dataforge does not carry image, video or audio inputs yet; the row is left out rather than trained on its "
        "text without the image (multimodal_unsupported)" in err
    )
    assert "1 records (typed) → 0 sharegpt records in s.jsonl; 1 rejected" in out
    assert "error: s.jsonl holds no records: every row was rejected" in err


def test_convert_names_each_target_once():
    code, _, err = dataforge("convert", "x.jsonl", "--to", "nope", "-o", "y.jsonl")
    assert code == 2
    known = "trl, llamafactory, ms-swift, axolotl, alpaca, sharegpt, openai, hermes, minimind, swift, typed, text"
    assert f"hint: known: {known}" in err


KIND_SOURCES = {  # one file per kind, in a format that holds it
    "sft": ("sft.jsonl", {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}),
    "preference": (
        "pref.jsonl",
        {
            "messages": [{"role": "user", "content": "2+2?"}],
            "chosen": [{"role": "assistant", "content": "4"}],
            "rejected": [{"role": "assistant", "content": "5"}],
        },
    ),
    "kto": (
        "kto.jsonl",
        {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}], "label": True},
    ),
    "pretrain": ("text.jsonl", {"text": "Two and two make four."}),
}
# (target, kind) pairs the target cannot carry, as `dataforge formats` and each format's notes say.
CANNOT = {
    **{(f, "pretrain"): "pretrain rows (plain text)" for f in ("alpaca", "sharegpt", "openai")},
    **{("hermes", k): f"{k} rows (hermes holds sft only)" for k in ("preference", "kto", "pretrain")},
    **{("minimind", k): f"{k} rows (minimind holds sft only)" for k in ("preference", "kto", "pretrain")},
    **{("typed", k): f"{k} rows (typed content holds sft and preference)" for k in ("kto", "pretrain")},
    **{("text", k): f"{k} rows (not plain text)" for k in ("sft", "preference", "kto")},
}


def test_kind_sources_read_as_their_kind(tmp_path):
    from dataforge.checking import check_files

    for kind, (name, record) in KIND_SOURCES.items():
        (tmp_path / name).write_text(json.dumps(record) + "\n")
        assert check_files(str(tmp_path / name), None, root=tmp_path).examples["kind"].to_pylist() == [kind]


@pytest.mark.parametrize("kind", list(KIND_SOURCES))
@pytest.mark.parametrize("target", export_names())
def test_convert_of_every_kind_to_every_target_writes_it_or_exits_1_saying_why(tmp_path, monkeypatch, target, kind):
    from typer.testing import CliRunner

    from dataforge.cli import app

    name, record = KIND_SOURCES[kind]
    (tmp_path / name).write_text(json.dumps(record) + "\n")
    monkeypatch.chdir(tmp_path)
    trainer = target in TRAINERS
    output = "out" if trainer else "out.jsonl"
    result = CliRunner().invoke(app, ["convert", name, "--to", target, "-o", output])
    err = result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), err
    why = CANNOT.get((target, kind))
    if why is None:
        assert result.exit_code == 0, err
        written = [f for f in (tmp_path / output).rglob("*.jsonl")] if trainer else [tmp_path / output]
        assert sum(len(f.read_text().splitlines()) for f in written) == 1
        assert "not written" not in err
    else:
        assert result.exit_code == 1
        assert f"error: 1 of 1 rows not written ({output} holds no records): {target} cannot carry {why}" in err
        assert f"not carried by {target}: " in err and f"1 row(s): {name}:1" in err
        assert (tmp_path / output).read_text() == ""


@pytest.mark.parametrize(
    ("name", "rows", "media"),
    [
        ("mllm_demo.json", 6, "image"),
        ("mllm_video_demo.json", 3, "video"),
        ("mllm_audio_demo.json", 3, "audio"),
        ("mllm_video_audio_demo.json", 3, "video and 1 audio"),
        ("v1_multimodal_demo.jsonl", 24, "image"),
    ],
)
def test_convert_of_llamafactory_multimodal_demos_rejects_every_row_saying_why(
    fixture_path, tmp_path, name, rows, media
):
    source = fixture_path(f"peers/llamafactory/{name}").resolve()
    code, out, err = dataforge("convert", source, "--to", "llamafactory", "-o", tmp_path / "lf", cwd=tmp_path)
    assert code == 1
    assert f"not carried: image, video or audio inputs: {rows} row(s) left out (multimodal_unsupported)" in err
    assert err.count("(multimodal_unsupported)\n") == rows
    assert f" 1 {media} (" in err or f" 2 {media}s (" in err
    assert f"; {rows} rejected" in out
    assert json.loads((tmp_path / "lf/dataset_info.json").read_text()) == {}
    assert f"error: {tmp_path / 'lf'}/ holds no records: every row was rejected" in err


def test_convert_of_the_c4_demo_to_openai_exits_1(fixture_path, tmp_path):
    source = fixture_path("peers/llamafactory/c4_demo.jsonl").resolve()
    code, out, err = dataforge("convert", source, "--to", "openai", "-o", "c4.jsonl", cwd=tmp_path)
    assert code == 1
    assert "300 records (text) → 0 openai records in c4.jsonl; 0 rejected, 300 not written" in out
    assert "error: 300 of 300 rows not written (c4.jsonl holds no records): openai cannot carry pretrain rows" in err
