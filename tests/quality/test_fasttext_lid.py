"""The numpy reimplementation of fastText's prediction (`quality/fasttext_lid.py`) against fastText itself.

The reference is the C++ prediction of the `fasttext-predict` binding, one call per text, on the same cleaned line
(`lang._detect_prefixes_pybind`). Labels must be equal and probabilities within 1e-4; on these texts the labels are
all equal (no exact tie occurred), and the exact path (`recheck=inf`) also reproduces the probabilities to the last
bit or within one float32 ulp.
"""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_quality_speedpath_lang import LABELLED

from dataforge.quality import lang
from dataforge.quality.fasttext_lid import FastTextModel

# Scripts, symbols and odd characters the generated texts are drawn from.
ALPHABETS = [
    "abcdefghijklmnopqrstuvwxyz",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "àáâäæçèéêëìíîïñòóôöøùúûüÿßœ",
    "абвгдежзийклмнопрстуфхцчшщъыьэюяАБВГДЕЁ",
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可也你",
    "あいうえおかきくけこさしすせそアイウエオカキクケコ日本語",
    "한국어안녕하세요감사합니다",
    "ابتثجحخدذرزسشصضطظعغفقكلمنهوي",
    "अआइईउऊएऐओऔकखगघचछजझटठडढतथदधनपफबभमयरलवशसह्ािीुूेैोौं",
    "αβγδεζηθικλμνξοπρστυφχψω",
    "אבגדהוזחטיכלמנסעפצקרשת",
    "😀😂🎉👍🏽❤️🚀🇫🇷",
    "0123456789",
    ".,;:!?'\"()[]{}<>-_/\\@#$%^&*+=~`|",
    "\u0301\u0308\u0327\u200b\u200d\ufeff\u00ad",
    "\x00\x01\x1b\x7f𝔘𐍈𝟘\U0001f9ea\U000e0041",
    "    \t",
]
WORDS = [
    "the", "and", "of", "</s>", "__label__en", "__label__", "de", "la", "und", "der", "что", "это", "的",
    "http://example.com/a?b=c", "x" * 40, "ok", "a", "I'm", "<s>", "<>", "><",
]  # fmt: skip


def mixed_texts(n: int, seed: int) -> list[str]:
    """`n` seeded texts: runs of characters from one or more scripts, whole words, odd whitespace."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 12)):
            if rng.random() < 0.25:
                parts.append(rng.choice(WORDS))
            else:
                alphabet = rng.choice(ALPHABETS)
                parts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))))
        out.append(rng.choice([" ", "  ", "\t", "\n", " \u3000 ", "\u00a0", ""]).join(parts))
    return out


def prose(n: int, seed: int) -> list[str]:
    """Benchmark-like texts: made-up words from a Zipf vocabulary of syllables, with punctuation and line breaks."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "tor", "an", "es", "ri", "pu", "ne", "sol", "ver", "di", "gra", "on", "te"]
    vocab = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(2000)]
    weights = [1 / (i + 1) for i in range(len(vocab))]
    out = []
    for _ in range(n):
        words = rng.choices(vocab, weights=weights, k=rng.randint(1, 25))
        out.append(" ".join(w + rng.choice(["", "", "", ".", ",", "?", ".\n"]) for w in words))
    return out


@pytest.fixture(scope="module")
def model() -> FastTextModel:
    return lang.lid_model()


def reference(lines: list[str]) -> list[tuple[str, float]]:
    """fastText's own (label, probability) per line, unclamped."""
    predict = lang.model().f.predict
    return [(h[0][1].removeprefix("__label__"), h[0][0]) for h in (predict(x + "\n", 1, 0.0, "strict") for x in lines)]


def cleaned(texts: list[str]) -> list[str]:
    return [line for line in (" ".join(t[: lang.MAX_CHARS].split()) for t in texts) if line]


def assert_agrees(model: FastTextModel, lines: list[str], recheck: float | None = None) -> np.ndarray:
    """Equal labels, probabilities within 1e-4; returns the absolute probability differences."""
    labels, probs = model.predict(lines) if recheck is None else model.predict(lines, recheck=recheck)
    ref = reference(lines)
    wrong = [(line, r, got) for line, r, got in zip(lines, ref, labels, strict=True) if r[0] != got]
    assert not wrong, wrong[:5]
    diff = np.abs(np.array([r[1] for r in ref]) - probs.astype(np.float64))
    assert diff.max() < 1e-4
    return diff


# -- the format reader --------------------------------------------------------------------------------------------


