"""The scale benchmark's data generator (benchmarks/scale_data.py): what it writes, checked through dataforge's own
read → convert → validate, at a tiny size."""

from __future__ import annotations

import hashlib
import re
import sys
from itertools import combinations
from pathlib import Path

import pytest

from dataforge.checking import check_files
from dataforge.recipe import load_recipe

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import scale_data  # noqa: E402

ROWS = 300


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("scale")
    return folder, scale_data.generate(folder, ROWS, seed=0)


def _examples(folder: Path) -> list[dict]:
    """Every generated row as dataforge sees it: (file, messages as (role, content) pairs), all sources."""
    rows = []
    for source, (rel, fmt) in scale_data.SOURCES.items():
        checked = check_files(rel, fmt, None, root=folder, name=source)
        assert checked.rejects.num_rows == 0, f"{source}: {checked.rejects.to_pylist()[:1]}"
        files, conversations = checked.examples["file"].to_pylist(), checked.examples["messages"].to_pylist()
        for file, messages in zip(files, conversations, strict=True):
            rows.append({"file": file, "messages": tuple((m["role"], m["content"]) for m in messages)})
    return rows


def _shingles(messages: tuple[tuple[str, str], ...]) -> set[tuple[str, ...]]:
    """Word 5-shingles of the whole conversation, case folded and punctuation dropped (as dedup.near does)."""
    words = re.sub(r"[^\w\s]", " ", " ".join(text for _, text in messages).lower()).split()
    return {tuple(words[i : i + 5]) for i in range(len(words) - 4)}


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


def test_every_row_is_written_and_valid_in_its_format(generated: tuple[Path, dict]) -> None:
    folder, info = generated
    rows = _examples(folder)
    assert len(rows) == ROWS == info["rows"] == sum(f["rows"] for f in info["files"].values())
    per_file = {rel: sum(r["file"].endswith(Path(rel).name) for r in rows) for rel in info["files"]}
    assert per_file == {rel: f["rows"] for rel, f in info["files"].items()}
    assert all(n > 0 for n in per_file.values())  # every format and container is present
    assert {f["format"] for f in info["files"].values()} == {"sharegpt", "openai", "alpaca"}
    assert any(rel.endswith(".parquet") for rel in info["files"])
    assert any(len(r["messages"]) > 3 for r in rows)  # multi-turn conversations
    assert sum(r["messages"][0][0] == "system" for r in rows) > 10


def test_rows_are_about_one_kilobyte_with_a_long_tail(generated: tuple[Path, dict]) -> None:
    folder, info = generated
    assert 900 < info["json_bytes"] / ROWS < 1600
    lengths = sorted(sum(len(text) for _, text in r["messages"]) for r in _examples(folder))
    median, p99 = lengths[len(lengths) // 2], lengths[int(len(lengths) * 0.99)]
    assert p99 > 3 * median  # a right tail, as in real SFT data


def test_three_percent_exact_and_three_percent_near_duplicates_across_files(generated: tuple[Path, dict]) -> None:
    folder, info = generated
    rows = _examples(folder)
    distinct: dict[tuple, list[str]] = {}
    for r in rows:
        distinct.setdefault(r["messages"], []).append(r["file"])
    exact = len(rows) - len(distinct)
    assert exact == info["exact_duplicates"] == ROWS * 3 // 100
    assert any(len(set(files)) > 1 for files in distinct.values())  # copies cross files

    convs = list(distinct)
    shingles = [_shingles(c) for c in convs]
    near, unrelated = [], 0.0
    for i, j in combinations(range(len(convs)), 2):
        similarity = _jaccard(shingles[i], shingles[j])
        if similarity >= 0.5:
            near.append((i, j, similarity))
        else:
            unrelated = max(unrelated, similarity)
    assert unrelated < 0.2  # other rows share (almost) no shingles
    assert all(0.85 <= s < 1 for *_, s in near)  # near copies are well above the 0.8 threshold
    # Rows a near dedup removes: all but one per group of near copies.
    parent = list(range(len(convs)))

    def find(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x

    for i, j, _ in near:
        parent[find(i)] = find(j)
    removed = len(convs) - len({find(i) for i in range(len(convs))})
    assert removed == info["near_duplicates"] == ROWS * 3 // 100
    assert any(set(distinct[convs[i]]) != set(distinct[convs[j]]) for i, j, _ in near)


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes_other_seed_other_rows(generated: tuple[Path, dict], tmp_path: Path) -> None:
    folder, _ = generated
    scale_data.generate(tmp_path / "again", ROWS, seed=0)
    scale_data.generate(tmp_path / "other", ROWS, seed=1)
    assert _digests(tmp_path / "again") == _digests(folder)
    other = _digests(tmp_path / "other")
    assert other.keys() == _digests(folder).keys()
    assert all(other[k] != v for k, v in _digests(folder).items() if k != scale_data.MARKER)
    assert scale_data.cached(folder, ROWS, 0) is not None
    assert scale_data.cached(folder, ROWS, 1) is None and scale_data.cached(folder, ROWS + 1, 0) is None


def test_appended_rows_are_new_and_valid_and_can_be_undone(tmp_path: Path) -> None:
    info = scale_data.generate(tmp_path, 200, seed=0)
    path = tmp_path / "openai.jsonl"
    before = path.read_bytes()
    scale_data.append_rows(path, "openai", 20, seed=0)
    assert path.read_bytes().startswith(before)
    checked = check_files("openai.jsonl", "openai", None, root=tmp_path)
    assert (checked.examples.num_rows, checked.rejects.num_rows) == (info["files"]["openai.jsonl"]["rows"] + 20, 0)
    assert scale_data.cached(tmp_path, 200, 0) is None  # the file changed: not the generated set any more
    with path.open("r+b") as f:
        f.truncate(len(before))
    assert scale_data.cached(tmp_path, 200, 0) is not None


def test_recipe_loads_with_every_stage_of_the_benchmark(generated: tuple[Path, dict], tmp_path: Path) -> None:
    folder, _ = generated
    tokenizer = tmp_path / "tok"  # the recipe only names it; loading does not open it
    recipe = scale_data.write_recipe(tmp_path / "mix.yaml", folder, tokenizer=tokenizer, build_dir=tmp_path / "b")
    assert "engine" not in recipe.read_text()
    loaded = load_recipe(recipe).recipe
    assert [s.name for s in loaded.sources] == list(scale_data.SOURCES)
    assert loaded.dedup.exact and loaded.dedup.near is not None and loaded.dedup.near.threshold == 0.8
    assert loaded.mix.strategy == "ratio" and loaded.mix.ratios == scale_data.MIX_RATIOS
    assert loaded.split.validation == 0.05
    assert [t.tokenizer for t in loaded.render] == [str(tokenizer.resolve())]
    assert loaded.outputs.exports == ["trl"]
    with_workers = scale_data.write_recipe(
        tmp_path / "w.yaml", folder, tokenizer=tokenizer, build_dir=tmp_path / "b", workers=2
    )
    assert with_workers.read_text().endswith("engine:\n  workers: 2\n")
