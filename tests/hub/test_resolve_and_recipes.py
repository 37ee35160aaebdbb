"""Hub sources in recipes (keys, checks, the network-ready pipelines) and how a split or a glob becomes files."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataforge.errors import DataError, RecipeError, UsageError
from dataforge.hub.lock import LockedFile, LockedSource, Request, lock_text, read_lock, request_of, write_lock
from dataforge.hub.resolve import resolve_files
from dataforge.hub.uris import HubRef, parse_uri
from dataforge.recipe import load_recipe, parse_recipe

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"
OPENMATH = [
    "README.md",
    "data/cot-00000-of-00144.parquet",
    "data/cot-00001-of-00144.parquet",
    "data/genselect-00000-of-00010.parquet",
    "data/tir-00000-of-00072.parquet",
]


@pytest.mark.parametrize(
    ("file", "ratios"), [("finetome_openmath_5_5.yaml", (5, 5)), ("finetome_openmath_7_3.yaml", (7, 3))]
)
def test_the_network_ready_pipelines_validate(file, ratios):
    loaded = load_recipe(PIPELINES / file)
    recipe = loaded.recipe
    assert loaded.root == PIPELINES.parent
    finetome, openmath = recipe.sources
    assert request_of(finetome) == Request(uri="hf://mlabonne/FineTome-100k", revision="main", split="train")
    assert finetome.format == "sharegpt"
    assert request_of(openmath) == Request(
        uri="hf://nvidia/OpenMathReasoning", revision="main", files=("data/cot-00000-of-*.parquet",)
    )
    assert openmath.columns == {"instruction": "problem", "output": "generated_solution"}
    assert openmath.reasoning == "field"
    assert (recipe.mix.strategy, recipe.mix.ratios) == ("ratio", {"finetome": ratios[0], "openmath": ratios[1]})
    (target,) = recipe.render
    assert (target.tokenizer, target.reasoning, target.max_length) == ("Qwen/Qwen3-8B", "keep", 8192)
    # The files glob picks exactly the first shard of the cot split from a listing shaped like the real one.
    ref = parse_uri(openmath.from_)
    chosen = resolve_files(
        ref, OPENMATH, patterns=tuple(openmath.files), subset=None, split=None, card={}, revision="main"
    )
    assert chosen == ["data/cot-00000-of-00144.parquet"]


def _problems(text: str) -> list[str]:
    with pytest.raises(RecipeError) as err:
        parse_recipe(text, Path("/tmp/pipelines/mix.yaml"))
    return err.value.problems


def test_hub_keys_are_checked_against_the_source_kind():
    problems = _problems(
        """\
name: x
sources:
  - name: a
    from: hf://just-a-name
  - name: b
    from: data/b.jsonl
    split: train
  - name: c
    from: ms://owner/name
    files: ["*.jsonl"]
    subset: zh
  - name: d
    from: hf://owner/name
    token_env: hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123
