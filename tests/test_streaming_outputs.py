"""The build's output side streams: train/val/rejects/rendered Parquet written part by part, exports batch by
batch, report statistics merged piece by piece — and every file is byte for byte what writing whole tables
gives."""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataforge.engine.cache import Entry, write_parquet
from dataforge.engine.runner import run
from dataforge.errors import DataError
from dataforge.exports import export, export_names, open_export
from dataforge.exports.base import MemoryFiles
from dataforge.recipe import load_recipe
from dataforge.record import EXAMPLE_SCHEMA
from dataforge.rejects import REJECTS_SCHEMA, concat_rejects
from dataforge.report.samples import pick
from dataforge.report.stats import content_stats, duplicate_clusters, token_share
from dataforge.report.summary import reject_groups
from dataforge.stages.base import StageInput
from dataforge.stages.write import no_rows_problem, write_build
from dataforge.streams import ROW_GROUP, Tables, TextFiles, write_parquet_stream, write_parts
from project import make_project

REPO = Path(__file__).resolve().parents[1]
PEERS = "tests/fixtures/peers/llamafactory"

# The demo's three sources plus peer fixtures of every row kind (kto, preference, pretrain, tool calls,
# reasoning), every export, and two render targets (one packing): every output the write stage makes.
RECIPE = f"""\
name: mixed
seed: 7
root: ..
sources:
  - {{name: alpaca, from: data/raw/demo/alpaca.json}}
  - {{name: sharegpt, from: data/raw/demo/sharegpt.jsonl, format: sharegpt}}
  - {{name: openai, from: data/raw/demo/openai.jsonl, format: openai}}
  - {{name: kto, from: {PEERS}/kto_en_demo.json}}
  - {{name: dpo, from: {PEERS}/dpo_en_demo.json}}
  - {{name: c4, from: {PEERS}/c4_demo.jsonl}}
  - {{name: tools, from: {PEERS}/glaive_toolcall_en_demo.json}}
  - {{name: reason, from: {PEERS}/reason_tool_use_demo_50.jsonl}}
dedup:
  exact: true
  near: {{threshold: 0.8, ngram: 5}}
split: {{validation: 0.2}}
outputs:
  exports: [trl, llamafactory, ms-swift, axolotl, alpaca, sharegpt, openai]
render:
  - name: chatml
    tokenizer: data/tokenizers/demo-chatml
    max_length: 160
    pack: {{}}
    unrendered: {{tool_calls: keep, reasoning: keep}}
  - name: trunc
    tokenizer: data/tokenizers/demo-chatml
    max_length: 300
    overflow: truncate
"""


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _outputs(build_dir: Path) -> dict[str, str]:
    """Every file of a build directory but its cache and housekeeping, with its sha256."""
    return {
        p.relative_to(build_dir).as_posix(): _sha(p)
        for p in sorted(build_dir.rglob("*"))
        if p.is_file() and ".cache" not in p.relative_to(build_dir).parts and not p.name.startswith(".dataforge")
    }


def _cut(n: int, sizes: list[int]) -> list[tuple[int, int]]:
    """(offset, length) of consecutive parts of `n` rows: `sizes` first (clipped), then the rest."""
    out, offset = [], 0
    for size in sizes:
        size = min(size, n - offset)
        out.append((offset, size))
        offset += size
    out.append((offset, n - offset))
    return out


