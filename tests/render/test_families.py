"""Rendering through real model chat templates: the ids are the template's own, and only assistant turns train.

Every family under `templates/` in the test fixtures that ships a full tokenizer renders the same small
conversations; the trained tokens of each, decoded and grouped into runs, are written out below as the
template renders them (content plus the template's end-of-turn token), so a change in span derivation shows
up as a changed string, not a changed count.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dataforge.record import Example, Kind, Message, Provenance, Role, ToolCall
from dataforge.render.engine import IGNORE, Rendered, RenderOptions, chat_messages, render_rows
from dataforge.render.spans import SpanError, derive, end_of_turn
from dataforge.render.target import LoadedTarget, load_target

# ── conversations ──────────────────────────────────────────────────────────────────────────────────────────

WEATHER = {
    "name": "get_weather",
    "description": "Get the weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CALL = ToolCall("get_weather", {"city": "Paris"}, id="call_1")


def example(id: str, *messages: Message, tools: list[dict[str, Any]] | None = None) -> Example:
    return Example(
        id=id, kind=Kind.SFT, provenance=Provenance("fam", "fam.jsonl", 0, 1), messages=messages, tools=tools
    )


def user(content: str) -> Message:
    return Message(Role.USER, content)


def assistant(content: str | None, **kw: Any) -> Message:
    return Message(Role.ASSISTANT, content, **kw)


CONVERSATIONS = {
    "single": example("single", user("Hi there"), assistant("Hello!")),
    "two_turns": example("two_turns", user("What is 2+2?"), assistant("4."), user("And 3+3?"), assistant("6.")),
    "system_multi": example(
        "system_multi",
        Message(Role.SYSTEM, "Be brief."),
        user("What is 2+2?"),
        assistant("4."),
        user("And 3+3?"),
        assistant("6."),
    ),
    "tool": example(
        "tool",
        user("Weather in Paris?"),
        assistant(None, tool_calls=(CALL,)),
        Message(Role.TOOL, '{"temp": 22}', tool_call_id="call_1", name="get_weather"),
        assistant("It is 22 C."),
        tools=[WEATHER],
    ),
    "tool_last": example("tool_last", user("Weather in Paris?"), assistant(None, tool_calls=(CALL,)), tools=[WEATHER]),
    "reasoning": example(
        "reasoning",
        user("What is 2+2?"),
        assistant("4.", reasoning="Add two and two."),
        user("And 3+3?"),
        assistant("6.", reasoning="Add three and three."),
    ),
}
# Text of the non-assistant turns and the role headers: none of it may ever be trained. (GLM-4's <|user|> is
# not here: it is the token that ends an assistant turn there.)
PROMPT_TEXT = ["Hi there", "What is 2+2?", "And 3+3?", "Be brief.", "Weather in Paris?", '"temp"']
ROLE_HEADERS = ["<|im_start|>", "<|start_header_id|>", "<|assistant|>", "<|system|>", "[INST]", "[/INST]"]


# ── what each family does with them ──────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Trained:
    """The row renders; its trained tokens decode to `runs` (one per trained turn) and it carries `notes`."""

    runs: tuple[str, ...]
    notes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Rejected:
    """The row becomes a problem with `reason`."""

    reason: str


def trained(*runs: str, notes: tuple[str, ...] = ()) -> Trained:
    return Trained(runs, frozenset(notes))


QWEN_CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>'
EMPTY_THINK = "<think>\n\n</think>\n\n"

EXPECTED: dict[str, dict[str, Trained | Rejected]] = {
    "qwen2.5-instruct": {
        "single": trained("Hello!<|im_end|>"),
        "two_turns": trained("4.<|im_end|>", "6.<|im_end|>"),
        "system_multi": trained("4.<|im_end|>", "6.<|im_end|>"),
        "tool": trained(QWEN_CALL, "It is 22 C.<|im_end|>"),
        "tool_last": trained(QWEN_CALL),
        "reasoning": trained("4.<|im_end|>", "6.<|im_end|>", notes=("reasoning_not_rendered",)),
    },
    # Qwen3 (enable_thinking default): the last turn always carries a think block, an empty one when the
    # message has no reasoning; earlier turns are rendered without their reasoning.
    "qwen3": {
        "single": trained(EMPTY_THINK + "Hello!<|im_end|>", notes=("empty_think_injected",)),
        "two_turns": trained(
            "4.<|im_end|>",
            EMPTY_THINK + "6.<|im_end|>",
            notes=("empty_think_injected", "prefix_unstable_history"),
        ),
        "system_multi": trained(
            "4.<|im_end|>",
            EMPTY_THINK + "6.<|im_end|>",
            notes=("empty_think_injected", "prefix_unstable_history"),
        ),
        "tool": trained(
            QWEN_CALL,
            EMPTY_THINK + "It is 22 C.<|im_end|>",
            notes=("empty_think_injected", "prefix_unstable_history"),
        ),
        "tool_last": trained(EMPTY_THINK + QWEN_CALL, notes=("empty_think_injected",)),
        "reasoning": trained(
            "4.<|im_end|>",
            "<think>\nAdd three and three.\n</think>\n\n6.<|im_end|>",
            notes=("reasoning_not_rendered", "prefix_unstable_history"),
        ),
    },
    # Llama 3.1 writes a tool call as a bare JSON object with "parameters", and the tool role as `ipython`.
    "llama-3.1-instruct": {
        "single": trained("Hello!<|eot_id|>"),
        "two_turns": trained("4.<|eot_id|>", "6.<|eot_id|>"),
        "system_multi": trained("4.<|eot_id|>", "6.<|eot_id|>"),
        "tool": trained('{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>', "It is 22 C.<|eot_id|>"),
        "tool_last": trained('{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>'),
        "reasoning": trained("4.<|eot_id|>", "6.<|eot_id|>", notes=("reasoning_not_rendered",)),
    },
    # Phi-3 appends <|endoftext|> after the last turn only (history renders differently), drops tool
    # messages and tool calls entirely: a tool-call turn trains an empty turn.
    "phi-3-mini-4k-instruct": {
        "single": trained("Hello!<|end|>"),
        "two_turns": trained("4.<|end|>", "6.<|end|>", notes=("prefix_unstable_history",)),
        "system_multi": trained("4.<|end|>", "6.<|end|>", notes=("prefix_unstable_history",)),
        "tool": trained("<|end|>", "It is 22 C.<|end|>", notes=("tool_calls_not_rendered", "prefix_unstable_history")),
        "tool_last": trained("<|end|>", notes=("tool_calls_not_rendered",)),
        "reasoning": trained("4.<|end|>", "6.<|end|>", notes=("reasoning_not_rendered", "prefix_unstable_history")),
    },
    "smollm2-instruct": {
        "single": trained("Hello!<|im_end|>"),
        "two_turns": trained("4.<|im_end|>", "6.<|im_end|>"),
        "system_multi": trained("4.<|im_end|>", "6.<|im_end|>"),
        "tool": trained("<|im_end|>", "It is 22 C.<|im_end|>", notes=("tool_calls_not_rendered",)),
        "tool_last": trained("<|im_end|>", notes=("tool_calls_not_rendered",)),
        "reasoning": trained("4.<|im_end|>", "6.<|im_end|>", notes=("reasoning_not_rendered",)),
    },
    # GLM-4 closes a turn with the next role's token (<|user|> is one of its stop tokens) and puts nothing
    # after the last turn; the assistant text starts with the newline after <|assistant|>. It skips messages
    # with empty content, so an assistant turn that only calls a tool vanishes and its prompt is not a prefix.
    "glm-4-9b-chat": {
        "single": trained("\nHello!", notes=("turn_without_end_token",)),
        "two_turns": trained("\n4.<|user|>", "\n6.", notes=("turn_without_end_token",)),
        "system_multi": trained("\n4.<|user|>", "\n6.", notes=("turn_without_end_token",)),
        "tool": Rejected("prefix_unstable"),
        "tool_last": Rejected("prefix_unstable"),
        "reasoning": trained("\n4.<|user|>", "\n6.", notes=("reasoning_not_rendered", "turn_without_end_token")),
    },
    # The classic [INST] template: user/assistant only, strictly alternating; </s> ends every assistant turn.
    "mistral-7b-instruct-v0.2": {
        "single": trained("Hello!</s>"),
        "two_turns": trained("4.</s>", "6.</s>"),
        "system_multi": Rejected("template_error"),
        "tool": Rejected("template_error"),
        "tool_last": trained("</s>", notes=("tool_calls_not_rendered",)),
        "reasoning": trained("4.</s>", "6.</s>", notes=("reasoning_not_rendered",)),
    },
}
FAMILIES = list(EXPECTED)
CASES = [(family, name) for family, cases in EXPECTED.items() for name in cases]
RENDERED_CASES = [(f, n) for f, n in CASES if isinstance(EXPECTED[f][n], Trained)]
REJECTED_CASES = [(f, n) for f, n in CASES if isinstance(EXPECTED[f][n], Rejected)]
NEEDS = {"mistral-7b-instruct-v0.2": ("sentencepiece", "google.protobuf")}  # slow → fast conversion

# ── loading ──────────────────────────────────────────────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def templates(fixture_path: Callable[[str], Path]) -> Callable[[str], Path]:
    """`templates(family)`: the family's folder, vendored or shared; skips when neither has it."""
    return lambda family: fixture_path(f"templates/{family}").resolve()


