"""trl's dataset types (standard and conversational) to canonical examples and back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dataforge import formats
from dataforge.record import Example, Kind, Message, Provenance, Role, ToolCall

TRL = formats.get("trl")
U, A, S, T = Role.USER, Role.ASSISTANT, Role.SYSTEM, Role.TOOL


def m(role: Role, content: str | None, **fields: Any) -> dict[str, Any]:
    return Message(role, content, **fields).to_row()


def canonical(checked) -> list[tuple]:
    return [
        (r["kind"], r["messages"], r["chosen"], r["rejected"], r["label"], r["text"], r["tools"])
        for r in checked.examples.to_pylist()
    ]


def rejects(checked) -> list[tuple]:
    return [(r["stage"], r["row"], r["reason"], r["field"], r["message"]) for r in checked.rejects.to_pylist()]


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def test_every_trl_type_in_both_forms(write, check):
    checked = check(
        write(
            "t.jsonl",
            [
                {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},
                {"prompt": [user("Sky?")], "chosen": [assistant("Blue.")], "rejected": [assistant("Green.")]},
                {"chosen": [user("Sky?"), assistant("Blue.")], "rejected": [user("Sky?"), assistant("Green.")]},
                {"prompt": "The sky is", "completion": " blue.", "label": True},
                {"prompt": [user("Sky?")], "completion": [assistant("Green.")], "label": False},
                {"prompt": "The sky is", "completion": " blue."},
                {"prompt": [user("Sky?")], "completion": [assistant("Blue.")]},
                {"messages": [user("Sky?"), assistant("Blue.")]},
                {"text": "The sky is blue."},
            ],
        )
    )
    assert checked.format == "trl"
    sky, blue, green = m(U, "Sky?"), m(A, "Blue."), m(A, "Green.")
    assert canonical(checked) == [
        ("preference", [m(U, "The sky is")], [m(A, " blue.")], [m(A, " green.")], None, None, None),
        ("preference", [sky], [blue], [green], None, None, None),
        ("preference", [sky], [blue], [green], None, None, None),
        ("kto", [m(U, "The sky is"), m(A, " blue.")], None, None, True, None, None),
        ("kto", [sky, green], None, None, False, None, None),
        ("sft", [m(U, "The sky is"), m(A, " blue.")], None, None, None, None, None),
        ("sft", [sky, blue], None, None, None, None, None),
        ("sft", [sky, blue], None, None, None, None, None),
        ("pretrain", [], None, None, None, "The sky is blue.", None),
    ]


def test_implicit_prompt_is_the_longest_shared_head(write, check):
    checked = check(
        write(
            "implicit.jsonl",
            [
                {
                    "chosen": [
                        {"role": "system", "content": "s"},
                        user("a"),
                        assistant("b"),
                        user("c"),
                        assistant("d"),
                    ],
                    "rejected": [
                        {"role": "system", "content": "s"},
                        user("a"),
                        assistant("b"),
                        user("c"),
                        assistant("e"),
                    ],
                },
                # Identical sides still leave each side its last message; the linter then rejects the pair.
                {"chosen": [user("a"), assistant("b")], "rejected": [user("a"), assistant("b")]},
                # Standard implicit pairs share no message: the prompt is empty, which the linter rejects.
                {"chosen": "The sky is blue.", "rejected": "The sky is green."},
            ],
        ),
        "trl",
    )
    assert canonical(checked) == [
        ("preference", [m(S, "s"), m(U, "a"), m(A, "b"), m(U, "c")], [m(A, "d")], [m(A, "e")], None, None, None),
    ]
    assert [r[:4] for r in rejects(checked)] == [
        ("validate", 1, "identical_pair", "rejected"),
        ("validate", 2, "prompt_not_ending_on_user", "messages"),
    ]
    raw = [json.loads(r["raw"]) for r in checked.rejects.to_pylist()]
    assert [(r["messages"], r["chosen"], r["rejected"]) for r in raw] == [
        ([m(U, "a")], [m(A, "b")], [m(A, "b")]),
        ([], [m(A, "The sky is blue.")], [m(A, "The sky is green.")]),
    ]


def test_tool_calls_reasoning_and_tools(write, check):
    wrapped = {"type": "function", "function": {"name": "weather", "arguments": {"city": "Paris"}}, "id": "c1"}
    bare = {"name": "weather", "arguments": '{"city": "Rome"}'}
    spec = {"name": "weather", "parameters": {"type": "object"}}
    checked = check(
        write(
            "tools.jsonl",
            [
                {
                    "prompt": [user("Weather?")],
                    "chosen": [
                        {"role": "assistant", "content": None, "tool_calls": [wrapped], "reasoning_content": "look"},
                        {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
                        {"role": "assistant", "content": "Sunny.", "thinking": "easy"},
                    ],
                    "rejected": [{"role": "assistant", "content": None, "tool_calls": [bare]}],
                    "tools": [{"type": "function", "function": spec}],
                },
                {"messages": [user("Hi"), assistant("Hello")], "tools": '[{"name": "weather"}]'},
            ],
        ),
        "trl",
    )
    assert checked.rejects.num_rows == 0
    paris = ToolCall("weather", {"city": "Paris"}, "c1")
    rome = ToolCall("weather", {"city": "Rome"})
    assert canonical(checked) == [
        (
            "preference",
            [m(U, "Weather?")],
            [
                m(A, None, tool_calls=(paris,), reasoning="look"),
                m(T, "sunny", tool_call_id="c1"),
                m(A, "Sunny.", reasoning="easy"),
            ],
            [m(A, None, tool_calls=(rome,))],
            None,
            None,
            '[{"name": "weather", "parameters": {"type": "object"}}]',
        ),
        ("sft", [m(U, "Hi"), m(A, "Hello")], None, None, None, None, '[{"name": "weather"}]'),
    ]


def test_rows_that_cannot_convert_are_rejected_with_the_field(write, check):
    checked = check(
        write(
            "bad.jsonl",
            [
                {"prompt": "q", "chosen": "good"},
                {"prompt": 3, "chosen": "good", "rejected": "bad"},
                {"prompt": "q", "completion": "a", "label": "yes"},
                {"completion": "a"},
                {"prompt": "q"},
                {"prompt": [{"role": "bot", "content": "q"}], "completion": "a"},
                {"prompt": [{"role": "user", "content": "q", "extra": 1}], "completion": "a"},
                {"prompt": "q", "chosen": "good", "rejected": "bad", "label": True},
                {"prompt": [{"role": "user", "content": [{"type": "text", "text": "q"}]}], "completion": "a"},
                {
                    "prompt": "q",
                    "completion": [
                        {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{"}}]}
                    ],
                },
                {"prompt": [user("q")], "completion": [{**assistant("a"), "thinking": "x", "reasoning_content": "y"}]},
                {"prompt": "q", "completion": "a", "tools": "nope"},
            ],
        ),
        "trl",
    )
    assert checked.examples.num_rows == 0
    got = [r[:4] for r in rejects(checked)]
    assert got == [
        ("validate", 0, "missing_preference", "rejected"),
        ("read", 1, "schema_violation", "prompt"),
        ("read", 2, "schema_violation", "label"),
        ("convert", 3, "schema_violation", "prompt"),
        ("convert", 4, "schema_violation", "completion"),
        ("convert", 5, "unknown_role", "prompt[0].role"),
        ("read", 6, "schema_violation", "prompt"),
        ("convert", 7, "schema_violation", "label"),
        ("read", 8, "schema_violation", "prompt"),
        ("convert", 9, "invalid_tool_call", "completion[0].tool_calls[0].function.arguments"),
        ("convert", 10, "schema_violation", "completion[0].thinking"),
        ("convert", 11, "invalid_tool_call", "tools"),
    ]
    messages = {r[1]: r[4] for r in rejects(checked)}
    assert messages[0] == "a preference example needs a non-empty `rejected` completion"
    assert messages[3] == "'prompt' is required beside 'completion'"
    assert messages[4].startswith("a prompt-only row has no completion to train on")


def example(kind: Kind, messages=(), chosen=(), rejected=(), label=None, text=None, tools=None, metadata=None) -> dict:
    return Example(
        id="src:0",
        kind=kind,
        provenance=Provenance("src", "f.jsonl", 0, 1),
        messages=tuple(messages),
        chosen=tuple(chosen),
        rejected=tuple(rejected),
        label=label,
        text=text,
        tools=tools,
        metadata=metadata or {},
    ).to_row()


def test_writes_the_conversational_form_of_each_kind():
    call = ToolCall("weather", {"city": "Paris"}, "c1")
    written = TRL.from_examples(
        [
            example(
                Kind.PREFERENCE,
                [Message(U, "Weather?")],
                [Message(A, None, tool_calls=(call,))],
                [Message(A, "No.", reasoning="lazy")],
                tools=[{"name": "weather"}],
            ),
            example(Kind.KTO, [Message(U, "q"), Message(A, "a")], label=True, metadata={"id": 7}),
            example(Kind.SFT, [Message(U, "q"), Message(A, "a")]),
            example(Kind.PRETRAIN, text="plain"),
            example(Kind.PREFERENCE, [], [Message(A, "blue")], [Message(A, "green")]),
            example(Kind.KTO, [Message(U, "q")], label=False),
        ]
    )
    q, a = {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}
    assert written.records == [
        {
            "prompt": [{"role": "user", "content": "Weather?"}],
            "chosen": [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "weather", "arguments": {"city": "Paris"}},
                        }
                    ],
                }
            ],
            "rejected": [{"role": "assistant", "content": "No.", "reasoning_content": "lazy"}],
            "tools": [{"type": "function", "function": {"name": "weather"}}],
        },
        {"prompt": [q], "completion": [a], "label": True, "id": 7},
        {"messages": [q, a]},
        {"text": "plain"},
        {"chosen": [{"role": "assistant", "content": "blue"}], "rejected": [{"role": "assistant", "content": "green"}]},
    ]
    assert written.losses == {"kto rows not ending on an assistant turn (not written)": 1}


def test_written_records_read_back_to_the_same_examples(write, check):
    rows = [
        example(Kind.PREFERENCE, [Message(S, "s"), Message(U, "q")], [Message(A, "good")], [Message(A, "bad")]),
        example(Kind.KTO, [Message(U, "q"), Message(A, "a", weight=0.0)], label=False),
        example(Kind.SFT, [Message(U, "q"), Message(A, "a", name="bot")], tools=[{"name": "f"}]),
        example(Kind.PRETRAIN, text="plain\ntext"),
    ]
    written = TRL.from_examples(rows)
    assert written.losses == {}
    # Each trainer reads its own kind; a file mixing them is trl's only when told (sft rows look like openai's).
    checked = check(write("back.jsonl", written.records), "trl")
    keys = ("kind", "messages", "chosen", "rejected", "label", "text", "tools")
    assert [{k: r[k] for k in keys} for r in checked.examples.to_pylist()] == [{k: r[k] for k in keys} for r in rows]


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"prompt": "q", "completion": "a"}, True),
        ({"prompt": [user("q")], "chosen": [assistant("a")], "rejected": [assistant("b")]}, True),
        ({"chosen": [user("q"), assistant("a")], "rejected": [user("q"), assistant("b")]}, True),
        ({"chosen": "The sky is blue.", "rejected": "The sky is green."}, True),
        ({"messages": [user("q")], "chosen": [assistant("a")], "rejected": [assistant("b")]}, False),  # openai
        ({"conversations": [], "chosen": {"from": "gpt", "value": "a"}, "rejected": {}}, False),  # sharegpt
        ({"instruction": "q", "chosen": "a", "rejected": "b"}, False),  # alpaca
        ({"instruction": "q", "output": "a", "prompt": "rendered"}, False),
        ({"messages": [user("q"), assistant("a")]}, False),  # plain chat stays openai
        ({"text": "t"}, False),
    ],
)
def test_what_trl_claims_on_detection(record, expected):
    assert TRL.matches(record) is expected


def test_detection_picks_trl_for_prompt_files_and_leaves_the_others_alone(write, check):
    assert check(write("p.jsonl", [{"prompt": "q", "completion": "a"}])).format == "trl"
    assert check(write("o.jsonl", [{"messages": [user("q"), assistant("a")], "label": True}])).format == "openai"
