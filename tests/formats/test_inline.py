"""Inline markup: <think> heads, MiniMind answers, and Hermes/Qwen tool tags, parsed and written back exactly."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataforge.formats import inline
from dataforge.formats.inline import InlineProblem

# --- <think> ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain answer", (None, "plain answer")),
        ("<think>\nweigh it\n</think>\n\nthe answer", ("weigh it", "the answer")),
        ("<think>weigh it</think>the answer", ("weigh it", "the answer")),
        ("<think>\nweigh it\n</think>\nthe answer", ("weigh it", "the answer")),  # ms-swift / MiniMind spacing
        ("  \n<think>r</think>\n\n\nx", ("r", "\nx")),  # whitespace before the head; a third newline is content
        ("<think></think>answer", ("", "answer")),
        ("<think>\n\n</think>\n\nanswer", ("", "answer")),  # Qwen3 with thinking disabled
        ("<think>\nr\n</think>\n\n", ("r", "")),
        ("Sure. <think>aside</think> done", (None, "Sure. <think>aside</think> done")),  # not at the head
        ("<think>a</think>b<think>c</think>d", ("a", "b<think>c</think>d")),  # a later block stays content
    ],
)
def test_split_think(text, expected):
    assert inline.split_think(text) == expected


@pytest.mark.parametrize(
    ("text", "reason", "message"),
    [
        ("<think>never closed", "unbalanced_think", "a <think> is never closed"),
        ("reasoning</think>answer", "unbalanced_think", "a </think> closes no <think>"),
        ("<think>a<think>b</think>c</think>", "nested_think", "a <think> is opened inside another <think>"),
        ("x</think><think>y", "unbalanced_think", "a </think> closes no <think>"),
    ],
)
def test_bad_think_tags_are_problems(text, reason, message):
    assert inline.think_problem(text) == (reason, message)
    with pytest.raises(InlineProblem) as err:
        inline.split_think(text)
    assert (err.value.reason, err.value.message) == (reason, message)


def test_think_problem_in_a_reasoning_field():
    assert inline.think_problem("step <think> two", inside_reasoning=True) == (
        "nested_think",
        "the reasoning field itself contains a <think> tag",
    )
    assert inline.think_problem("no tags", inside_reasoning=True) is None
    assert inline.think_problem(None) is None


def test_join_think_spells_qwen3s_head():
    assert inline.join_think("weigh it", "the answer") == "<think>\nweigh it\n</think>\n\nthe answer"
    assert inline.join_think(None, "the answer") == "the answer"
    assert inline.join_think("", None) == "<think>\n\n</think>\n\n"
    assert inline.reads_as_think(" <think>x</think>") and not inline.reads_as_think("x <think>")


# Reasoning and content without think tags (which they cannot hold), any other text, newlines included.
free_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]) | st.sampled_from(["\n", " "]), max_size=20)
plain = free_text.filter(lambda s: "think>" not in s and "answer>" not in s)


@settings(max_examples=200, deadline=None)
@given(plain, plain)
def test_think_head_round_trips(reasoning, content):
    assert inline.split_think(inline.join_think(reasoning, content)) == (reasoning, content)


# --- MiniMind -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>\nadd them\n</think>\n<answer>\n4\n</answer>", ("add them", "4")),
        ("<think>add them</think><answer>4</answer>", ("add them", "4")),
        ("<think>\nadd them\n</think>\n<answer>\n4\n</answer>\n", ("add them", "4")),  # trailing newline
        ("<think>\nr\n</think>\nno answer tags", ("r", "no answer tags")),
        ("<answer>4</answer>", (None, "<answer>4</answer>")),  # no think head: kept as written
        ("just text", (None, "just text")),
    ],
)
def test_split_answer(text, expected):
    assert inline.split_answer(text) == expected


@settings(max_examples=200, deadline=None)
@given(plain, plain)
def test_minimind_answer_round_trips(reasoning, content):
    written = inline.join_answer(reasoning, content)
    assert written == f"<think>\n{reasoning}\n</think>\n<answer>\n{content}\n</answer>"
    assert inline.split_answer(written) == (reasoning, content)


def test_minimind_without_reasoning_is_plain():
    assert inline.join_answer(None, "4") == "4"
    with pytest.raises(InlineProblem):
        inline.split_answer("<think>unclosed<answer>4</answer>")


# --- <tools> ------------------------------------------------------------------------------------------

WEATHER = {"name": "get_weather", "description": "Weather now", "parameters": {"type": "object", "properties": {}}}
TIME = {"name": "get_time", "parameters": {"type": "object"}}


def test_tools_block_as_qwen_writes_it():
    text = inline.join_tools("You are helpful.", [WEATHER, TIME])
    assert text == (
        "You are helpful.\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        + json.dumps({"type": "function", "function": WEATHER})
        + "\n"
        + json.dumps({"type": "function", "function": TIME})
        + "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
        '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
        "</tool_call>"
    )
    wrapped = [{"type": "function", "function": WEATHER}, {"type": "function", "function": TIME}]
    assert inline.split_tools(text) == (wrapped, "You are helpful.")
    assert inline.split_tools(inline.join_tools(None, [TIME])) == ([{"type": "function", "function": TIME}], None)
    assert inline.split_tools(inline.join_tools("", [TIME]))[1] == ""
    assert inline.split_tools(inline.join_tools("a\n", [TIME]))[1] == "a\n"


def test_tools_block_from_the_qwen_template_itself(fixture_path):
    """The exact text Qwen2.5's chat template renders for a system prompt with tools reads back."""
    from jinja2 import Template

    path = fixture_path("templates/qwen2.5-instruct/tokenizer_config.json")
    config = json.loads(path.read_text(encoding="utf-8"))
    tools = [{"type": "function", "function": WEATHER}]
    rendered = Template(config["chat_template"]).render(
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}], tools=tools
    )
    system = rendered.removeprefix("<|im_start|>system\n").split("<|im_end|>")[0]
    assert inline.split_tools(system) == (tools, "Be brief.")