@functools.cache
def _load(folder: Path) -> LoadedTarget:
    return load_target(folder.name, str(folder), folder.parent)


def target(templates: Callable[[str], Path], family: str) -> LoadedTarget:
    """The family's tokenizer and template, loaded once per test session; skips when it cannot be had."""
    folder = templates(family)
    missing = [m for m in NEEDS.get(family, ()) if not installed(m)]
    if missing:
        pytest.skip(f"{family} needs {', '.join(missing)} to load its SentencePiece tokenizer")
    return _load(folder)


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is absent
        return False


def render(tgt: LoadedTarget, *examples: Example, **options: Any) -> Rendered:
    return render_rows([e.to_row() for e in examples], tgt, RenderOptions(**options))


def tools_of(row: dict[str, Any]) -> list[dict[str, Any]] | None:
    return [{"type": "function", "function": spec} for spec in json.loads(row["tools"])] if row["tools"] else None


def runs(tok: Any, row: dict[str, Any]) -> tuple[str, ...]:
    """The trained tokens of a rendered row, decoded, one string per contiguous run."""
    out, current = [], []
    for token, label in zip(row["input_ids"], row["labels"], strict=True):
        if label != IGNORE:
            current.append(token)
        elif current:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return tuple(tok.decode(r) for r in out)


