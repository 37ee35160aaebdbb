"""Character-level signals of one text: non-alphabetic share and broken-encoding (U+FFFD, mojibake) share.

- `non_alpha_share`: characters that are neither letters (Unicode L*) nor ASCII whitespace / the characters that
  are not ASCII whitespace. Code, tables and number dumps score high; prose scores about 0.03 (its punctuation).
  (Gopher's quality rules ask for 80% of words to hold a letter; per character is cheaper and finer.)
- `bad_char_share`: characters in U+FFFD (the replacement character a lossy decode leaves) or in a mojibake
  sequence — UTF-8 read as Latin-1/Windows-1252: `Ã©` for é, `â€™` for ’, `Â ` for a no-break space — / all
  characters. The mojibake patterns are those ftfy's `badness` heuristic starts from (Speer, ftfy, 2012–).
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# What the second byte of a two-byte UTF-8 sequence (0x80–0xBF) looks like when read as Latin-1 or Windows-1252.
_CONTINUATION = "".join(map(chr, range(0x80, 0xC0))) + "ŒœŠšŸŽžƒˆ˜–—‘’‚“”„†‡•…‰‹›€™"
_CLASS = "[" + re.escape(_CONTINUATION) + "]"
# U+FFFD; Â or Ã then a continuation character (é → Ã©, no-break space → Â\xa0); â€ then one (’ → â€™).
BAD_PATTERN = f"\ufffd|[ÂÃ]{_CLASS}|â€{_CLASS}"
_BAD_PY = re.compile(BAD_PATTERN)


def _np(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False)


def _share(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(len(num), dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def char_signals(texts: pa.Array | pa.ChunkedArray) -> dict[str, np.ndarray]:
    """`chars`, `non_alpha_share` and `bad_char_share` per text (null counts as empty)."""
    filled = pc.fill_null(texts, "")
    chars = _np(pc.utf8_length(filled)).astype(np.int64)
    spaces = chars - _np(pc.utf8_length(pc.replace_substring_regex(filled, r"\s+", ""))).astype(np.int64)
    other = _np(pc.utf8_length(pc.replace_substring_regex(filled, r"[\p{L}\s]+", ""))).astype(np.int64)
    bad = chars - _np(pc.utf8_length(pc.replace_substring_regex(filled, BAD_PATTERN, ""))).astype(np.int64)
    return {"chars": chars, "non_alpha_share": _share(other, chars - spaces), "bad_char_share": _share(bad, chars)}


def bad_chars(text: str) -> int:
    """Characters of `text` in U+FFFD or mojibake sequences (the plain-Python reference)."""
    return sum(len(m.group(0)) for m in _BAD_PY.finditer(text))
