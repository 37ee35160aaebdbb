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


# RE2's `\s` (what the regexes below mean by a space) is ASCII only: tab, line feed, form feed, carriage return, space.
# One table for both counts, summed once per text: a space adds 1, a letter adds 2**_LETTER_SHIFT, so the low bits
# of a text's sum count its spaces and the high bits its letters (exact below 2**_LETTER_SHIFT spaces a block row).
_LETTER_SHIFT = 32
_ASCII_COUNT = np.zeros(256, dtype=np.int64)
_ASCII_COUNT[[9, 10, 12, 13, 32]] = 1
_ASCII_COUNT[ord("A") : ord("Z") + 1] = 1 << _LETTER_SHIFT
_ASCII_COUNT[ord("a") : ord("z") + 1] = 1 << _LETTER_SHIFT


_ASCII_ROWS = 4096  # texts per pass: the per-byte table stays a few MB (cache-sized), not the whole column


def _ascii_counts(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(spaces, letters) per text of a string array without nulls, right for the texts that are all ASCII (one byte
    a character): a table lookup per byte and a sum per text (`reduceat`), instead of two regex rewrites."""
    spaces = np.zeros(len(texts), dtype=np.int64)
    letters = np.zeros(len(texts), dtype=np.int64)
    _, offsets_buf, data_buf = texts.buffers()
    if data_buf is None:
        return spaces, letters
    offset_type = np.int64 if pa.types.is_large_string(texts.type) else np.int32
    offsets = np.frombuffer(offsets_buf, dtype=offset_type)[texts.offset : texts.offset + len(texts) + 1]
    offsets = offsets.astype(np.int64)
    data = np.frombuffer(data_buf, dtype=np.uint8)
    for lo in range(0, len(texts), _ASCII_ROWS):
        hi = min(lo + _ASCII_ROWS, len(texts))
        first, last = int(offsets[lo]), int(offsets[hi])
        if last == first:
            continue
        block = data[first:last]
        starts = offsets[lo:hi] - first
        # reduceat gives an empty text the next byte, not 0: only non-empty texts are summed (the empty ones in
        # between add nothing to the segment before them).
        filled = np.flatnonzero(offsets[lo + 1 : hi + 1] > offsets[lo:hi])
        both = np.add.reduceat(_ASCII_COUNT[block], starts[filled])
        spaces[lo + filled] = both & ((1 << _LETTER_SHIFT) - 1)
        letters[lo + filled] = both >> _LETTER_SHIFT
    return spaces, letters


def char_signals(texts: pa.Array | pa.ChunkedArray) -> dict[str, np.ndarray]:
    """`chars`, `non_alpha_share` and `bad_char_share` per text (null counts as empty).

    ASCII texts (most chat text) are counted byte by byte (`_ascii_counts`): no mojibake is possible in them and
    their letters are A–Z and a–z. The others go through the regexes (Unicode letters, U+FFFD, mojibake).
    """
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    filled = pc.fill_null(texts, "") if texts.null_count else texts
    chars = _np(pc.utf8_length(filled)).astype(np.int64)
    ascii_rows = _np(pc.string_is_ascii(filled)).astype(bool)
    # Over every row (no copy of the ASCII ones); the counts of the other rows are replaced below.
    spaces, letters = _ascii_counts(filled)
    other = chars - spaces - letters
    bad = np.zeros(len(filled), dtype=np.int64)
    if not ascii_rows.all():
        at = np.flatnonzero(~ascii_rows)
        part = filled.take(pa.array(at))
        n = chars[at]
        spaces[at] = n - _np(pc.utf8_length(pc.replace_substring_regex(part, r"\s+", ""))).astype(np.int64)
        other[at] = _np(pc.utf8_length(pc.replace_substring_regex(part, r"[\p{L}\s]+", ""))).astype(np.int64)
        bad[at] = n - _np(pc.utf8_length(pc.replace_substring_regex(part, BAD_PATTERN, ""))).astype(np.int64)
    return {"chars": chars, "non_alpha_share": _share(other, chars - spaces), "bad_char_share": _share(bad, chars)}


def bad_chars(text: str) -> int:
    """Characters of `text` in U+FFFD or mojibake sequences (the plain-Python reference)."""
    return sum(len(m.group(0)) for m in _BAD_PY.finditer(text))