def only_row(rendered: Rendered) -> dict[str, Any]:
    assert rendered.problems == []
    (row,) = rendered.table.to_pylist()
    return row


# ── every family, every conversation ─────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(("family", "name"), RENDERED_CASES)
def test_input_ids_are_the_templates_own(templates, family, name):
    tgt = target(templates, family)
    row = CONVERSATIONS[name].to_row()
    rendered = only_row(render(tgt, CONVERSATIONS[name]))
    expected = tgt.tokenizer.apply_chat_template(
        chat_messages(row, "keep"), tools=tools_of(row), tokenize=True, return_dict=False
    )
    assert rendered["input_ids"] == expected


@pytest.mark.parametrize(("family", "name"), RENDERED_CASES)
def test_trained_tokens_are_the_assistant_turns(templates, family, name):
    tgt = target(templates, family)
    expected = EXPECTED[family][name]
    rendered = render(tgt, CONVERSATIONS[name])
    row = only_row(rendered)
    got = runs(tgt.tokenizer, row)
    assert got == expected.runs
    assert rendered.notes == dict.fromkeys(expected.notes, 1)
    assert not any(text in run for run in got for text in PROMPT_TEXT + ROLE_HEADERS)


@pytest.mark.parametrize(("family", "name"), REJECTED_CASES)
def test_conversations_the_template_cannot_carry_are_problems(templates, family, name):
    rendered = render(target(templates, family), CONVERSATIONS[name])
    assert rendered.table.num_rows == 0
    assert [(p["id"], p["reason"]) for p in rendered.problems] == [(name, EXPECTED[family][name].reason)]


