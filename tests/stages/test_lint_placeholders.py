"""The `unfilled_placeholder` lint: `{{name}}` left in a message rejects its row, naming the source field; template
code in legitimate answers (code blocks, Jinja expressions, GitHub Actions) does not."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from builders import example, quiet, table
from dataforge.checking import check_files
from dataforge.record import Example, Kind, Message, Role
from dataforge.stages.substitute import placeholders
from dataforge.stages.validate import validate_examples

PEERS = "peers/llamafactory"


def qa(row: int, question: str, answer: str, system: str | None = None, reasoning: str | None = None) -> Example:
    head = [Message(Role.SYSTEM, system)] if system else []
    return example(row, *head, Message(Role.USER, question), Message(Role.ASSISTANT, answer, reasoning=reasoning))


def rejects_of(*examples: Example, ignore: frozenset[str] = frozenset()):
    result = validate_examples(table(*examples), quiet, ignore)
    found = {(r["example_id"], r["reason"], r["field"]): r["message"] for r in result.tables["rejects"].to_pylist()}
    return found, result


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I am {{name}}, an AI assistant developed by {{author}}.", ["name", "author"]),
        ("Hello {{ name }}, and again {{name}}", ["name"]),
        ("{{_private}} and {{v2}}", ["_private", "v2"]),
        # Not bare identifiers: Jinja expressions and filters, JSX objects, tagging notation.
        ("{{ user.name }} {{ x | upper }} {{ hello: commandHello }} {{ . }} {{1st}}", []),
        # GitHub Actions expressions and Handlebars raw blocks.
        ("url: https://ghcr.io/${{ matrix }} and {{{body}}} and {{{{raw}}}}", []),
        # Markdown code: fenced (closed or running to the end), inline spans.
        ("```html\n<p>{{message}}</p>\n```\nDone.", []),
        ("~~~\n{{message}}\n~~~", []),
        ("Here:\n```vue\n<template>{{count}}</template>", []),
        ("Write `{{title}}` in the template, or ``{{body}}``.", []),
        ("```js\nconst a = `{{x}}`;\n```\nI am {{name}}.", ["name"]),
        # A lone backtick opens no code span; a placeholder across a line break is none.
        ("it` is {{name}}", ["name"]),
        ("{{\nname}}", []),
    ],
)
def test_what_counts_as_a_placeholder(text, expected):
    assert placeholders(text) == expected


def test_a_placeholder_rejects_its_row_naming_field_and_placeholders():
    rows = [
        qa(0, "Who are you?", "I am {{name}}, an AI assistant developed by {{author}}."),
        qa(1, "hi", "Hello.", system="You are {{ name }}."),
        qa(2, "Tell me about {{topic}}", "Sure."),
        qa(3, "q", "The answer.", reasoning="As {{name}} I should answer."),
        qa(4, "Show a Vue template", "```vue\n<p>{{message}}</p>\n```\nUse `{{ message }}` for text."),
        qa(5, "Jinja?", "Write {{ user.name }} or {{ items | length }}."),
    ]
    found, result = rejects_of(*rows)
    assert found == {
        ("s:0", "unfilled_placeholder", "messages[1].content"): (
            "unfilled placeholders {{name}}, {{author}}; fill them with `substitute: {name: ..., author: ...}`"
        ),
        ("s:1", "unfilled_placeholder", "messages[0].content"): (
            "unfilled placeholder {{name}}; fill it with `substitute: {name: ...}`"
        ),
        ("s:2", "unfilled_placeholder", "messages[0].content"): (
            "unfilled placeholder {{topic}}; fill it with `substitute: {topic: ...}`"
        ),
        ("s:3", "unfilled_placeholder", "messages[1].reasoning"): (
            "unfilled placeholder {{name}}; fill it with `substitute: {name: ...}`"
        ),
    }
    assert result.tables["examples"]["id"].to_pylist() == ["s:4", "s:5"]


def test_preference_completions_are_searched_too():
    row = example(
        0,
        Message(Role.USER, "Who made you?"),
        kind=Kind.PREFERENCE,
        chosen=[Message(Role.ASSISTANT, "{{author}} did.")],
        rejected=[Message(Role.ASSISTANT, "Nobody.")],
    )
    found, _ = rejects_of(row)
    assert list(found) == [("s:0", "unfilled_placeholder", "chosen[0].content")]


def test_ignoring_the_reason_keeps_the_rows_and_counts_them():
    found, result = rejects_of(
        qa(0, "q", "I am {{name}}."), qa(1, "q", "{{a}} {{b}}"), ignore=frozenset({"unfilled_placeholder"})
    )
    assert found == {}
    assert result.tables["examples"].num_rows == 2
    assert result.stats["lint_warnings"] == {"unfilled_placeholder": 2}


def test_rejects_name_the_source_field(write, check):
    alpaca = write(
        "alpaca.json",
        [
            {"instruction": "hi", "input": "", "output": "I am {{name}}."},
            {"instruction": "Greet {{user}}", "input": "", "output": "Hello!"},
            {"instruction": "hi", "input": "", "output": "Hello.", "system": "You are {{name}}."},
        ],
    )
    sharegpt = write(
        "sharegpt.jsonl",
        [{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "I am {{ name }}."}]}],
    )
    fields = [(r["line"], r["reason"], r["field"]) for r in check(alpaca).rejects.to_pylist()]
    assert fields == [
        (2, "unfilled_placeholder", "output"),
        (7, "unfilled_placeholder", "instruction"),
        (12, "unfilled_placeholder", "system"),
    ]
    [reject] = check(sharegpt, "sharegpt").rejects.to_pylist()
    assert (reject["line"], reject["field"], reject["message"]) == (
        1,
        "conversations[1].value",
        "unfilled placeholder {{name}}; fill it with `substitute: {name: ...}`",
    )


def test_llamafactory_identity_json(fixture_path):
    """LLaMA-Factory's identity.json: 85 of its 91 rows say {{name}} (77) and/or {{author}} (60)."""
    checked = check_files(str(fixture_path(f"{PEERS}/identity.json")), root=fixture_path(PEERS))
    assert (checked.format, checked.records, checked.examples.num_rows) == ("alpaca", 91, 6)
    rejects = checked.rejects.to_pylist()
    assert Counter((r["stage"], r["reason"], r["field"]) for r in rejects) == {
        ("validate", "unfilled_placeholder", "output"): 85
    }
    assert Counter(r["message"] for r in rejects) == {
        "unfilled placeholders {{name}}, {{author}}; fill them with `substitute: {name: ..., author: ...}`": 46,
        "unfilled placeholders {{author}}, {{name}}; fill them with `substitute: {author: ..., name: ...}`": 6,
        "unfilled placeholder {{name}}; fill it with `substitute: {name: ...}`": 25,
        "unfilled placeholder {{author}}; fill it with `substitute: {author: ...}`": 8,
    }
    first = rejects[0]
    assert (first["file"], first["line"]) == ("identity.json", 2)
    # As `dataforge validate` prints it, and the README shows it.
    shown = f"{first['file']}:{first['line']}: {first['field']}: {first['message']} ({first['reason']})"
    assert shown in (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    # The six rows without a placeholder are the ones kept.
    assert checked.examples["row"].to_pylist() == [74, 82, 83, 84, 85, 86]


def test_llamafactory_v1_sft_demo(fixture_path):
    """The typed v1 demo carries the same identity rows: 50 of its 500."""
    checked = check_files(str(fixture_path(f"{PEERS}/v1_sft_demo.jsonl")), root=fixture_path(PEERS))
    assert checked.examples.num_rows == 450
    assert Counter((r["reason"], r["field"]) for r in checked.rejects.to_pylist()) == {
        ("unfilled_placeholder", "messages[1].content"): 50
    }


@pytest.mark.parametrize("name", ["kto_en_demo.json", "dpo_en_demo.json", "alpaca_en_demo.json"])
def test_template_code_in_real_answers_is_not_flagged(fixture_path, name):
    """kto_en_demo has `${{ secrets.GITHUB_TOKEN }}` in workflow answers, dpo_en_demo `{{ . }}` in a tagging
    task and JSX `{{ hello: commandHello }}`: none is a bare-identifier placeholder."""
    checked = check_files(str(fixture_path(f"{PEERS}/{name}")), root=fixture_path(PEERS))
    assert "unfilled_placeholder" not in {r["reason"] for r in checked.rejects.to_pylist()}