"""
    )
    assert problems == [
        "line 4: sources[0].from: 'hf://just-a-name' is not a dataset address; expected hf://owner/name "
        "(e.g. hf://mlabonne/FineTome-100k)",
        "line 7: sources[1].split: only hf:// and ms:// sources take this key (`from` is a local path)",
        "line 11: sources[2].subset: give either `files` (glob patterns) or `subset`/`split`, not both",
        "line 14: sources[3].token_env: this looks like a token (`hf_…`, 33 characters); put the NAME of an "
        "environment variable holding it (e.g. HF_TOKEN), never the token itself",
    ]


def _token_env_problems(value: str) -> list[str]:
    return _problems(f"name: x\nsources:\n  - name: a\n    from: hf://o/n\n    token_env: {value}\n")


def test_a_short_token_in_token_env_is_refused_and_never_echoed():
    for token in ("hf_abc123", "sk-proj-xyz", "ghp_x1", "github_pat_11AB", "ms-2a9f", "api_kkk"):
        problems = _token_env_problems(token)
        assert problems == [
            f"line 5: sources[0].token_env: this looks like a token (`{token[:3]}…`, {len(token)} characters); put "
            "the NAME of an environment variable holding it (e.g. HF_TOKEN), never the token itself"
        ]
        assert token not in problems[0]


def test_a_token_env_that_is_no_variable_name_is_refused_without_its_value():
    assert _token_env_problems('"abc def/ghi"') == [
        "line 5: sources[0].token_env: this is not the name of an environment variable (`abc…`, 11 characters; "
        "letters, digits and '_', not starting with a digit); put the NAME of the variable holding the token "
        "(e.g. HF_TOKEN)"
    ]
    # A long random-looking value (a token without a known prefix) is refused as a token.
    assert "this looks like a token (`Q2h…`, 30 characters)" in _token_env_problems("Q2hhbmdlTWVQbGVhc2UxMjM0NTY3OA")[0]
    assert _token_env_problems("12345") == [
        "line 5: sources[0].token_env: must be the name of an environment variable (text, e.g. HF_TOKEN)"
    ]


def test_variable_names_are_accepted_as_token_env():
    for name in ("HF_TOKEN", "MY_HF_TOKEN", "MODELSCOPE_API_TOKEN", "_T"):
        text = f"name: x\nsources:\n  - name: a\n    from: hf://o/n\n    token_env: {name}\n"
        assert parse_recipe(text, Path("/tmp/mix.yaml")).recipe.sources[0].token_env == name


REF = HubRef("hf", "acme/data")
CARD = {
    "configs": [
        {"config_name": "en", "default": True, "data_files": [{"split": "train", "path": ["en/train-*"]}]},
        {
            "config_name": "zh",
            "data_files": [{"split": "train", "path": "zh/*.jsonl"}, {"split": "test", "path": "zh/t.json"}],
        },
    ]
}
PATHS = ["README.md", "en/train-0.parquet", "en/train-1.parquet", "zh/a.jsonl", "zh/b.jsonl", "zh/t.json"]


def resolve(paths=PATHS, card=CARD, subset=None, split=None, patterns=()):
    return resolve_files(REF, paths, patterns=patterns, subset=subset, split=split, card=card, revision="main")


def test_a_card_with_configs_resolves_subset_and_split():
    assert resolve() == ["en/train-0.parquet", "en/train-1.parquet"]  # the default config
    assert resolve(subset="zh") == ["zh/a.jsonl", "zh/b.jsonl"]
    assert resolve(subset="zh", split="test") == ["zh/t.json"]
    with pytest.raises(UsageError, match=r"^hf://acme/data@main: no subset 'fr'; subsets: en, zh$"):
        resolve(subset="fr")
    with pytest.raises(UsageError, match=r"subset 'en' has no split 'test'; splits: train\n"):
        resolve(split="test")
    several = {"configs": [{"config_name": "a", "data_files": "a/*"}, {"config_name": "b", "data_files": "b/*"}]}
    with pytest.raises(UsageError, match="several subsets and no default: a, b"):
        resolve(card=several)


def test_without_configs_splits_come_from_file_and_folder_names():
    paths = ["README.md", "data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet", "valid/x.jsonl"]
    assert resolve(paths, card={}) == ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"]
    assert resolve(paths, card={}, split="validation") == ["valid/x.jsonl"]
    with pytest.raises(UsageError, match=r"no split 'test'; splits found: train, validation\n"):
        resolve(paths, card={}, split="test")
    # Nothing named after a split: every readable file is the train split (README.md is not readable data).
    assert resolve(["README.md", "huanhuan.json"], card={}) == ["huanhuan.json"]
    with pytest.raises(UsageError, match="cannot be resolved: the dataset card declares no configs"):
        resolve(paths, card={}, subset="en")


def test_files_globs_match_repository_paths():
    assert resolve(patterns=("zh/*.jsonl", "en/train-1.*")) == ["en/train-1.parquet", "zh/a.jsonl", "zh/b.jsonl"]
    assert resolve(patterns=("zh/",)) == ["zh/a.jsonl", "zh/b.jsonl", "zh/t.json"]
    with pytest.raises(UsageError, match=r"`files: \['\*\.csv'\]` matches no data file dataforge reads \(\.jsonl, "):
        resolve(patterns=("*.csv",))
    # The folder rule of local sources holds on the hub too: metadata and hidden folders are not data.
    listing = ["dataset_info.json", ".github/x.json", "data/a.jsonl.gz", "data/b.csv", "README.md"]
    assert resolve(listing, card={}) == ["data/a.jsonl.gz", "data/b.csv"]


def test_the_lock_is_deterministic_and_round_trips(tmp_path):
    entry = LockedSource(
        Request("hf://acme/data", "main", split="train"),
        "a" * 40,
        (LockedFile("data/train.parquet", "b" * 64, 10),),
        "mit",
    )
    other = LockedSource(Request("ms://o/n", "master", files=("*.json",)), None, (LockedFile("x.json", "c" * 64, 3),))
    path = tmp_path / "mix.lock"
    assert write_lock(path, {"z": other, "a": entry}) is True
    assert write_lock(path, {"a": entry, "z": other}) is False  # same content: not rewritten
    assert path.read_text() == lock_text({"a": entry, "z": other})
    assert read_lock(path) == {"a": entry, "z": other}
    assert list(read_lock(path)) == ["a", "z"]
    path.write_text("{not json")
    with pytest.raises(DataError, match="the lock file is damaged"):
        read_lock(path)