@pytest.mark.parametrize("family", FAMILIES)
def test_tool_support_is_what_the_template_text_says(templates, family):
    """A template that mentions `tool_calls` renders the call; one that does not, does not."""
    tgt = target(templates, family)
    expected = EXPECTED[family]["tool"]
    calls_trained = isinstance(expected, Trained) and "get_weather" in expected.runs[0]
    assert ("tool_calls" in tgt.template) == calls_trained
    assert calls_trained == (family in {"qwen2.5-instruct", "qwen3", "llama-3.1-instruct"})


@pytest.mark.parametrize("family", FAMILIES)
def test_counts_agree_with_the_arrays(templates, family):
    tgt = target(templates, family)
    names = [n for f, n in RENDERED_CASES if f == family]
    rendered = render(tgt, *(CONVERSATIONS[n] for n in names))
    assert rendered.problems == []
    rows = rendered.table.to_pylist()
    assert [r["id"] for r in rows] == names
    for row in rows:
        ids, labels = row["input_ids"], row["labels"]
        assert row["n_tokens"] == len(ids) == len(labels)
        assert row["n_trained"] == sum(1 for x in labels if x != IGNORE) > 0
        assert labels[: row["n_prompt"]] == [IGNORE] * row["n_prompt"] and labels[row["n_prompt"]] != IGNORE
        assert all(x in (IGNORE, t) for x, t in zip(labels, ids, strict=True))
        assert row["truncated"] is False
        assert row["source"] == "fam"


# ── length limits ────────────────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("family", FAMILIES)
def test_overflow_policies(templates, family):
    tgt = target(templates, family)
    conversation = CONVERSATIONS["two_turns"]
    full = only_row(render(tgt, conversation))
    n = full["n_tokens"]
    limit = n - 2  # cuts into the last assistant turn, leaves the first one whole

    dropped = render(tgt, conversation, max_length=limit, overflow="drop")
    assert dropped.table.num_rows == 0
    assert [(p["id"], p["reason"]) for p in dropped.problems] == [("two_turns", "overflow")]
    assert str(n) in dropped.problems[0]["message"]

    refused = render(tgt, conversation, max_length=limit, overflow="error")
    assert refused.table.num_rows == 0
    assert [p["reason"] for p in refused.problems] == ["overflow_error"]

    kept = only_row(render(tgt, conversation, max_length=limit, overflow="keep"))
    assert kept == full

    cut = only_row(render(tgt, conversation, max_length=limit, overflow="truncate"))
    assert cut["truncated"] is True
    assert len(cut["input_ids"]) == len(cut["labels"]) == limit
    assert cut["input_ids"] == full["input_ids"][:limit]
    assert cut["labels"] == full["labels"][:limit]
    assert cut["n_tokens"] == n  # the length before truncation, for the report
    assert cut["n_trained"] == sum(1 for x in full["labels"][:limit] if x != IGNORE) < full["n_trained"]
    assert cut["n_prompt"] == full["n_prompt"]


@pytest.mark.parametrize("family", FAMILIES)
def test_truncation_that_removes_every_trained_token_is_a_problem(templates, family):
    tgt = target(templates, family)
    full = only_row(render(tgt, CONVERSATIONS["single"]))
    cut = render(tgt, CONVERSATIONS["single"], max_length=full["n_prompt"], overflow="truncate")
    assert cut.table.num_rows == 0
    assert [(p["id"], p["reason"]) for p in cut.problems] == [("single", "no_trained_tokens")]


