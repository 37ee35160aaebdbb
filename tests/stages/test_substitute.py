"""`substitute:` fills template placeholders after conversion: in every message's content and reasoning and in
pretrain text, outside code; per source over a recipe-wide default; in the convert stage's key."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from builders import example as ex
from builders import quiet, table
from dataforge.engine.graph import build_graph
from dataforge.engine.runner import plan, run
from dataforge.errors import RecipeError
from dataforge.recipe import Source, load_recipe, parse_recipe
from dataforge.record import Kind, Message, Role, table_to_examples
from dataforge.stages.convert import convert_raw
from dataforge.stages.read import read_source, resolve_format, source_files
from dataforge.stages.substitute import fill, substitute
from dataforge.stages.validate import validate_examples
from dataforge.stages.write import write_build

PEERS = "peers/llamafactory"


def user(text: str) -> Message:
    return Message(Role.USER, text)


def assistant(text: str, reasoning: str | None = None) -> Message:
    return Message(Role.ASSISTANT, text, reasoning=reasoning)


def test_fill_replaces_named_placeholders_outside_code_and_counts_them():
    counts: dict[str, int] = {}
    text = "I am {{name}} ({{ name }}), by {{author}}; `{{name}}` and {{other}} stay.\n```\n{{name}}\n```"
    assert fill(text, {"name": r"Au\1ra", "author": "{{name}}"}, counts) == (
        "I am Au\\1ra (Au\\1ra), by {{name}}; `{{name}}` and {{other}} stay.\n```\n{{name}}\n```"
    )
    # Values go in as written (backslashes, braces): they are not searched again.
    assert counts == {"name": 2, "author": 1}
    assert fill(None, {"name": "x"}, counts) is None
    assert fill("no braces", {"name": "x"}, counts) == "no braces"


def test_every_text_field_is_filled_and_other_rows_are_untouched():
    rows = [
        ex(0, user("plain"), assistant("nothing to fill")),
        ex(
            1, Message(Role.SYSTEM, "You are {{name}}."), user("Who made you?"), assistant("{{author}}.", "As {{name}}")
        ),
        ex(2, user("q"), kind=Kind.PREFERENCE, chosen=[assistant("{{name}}!")], rejected=[assistant("{{nope}}")]),
        ex(3, kind=Kind.PRETRAIN, text="{{name}} wrote this; {{ Infobox }} stays"),
        ex(4, user("Vue?"), assistant("```vue\n<p>{{name}}</p>\n```")),
    ]
    before = table(*rows)
    after, stats = substitute(before, {"name": "Aurora", "author": "Acme", "unused_key": "x"})
    assert stats == {"filled": {"author": 1, "name": 4, "unused_key": 0}, "rows": 3, "unused": ["unused_key"]}
    assert after.schema == before.schema
    assert after["id"].to_pylist() == ["s:0", "s:1", "s:2", "s:3", "s:4"]
    got = table_to_examples(after)
    assert [m.content for m in got[1].messages] == ["You are Aurora.", "Who made you?", "Acme."]
    assert got[1].messages[2].reasoning == "As Aurora"
    assert (got[2].chosen[0].content, got[2].rejected[0].content) == ("Aurora!", "{{nope}}")
    assert got[3].text == "Aurora wrote this; {{ Infobox }} stays"
    # Rows with nothing filled are the same rows: the first and the code block.
    for i in (0, 4):
        assert after.slice(i, 1).to_pylist() == before.slice(i, 1).to_pylist()


def test_nothing_to_fill_returns_the_same_table():
    before = table(ex(0, user("q"), assistant("a")))
    after, stats = substitute(before, {"name": "Aurora"})
    assert after is before
    assert stats == {"filled": {"name": 0}, "rows": 0, "unused": ["name"]}


def _identity(fixture_path, values):
    """identity.json read and converted as a build does, filled with `values`, then validated (and linted)."""
    root = fixture_path(PEERS)
    source = Source.model_validate({"name": "identity", "from": "identity.json", "format": "alpaca"})
    files = source_files(source, root)
    raw = read_source(source, files, root, resolve_format(source, files, root), quiet).tables["raw"]
    converted = convert_raw(raw, "alpaca", "identity", quiet).tables["examples"]
    assert converted.num_rows == 91
    filled, stats = substitute(converted, values)
    return filled, stats, validate_examples(filled, quiet)


def test_llamafactory_identity_json_filled(fixture_path):
    filled, stats, validated = _identity(fixture_path, {"name": "Aurora", "author": "Acme"})
    assert stats == {"filled": {"author": 60, "name": 77}, "rows": 85, "unused": []}
    assert validated.tables["examples"].num_rows == 91
    assert validated.tables["rejects"].num_rows == 0
    answers = [m.content for e in table_to_examples(validated.tables["examples"]) for m in e.messages]
    assert not any("{{" in a for a in answers)
    assert answers[1] == "Hello! I am Aurora, an AI assistant developed by Acme. How can I assist you today?"


def test_a_placeholder_left_unfilled_is_still_rejected(fixture_path):
    _, stats, validated = _identity(fixture_path, {"name": "Aurora", "nmae": "typo"})
    assert stats == {"filled": {"name": 77, "nmae": 0}, "rows": 77, "unused": ["nmae"]}
    assert validated.tables["examples"].num_rows == 31
    rejects = validated.tables["rejects"].to_pylist()
    assert Counter((r["reason"], r["field"], r["message"]) for r in rejects) == {
        (
            "unfilled_placeholder",
            "output",
            "unfilled placeholder {{author}}; fill it with `substitute: {author: ...}`",
        ): 60
    }


RECIPE = """\
name: ident
seed: 3
substitute: {name: Aurora, author: Nobody}
sources:
  - name: identity
    from: identity.json
    format: alpaca
    substitute: {author: Acme, version: "2"}
  - name: other
    from: other.jsonl
    format: sharegpt
