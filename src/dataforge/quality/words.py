"""How text is cut into lines, paragraphs and words for the repetition rules, vectorised and in plain Python.

The two implementations define the same thing; tests/quality/test_quality_repetition_property.py checks that they agree.

- a *line* is the text between two `\\n`, stripped of spaces, tabs, `\\r`, `\\f` and `\\v`; blank lines do not count;
- a *paragraph* is the text between runs of blank lines, stripped the same way (newlines too);
- a *word* is a whitespace-separated token of the lowercased text with the punctuation at its ends (`PUNCTUATION`)
  stripped; tokens of punctuation only are dropped. Each CJK ideograph, kana and Hangul syllable is a word of its
  own: Chinese and Japanese put no spaces between words, and their n-gram repetition is measured in characters.
  This is RedPajama-V2's normalisation (lowercase, punctuation removed, split on whitespace) except that
  punctuation inside a token ("don't", "3.14") stays, which keeps the vectorised split cheap.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

LINE_STRIP = " \t\r\f\v"
PARAGRAPH_BREAK = r"\n(?:[ \t\r\f\v]*\n)+"
# CJK ideographs (ext. A and the unified block), kana, Hangul syllables, compatibility ideographs.
CJK_RANGES = ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7AF), (0xF900, 0xFAFF))
_CJK_CLASS_RE2 = "".join(f"\\x{{{lo:04X}}}-\\x{{{hi:04X}}}" for lo, hi in CJK_RANGES)
_CJK_RE2 = f"([{_CJK_CLASS_RE2}])"
# ASCII punctuation, typographic quotes and dashes, and CJK/full-width punctuation.
WHITESPACE = "".join(c for c in map(chr, range(0x3001)) if c.isspace())  # every Unicode space is below U+3001
PUNCTUATION = string.punctuation + "“”‘’«»‹›„‚…–—·•¡¿。、，．！？；：「」『』（）【】《》〈〉～"


@dataclass(frozen=True)
class Pieces:
    """Flat pieces (lines, paragraphs or words) of a string array: `values[i]` belongs to row `rows[i]`.

    Pieces of one row are contiguous and in text order; `starts[r]:starts[r+1]` are row r's.
    """

    values: pa.Array
    rows: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray  # characters of each piece (the split measures them anyway, to drop the empty ones)


def _np(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False)


def _filled(texts: pa.Array) -> pa.Array:
    return pc.fill_null(texts, "") if texts.null_count else texts


def _pieces(parts: pa.ListArray, n_rows: int, values: pa.Array) -> Pieces:
    """The non-empty `values` (the flat, rewritten items of `parts`) with their rows, row starts and lengths."""
    lengths = _np(pc.utf8_length(values)).astype(np.int64)
    keep = lengths > 0
    rows = _np(pc.list_parent_indices(parts))[keep].astype(np.int64)
    starts = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=starts[1:])
    return Pieces(values.filter(pa.array(keep)), rows, starts, lengths[keep])


def split_lines(texts: pa.Array) -> Pieces:
    """The non-blank, stripped lines of each text."""
    parts = pc.split_pattern(_filled(texts), "\n")
    return _pieces(parts, len(texts), pc.utf8_trim(pc.list_flatten(parts), characters=LINE_STRIP))


def split_paragraphs(texts: pa.Array) -> Pieces:
    """The non-blank, stripped paragraphs (separated by one or more blank lines) of each text."""
    parts = pc.split_pattern_regex(_filled(texts), PARAGRAPH_BREAK)
    return _pieces(parts, len(texts), pc.utf8_trim(pc.list_flatten(parts), characters=LINE_STRIP + "\n"))


def split_words(texts: pa.Array) -> Pieces:
    """The normalised words of each text (see the module docstring)."""
    lowered = pc.utf8_lower(_filled(texts))
    has_cjk = pc.match_substring_regex(lowered, f"[{_CJK_CLASS_RE2}]")
    if pc.any(has_cjk).as_py():  # the spacing pass is a regex rewrite: only on the rows where it changes something
        spaced = pc.replace_substring_regex(lowered.filter(has_cjk), _CJK_RE2, r" \1 ")
        lowered = pc.replace_with_mask(lowered, has_cjk, spaced)
    parts = pc.utf8_split_whitespace(lowered)
    # Whitespace is trimmed too: pyarrow 26's utf8_split_whitespace on utf8_lower's output sometimes leaves trailing
    # Unicode whitespace on the last token ("ẞ\x0b" → ["ß\x0b"], not on every run; the property test caught it).
    return _pieces(parts, len(texts), pc.utf8_trim(pc.list_flatten(parts), characters=PUNCTUATION + WHITESPACE))


# ---- the plain-Python definitions (the reference the tests compare against) ----

_PARAGRAPH_RE = re.compile(PARAGRAPH_BREAK)


def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return any(lo <= code <= hi for lo, hi in CJK_RANGES)


def lines_of(text: str) -> list[str]:
    """The non-blank, stripped lines of `text`."""
    return [s for s in (line.strip(LINE_STRIP) for line in text.split("\n")) if s]


def paragraphs_of(text: str) -> list[str]:
    """The non-blank, stripped paragraphs of `text`."""
    return [s for s in (p.strip(LINE_STRIP + "\n") for p in _PARAGRAPH_RE.split(text)) if s]


def words_of(text: str) -> list[str]:
    """The normalised words of `text`."""
    spaced = "".join(f" {ch} " if _is_cjk(ch) else ch for ch in text.lower())
    return [w for w in (token.strip(PUNCTUATION) for token in spaced.split()) if w]
