import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from dataforge import formats
from dataforge.errors import RecipeError
from dataforge.recipe import load_recipe, parse_recipe, recipe_json_schema

GOOD = """\
name: demo
seed: 3
root: ..
sources:
  - name: a
    from: data/a.jsonl
    format: alpaca
    columns: {instruction: prompt}
    max_rows: 10
  - name: b
    from: "data/b/*.jsonl"
mix:
  strategy: ratio
  ratios: {a: 7, b: 3}
filters: {min_turns: 1, max_turns: 8, max_chars: 20000}
split: {validation: 0.05}
outputs: {exports: [openai]}
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(RecipeError) as err:
        parse_recipe(text, Path("/tmp/pipelines/mix.yaml"))
    assert err.value.exit_code == 2
    return err.value.problems


def test_a_good_recipe_loads_with_types_and_paths():
    loaded = parse_recipe(GOOD, Path("/tmp/pipelines/mix.yaml"))
    r = loaded.recipe
    assert r.name == "demo" and r.seed == 3
    assert [s.name for s in r.sources] == ["a", "b"]
    assert r.sources[0].from_ == "data/a.jsonl"
    assert r.sources[0].columns == {"instruction": "prompt"}
    assert r.sources[1].format is None
    assert r.mix.ratios == {"a": 7.0, "b": 3.0}
    assert r.filters.max_turns == 8 and r.filters.drop_empty is True
    assert loaded.root == Path("/tmp")
    assert loaded.build_dir == Path("/tmp/data/processed/demo")


def test_every_problem_is_reported_at_once_with_its_line():
    text = """\
name: "bad name!"
seed: abc
sources:
  - name: a
    from: x.json
    format: alpacca
    max_row: 3
  - name: a
    form: y.json
mix:
  strategy: ratio
  ratios: {a: 1, zz: 2}
split:
  validation: 1.5
