"""The canonical record: Example ↔ EXAMPLE_SCHEMA rows ↔ Arrow tables, and the published JSON Schema."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from dataforge.record import (
    EXAMPLE_SCHEMA,
    KINDS,
    MESSAGE_TYPE,
    ROLES,
    TOOL_CALL_TYPE,
    Example,
    Kind,
    Message,
    Provenance,
    Role,
    ToolCall,
    empty_examples,
    examples_to_table,
    table_to_examples,
)
from dataforge.schemas import EXAMPLE_JSON_SCHEMA

VALIDATOR = Draft202012Validator(EXAMPLE_JSON_SCHEMA)


def full_example() -> Example:
    call = ToolCall(name="search", arguments={"z": 1, "a": ["数据", None], "nested": {"k": True}}, id="call_1")
    return Example(
        id="src:3",
        kind=Kind.SFT,
        provenance=Provenance("src", "data/x.jsonl", 3, 5),
        messages=(
            Message(Role.SYSTEM, "sys"),
            Message(Role.USER, "find it", name="ann"),
            Message(Role.ASSISTANT, None, reasoning="think", tool_calls=(call,)),
            Message(Role.TOOL, "found", tool_call_id="call_1"),
            Message(Role.ASSISTANT, "here 🙂"),
        ),
        tools=[{"name": "search", "parameters": {"type": "object"}}],
        metadata={"lang": "en", "score": 0.5},
    )


def test_closed_sets_of_roles_and_kinds():
    assert ROLES == {"system", "user", "assistant", "tool"}
    assert KINDS == {"sft", "preference", "kto", "pretrain"}
    with pytest.raises(ValueError):
        Role("bot")
    with pytest.raises(ValueError):
        Kind("chat")


def test_to_row_spells_the_record_as_the_arrow_schema_does():
    row = full_example().to_row()
    assert list(row) == EXAMPLE_SCHEMA.names
    assert row["messages"][2] == {
        "role": "assistant",
        "content": None,
        "reasoning": "think",
        "tool_calls": [
            {
                "id": "call_1",
                "name": "search",
                "arguments": '{"z": 1, "a": ["数据", null], "nested": {"k": true}}',
            }
        ],
        "tool_call_id": None,
        "name": None,
        "weight": None,
    }
    assert row["messages"][0]["tool_calls"] is None  # no calls is null, not an empty list
    assert row["tools"] == '[{"name": "search", "parameters": {"type": "object"}}]'
    assert row["metadata"] == '{"lang": "en", "score": 0.5}'
    assert (row["source"], row["file"], row["row"], row["line"]) == ("src", "data/x.jsonl", 3, 5)
    assert (row["chosen"], row["rejected"], row["label"], row["text"]) == (None, None, None, None)


def test_rows_satisfy_the_published_json_schema():
    assert list(VALIDATOR.iter_errors(full_example().to_row())) == []
    bad = {**full_example().to_row(), "kind": "chat"}
    assert [e.message for e in VALIDATOR.iter_errors(bad)] == [
        "'chat' is not one of ['sft', 'preference', 'kto', 'pretrain']"
    ]


def test_json_schema_and_arrow_schema_name_the_same_fields():
    assert list(EXAMPLE_JSON_SCHEMA["properties"]) == [*EXAMPLE_SCHEMA.names, "quality"]
    message_fields = list(EXAMPLE_JSON_SCHEMA["$defs"]["message"]["properties"])
    assert message_fields == [f.name for f in MESSAGE_TYPE]
    assert list(EXAMPLE_JSON_SCHEMA["$defs"]["tool_call"]["properties"]) == [f.name for f in TOOL_CALL_TYPE]
    required = set(EXAMPLE_JSON_SCHEMA["required"])
    assert required == {f.name for f in EXAMPLE_SCHEMA if not f.nullable}
    assert EXAMPLE_SCHEMA.metadata == {b"dataforge.record": b"example/1"}


def test_row_and_table_round_trips_are_exact():
    ex = full_example()
    assert Example.from_row(ex.to_row()) == ex
    table = examples_to_table([ex, ex])
    assert table.schema == EXAMPLE_SCHEMA
    assert table_to_examples(table) == [ex, ex]
    # Argument key order is the author's content, and survives.
    assert list(table_to_examples(table)[0].messages[2].tool_calls[0].arguments) == ["z", "a", "nested"]


def test_preference_kto_and_pretrain_examples_round_trip():
    prov = Provenance("p", "p.parquet", 0)
    prompt = (Message(Role.USER, "q"),)
    examples = [
        Example(
            "p:0",
            Kind.PREFERENCE,
            prov,
            messages=prompt,
            chosen=(Message(Role.ASSISTANT, "good"),),
            rejected=(Message(Role.ASSISTANT, "bad"),),
        ),
        Example("p:1", Kind.KTO, prov, messages=prompt + (Message(Role.ASSISTANT, "a"),), label=False),
        Example("p:2", Kind.PRETRAIN, prov, text="plain text\n"),
    ]
    assert table_to_examples(examples_to_table(examples)) == examples
    assert [VALIDATOR.is_valid(e.to_row()) for e in examples] == [True, True, True]


def test_empty_collections_read_back_empty():
    ex = Example("e:0", Kind.SFT, Provenance("e", "e.jsonl", 0, 1))
    row = ex.to_row()
    assert (row["messages"], row["tools"], row["chosen"], row["metadata"]) == ([], None, None, None)
    assert Example.from_row(row) == ex
    assert Example.from_row({**row, "tools": "[]"}).tools == []  # an empty declaration is not "no tools"


def test_provenance_says_where_for_people():
    assert Provenance("s", "data/a.jsonl", 4, 7).where() == "data/a.jsonl:7"
    assert Provenance("s", "data/a.parquet", 4).where() == "data/a.parquet#4"


def test_empty_examples_has_the_schema():
    table = empty_examples()
    assert (table.num_rows, table.schema) == (0, EXAMPLE_SCHEMA)
    assert pa.concat_tables([table, examples_to_table([full_example()])]).num_rows == 1


# --- property: any example survives Example → row → Arrow → row → Example -----------------------------------

texts = st.text(max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
tool_calls = st.builds(
    ToolCall,
    name=texts.filter(bool),
    arguments=st.dictionaries(texts, json_values, max_size=3),
    id=st.none() | texts,
)
messages = st.builds(
    Message,
    role=st.sampled_from(list(Role)),
    content=st.none() | texts,
    reasoning=st.none() | texts,
    tool_calls=st.lists(tool_calls, max_size=2).map(tuple),
    tool_call_id=st.none() | texts,
    name=st.none() | texts,
)
examples = st.builds(
    Example,
    id=texts,
    kind=st.sampled_from(list(Kind)),
    provenance=st.builds(Provenance, texts, texts, st.integers(0, 2**40), st.none() | st.integers(1, 2**40)),
    messages=st.lists(messages, max_size=4).map(tuple),
    tools=st.none() | st.lists(st.dictionaries(texts, json_values, max_size=2), max_size=2),
    chosen=st.lists(messages, max_size=2).map(tuple),
    rejected=st.lists(messages, max_size=2).map(tuple),
    label=st.none() | st.booleans(),
    text=st.none() | texts,
    metadata=st.dictionaries(texts, json_values, max_size=3),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(examples, max_size=3))
def test_any_example_round_trips_through_arrow(batch):
    table = examples_to_table(batch)
    assert table.schema == EXAMPLE_SCHEMA
    assert table_to_examples(table) == batch
    assert [json.loads(json.dumps(r)) for r in table.to_pylist()] == [e.to_row() for e in batch]
