"""The bounded JSON parser: exact depth on any JSON (across chunk boundaries), refusals that name the field."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataforge import jsonsafe

TRICKY = st.text(alphabet='[]{}"\\ab\u00e9\n', max_size=8)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | TRICKY,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TRICKY, children, max_size=3),
    max_leaves=30,
)


def reference_depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(reference_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(reference_depth, value), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(VALUES, st.sampled_from([1, 2, 3, 5, 64, 1 << 24]))
def test_depth_is_exact_on_any_json_and_any_chunking(value, chunk):
    text = json.dumps(value, ensure_ascii=False)
    old = jsonsafe._CHUNK
    jsonsafe._CHUNK = chunk
    try:
        assert jsonsafe.depth(text) == reference_depth(value)
        assert jsonsafe.depth(text.encode()) == reference_depth(value)
    finally:
        jsonsafe._CHUNK = old
    assert jsonsafe.value_depth(value) == reference_depth(value)


def test_deep_text_is_refused_before_parsing_with_its_depth():
    with pytest.raises(jsonsafe.TooDeep) as err:
        jsonsafe.loads("[" * 50_000 + "]" * 50_000, field="tools")
    assert err.value.reason == "too_deep"
    assert err.value.depth == 50_000
    assert "50000 levels deep in tools" in str(err.value)


def test_the_limit_itself_parses_and_one_more_level_does_not():
    ok = "[" * jsonsafe.MAX_DEPTH + "]" * jsonsafe.MAX_DEPTH
    assert jsonsafe.value_depth(jsonsafe.loads(ok)) == jsonsafe.MAX_DEPTH
    with pytest.raises(jsonsafe.TooDeep):
        jsonsafe.loads("[" + ok + "]")


def test_brackets_inside_strings_do_not_count():
    text = json.dumps({"a": "[" * 10_000, "b": '\\"' + "{" * 10_000})
    assert jsonsafe.depth(text) == 1
    assert jsonsafe.loads(text)["a"] == "[" * 10_000


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999", "-1E+400"])
def test_non_finite_literals_are_refused_naming_the_field(literal):
    with pytest.raises(jsonsafe.NonFinite) as err:
        jsonsafe.loads('{"messages": [{"weight": 1}, {"weight": ' + literal + "}]}", field="row")
    assert err.value.reason == "non_finite_number"
    assert err.value.field == "row.messages.1.weight"
    assert f"`{literal}` at row.messages.1.weight" in str(err.value)


def test_dumps_never_writes_nan():
    with pytest.raises(ValueError):
        jsonsafe.dumps({"weight": float("nan")})
    assert jsonsafe.dumps({"weight": 1.5}) == '{"weight": 1.5}'