def test_reader_knows_the_file(model: FastTextModel) -> None:
    a = model.args
    assert (a.dim, a.minn, a.maxn, a.bucket, a.word_ngrams) == (16, 2, 4, 2_000_000, 1)
    assert (a.loss, a.model) == (1, 3)  # hierarchical softmax, supervised
    assert model.nlabels == 176 == len(model.labels) == len(set(model.labels))
    assert {"en", "fr", "de", "zh", "ru", "ar", "hi", "ja"} <= set(model.labels)
    assert model.labels[0] == "en"  # labels are sorted by count: English is the most frequent
    assert model.words[0] == "</s>" and model.eos == 0
    assert model.nwords + model.nlabels == len(model.words)
    assert (model.types[: model.nwords] == 0).all() and (model.types[model.nwords :] == 1).all()
    # The quantized input: one row per word and per bucket kept by the pruning.
    assert model.input.shape == (model.nwords + len(model.pruneidx), 16)
    assert sorted(model.pruneidx[:, 1]) == list(range(len(model.pruneidx)))
    assert model.output.shape == (176, 16)
    counts = model.counts[model.nwords :]
    assert (np.diff(counts) <= 0).all()
    assert model.depth < 20  # a Huffman tree over 176 leaves


def test_reader_rejects_other_files(tmp_path) -> None:
    bad = tmp_path / "bad.ftz"
    bad.write_bytes(b"\0" * 64)
    with pytest.raises(ValueError, match="not a fastText model"):
        FastTextModel(bad)


def test_tree_visits_every_label_once(model: FastTextModel) -> None:
    assert sorted(model.leaf_order.tolist()) == list(range(176))


# -- agreement with fastText --------------------------------------------------------------------------------------


def test_labelled_sentences_agree(model: FastTextModel) -> None:
    lines = cleaned([text for _, text in LABELLED])
    assert_agrees(model, lines)
    labels, _ = model.predict(lines)
    assert labels == [code for code, _ in LABELLED]


def test_mixed_scripts_agree(model: FastTextModel) -> None:
    lines = cleaned(mixed_texts(4000, seed=7))
    assert len(lines) > 3900
    assert_agrees(model, lines)


def test_prose_agrees(model: FastTextModel) -> None:
    assert_agrees(model, cleaned(prose(3000, seed=3)))


def test_exact_path_reproduces_fasttext(model: FastTextModel) -> None:
    """Every line through fastText's own arithmetic order: probabilities to the last bit (or one float32 ulp)."""
    lines = cleaned(mixed_texts(600, seed=11) + prose(600, seed=12) + [t for _, t in LABELLED])
    diff = assert_agrees(model, lines, recheck=np.inf)
    assert diff.max() <= 2.0**-23  # one ulp at 1.0
    assert (diff == 0).mean() > 0.99


@pytest.mark.parametrize(
    ("line", "same_as"),
    [
        ("hello world </s> bonjour le monde", "hello world"),  # fastText stops reading at a literal `</s>`
        ("</s>", ""),
        ("__label__fr hello world", "hello world"),  # a label-like token contributes nothing
        ("__label__zz hello world", "hello world"),
        ("hello\x00world", "hello world"),  # NUL separates tokens in fastText's `readWord`
        ("hello\tworld", "hello world"),
        ("hello world\nignored after the newline", "hello world"),
    ],
)
def test_tokenisation_edges(model: FastTextModel, line: str, same_as: str) -> None:
    labels, probs = model.predict([line, same_as])
    assert labels[0] == labels[1] and probs[0] == probs[1]
    assert (labels[0], probs[0]) == pytest.approx(reference([line])[0], abs=1e-4)


def test_only_eos_still_predicts(model: FastTextModel) -> None:
    labels, probs = model.predict(["__label__en"])  # no word at all: `</s>` alone is averaged
    ref = reference(["__label__en"])[0]
    assert labels[0] == ref[0] and abs(probs[0] - ref[1]) < 1e-4


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=120), min_size=1, max_size=8))
def test_arbitrary_text_agrees(texts: list[str]) -> None:
    lines = cleaned(texts)
    if lines:
        assert_agrees(lang.lid_model(), lines)


# -- the wiring in `lang` -----------------------------------------------------------------------------------------


def test_lang_detect_equals_the_pybind_path() -> None:
    texts = [None, "", "   ", *mixed_texts(500, seed=5), *prose(500, seed=6), *(t for _, t in LABELLED)]
    texts += texts[3:50]  # repeated prefixes
    langs, scores = lang.detect(texts)
    ref_langs, ref_scores = lang._detect_prefixes_pybind(texts)
    assert langs == ref_langs
    assert langs[:3] == [None, None, None] and np.isnan(scores[:3]).all()
    both = ~np.isnan(ref_scores)
    assert (np.isnan(scores) == ~both).all()
    assert np.abs(scores[both] - ref_scores[both]).max() < 1e-4
    assert scores[both].max() <= 1.0


def test_lang_detect_array_equals_detect() -> None:
    texts = [*prose(200, seed=8), None, *mixed_texts(200, seed=9)]
    lang_arr, score_arr = lang.detect_array(pa.chunked_array([texts[:150], texts[150:]], type=pa.string()))
    langs, scores = lang.detect(texts)
    assert lang_arr.to_pylist() == langs
    assert np.allclose(score_arr.to_numpy(zero_copy_only=False), scores, equal_nan=True)