split: {validation: 0.1}
outputs: {exports: [llamafactory]}
"""


def _project(tmp_path: Path, fixture_path, recipe: str = RECIPE) -> Path:
    shutil.copy(fixture_path(f"{PEERS}/identity.json"), tmp_path / "identity.json")
    rows = [
        {"conversations": [{"from": "human", "value": "Who is {{name}}?"}, {"from": "gpt", "value": "{{author}}."}]},
        {"conversations": [{"from": "human", "value": "Jinja?"}, {"from": "gpt", "value": "Use `{{name}}`."}]},
    ]
    (tmp_path / "other.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    path = tmp_path / "mix.yaml"
    path.write_text(recipe, encoding="utf-8")
    return path


def test_build_fills_placeholders_per_source_over_the_recipe_default(tmp_path, fixture_path):
    loaded = load_recipe(_project(tmp_path, fixture_path))
    result = run(loaded)
    manifest = write_build(loaded, result.stages, result.entries)
    assert manifest["ledger"]["sources"]["identity"] == {
        "in": 91,
        "rejected": 0,
        "filtered": 0,
        "deduplicated": 0,
        "downsampled": 0,
        "train": 82,
        "val": 9,
        "balanced": True,
    }
    out = loaded.build_dir
    rows = pq.read_table(out / "train.parquet").to_pylist() + pq.read_table(out / "val.parquet").to_pylist()
    text = json.dumps([r["messages"] for r in rows], ensure_ascii=False)
    assert text.count("Aurora") == 77 + 1
    assert text.count("Acme") == 60  # the source's own value wins for `author`
    assert text.count("Nobody") == 1  # the recipe's default, in the other source
    assert text.count("{{") == 1  # the inline code span of the other source
    exported = (out / "exports/llamafactory/sft_train.jsonl").read_text(encoding="utf-8")
    assert "{{" not in exported.replace("`{{name}}`", "")
    stats = {name: e.manifest["stats"].get("substitute") for name, e in result.entries.items()}
    assert stats["convert:identity"] == {
        "filled": {"author": 60, "name": 77, "version": 0},
        "rows": 85,
        "unused": ["version"],
    }
    assert stats["convert:other"] == {"filled": {"author": 1, "name": 1}, "rows": 1, "unused": []}


def test_the_values_are_in_the_convert_key(tmp_path, fixture_path):
    path = _project(tmp_path, fixture_path)
    loaded = load_recipe(path)
    configs = {s.name: s.config for s in build_graph(loaded)}
    assert configs["convert:identity"]["substitute"] == {"author": "Acme", "name": "Aurora", "version": "2"}
    run(loaded)
    path.write_text(RECIPE.replace("author: Acme", "author: Acme Labs"), encoding="utf-8")
    states = {s.name: (s.state, s.reason) for s in plan(load_recipe(path))}
    assert states["convert:identity"] == ("stale", "config changed: substitute")
    assert states["convert:other"][0] == "cached"
    # Without `substitute:` the key has no such entry, so recipes that do not use it keep their cache.
    plain = "name: p\nsources:\n  - name: a\n    from: other.jsonl\n    format: sharegpt\n"
    (tmp_path / "plain.yaml").write_text(plain, encoding="utf-8")
    config = {s.name: s.config for s in build_graph(load_recipe(tmp_path / "plain.yaml"))}["convert:a"]
    assert config == {"source": "a", "reasoning": "keep"}


def test_recipe_errors_name_each_line(tmp_path):
    text = (
        "name: t\n"
        'substitute: {name: Aurora, "bad-key": x}\n'
        "sources:\n"
        "  - name: a\n"
        "    from: a.json\n"
        "    substitute:\n"
        "      year: 2024\n"
        "      ok: fine\n"
    )
    with pytest.raises(RecipeError) as err:
        parse_recipe(text, tmp_path / "r.yaml")
    assert err.value.exit_code == 2
    assert err.value.problems == [
        "line 2: substitute.bad-key.[key]: 'bad-key' cannot be a placeholder name "
        "(letters, digits and '_', not starting with a digit)",
        'line 7: sources[0].substitute.year: the value must be text (found 2024); quote it: "2024"',
    ]


def test_the_readme_example_is_a_valid_recipe(tmp_path):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("**Placeholders**", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    recipe = parse_recipe(example, tmp_path / "mix.yaml").recipe
    assert recipe.substitutions(recipe.source("identity")) == {"author": "Acme", "name": "Aurora"}