def _write_parts(table: pa.Table, folder: Path, sizes: list[int]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for i, (offset, length) in enumerate(_cut(table.num_rows, sizes)):
        path = folder / f"part-{i:04d}.parquet"
        write_parquet(table.slice(offset, length), path)
        parts.append(path)
    return parts


class PartedEntry(Entry):
    """A cache entry whose tables are served as several uneven parts (some empty), as a sharded stage stores
    them: the same rows, another layout."""

    def __init__(self, entry: Entry, folder: Path) -> None:
        super().__init__(entry.path, entry.manifest)
        self._folder = folder
        self._input: StageInput | None = None

    def as_input(self) -> StageInput:
        if self._input is None:
            real = super().as_input()
            tables = {}
            for name in self.manifest["tables"]:
                table = real.table(name)
                sizes = [0, 1, table.num_rows // 3, 0, 7]
                tables[name] = _write_parts(table, self._folder / name, sizes)
            self._input = StageInput(real.name, real.stats, tables)
        return self._input


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory):
    """The mixed recipe built once; (loaded recipe, stages, entries, {file: sha256} of the build)."""
    root = tmp_path_factory.mktemp("mixed")
    shutil.copytree(REPO / "data" / "raw" / "demo", root / "data" / "raw" / "demo")
    shutil.copytree(REPO / "data" / "tokenizers" / "demo-chatml", root / "data" / "tokenizers" / "demo-chatml")
    shutil.copytree(REPO / PEERS, root / PEERS)
    (root / "pipelines").mkdir()
    (root / "pipelines" / "mixed.yaml").write_text(RECIPE)
    loaded = load_recipe(root / "pipelines" / "mixed.yaml")
    result = run(loaded)
    write_build(loaded, result.stages, result.entries)
    return loaded, result.stages, result.entries, _outputs(loaded.build_dir)


def test_a_build_from_uneven_parts_writes_the_same_bytes(mixed, tmp_path):
    loaded, stages, entries, whole = mixed
    parted = {name: PartedEntry(e, tmp_path / name.replace(":", "--")) for name, e in entries.items()}
    split = parted["split"].as_input()
    assert len(split.parts("train")) == 6 and split.num_rows("train") > 1000  # several parts, some empty
    write_build(loaded, stages, parted)
    again = _outputs(loaded.build_dir)
    assert "exports/axolotl/axolotl-kto.yaml" in again and "rendered/chatml/packed_train.parquet" in again
    assert sorted(again) == sorted(whole)
    assert {name: d for name, d in again.items() if d != whole[name]} == {}


# --- Parquet: row groups where write_parquet puts them -----------------------------------------------------


@pytest.fixture(scope="module")
def big(mixed) -> pa.Table:
    """Example rows (nested messages, tool calls, preference pairs) past two row groups."""
    loaded, *_ = mixed
    train = pq.read_table(loaded.build_dir / "train.parquet")
    copies = -(-(2 * ROW_GROUP + 5000) // train.num_rows)
    return pa.concat_tables([train] * copies).combine_chunks()


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.sampled_from([0, 0, 1, 3, 1000, ROW_GROUP - 1, ROW_GROUP, ROW_GROUP + 1, 40_000]), max_size=6))
def test_parts_stream_into_the_file_the_whole_table_gives(big, tmp_path_factory, sizes):
    folder = tmp_path_factory.mktemp("parts")
    parts = _write_parts(big, folder / "in", sizes)
    # Today's file: the rows in one stored table, read back and written whole.
    write_parquet(big, folder / "one.parquet")
    write_parquet(pq.read_table(folder / "one.parquet"), folder / "today.parquet")
    # Writing the parts' concatenation whole, its chunks joined first.
    joined = pa.concat_tables([pq.read_table(p) for p in parts]).combine_chunks()
    write_parquet(joined, folder / "whole.parquet")
    rows = write_parts(parts, folder / "streamed.parquet")
    assert rows == big.num_rows
    assert pq.ParquetFile(folder / "streamed.parquet").metadata.num_row_groups == -(-big.num_rows // ROW_GROUP)
    assert _sha(folder / "streamed.parquet") == _sha(folder / "whole.parquet") == _sha(folder / "today.parquet")
    assert not list(folder.glob(".*.tmp"))  # written under a temporary name, renamed into place


def test_empty_parts_stream_into_the_file_an_empty_table_gives(big, tmp_path):
    parts = _write_parts(big.slice(0, 0), tmp_path / "in", [0, 0])
    write_parquet(big.slice(0, 0), tmp_path / "whole.parquet")
    assert write_parts(parts, tmp_path / "streamed.parquet") == 0
    assert _sha(tmp_path / "streamed.parquet") == _sha(tmp_path / "whole.parquet")


def test_a_table_of_no_parts_is_written_empty_with_the_schema_given(tmp_path):
    write_parquet(EXAMPLE_SCHEMA.empty_table(), tmp_path / "whole.parquet")
    assert write_parts([], tmp_path / "streamed.parquet", EXAMPLE_SCHEMA) == 0
    assert _sha(tmp_path / "streamed.parquet") == _sha(tmp_path / "whole.parquet")
    with pytest.raises(ValueError, match="no parts"):
        write_parts([], tmp_path / "none.parquet")


def test_rejects_stream_into_the_file_concat_rejects_gives(mixed, tmp_path):
    loaded, *_ = mixed
    rejects = pq.read_table(loaded.build_dir / "rejects.parquet")
    pieces = [rejects.slice(0, 5), rejects.slice(5, 0), rejects.slice(5)] * 300  # past a row group
    write_parquet(concat_rejects(pieces), tmp_path / "whole.parquet")
    write_parquet_stream(iter(pieces), tmp_path / "streamed.parquet", REJECTS_SCHEMA)
    assert _sha(tmp_path / "streamed.parquet") == _sha(tmp_path / "whole.parquet")


def test_a_failed_stream_leaves_neither_file_nor_temporary(big, tmp_path):
    def tables():
        yield big.slice(0, 10)
        raise OSError(28, "No space left on device")

    with pytest.raises((OSError, DataError)):
        write_parquet_stream(tables(), tmp_path / "out.parquet", big.schema)
    assert list(tmp_path.iterdir()) == []


# --- exports: batch by batch, the same files ----------------------------------------------------------------


@pytest.fixture(scope="module")
def splits(mixed) -> dict[str, list[dict]]:
    loaded, *_ = mixed
    return {s: pq.read_table(loaded.build_dir / f"{s}.parquet").to_pylist() for s in ("train", "val")}


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(export_names()), batch=st.integers(1, 400))
def test_exports_written_batch_by_batch_match_the_whole_export(splits, name, batch):
    whole = export(name, splits, "mixed")
    sink = MemoryFiles()
    streamed = open_export(name, sink, "mixed", keep_left_out=False)
    for split, rows in splits.items():
        streamed.add(split, [])
        for start in range(0, len(rows), batch):
            streamed.add(split, rows[start : start + batch])
    got = streamed.finish()
    assert sink.files() == whole.files
    assert (got.rows, got.losses, got.transforms) == (whole.rows, whole.losses, whole.transforms)
    assert got.left_out == []  # counted, not kept
    assert sum(whole.rows.values()) > 0


