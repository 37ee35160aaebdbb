"""Span derivation on tiny hand-written templates: which characters train, and which rows cannot be trained."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dataforge.render.labels import token_labels, token_straddles
from dataforge.render.spans import (
    KEEP_ALL,
    Render,
    SpanError,
    assistant_turns,
    derive,
    end_of_turn,
    history_stable,
    prompt_tail,
)
from dataforge.render.target import load_target

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# GLM-4-like: a turn ends where the next role token starts; nothing after the last turn.
NO_END = (
    "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
# Qwen3-like: an assistant turn always opens a think block, empty when the message has no reasoning.
THINK = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{% if m.role == 'assistant' %}<think>\n{{ m.reasoning_content or '' }}\n</think>\n\n{% endif %}"
    "{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Phi-3-like: an end-of-text token after the last turn only, so history renders unlike the latest turn.
EOS_AT_END = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% else %}<|endoftext|>{% endif %}"
)
# The turn count up front: every prefix renders a different first line.
COUNTED = "{{ messages | length }}\n" + CHATML
SHOUTING = CHATML.replace("{{ m.content }}", "{{ m.content | upper }}")
USER_ONLY = "{% for m in messages %}{% if m.role == 'user' %}{{ m.content }}\n{% endif %}{% endfor %}"


@pytest.fixture(scope="module")
def tok(fixture_path: Callable[[str], Path]) -> Any:
    """A real tokenizer (Qwen2.5) to render the tiny templates with and to take offsets from."""
    folder = fixture_path("templates/qwen2.5-instruct").resolve()
    return load_target("qwen2.5", str(folder), folder.parent).tokenizer


def renderer(tok: Any, template: str) -> Render:
    def render(messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
        return tok.apply_chat_template(
            messages, chat_template=template, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    return render


def conversation(*turns: tuple[str, str], **extra: dict[str, Any]) -> list[dict[str, Any]]:
    """Messages from (role, content) pairs; `extra={index: fields}` adds fields to one message."""
    messages = [{"role": role, "content": content} for role, content in turns]
    for index, fields in extra.get("extra", {}).items():
        messages[index].update(fields)
    return messages


TWO_TURNS = conversation(("user", "Hi"), ("assistant", "Hello!"), ("user", "Again?"), ("assistant", "Yes."))


def trained_text(spans) -> list[str]:
    return [spans.text[a:b] for a, b in spans.trained]


# ── token_labels ─────────────────────────────────────────────────────────────────────────────────────────


def test_a_token_is_trained_when_it_overlaps_a_span():
    offsets = [(0, 2), (2, 5), (5, 8), (8, 12), (12, 14)]
    # token 1 starts before the span and runs into it: a boundary token, trained (it is the token that writes
    # the span's first characters); token 3 starts inside and runs past: trained.
    assert token_labels(offsets, [(3, 9)]) == [False, True, True, True, False]
    assert token_straddles(offsets, [(3, 9)]) == [False, True, False, False, False]
    assert token_straddles(offsets, [(2, 9)]) == [False] * 5


def test_several_spans_and_tokens_between_them():
    offsets = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6)]
    assert token_labels(offsets, [(1, 2), (4, 6)]) == [False, True, False, False, True, True]


def test_empty_tokens_and_no_spans_are_never_trained():
    assert token_labels([(0, 3), (3, 3), (3, 5)], [(0, 5)]) == [True, False, True]
    assert token_labels([(0, 3), (3, 5)], []) == [False, False]
    assert token_labels([], [(0, 5)]) == []


def test_token_labels_on_real_offsets(tok):
    spans = derive(renderer(tok, CHATML), TWO_TURNS, "all", "<|im_end|>")
    encoded = tok(spans.text, add_special_tokens=False, return_offsets_mapping=True)
    mask = token_labels(encoded["offset_mapping"], spans.trained)
    ids = [t for t, m in zip(encoded["input_ids"], mask, strict=True) if m]
    assert tok.decode(ids) == "Hello!<|im_end|>Yes.<|im_end|>"
    assert tok.convert_ids_to_tokens(ids).count("<|im_end|>") == 2


# ── assistant_turns ──────────────────────────────────────────────────────────────────────────────────────


def test_assistant_turns_all_or_last():
    roles = ["system", "user", "assistant", "user", "assistant", "tool", "assistant"]
    messages = [{"role": r} for r in roles]
    assert assistant_turns(messages, "all") == [2, 4, 6]
    assert assistant_turns(messages, "last") == [6]
    assert assistant_turns([{"role": "user"}], "all") == []
    assert assistant_turns([{"role": "user"}], "last") == []


# ── end_of_turn ──────────────────────────────────────────────────────────────────────────────────────────


def test_end_of_turn_is_the_special_token_right_after_the_answer(tok):
    assert end_of_turn(renderer(tok, CHATML), ["<|im_start|>", "<|im_end|>"]) == "<|im_end|>"
    assert end_of_turn(renderer(tok, EOS_AT_END), ["<|endoftext|>", "<|im_end|>"]) == "<|im_end|>"


def test_end_of_turn_prefers_the_longest_match(tok):
    assert end_of_turn(renderer(tok, CHATML), ["<|im", "<|im_end|>", "<|im_end|>x"]) == "<|im_end|>"


def test_end_of_turn_is_none_without_a_special_token_or_without_the_answer(tok):
    assert end_of_turn(renderer(tok, CHATML), ["<|endoftext|>"]) is None
    assert end_of_turn(renderer(tok, NO_END), ["<|im_end|>"]) is None
    assert end_of_turn(renderer(tok, USER_ONLY), ["<|im_end|>"]) is None


# ── derive ───────────────────────────────────────────────────────────────────────────────────────────────


def test_derive_trains_content_and_end_of_turn(tok):
    spans = derive(renderer(tok, CHATML), TWO_TURNS, "all", "<|im_end|>")
    assert spans.text == (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
        "<|im_start|>user\nAgain?<|im_end|>\n<|im_start|>assistant\nYes.<|im_end|>\n"
    )
    assert spans.trained == [(52, 68), (125, 139)]
    assert trained_text(spans) == ["Hello!<|im_end|>", "Yes.<|im_end|>"]
    assert spans.notes == set()


def test_derive_last_turn_only(tok):
    spans = derive(renderer(tok, CHATML), TWO_TURNS, "last", "<|im_end|>")
    assert trained_text(spans) == ["Yes.<|im_end|>"]


def test_derive_without_end_token_ends_where_the_turn_ends(tok):
    """Not where the next assistant turn starts: the user turn in between is prompt."""
    spans = derive(renderer(tok, NO_END), TWO_TURNS, "all", None)
    assert trained_text(spans) == ["\nHello!", "\nYes."]
    assert spans.notes == {"turn_without_end_token"}


def test_derive_without_end_token_does_not_train_turns_after_the_last_assistant(tok):
    messages = TWO_TURNS[:3]  # user, assistant, user
    spans = derive(renderer(tok, NO_END), messages, "all", None)
    assert spans.text.endswith("Hello!<|user|>\nAgain?")
    assert trained_text(spans) == ["\nHello!"]


def test_derive_notes_an_injected_empty_think_block(tok):
    spans = derive(renderer(tok, THINK), TWO_TURNS[:2], "all", "<|im_end|>")
    assert trained_text(spans) == ["<think>\n\n</think>\n\nHello!<|im_end|>"]
    assert spans.notes == {"empty_think_injected"}
    reasoned = conversation(("user", "Hi"), ("assistant", "Hello!"), extra={1: {"reasoning_content": "Greet."}})
    spans = derive(renderer(tok, THINK), reasoned, "all", "<|im_end|>")
    assert trained_text(spans) == ["<think>\nGreet.\n</think>\n\nHello!<|im_end|>"]
    assert spans.notes == set()


def test_derive_notes_reasoning_and_tool_calls_the_template_drops(tok):
    call = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    messages = conversation(
        ("user", "Hi"),
        ("assistant", ""),
        ("user", "And?"),
        ("assistant", "Done."),
        extra={1: {"tool_calls": [call]}, 3: {"reasoning_content": "Think first."}},
    )
    spans = derive(renderer(tok, CHATML), messages, "all", "<|im_end|>", unrendered=KEEP_ALL)
    assert trained_text(spans) == ["<|im_end|>", "Done.<|im_end|>"]
    assert spans.notes == {"tool_calls_not_rendered", "reasoning_not_rendered"}
    # By default such a turn is rejected: the trained reply would not be the one in the data.
    with pytest.raises(SpanError) as caught:
        derive(renderer(tok, CHATML), messages, "all", "<|im_end|>")
    assert caught.value.reason == "tool_calls_not_rendered"
    with pytest.raises(SpanError) as caught:
        derive(renderer(tok, CHATML), messages, "all", "<|im_end|>", unrendered={"tool_calls": "keep"})
    assert caught.value.reason == "reasoning_not_rendered"


def test_derive_notes_history_rendered_unlike_the_latest_turn(tok):
    spans = derive(renderer(tok, EOS_AT_END), TWO_TURNS, "all", "<|im_end|>")
    assert trained_text(spans) == ["Hello!<|im_end|>", "Yes.<|im_end|>"]
    assert spans.text.endswith("Yes.<|im_end|>\n<|endoftext|>")
    assert spans.notes == {"prefix_unstable_history"}
    # With only the last turn trained there is no history to compare.
    assert derive(renderer(tok, EOS_AT_END), TWO_TURNS, "last", "<|im_end|>").notes == set()


def test_history_stability_is_probed_once_per_template(tok):
    assert history_stable(renderer(tok, CHATML)) is True
    assert history_stable(renderer(tok, EOS_AT_END)) is False


def test_derive_takes_the_templates_history_answer_instead_of_rendering_the_row_again(tok):
    calls = []
    render = renderer(tok, EOS_AT_END)

    def counted(messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
        calls.append(len(messages))
        return render(messages, add_generation_prompt)

    tail = prompt_tail(render)
    per_row = derive(counted, TWO_TURNS, "all", "<|im_end|>", tail=tail)
    assert (per_row.notes, len(calls)) == ({"prefix_unstable_history"}, 3)  # whole, sentinels, cut after turn 1
    calls.clear()
    probed = derive(counted, TWO_TURNS, "all", "<|im_end|>", history_stable=False, tail=tail)
    assert (probed.notes, len(calls)) == ({"prefix_unstable_history"}, 2)
    assert probed.trained == per_row.trained
    assert derive(counted, TWO_TURNS, "all", "<|im_end|>", history_stable=True).notes == set()


@pytest.mark.parametrize(
    ("template", "messages", "reason"),
    [
        (SHOUTING, TWO_TURNS, "content_not_rendered"),
        (NO_END, conversation(("user", "Hi"), ("assistant", "")), "empty_assistant_span"),
    ],
)
def test_derive_rejects_rows_it_cannot_span(tok, template, messages, reason):
    with pytest.raises(SpanError) as caught:
        derive(renderer(tok, template), messages, "all", None if template is NO_END else "<|im_end|>")
    assert caught.value.reason == reason
    assert "assistant turn 1" in caught.value.message


def test_a_template_whose_prompts_are_not_prefixes_still_trains_the_turns_it_renders(tok):
    """The spans come from the whole rendering, not from prompt prefixes: a first line that counts the messages
    changes every prefix, but the turns are where the whole rendering puts them."""
    spans = derive(renderer(tok, COUNTED), TWO_TURNS, "all", "<|im_end|>")
    assert spans.text.startswith("4\n")
    assert trained_text(spans) == ["Hello!<|im_end|>", "Yes.<|im_end|>"]
    assert spans.notes == {"prefix_unstable_history"}