filtres: {}
"""
    problems = _problems(text)
    assert problems == [
        "line 1: name: 'bad name!' is not a valid name "
        "(letters, digits, '_', '.', '-'; starting with a letter or digit)",
        "line 2: seed: Input should be a valid integer, unable to parse string as an integer (found 'abc')",
        "line 6: sources[0].format: unknown format 'alpacca'; did you mean 'alpaca'? "
        f"(known formats: {', '.join(formats.names())})",
        "line 7: sources[0].max_row: unknown key (did you mean `max_rows`?)",
        "line 8: sources[1].from: required but missing",
        "line 8: sources[1].name: 'a' is already the name of sources[0]",
        "line 9: sources[1].form: unknown key (did you mean `format`?)",
        "line 12: mix.ratios.zz: no source is named 'zz' (sources: a)",
        "line 14: split.validation: Input should be less than 1 (found 1.5)",
        "line 15: filtres: unknown key (did you mean `filters`?)",
    ]


def test_mix_consistency_checks():
    base = "name: x\nsources:\n  - {name: a, from: a.jsonl}\n  - {name: b, from: b.jsonl}\n"
    assert _problems(base + "mix:\n  strategy: ratio\n  ratios: {a: 1}\n") == [
        "line 7: mix.ratios: no weight for source 'b'; give every source a weight (0 to leave it out)"
    ]
    assert _problems(base + "mix:\n  strategy: ratio\n") == [
        "line 5: mix: strategy `ratio` needs `ratios` (source → weight)"
    ]
    assert _problems(base + "mix:\n  ratios: {a: 1, b: 1}\n") == [
        "line 5: mix: `ratios` and `total` apply only with `strategy: ratio`"
    ]
    assert _problems(base + "mix:\n  strategy: ratio\n  ratios: {a: 0, b: 0}\n") == [
        "line 7: mix.ratios: weights sum to zero"
    ]


def test_yaml_syntax_error_names_the_line():
    assert _problems("name: x\nsources: [\n") == [
        "line 3: not valid YAML: expected the node content, but found '<stream end>'"
    ]


def test_missing_required_sections():
    assert _problems("seed: 1\n") == ["line 1: name: required but missing", "line 1: sources: required but missing"]
    assert _problems("- a list\n") == ["line 1: a recipe is a mapping with at least `name` and `sources`"]


def test_missing_file_is_a_recipe_error(tmp_path):
    with pytest.raises(RecipeError) as err:
        load_recipe(tmp_path / "nope.yaml")
    assert err.value.problems == ["the recipe file does not exist"]


def test_json_schema_accepts_good_and_rejects_unknown_keys():
    schema = recipe_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors(yaml.safe_load(GOOD))) == []
    bad = yaml.safe_load(GOOD)
    bad["sources"][0]["max_row"] = 3
    assert [e.validator for e in validator.iter_errors(bad)] == ["additionalProperties"]


def test_shipped_schema_file_is_current():
    shipped = Path(__file__).resolve().parents[1] / "schemas" / "recipe.schema.json"
    assert json.loads(shipped.read_text()) == recipe_json_schema()


def test_a_missing_recipe_names_the_recipe_beside_it_that_was_meant(tmp_path):
    (tmp_path / "demo.yaml").write_text("name: demo\n", encoding="utf-8")
    with pytest.raises(RecipeError) as raised:
        load_recipe(tmp_path / "demo.yml")
    assert raised.value.problems == [
        f"the recipe file does not exist; did you mean {(tmp_path / 'demo.yaml').as_posix()}?"
    ]
    with pytest.raises(RecipeError) as raised:
        load_recipe(tmp_path / "elsewhere" / "mix.yaml")
    assert raised.value.problems == ["the recipe file does not exist"]


# --- bounds on the YAML itself (issue 15): checked on the event stream, before anything is expanded ----------


def _alias_bomb(levels: int = 9) -> str:
    """The "billion laughs": ~0.5 KB whose aliases expand to 9**levels strings."""
    lines = [
        "name: x",
        "sources: [{name: a, from: a.jsonl}]",
        'l1: &l1 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    ]
    for i in range(2, levels + 1):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_before_it_expands():
    bomb = _alias_bomb()
    assert len(bomb) < 1000 and bomb.count("*") == 72  # few aliases: the expansion is what is bounded
    assert _problems(bomb) == [
        "line 8: aliases expand the recipe to more than 100,000 values (an alias bomb?); write the values out, "
        "or nest fewer aliases"
    ]


def test_many_aliases_and_recursive_aliases_are_refused():
    many = "name: x\nsources: [{name: a, from: a.jsonl}]\nv: &v 1\nw: [" + ", ".join(["*v"] * 101) + "]\n"
    assert _problems(many) == ["line 4: more than 100 aliases (`*name`); a recipe needs a few"]
    assert _problems("name: x\nsources: &s [*s]\n") == [
        "line 2: alias *s is used inside the node it names (a recursive alias)"
    ]


def test_a_few_aliases_and_merge_keys_still_work():
    text = (
        "name: x\nsources:\n  - &a {name: a, from: a.jsonl, format: alpaca}\n  - <<: *a\n    name: b\n"
        "mix: {strategy: ratio, ratios: {a: 1, b: 1}}\n"
    )
    recipe = parse_recipe(text, Path("/tmp/pipelines/mix.yaml")).recipe
    assert [(s.name, s.from_, s.format) for s in recipe.sources] == [
        ("a", "a.jsonl", "alpaca"),
        ("b", "a.jsonl", "alpaca"),
    ]


def test_deep_nesting_is_a_recipe_error_not_a_recursion_error():
    flow = "name: x\nsources: " + "[" * 50_000 + "]" * 50_000 + "\n"
    assert _problems(flow) == ["line 2: nested more than 64 levels deep (mappings and lists); a recipe needs few"]
    block = "name: x\nk:\n" + "".join(" " * (i + 1) + "-\n" for i in range(100))
    assert _problems(block) == ["line 66: nested more than 64 levels deep (mappings and lists); a recipe needs few"]


def test_an_oversized_recipe_is_refused_unread(tmp_path):
    path = tmp_path / "mix.yaml"
    path.write_text("name: x\n" + "#" * 1_000_000 + "\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert err.value.problems == ["the recipe is 1,000,009 bytes; a recipe may be at most 1,000,000 bytes"]
    assert _problems("#" * 1_000_001) == ["the recipe is 1,000,001 bytes; a recipe may be at most 1,000,000 bytes"]