# --- report statistics: merged from pieces, the same numbers -------------------------------------------------


def _pieces(table: pa.Table, sizes: list[int]) -> Tables:
    return Tables.of(*(table.slice(o, n) for o, n in _cut(table.num_rows, sizes)))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(0, 700), max_size=5))
def test_report_statistics_merged_from_pieces_match_the_whole_table(mixed, sizes):
    loaded, _, entries, _ = mixed
    out = loaded.build_dir
    final = pa.concat_tables([pq.read_table(out / "train.parquet"), pq.read_table(out / "val.parquet")])
    rejects = pq.read_table(out / "rejects.parquet")
    rendered = pq.read_table(out / "rendered" / "chatml" / "train.parquet")
    sources = [s.name for s in loaded.recipe.sources]
    assert content_stats(_pieces(final, sizes), sources) == content_stats(final, sources)
    assert reject_groups(_pieces(rejects, sizes)) == reject_groups(rejects)
    clusters = duplicate_clusters(_pieces(rejects, sizes), _pieces(final, sizes))
    assert clusters == duplicate_clusters(rejects, final) and clusters["removed"] > 0
    assert token_share(_pieces(rendered, sizes)) == token_share(rendered)
    assert pick(_pieces(rendered, sizes)) == pick(rendered)
    assert [r["source"] for r in pick(rendered)] == ["alpaca", "sharegpt", "openai"]  # one per source first


def test_no_rows_problem_reads_the_rejects_a_row_group_at_a_time(tmp_path):
    n = ROW_GROUP + 10
    # `late` first appears in the second row group; `unknown_role` is the most frequent; one reason is null.
    reasons = ["unknown_role"] * (n - 12) + ["empty_content"] * 10 + ["late", None]
    reasons[3] = "empty_content"
    rows = [{"reason": r, "message": f"  row {i}\n said   so "} for i, r in enumerate(reasons)]
    table = pa.Table.from_pylist(rows, schema=pa.schema([("reason", pa.string()), ("message", pa.string())]))
    write_parquet(table, tmp_path / "rejects.parquet")
    assert pq.ParquetFile(tmp_path / "rejects.parquet").metadata.num_row_groups == 2
    total = {"in": n, "rejected": n, "filtered": 0, "train": 0, "val": 0}
    (tmp_path / "manifest.json").write_text(json.dumps({"ledger": {"total": total}}))
    got = no_rows_problem(tmp_path, top=5)
    head = f"the build kept no training rows: {n:,} of {n:,} records rejected"
    want = (
        f"{head} (unknown_role {n - 13:,}: row 0 said so; empty_content 11: row 3 said so; "
        f"None 1: row {n - 1} said so; late 1: row {n - 2} said so)"
    )
    assert got == want


def test_a_full_disk_while_streaming_outputs_is_a_data_error_without_temporaries(tmp_path, monkeypatch):
    loaded = load_recipe(make_project(tmp_path))
    result = run(loaded)

    def full(self, table, row_group_size=None):
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full)
    with pytest.raises(DataError) as caught:
        write_build(loaded, result.stages, result.entries)
    assert caught.value.message.startswith(
        f"cannot write to {loaded.build_dir / 'train.parquet'}: disk quota exceeded (writing "
    )
    assert list(loaded.build_dir.rglob(".*.tmp")) == []
    assert not (loaded.build_dir / "manifest.json").exists()


def test_a_full_disk_while_writing_an_export_leaves_no_temporaries(tmp_path, monkeypatch):
    loaded = load_recipe(make_project(tmp_path))
    result = run(loaded)
    real = TextFiles.write

    def full(self, name, text):
        if name == "exports/sharegpt/val.jsonl":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, name, text)

    monkeypatch.setattr(TextFiles, "write", full)
    with pytest.raises(OSError):
        write_build(loaded, result.stages, result.entries)
    assert list(loaded.build_dir.rglob(".*.tmp")) == []
    assert not (loaded.build_dir / "exports" / "openai" / "train.jsonl").exists()  # nothing renamed half-done
    assert not (loaded.build_dir / "manifest.json").exists()
