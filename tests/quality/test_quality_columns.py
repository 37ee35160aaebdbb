"""The signals as columns of the canonical output: the quality stage's kept rows carry them as one `quality` struct
(`QUALITY_TYPE`), dedup, mix and split pass it on to train/val.parquet with one schema whatever the rows (sources
without signals get nulls), the values are the ones the stage measured, the build stays byte-identical across
shardings, and neither exports nor render carry or read them."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builders import qa, quiet, table
from dataforge.engine.executor import SerialExecutor
from dataforge.exports import export, export_names
from dataforge.quality.policy import Quality
from dataforge.quality.signals import QUALITY_TYPE, compute_signals
from dataforge.recipe import Dedup, Mix, NearDedup, RenderTarget, Split
from dataforge.record import EXAMPLE_SCHEMA
from dataforge.render.target import load_target
from dataforge.schemas import EXAMPLE_JSON_SCHEMA, all_schemas
from dataforge.stages.base import RunContext, StageInput
from dataforge.stages.dedup import make_sharded_dedup
from dataforge.stages.mix import make_sharded_mix
from dataforge.stages.quality import (
    QUALITY_COLUMN,
    canonical_schema,
    quality_examples,
    with_quality,
    without_quality,
)
from dataforge.stages.render import options_of, render_split
from dataforge.stages.sharding import conform_parts
from dataforge.stages.split import make_sharded_split
from dataforge.streams import write_parts
from project import RECIPE, build, make_project

REPO = Path(__file__).resolve().parents[2]
DEMO_TOKENIZER = REPO / "data" / "tokenizers" / "demo-chatml"

ROWS = table(
    qa("s", 0, "What is the capital of France?", "Paris is the capital and largest city of France."),
    qa("s", 1, "Say it again", "again\nagain\nagain\nagain"),  # 3 of 4 lines repeat
    qa("s", 2, "Mail me at john@example.com", "I will write to john@example.com today."),
)


def stored(schema: pa.Schema) -> pa.Schema:
    """`schema` as a Parquet file stores it (list items are named `element` there)."""
    sink = pa.BufferOutputStream()
    pq.write_table(schema.empty_table(), sink)
    return pq.read_schema(pa.BufferReader(sink.getvalue()))


def run(table_: pa.Table = ROWS, **section) -> dict[str, pa.Table]:
    return quality_examples(table_, Quality(**section), "quality:s", quiet).tables


def test_kept_rows_carry_the_signals_the_stage_measured_before_redaction() -> None:
    out = run(max_dup_line_share=0.5, pii="redact", lang_id=False)
    kept = out["examples"]
    assert kept.schema.equals(canonical_schema(True), check_metadata=True)
    assert kept.column_names == [*EXAMPLE_SCHEMA.names, "quality"]
    assert kept["id"].to_pylist() == ["s:0", "s:2"]
    measured = {r["id"]: r["quality"] for r in out["signals"].to_pylist()}
    rows = kept.to_pylist()
    assert [r["quality"] for r in rows] == [measured["s:0"], measured["s:2"]]
    mail = rows[1]
    assert [m["content"] for m in mail["messages"]] == ["Mail me at <EMAIL>", "I will write to <EMAIL> today."]
    assert (mail["quality"]["pii"]["email"], mail["quality"]["pii"]["total"]) == (2, 2)  # counted, then replaced
    first = rows[0]["quality"]
    assert (first["user"]["turns"], first["assistant"]["turns"], first["assistant"]["dup_line_share"]) == (1, 1, 0.0)
    assert first["assistant"]["lang"] is None  # lang_id: false leaves the language out, the column stays
    assert first["answer_question_ratio"] == pytest.approx(48 / 30)


def test_the_schema_is_the_same_when_every_row_is_filtered() -> None:
    out = run(min_words=1000, lang_id=False)
    assert out["examples"].num_rows == 0
    assert out["examples"].schema.equals(canonical_schema(True), check_metadata=True)


def test_rows_measured_again_are_measured_afresh_in_one_column() -> None:
    once = run(lang_id=False)["examples"]
    stale = with_quality(once, pa.nulls(once.num_rows, QUALITY_TYPE))
    again = run(stale, lang_id=False)["examples"]
    assert again.column_names == once.column_names
    assert again.equals(once)


def test_canonical_schema_adds_one_nullable_struct_after_the_record() -> None:
    assert canonical_schema(False) is EXAMPLE_SCHEMA
    schema = canonical_schema(True)
    assert schema.names == [*EXAMPLE_SCHEMA.names, QUALITY_COLUMN]
    assert schema.field(QUALITY_COLUMN).type == QUALITY_TYPE and schema.field(QUALITY_COLUMN).nullable
    assert schema.metadata == EXAMPLE_SCHEMA.metadata
    assert without_quality(ROWS) is ROWS
    assert without_quality(with_quality(ROWS, compute_signals(ROWS))).equals(ROWS)


def _names(schema: dict) -> list:
    """The property names of a JSON Schema object, nested objects as (name, their names)."""
    return [(k, _names(v)) if "properties" in v else k for k, v in schema["properties"].items()]


def _fields(type_: pa.StructType) -> list:
    return [(f.name, _fields(f.type)) if pa.types.is_struct(f.type) else f.name for f in type_]


def test_the_example_json_schema_describes_every_signal_and_the_shipped_file_is_current() -> None:
    described = EXAMPLE_JSON_SCHEMA["properties"]["quality"]
    assert _names(described) == _fields(QUALITY_TYPE)
    assert "quality" not in EXAMPLE_JSON_SCHEMA["required"]
    validator = jsonschema.Draft202012Validator(EXAMPLE_JSON_SCHEMA)
    rows = run(pii="redact", lang_id=True)["examples"].to_pylist()
    assert [e.message for row in rows for e in validator.iter_errors(row)] == []
    wrong = {**rows[0], "quality": {**rows[0]["quality"], "pii": {**rows[0]["quality"]["pii"], "email": "one"}}}
    assert [e.message for e in validator.iter_errors(wrong)] == ["'one' is not of type 'integer', 'null'"]
    shipped = json.loads((REPO / "schemas" / "example.schema.json").read_text(encoding="utf-8"))
    assert shipped == all_schemas()["example.schema.json"]  # regenerated with `dataforge schema`


def test_render_ignores_the_signals() -> None:
    spec = RenderTarget(name="demo", tokenizer=str(DEMO_TOKENIZER), max_length=64)
    target = load_target("demo", str(DEMO_TOKENIZER), DEMO_TOKENIZER.parent)
    with_signals = run(lang_id=False)["examples"]
    plain = without_quality(with_signals)
    a = render_split(with_signals, target, options_of(spec), quiet, "x")
    b = render_split(plain, target, options_of(spec), quiet, "x")
    assert a[0].num_rows == 3 and a[0].equals(b[0]) and a[1] == b[1] and a[2] == b[2]


def test_no_export_carries_the_signals() -> None:
    rows = run(pii="redact", lang_id=False)["examples"].to_pylist()
    plain = [{k: v for k, v in r.items() if k != QUALITY_COLUMN} for r in rows]
    for name in export_names():
        carried = export(name, {"train": rows, "val": []}, "d")
        bare = export(name, {"train": plain, "val": []}, "d")
        assert carried.files == bare.files and carried.files, name
        assert (carried.losses, carried.transforms) == (bare.losses, bare.transforms), name
        assert not any("dup_line_share" in text or "answer_question_ratio" in text for text in carried.files.values())


# ---- sources with and without signals: one schema from dedup on -------------------------------------------------


def test_parts_with_and_without_signals_leave_dedup_mix_and_split_with_one_schema(tmp_path) -> None:
    measured = run(lang_id=False)["examples"]  # source s: three rows with signals
    other = table(*[qa("t", i, f"Question {i} about rivers?", f"Rivers flow downhill, case {i}.") for i in range(4)])
    parts = [tmp_path / "s.parquet", tmp_path / "t.parquet"]
    pq.write_table(measured, parts[0])
    pq.write_table(other, parts[1])
    ctx = RunContext(SerialExecutor(), tmp_path / "scratch")
    ctx.scratch.mkdir()

    def stage(name: str, tables: dict[str, list[Path]]) -> StageInput:
        return StageInput(name, {}, tables)

    dedup = make_sharded_dedup(["q:s", "q:t"], Dedup(near=NearDedup()), tmp_path, [], 3)(
        {"q:s": stage("q:s", {"examples": parts[:1]}), "q:t": stage("q:t", {"examples": parts[1:]})}, quiet, ctx
    )
    deduped = dedup.tables["examples"]
    schema = stored(canonical_schema(True))
    assert [pq.read_schema(p).equals(schema, check_metadata=True) for p in deduped] == [True, True]
    mixed = make_sharded_mix("dedup", ["s", "t"], Mix(), 3)({"dedup": stage("dedup", dedup.tables)}, quiet, ctx)
    split = make_sharded_split("mix", ["s", "t"], Split(validation=0.5), 3)(
        {"mix": stage("mix", mixed.tables)}, quiet, ctx
    )
    for name in ("train", "val"):
        assert all(pq.read_schema(p).equals(schema, check_metadata=True) for p in split.tables[name])
    rows = []
    for name in ("train", "val"):
        write_parts(split.tables[name], tmp_path / f"{name}.parquet")
        written = pq.read_table(tmp_path / f"{name}.parquet")
        assert written.schema.equals(schema, check_metadata=True)
        rows += written.to_pylist()
    assert len(rows) == 7
    signals = {r["id"]: r["quality"] for r in measured.to_pylist()}
    assert {r["id"]: r["quality"] for r in rows} == {**signals, **{f"t:{i}": None for i in range(4)}}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 3), st.booleans()), min_size=1, max_size=5))
def test_conformed_parts_read_as_the_promoted_concatenation(tmp_path, shape) -> None:
    """Any parts, each with (True) or without signals: once conformed they have one schema, and read in order they
    are exactly `concat_tables` with promotion of the parts as written (rows, values, nulls where none)."""
    folder = tmp_path / str(abs(hash(tuple(shape))))
    folder.mkdir(exist_ok=True)
    tables, parts = [], []
    for i, (rows, measured) in enumerate(shape):
        t = table(*[qa(f"s{i}", r, f"Question {r} of part {i}?", "An answer.\n" * (r + 1)) for r in range(rows)])
        t = with_quality(t, compute_signals(t)) if measured else t
        tables.append(t)
        parts.append(folder / f"{i}.parquet")
        pq.write_table(t, parts[-1])
    conform_parts(parts)
    read = [pq.read_table(p) for p in parts]
    assert len({r.schema.to_string() for r in read}) == 1
    expected = pa.concat_tables(tables, promote_options="default")
    assert pa.concat_tables(read).to_pylist() == expected.to_pylist()
    assert (QUALITY_COLUMN in read[0].column_names) == any(m for _, m in shape)


def test_parts_that_share_a_schema_are_left_as_they_are(tmp_path) -> None:
    parts = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    for p in parts:
        pq.write_table(run(lang_id=False)["examples"], p)
    before = [p.read_bytes() for p in parts]
    assert conform_parts(parts) == parts and [p.read_bytes() for p in parts] == before


# ---- a whole build ------------------------------------------------------------------------------------------------

EXPORTS = "exports: [openai, sharegpt, trl, llamafactory, alpaca]"
QUALITY = "quality: {max_dup_line_share: 0.3, pii: redact, lang_id: false}\n"


def _build(root: Path, extra: str = "", validation: float = 0.2):
    recipe = RECIPE.replace("exports: [openai, sharegpt]", EXPORTS).replace(
        "validation: 0.2", f"validation: {validation}"
    )
    return build(make_project(root, recipe + QUALITY + extra, rows=120))


def _outputs(build_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(build_dir)): p.read_bytes()
        for p in sorted(build_dir.rglob("*"))
        if p.is_file() and not p.name.startswith(".") and ".cache" not in p.parts and p.name != "manifest.json"
    }


@pytest.mark.integration
def test_a_build_writes_the_signals_into_train_and_val_identically_for_any_sharding(tmp_path) -> None:
    loaded, result, _ = _build(tmp_path / "whole")
    out = loaded.build_dir
    schema = stored(canonical_schema(True))
    measured = {}
    for src in loaded.recipe.sources:
        signals = result.entries[f"quality:{src.name}"].as_input().table("signals")
        measured |= {r["id"]: r["quality"] for r in signals.to_pylist()}
    seen = 0
    for name in ("train.parquet", "val.parquet"):
        assert pq.read_schema(out / name).equals(schema, check_metadata=True), name
        rows = pq.read_table(out / name).to_pylist()
        assert rows and all(r["quality"] == measured[r["id"]] for r in rows)
        seen += len(rows)
    manifest = json.loads((out / "manifest.json").read_text())
    assert seen == manifest["ledger"]["total"]["train"] + manifest["ledger"]["total"]["val"]
    for path in (out / "exports").rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert "dup_line_share" not in text and "answer_question_ratio" not in text, path
    sharded, sresult, _ = _build(tmp_path / "sharded", "shard_mb: 0.004\n")
    assert len(sresult.entries["quality:sgpt"].as_input().parts("examples")) >= 3
    assert _outputs(out) == _outputs(sharded.build_dir)


@pytest.mark.integration
def test_an_empty_validation_split_has_the_same_schema_as_train(tmp_path) -> None:
    loaded, _, _ = _build(tmp_path, validation=0.0)
    val, train = pq.read_table(loaded.build_dir / "val.parquet"), pq.read_table(loaded.build_dir / "train.parquet")
    assert val.num_rows == 0 < train.num_rows
    assert val.schema.equals(train.schema, check_metadata=True)
    assert val.schema.equals(stored(canonical_schema(True)), check_metadata=True)


@pytest.mark.integration
def test_a_build_without_quality_has_the_record_schema_alone(tmp_path) -> None:
    loaded, _, _ = build(make_project(tmp_path, rows=20))
    for name in ("train.parquet", "val.parquet"):
        assert pq.read_schema(loaded.build_dir / name).equals(stored(EXAMPLE_SCHEMA), check_metadata=True)
