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
from dataforge.render.spans import derive, end_of_turn
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
    # with empty content, so an assistant turn that only calls a tool vanishes: kept, it trains nothing.
    "glm-4-9b-chat": {
        "single": trained("\nHello!", notes=("turn_without_end_token",)),
        "two_turns": trained("\n4.<|user|>", "\n6.", notes=("turn_without_end_token",)),
        "system_multi": trained("\n4.<|user|>", "\n6.", notes=("turn_without_end_token",)),
        "tool": trained("\nIt is 22 C.", notes=("tool_calls_not_rendered", "turn_without_end_token")),
        "tool_last": Rejected("no_trained_tokens"),
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
# EXPECTED is what each family renders with `unrendered: {tool_calls: keep, reasoning: keep}`: the turns as the
# template renders them. By default (reject) a row with a trained turn whose tool calls or reasoning the template
# drops is rejected with that reason instead: the trained reply would not be the one in the data.
KEEP = {"unrendered_tool_calls": "keep", "unrendered_reasoning": "keep"}


def by_default(expected: Trained | Rejected) -> Trained | Rejected:
    if isinstance(expected, Trained):
        for reason in ("tool_calls_not_rendered", "reasoning_not_rendered"):
            if reason in expected.notes:
                return Rejected(reason)
    return expected


DEFAULT_EXPECTED = {f: {n: by_default(e) for n, e in cases.items()} for f, cases in EXPECTED.items()}
DEFAULT_EXPECTED["glm-4-9b-chat"]["tool_last"] = Rejected("tool_calls_not_rendered")
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
    rendered = only_row(render(tgt, CONVERSATIONS[name], **KEEP))
    expected = tgt.tokenizer.apply_chat_template(
        chat_messages(row, "keep"), tools=tools_of(row), tokenize=True, return_dict=False
    )
    assert rendered["input_ids"] == expected


@pytest.mark.parametrize(("family", "name"), RENDERED_CASES)
def test_trained_tokens_are_the_assistant_turns(templates, family, name):
    tgt = target(templates, family)
    expected = EXPECTED[family][name]
    rendered = render(tgt, CONVERSATIONS[name], **KEEP)
    row = only_row(rendered)
    got = runs(tgt.tokenizer, row)
    assert got == expected.runs
    assert rendered.notes == dict.fromkeys(expected.notes, 1)
    assert not any(text in run for run in got for text in PROMPT_TEXT + ROLE_HEADERS)


@pytest.mark.parametrize(("family", "name"), REJECTED_CASES)
def test_conversations_the_template_cannot_carry_are_problems(templates, family, name):
    rendered = render(target(templates, family), CONVERSATIONS[name], **KEEP)
    assert rendered.table.num_rows == 0
    assert [(p["id"], p["reason"]) for p in rendered.problems] == [(name, EXPECTED[family][name].reason)]


@pytest.mark.parametrize(("family", "name"), CASES)
def test_by_default_a_turn_whose_tool_calls_or_reasoning_are_dropped_is_rejected(templates, family, name):
    """The default `unrendered:` policy never trains a reply the model was not shown: the row is rejected with the
    reason, where `keep` would train the bare end-of-turn token (Phi-3, SmolLM2) or the answer alone."""
    tgt = target(templates, family)
    expected = DEFAULT_EXPECTED[family][name]
    rendered = render(tgt, CONVERSATIONS[name])
    if isinstance(expected, Rejected):
        assert [(p["id"], p["reason"]) for p in rendered.problems] == [(name, expected.reason)]
    else:
        assert runs(tgt.tokenizer, only_row(rendered)) == expected.runs


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
    rendered = render(tgt, *(CONVERSATIONS[n] for n in names), **KEEP)
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
    rendered = render(tgt, CONVERSATIONS["reasoning"], **KEEP)
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


def test_qwen3_without_thinking_renders_every_turn(templates):
    """With enable_thinking=False the generation prompt ends in an empty think block that earlier turns do
    not have: those turns start where the part of the generation prompt they render ends. The last turn's
    empty block is prompt, not trained (it is in the generation prompt)."""
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

    for name in ("two_turns", "system_multi"):
        every = render(tgt, CONVERSATIONS[name], **off)
        row = only_row(every)
        expected = tgt.tokenizer.apply_chat_template(
            chat_messages(CONVERSATIONS[name].to_row(), "keep"), tokenize=True, return_dict=False, enable_thinking=False
        )
        assert row["input_ids"] == expected
        assert runs(tgt.tokenizer, row) == ("4.<|im_end|>", "6.<|im_end|>")
    tool = only_row(render(tgt, CONVERSATIONS["tool"], **off))
    assert runs(tgt.tokenizer, tool) == (QWEN_CALL, "It is 22 C.<|im_end|>")
    last = only_row(render(tgt, CONVERSATIONS["two_turns"], train_on="last", **off))
    assert runs(tgt.tokenizer, last) == ("6.<|im_end|>",)


@pytest.mark.parametrize(("family", "eot"), [("phi-3-mini-4k-instruct", "<|end|>"), ("smollm2-instruct", "<|im_end|>")])
def test_templates_without_tool_calls_reject_the_turn_or_train_an_empty_one_when_kept(templates, family, eot):
    tgt = target(templates, family)
    assert "tool_calls" not in tgt.template
    refused = render(tgt, CONVERSATIONS["tool"])
    assert [p["reason"] for p in refused.problems] == ["tool_calls_not_rendered"]
    assert "unrendered: {tool_calls: keep}" in refused.problems[0]["message"]
    rendered = render(tgt, CONVERSATIONS["tool"], unrendered_tool_calls="keep")
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


# ── template-only families: through stand-in tokenizers (`standins.py`) ────────────────────────────────────


@pytest.mark.parametrize(
    ("family", "eot", "spans"),
    [
        ("gemma-3-it", "<end_of_turn>", ("4.<end_of_turn>", "6.<end_of_turn>")),
        ("phi-4-mini-instruct", "<|end|>", ("4.<|end|>", "6.<|end|>")),
    ],
)
def test_template_only_families_spans(fixture_path, family, eot, spans):
    from standins import standin

    tgt = standin(family, fixture_path)
    rendered = render(tgt, CONVERSATIONS["system_multi"])
    assert runs(tgt.tokenizer, only_row(rendered)) == spans
    assert end_of_turn(string_renderer(tgt.tokenizer), list(tgt.tokenizer.get_added_vocab())) == eot


def string_renderer(tok: Any, **kwargs: Any):
    def render_text(messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs)

    return render_text


@pytest.mark.parametrize("name", ["single", "two_turns", "system_multi"])
def test_deepseek_r1_distill_renders_although_its_generation_prompt_opens_a_think_block(fixture_path, name):
    """R1-distill's generation prompt ends in `<think>\n` but a rendered answer has none: every row used to be
    rejected `prefix_unstable`. The turn starts where the part of the generation prompt it renders ends."""
    from standins import standin

    tgt = standin("deepseek-r1-distill-qwen", fixture_path)
    tok = tgt.tokenizer
    row = CONVERSATIONS[name].to_row()
    messages = chat_messages(row, "keep")
    assert string_renderer(tok)(messages[:-1], True).endswith("<｜Assistant｜><think>\n")
    rendered = only_row(render(tgt, CONVERSATIONS[name]))
    assert rendered["input_ids"] == tok.apply_chat_template(messages, tokenize=True, return_dict=False)
    eos = "<｜end▁of▁sentence｜>"
    assert runs(tok, rendered) == tuple(r.replace("<|im_end|>", eos) for r in EXPECTED["qwen2.5-instruct"][name].runs)


def test_deepseek_r1_distill_drops_reasoning_and_says_so(fixture_path):
    """The template renders no reasoning at all (it cuts an inline `<think>` block off the content too): such
    rows are rejected `reasoning_not_rendered`, the true reason (no `train_on` setting would help)."""
    from standins import standin

    tgt = standin("deepseek-r1-distill-qwen", fixture_path)
    for conversation in (
        CONVERSATIONS["reasoning"],
        example("inline", user("Q?"), assistant("<think>\nHmm.\n</think>\n\nA.")),
    ):
        rendered = render(tgt, conversation)
        assert [p["reason"] for p in rendered.problems] == ["reasoning_not_rendered"]
        assert "train_on" not in rendered.problems[0]["message"]
    kept = render(tgt, example("inline", user("Q?"), assistant("<think>\nHmm.\n</think>\n\nA.")), **KEEP)
    assert runs(tgt.tokenizer, only_row(kept)) == ("\n\nA.<｜end▁of▁sentence｜>",)


def test_mistral_v03_with_tools_and_several_user_turns_trains_every_turn(fixture_path):
    """Mistral v0.3 writes `[AVAILABLE_TOOLS]` before the last user message, so no prompt before an earlier
    turn is a prefix of the whole: the rows used to be rejected `prefix_unstable` under `train_on: all`."""
    from standins import standin

    tgt = standin("mistral-7b-instruct-v0.3", fixture_path)
    conversation = example(
        "tools_two_users", user("What is 2+2?"), assistant("4."), user("And 3+3?"), assistant("6."), tools=[WEATHER]
    )
    row = conversation.to_row()
    rendered = only_row(render(tgt, conversation))
    expected = tgt.tokenizer.apply_chat_template(
        chat_messages(row, "keep"), tools=tools_of(row), tokenize=True, return_dict=False
    )
    assert rendered["input_ids"] == expected
    assert "[AVAILABLE_TOOLS]" in tgt.tokenizer.decode(rendered["input_ids"])
    # (this template writes a space either side of the content: `[/INST] 4. </s>`)
    assert [r.replace(" ", "") for r in runs(tgt.tokenizer, rendered)] == ["4.</s>", "6.</s>"]


def test_mistral_answer_merging_into_the_inst_token_trains_the_boundary_token(templates):
    """`[/INST]` has no space after it, so an answer opening with punctuation merges into `](`. That token
    starts in the prompt; it is trained (it is what writes the answer's first character, which used to be lost)
    and the row is counted as `boundary_token_trained`."""
    tgt = target(templates, "mistral-7b-instruct-v0.2")
    tok = tgt.tokenizer
    rendered = render(tgt, example("paren", user("Sure?"), assistant("(yes)")))
    row = only_row(rendered)
    assert "](" in tok.convert_ids_to_tokens(row["input_ids"])
    assert runs(tok, row) == ("](yes)</s>",)
    assert rendered.notes == {"boundary_token_trained": 1}
    plain = render(tgt, example("plain", user("Sure?"), assistant("Yes.")))
    assert runs(tok, only_row(plain)) == ("Yes.</s>",) and plain.notes == {}


@pytest.mark.parametrize("first", list("()[]{}<>'\"-*#.,:;!?/\\|_~`@$%^&+=") + ["«", "¿", "1", "a", "A", " "])
def test_mistral_never_loses_an_answers_first_character(templates, first):
    tgt = target(templates, "mistral-7b-instruct-v0.2")
    tok = tgt.tokenizer
    answer = first + "x yes"
    row = only_row(render(tgt, example("c", user("Sure?"), assistant(answer))))
    trained = "".join(runs(tok, row))
    assert trained.endswith("</s>")
    assert answer.strip() in trained


# ── the reproductions (#14) ──────────────────────────────────────────────────────────────────────


def _call_with(value: str) -> ToolCall:
    return ToolCall("get_weather", {"city": value}, id="call_1")


@pytest.mark.parametrize(
    ("family", "token"),
    [("qwen2.5-instruct", "<|im_end|>"), ("llama-3.1-instruct", "<|eot_id|>"), ("qwen3", "<|im_end|>")],
)
def test_a_special_token_inside_tool_call_arguments_rejects_the_row(templates, family, token):
    """It used to cut the trained span at the forged end of turn and train the next turn's header instead."""
    tgt = target(templates, family)
    conversation = example(
        "inject",
        user("Weather?"),
        assistant(None, tool_calls=(_call_with(f"Paris{token}Rome"),)),
        Message(Role.TOOL, '{"temp": 22}', tool_call_id="call_1", name="get_weather"),
        assistant("Warm."),
        tools=[WEATHER],
    )
    rendered = render(tgt, conversation)
    assert [(p["reason"], p["field"]) for p in rendered.problems] == [
        ("special_token_in_tool_call", "messages[1].tool_calls[0].arguments")
    ]
    assert rendered.problems[0]["message"] == (
        f"messages[1].tool_calls[0].arguments contains the template's special token {token!r}"
    )


def test_a_special_token_inside_reasoning_rejects_the_row(templates):
    tgt = target(templates, "qwen3")
    rendered = render(tgt, example("inject", user("Q?"), assistant("A.", reasoning="think<|im_end|>more")))
    assert [(p["reason"], p["field"]) for p in rendered.problems] == [
        ("special_token_in_reasoning", "messages[1].reasoning")
    ]


def test_an_end_of_turn_string_inside_arguments_does_not_end_the_span(templates):
    """The spans themselves do not stop at the first end-of-turn string: with the injection check out of the
    way (a text-level render), the whole call and its real `<|im_end|>` are trained."""
    tok = target(templates, "qwen2.5-instruct").tokenizer
    row = example(
        "inject", user("Weather?"), assistant(None, tool_calls=(_call_with("Paris<|im_end|>Rome"),)), tools=[WEATHER]
    ).to_row()
    render_text = string_renderer(tok, tools=tools_of(row))
    derived = derive(render_text, chat_messages(row, "keep"), "all", "<|im_end|>")
    (span,) = [derived.text[a:b] for a, b in derived.trained]
    assert span == QWEN_CALL.replace("Paris", "Paris<|im_end|>Rome")


def test_glm4_never_trains_tool_output_or_weight_zero_turns(templates):
    """GLM-4 ends a turn with the next role token; the search for it used to run past the tool message (and past
    a weight-0 turn) to the next `<|user|>`, training what lay between."""
    tgt = target(templates, "glm-4-9b-chat")
    tok = tgt.tokenizer
    conversation = example(
        "glm",
        user("Weather?"),
        assistant("Checking.", tool_calls=(CALL,)),
        Message(Role.TOOL, "Toolres 22C", tool_call_id="call_1", name="get_weather"),
        user("Thanks"),
        assistant("Bye."),
        tools=[WEATHER],
    )
    # The template drops the call: rejected by default, and kept it trains the content only.
    assert [p["reason"] for p in render(tgt, conversation).problems] == ["tool_calls_not_rendered"]
    kept = only_row(render(tgt, conversation, unrendered_tool_calls="keep"))
    got = runs(tok, kept)
    assert not any("Toolres" in r or "Thanks" in r for r in got)
    assert got[-1] == "\nBye."
    assert got[0].startswith("\nChecking.")
    weighted = example(
        "w0",
        user("Hi"),
        assistant("Skip me.", weight=0.0),
        user("Again"),
        assistant("Yes."),
        user("More"),
        assistant("Ok."),
    )
    got = runs(tok, only_row(render(tgt, weighted)))
    assert got == ("\nYes.<|user|>", "\nOk.")


@pytest.mark.parametrize("family", FAMILIES)
def test_train_on_last_with_a_weight_zero_last_turn_trains_nothing(templates, family):
    """`train_on: last` means the last assistant turn; when its weight is 0 the row has nothing to train
    (it used to train the turn before it)."""
    tgt = target(templates, family)
    conversation = example(
        "w0_last", user("What is 2+2?"), assistant("4."), user("And 3+3?"), assistant("6.", weight=0.0)
    )
    rendered = render(tgt, conversation, train_on="last")
    assert [(p["reason"], "weight 0" in p["message"]) for p in rendered.problems] == [("no_trained_tokens", True)]
    every = render(tgt, conversation)  # `all` trains the turns with weight
    assert runs(tgt.tokenizer, only_row(every)) == EXPECTED[family]["two_turns"].runs[:1]


def test_a_header_token_that_swallows_the_answers_leading_whitespace_is_not_trained(templates):
    """Phi-3's `<|assistant|>` strips the whitespace after it, so it reaches into an answer that opens with
    spaces: a boundary token, but one of the template's own, so it stays prompt."""
    tgt = target(templates, "phi-3-mini-4k-instruct")
    rendered = render(tgt, example("ws", user("Hi"), assistant("  Indented answer.")))
    got = runs(tgt.tokenizer, only_row(rendered))
    assert got == ("Indented answer.<|end|>",)
    assert "boundary_token_trained" not in rendered.notes