def test_tools_block_in_hermes_prompt_as_an_array():
    text = (
        "You are a function calling AI model. You are provided with function signatures within <tools> </tools> "
        f"XML tags. Here are the available tools: <tools> [{json.dumps(WEATHER)}] </tools> Use them."
    )
    specs, rest = inline.split_tools(text)
    assert specs == [WEATHER]
    assert rest == (
        "You are a function calling AI model. You are provided with function signatures within <tools> </tools> "
        "XML tags. Here are the available tools:  Use them."
    )
    # Python-literal specs, as some Hermes data writes them
    assert inline.split_tools("<tools>[{'name': 'f', 'ok': True}]</tools>") == ([{"name": "f", "ok": True}], None)
    assert inline.split_tools("no tools here") == (None, "no tools here")


def test_bad_tools_block_is_a_problem():
    with pytest.raises(InlineProblem) as err:
        inline.split_tools("<tools>\n{not json\n</tools>")
    assert err.value.reason == "invalid_tool_call"
    assert err.value.message.startswith("a line of the <tools> block does not hold valid JSON")


# --- <tool_call> --------------------------------------------------------------------------------------


def test_tool_calls_with_text_before():
    text = 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    assert inline.split_tool_calls(text) == ([{"name": "get_weather", "arguments": {"city": "Paris"}}], "Let me check.")
    assert inline.join_tool_calls("Let me check.", [{"name": "get_weather", "arguments": {"city": "Paris"}}]) == text


def test_parallel_tool_calls_and_text_after():
    text = (
        '<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>\n\n'
        '<tool_call>{"name": "b", "arguments": "{\\"x\\": 1}"}</tool_call>\nWaiting for results.'
    )
    calls, rest = inline.split_tool_calls(text)
    assert calls == [{"name": "a", "arguments": {}}, {"name": "b", "arguments": {"x": 1}}]
    assert rest == "Waiting for results."
    assert inline.split_tool_calls('intro <tool_call>{"name": "a"}</tool_call> outro') == (
        [{"name": "a", "arguments": {}}],
        "intro \noutro",
    )
    assert inline.split_tool_calls("no calls") == ([], "no calls")


def test_python_literal_calls_as_hermes_data_writes_them():
    text = "<tool_call>\n{'arguments': {'symbol': 'TSLA'}, 'name': 'get_stock_price'}\n</tool_call>"
    assert inline.split_tool_calls(text) == ([{"name": "get_stock_price", "arguments": {"symbol": "TSLA"}}], None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('<tool_call>{"name": "f", "arguments": {bad}</tool_call>', "<tool_call> does not hold valid JSON"),
        ('<tool_call>{"arguments": {}}</tool_call>', '<tool_call> must hold {"name": ..., "arguments": {...}}'),
        ('<tool_call>{"name": "f", "arguments": [1]}</tool_call>', "arguments of 'f' must be a JSON object"),
        ('<tool_call>{"name": "f", "arguments": "{no"}</tool_call>', "arguments of 'f' are a string that is not JSON"),
        ('<tool_call>{"name": "f"}', "<tool_call> and </tool_call> tags do not pair up"),
    ],
)
def test_bad_tool_calls_are_problems(text, message):
    with pytest.raises(InlineProblem) as err:
        inline.split_tool_calls(text)
    assert err.value.reason == "invalid_tool_call"
    assert err.value.message.startswith(message)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=5,
)
calls = st.lists(
    st.fixed_dictionaries(
        {"name": st.text(min_size=1, max_size=8), "arguments": st.dictionaries(st.text(max_size=5), json_values)}
    ),
    min_size=1,
    max_size=3,
)


@settings(max_examples=200, deadline=None)
@given(plain.filter(lambda s: "tool_call>" not in s) | st.none(), calls)
def test_tool_calls_round_trip(content, generated):
    text = inline.join_tool_calls(content, generated)
    assert inline.split_tool_calls(text) == (generated, content or None)


# --- <tool_response> ----------------------------------------------------------------------------------


def test_tool_responses():
    one = inline.wrap_tool_response('{"temp": 21}')
    assert one == '<tool_response>\n{"temp": 21}\n</tool_response>'
    assert inline.split_tool_responses(one) == ['{"temp": 21}']
    assert inline.split_tool_responses(one + "\n" + inline.wrap_tool_response("second")) == ['{"temp": 21}', "second"]
    assert inline.split_tool_responses("Result: " + one) is None  # text around: a user speaking
    assert inline.split_tool_responses(one + " thanks") is None
    assert inline.split_tool_responses("plain") is None
    assert inline.split_tool_responses(None) is None


def test_tags_inside_json_values_are_escaped_so_blocks_stay_whole():
    arguments = {"<think>": "</tool_call> and x<y"}
    text = inline.join_tool_calls(None, [{"name": "f", "arguments": arguments}])
    assert (
        text == '<tool_call>\n{"name": "f", "arguments": {"\\u003cthink>": "\\u003c/tool_call> and x<y"}}\n</tool_call>'
    )
    assert inline.split_tool_calls(text) == ([{"name": "f", "arguments": arguments}], None)
    spec = {"name": "f", "description": "emits </tools>"}
    assert inline.split_tools(inline.join_tools(None, [spec])) == ([{"type": "function", "function": spec}], None)