# ── which turns train ────────────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("family", FAMILIES)
def test_train_on_last_trains_only_the_last_assistant_turn(templates, family):
    tgt = target(templates, family)
    conversation = CONVERSATIONS["two_turns"]
    full = only_row(render(tgt, conversation))
    last = only_row(render(tgt, conversation, train_on="last"))
    assert runs(tgt.tokenizer, last) == EXPECTED[family]["two_turns"].runs[-1:]
    assert last["input_ids"] == full["input_ids"]
    assert last["n_prompt"] > full["n_prompt"]
    assert last["n_trained"] < full["n_trained"]


@pytest.mark.parametrize("family", FAMILIES)
def test_pretrain_rows_train_every_token_and_end_with_eos(templates, family):
    tgt = target(templates, family)
    tok = tgt.tokenizer
    text = Example(
        id="plain", kind=Kind.PRETRAIN, provenance=Provenance("fam", "fam.jsonl", 0, 1), text="Plain text, trained."
    )
    row = only_row(render(tgt, text))
    assert row["labels"] == row["input_ids"]
    assert row["input_ids"][-1] == tok.eos_token_id
    # Framed as the tokenizer frames plain text (BOS where its post-processor adds one), then EOS.
    framed = tok("Plain text, trained.", add_special_tokens=True)["input_ids"]
    assert row["input_ids"] == framed + [tok.eos_token_id]
    adds_bos = framed[0] == tok.bos_token_id
    assert adds_bos == (family in {"llama-3.1-instruct", "mistral-7b-instruct-v0.2"})
    assert (row["n_prompt"], row["n_trained"], row["n_tokens"]) == (0, len(row["input_ids"]), len(row["input_ids"]))


# ── template behaviour worth a note ──────────────────────────────────────────────────────────────────────


def test_qwen3_drops_earlier_reasoning_and_trains_the_last_think_block(templates):
    tgt = target(templates, "qwen3")
    rendered = render(tgt, CONVERSATIONS["reasoning"])
    row = only_row(rendered)
    text = tgt.tokenizer.decode(row["input_ids"])
    assert "Add two and two." not in text
    assert rendered.notes["reasoning_not_rendered"] == 1
    assert runs(tgt.tokenizer, row)[-1] == "<think>\nAdd three and three.\n</think>\n\n6.<|im_end|>"


def test_qwen3_tool_call_without_reasoning_gets_an_empty_think_block(templates):
    tgt = target(templates, "qwen3")
    rendered = render(tgt, CONVERSATIONS["tool_last"])
    assert rendered.notes == {"empty_think_injected": 1}
    assert runs(tgt.tokenizer, only_row(rendered)) == (EMPTY_THINK + QWEN_CALL,)


def test_qwen3_without_thinking_renders_single_turns_but_not_earlier_turns(templates):
    """With enable_thinking=False the generation prompt ends in an empty think block that earlier turns do
    not have, so only the last turn can be trained; the empty block is prompt, not trained."""
    tgt = target(templates, "qwen3")
    off = {"chat_template_kwargs": {"enable_thinking": False}}
    single = CONVERSATIONS["single"]
    rendered = render(tgt, single, **off)
    row = only_row(rendered)
    expected = tgt.tokenizer.apply_chat_template(
        chat_messages(single.to_row(), "keep"), tokenize=True, return_dict=False, enable_thinking=False
    )
    assert row["input_ids"] == expected
    assert runs(tgt.tokenizer, row) == ("Hello!<|im_end|>",)
    assert rendered.notes == {}

    every = render(tgt, CONVERSATIONS["two_turns"], **off)
    assert [p["reason"] for p in every.problems] == ["prefix_unstable"]
    last = only_row(render(tgt, CONVERSATIONS["two_turns"], train_on="last", **off))
    assert runs(tgt.tokenizer, last) == ("6.<|im_end|>",)


