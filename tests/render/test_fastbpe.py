"""The tiktoken encoder: used only where it gives the tokenizer's own ids, and then the same ids and labels.

Every family under `templates/` in the test fixtures with a full tokenizer is rendered twice, with the default
encoder and with `tokenizer_backend="tokenizers"`; the tables must be equal. Tokenizers tiktoken cannot
reproduce (SentencePiece-style vocabularies, a vocabulary missing bytes, merges tiktoken would apply
differently) keep the tokenizer's encoder, with the reason.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from dataforge.record import Example, Kind, Message, Provenance, Role, ToolCall
from dataforge.render.engine import RenderOptions, render_rows, template_checks
from dataforge.render.fastbpe import PROBES, build, bytes_to_unicode, unsupported
from dataforge.render.target import LoadedTarget, load_target, tokenizer_digest
from dataforge.render.tokens import encoder_choice, tokenize

# What each family's tokenizer gets, and why not tiktoken where it does not.
ENCODERS = {
    "qwen2.5-instruct": ("tiktoken", "verified"),
    "qwen3": ("tiktoken", "verified"),
    "llama-3.1-instruct": ("tiktoken", "verified"),
    "glm-4-9b-chat": ("tiktoken", "verified"),
    "smollm2-instruct": ("tokenizers", "lacks some of the 256 single bytes"),
    "phi-3-mini-4k-instruct": ("tokenizers", "byte_fallback"),
    "mistral-7b-instruct-v0.2": ("tokenizers", "byte_fallback"),
}
FAST = [f for f, (encoder, _) in ENCODERS.items() if encoder == "tiktoken"]


@functools.cache
def _load(folder: Path) -> LoadedTarget:
    return load_target(folder.name, str(folder), folder.parent)


def family(fixture_path: Callable[[str], Path], name: str) -> LoadedTarget:
    folder = fixture_path(f"templates/{name}").resolve()
    try:
        return _load(folder)
    except Exception as exc:  # e.g. Mistral v0.2 without sentencepiece to convert its tokenizer.model
        pytest.skip(f"{name} does not load here: {exc}")


# ── conversations: multi-turn, tools, reasoning, non-ASCII, preference, plain text ─────────────────────────────

WEATHER = {
    "name": "get_weather",
    "description": "Météo d'une ville — 天气.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def _sft(id: str, *messages: Message, tools: list[dict[str, Any]] | None = None) -> Example:
    return Example(id, Kind.SFT, Provenance("fb", "fb.jsonl", 0, 1), messages, tools=tools)


def conversations() -> list[Example]:
    user, assistant = (lambda c: Message(Role.USER, c)), (lambda c, **kw: Message(Role.ASSISTANT, c, **kw))
    call = ToolCall("get_weather", {"city": "São Paulo"}, id="call_1")
    return [
        _sft("ascii", user("What is 2+2?"), assistant("4."), user("And 3+3?"), assistant("6.")),
        _sft(
            "non_ascii",
            Message(Role.SYSTEM, "Réponds en français, s'il te plaît. 🙂"),
            user("Quelle est la capitale du Japon ? 日本の首都は？"),
            assistant("Tokyo (東京) — 1 400 万 habitants. 🇯🇵✨"),
            user("Et en coréen ? 한국어로?"),
            assistant("도쿄입니다. 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ½ ١٢٣"),
        ),
        _sft(
            "whitespace",
            user("  indented\n\n\n\ttabs\t\tand trailing   "),
            assistant("```python\ndef f(x):\n    return x ** 2  \n```\n\n  \n"),
        ),
        _sft(
            "tool",
            user("Weather in São Paulo?"),
            assistant(None, tool_calls=(call,)),
            Message(Role.TOOL, '{"temp": 22, "ciel": "dégagé"}', tool_call_id="call_1", name="get_weather"),
            assistant("Il fait 22 °C, ciel dégagé."),
            tools=[WEATHER],
        ),
        _sft(
            "reasoning",
            user("Combien font 12×12 ?"),
            assistant("144.", reasoning="12×12 = 144, 因为 12×10 + 12×2."),
            user("Et 13×13 ?"),
            assistant("169.", reasoning="13² = 169 ✓"),
        ),
        Example(
            "pref",
            Kind.PREFERENCE,
            Provenance("fb", "fb.jsonl", 1, 2),
            (user("Dis bonjour"),),
            chosen=(assistant("Bonjour ! 👋"),),
            rejected=(assistant("Non."),),
        ),
        Example("plain", Kind.PRETRAIN, Provenance("fb", "fb.jsonl", 2, 3), text="Texte brut — ünïcödé, 数字 12345."),
    ]


# Turns whose reasoning or tool calls a template drops are kept here (the default rejects them): the test is about
# the encoders, and more rows give them more to disagree on.
KEEP = {"unrendered_tool_calls": "keep", "unrendered_reasoning": "keep"}


def rendered(target: LoadedTarget, backend: str, **options: Any):
    out = render_rows(
        [e.to_row() for e in conversations()], target, RenderOptions(tokenizer_backend=backend, **{**KEEP, **options})
    )
    return out.table.to_pylist(), out.problems, out.notes


# ── the families ──────────────────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("name", list(ENCODERS))
def test_each_family_gets_the_encoder_its_tokenizer_allows(fixture_path, name):
    target = family(fixture_path, name)
    encoder, why = ENCODERS[name]
    assert encoder_choice(target.tokenizer, target.tokenizer_digest)[0] == encoder
    assert why in encoder_choice(target.tokenizer, target.tokenizer_digest)[1]
    checks = template_checks(target, RenderOptions())
    assert (checks["token_encoder"], why in checks["token_encoder_why"]) == (encoder, True)


@pytest.mark.parametrize("name", list(ENCODERS))
@pytest.mark.parametrize("train_on", ["all", "last"])
def test_both_encoders_render_the_same_ids_labels_and_notes(fixture_path, name, train_on):
    target = family(fixture_path, name)
    fast = rendered(target, "auto", train_on=train_on)
    slow = rendered(target, "tokenizers", train_on=train_on)
    assert fast == slow
    assert "fast_tokenizer_disagreed" not in fast[2]
    assert len(fast[0]) >= 5  # most conversations render in every family


@pytest.mark.parametrize("name", FAST)
def test_truncation_cuts_the_same_tokens(fixture_path, name):
    target = family(fixture_path, name)
    assert rendered(target, "auto", max_length=12, overflow="truncate") == rendered(
        target, "tokenizers", max_length=12, overflow="truncate"
    )


@pytest.mark.parametrize("name", FAST)
def test_the_encoder_gives_the_tokenizers_ids_on_the_probes(fixture_path, name):
    tok = family(fixture_path, name).tokenizer
    fast, _ = build(tok)
    specials = " ".join(fast.specials)
    for text in [*PROBES, specials]:
        if fast.takes(text):
            assert fast.encode(text).tolist() == tok(text, add_special_tokens=False)["input_ids"]


def test_every_qwen_vocabulary_token_encodes_as_the_tokenizer_does(fixture_path):
    """Qwen's merges list has one split per token while tiktoken merges any pair whose concatenation is a
    token (142,779 pairs the list lacks): on the text of every vocabulary token, the two still agree."""
    tok = family(fixture_path, "qwen2.5-instruct").tokenizer
    fast, _ = build(tok)
    to_byte = {c: b for b, c in bytes_to_unicode().items()}
    texts = []
    for token in tok.backend_tokenizer.get_vocab(with_added_tokens=False):
        try:
            texts.append(bytes(to_byte[c] for c in token).decode())
        except UnicodeDecodeError:  # part of a multi-byte character: not text on its own
            pass
    texts = [t for t in texts if fast.takes(t)]
    assert len(texts) > 140_000
    assert fast.disagreements(tok, texts) == []


# ── labels: the byte rule equals the character-offset rule ────────────────────────────────────────────────

PIECES = [
    " ",
    "  ",
    "\n",
    "\n\n",
    "\t",
    "\r\n",
    "\u00a0",
    "é",
    "e\u0301",
    "中文字",
    "🦜",
    "👩\u200d👧",
    "’s",
    "'LL",
    "123456",
]
TEXT = st.lists(
    st.one_of(
        st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8),
        st.sampled_from(PIECES + ["<|im_start|>", "<|im_end|>", "<think>", "<|eot_id|>", "<|begin_of_text|>"]),
    ),
    max_size=12,
).map("".join)


@st.composite
def texts_and_spans(draw):
    """A few texts, each with increasing, non-overlapping character spans inside it."""
    out = []
    for text in draw(st.lists(TEXT, min_size=1, max_size=4)):
        cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=6, unique=True)))
        out.append((text, list(zip(cuts[0::2], cuts[1::2], strict=False))))
    return out


@pytest.mark.parametrize("name", ["qwen2.5-instruct", "llama-3.1-instruct"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=texts_and_spans())
def test_random_unicode_gets_the_same_ids_and_mask_from_both_encoders(fixture_path, name, batch):
    target = family(fixture_path, name)
    tok, key = target.tokenizer, target.tokenizer_digest
    assert encoder_choice(tok, key)[0] == "tiktoken"
    texts, spans = [t for t, _ in batch], [s for _, s in batch]
    fast = tokenize(tok, key, texts, spans)
    slow = tokenize(tok, key, texts, spans, fast=False)
    assert fast.disagreed == 0
    assert np.array_equal(fast.ids, slow.ids)
    assert np.array_equal(fast.starts, slow.starts)
    assert np.array_equal(fast.mask, slow.mask)


# ── tokenizers tiktoken would get wrong ────────────────────────────────────────────────────────────────────

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_bpe(word: str) -> Any:
    """A byte-level BPE that merges `word` = xyz as y+z, x+y, then xy+z: `tokenizers` applies y+z first and is
    left with x + yz, which no merge joins; tiktoken joins any pair whose concatenation is a token and makes xyz.
    Merge order and rank order agree, so only trying it shows the difference."""
    x, y, z = word
    vocab = {c: i for i, c in enumerate(bytes_to_unicode().values())}
    for token in (y + z, x + y, word):
        vocab[token] = len(vocab)
    model = models.BPE(vocab, [(y, z), (x, y), (x + y, z)])
    inner = Tokenizer(model)
    inner.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    inner.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=inner, eos_token="<|im_end|>")
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHATML
    return tok


def tiny_target(tok: Any) -> LoadedTarget:
    return LoadedTarget("tiny", tok, CHATML, tokenizer_digest(tok), "t", "tiny")


def test_a_tokenizer_tiktoken_gets_wrong_on_the_probes_is_not_given_to_it():
    tok = tiny_bpe("the")  # "they" is in the probe texts
    assert unsupported(json.loads(tok.backend_tokenizer.to_str())) is None
    fast, why = build(tok)
    assert fast is None
    assert "differ" in why
    target = tiny_target(tok)
    assert template_checks(target, RenderOptions())["token_encoder"] == "tokenizers"


def test_a_tokenizer_tiktoken_gets_wrong_on_the_data_is_dropped_after_the_first_batch():
    tok = tiny_bpe("qjk")  # in no probe text: the rendered rows are what catch it
    assert build(tok)[0] is not None
    target = tiny_target(tok)
    rows = [_sft(f"r{i}", Message(Role.USER, "say qjk"), Message(Role.ASSISTANT, "qjk qjk")).to_row() for i in range(3)]
    fast = render_rows(rows, target, RenderOptions())
    slow = render_rows(rows, target, RenderOptions(tokenizer_backend="tokenizers"))
    assert fast.notes == {"fast_tokenizer_disagreed": 3}
    assert fast.table.equals(slow.table)
    assert encoder_choice(tok, target.tokenizer_digest) == (
        "tokenizers",
        "tiktoken's ids differed from the tokenizer's on 3 rendered text(s)",
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda s: s["model"].update(merges=s["model"]["merges"][::-1]), "merge order is not rank order"),
        (lambda s: s.update(normalizer={"type": "Lowercase"}), "normalizer Lowercase"),
        (lambda s: s["model"].update(byte_fallback=True), "byte_fallback"),
        (lambda s: s.update(pre_tokenizer={"type": "Whitespace"}), "pre-tokenizer"),
        (lambda s: s["added_tokens"][0].update(rstrip=True), "strips whitespace"),
        (lambda s: s.update(post_processor={"type": "ByteLevel", "trim_offsets": True}), "trims offsets"),
    ],
)
def test_structures_tiktoken_cannot_reproduce_are_refused_with_a_reason(fixture_path, change, reason):
    spec = json.loads(family(fixture_path, "qwen2.5-instruct").tokenizer.backend_tokenizer.to_str())
    assert unsupported(spec) is None
    change(spec)
    assert reason in unsupported(spec)