@pytest.mark.parametrize(("family", "eot"), [("phi-3-mini-4k-instruct", "<|end|>"), ("smollm2-instruct", "<|im_end|>")])
def test_templates_without_tool_calls_train_an_empty_turn_and_say_so(templates, family, eot):
    tgt = target(templates, family)
    assert "tool_calls" not in tgt.template
    rendered = render(tgt, CONVERSATIONS["tool"])
    row = only_row(rendered)
    assert rendered.notes["tool_calls_not_rendered"] == 1
    assert "get_weather" not in tgt.tokenizer.decode(row["input_ids"])
    assert runs(tgt.tokenizer, row)[0] == eot  # the tool-call turn: nothing but its end token


def test_glm4_trains_its_stop_token_between_turns_and_nothing_after_the_last(templates):
    tgt = target(templates, "glm-4-9b-chat")
    tok = tgt.tokenizer
    rendered = render(tgt, CONVERSATIONS["two_turns"])
    row = only_row(rendered)
    assert runs(tok, row) == ("\n4.<|user|>", "\n6.")
    assert rendered.notes == {"turn_without_end_token": 1}
    assert tok.decode(row["input_ids"][-1:]) == "."  # the row ends on content: no stop token to learn
    # <|user|> is right to train: GLM-4 stops generating on it.
    stops = json.loads((templates("glm-4-9b-chat") / "generation_config.json").read_text())["eos_token_id"]
    assert tok.convert_tokens_to_ids("<|user|>") in stops


# ── template-only families: string-level checks ──────────────────────────────────────────────────────────


def string_renderer(tok: Any):
    def render_text(messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    return render_text


@pytest.mark.parametrize(
    ("family", "eot", "spans"),
    [
        ("gemma-3-it", "<end_of_turn>", ["4.<end_of_turn>", "6.<end_of_turn>"]),
        ("phi-4-mini-instruct", "<|end|>", ["4.<|end|>", "6.<|end|>"]),
    ],
)
def test_template_only_families_spans(templates, family, eot, spans):
    tok = target(templates, family).tokenizer
    render_text = string_renderer(tok)
    assert end_of_turn(render_text, list(tok.get_added_vocab())) == eot
    messages = chat_messages(CONVERSATIONS["system_multi"].to_row(), "keep")
    derived = derive(render_text, messages, "all", eot)
    assert [derived.text[a:b] for a, b in derived.trained] == spans


def test_deepseek_r1_distill_generation_prompt_opens_a_think_block_the_history_lacks(templates):
    """R1-distill's generation prompt ends in `<think>\\n` but a rendered answer has none: no span can be
    derived by prefixes, so every conversation is rejected rather than trained on a guessed span."""
    tok = target(templates, "deepseek-r1-distill-qwen").tokenizer
    render_text = string_renderer(tok)
    messages = chat_messages(CONVERSATIONS["single"].to_row(), "keep")
    assert render_text(messages[:1], True).endswith("<｜Assistant｜><think>\n")
    assert end_of_turn(render_text, list(tok.get_added_vocab())) == "<｜end▁of▁sentence｜>"
    with pytest.raises(SpanError) as caught:
        derive(render_text, messages, "all", "<｜end▁of▁sentence｜>")
    assert caught.value.reason == "prefix_unstable"


def test_mistral_answer_merging_into_the_inst_token_loses_its_first_character(templates):
    """`[/INST]` has no space after it, so an answer opening with punctuation merges into `](`; that token
    starts in the prompt and so stays untrained: the answer's first character is never learned."""
    tgt = target(templates, "mistral-7b-instruct-v0.2")
    tok = tgt.tokenizer
    row = only_row(render(tgt, example("paren", user("Sure?"), assistant("(yes)"))))
    assert "](" in tok.convert_ids_to_tokens(row["input_ids"])
    assert runs(tok, row) == ("yes)</s>",)
