"""Refusal and boilerplate phrases: short, documented lists per language, matched case-insensitively.

A *refusal* is an assistant turn that declines the task; *boilerplate* is filler that models learn to repeat
("As an AI language model …", "I hope this helps!"). Both lists are deliberately small and literal — each entry
is a phrase people filter SFT data for (the "unfiltered" ShareGPT/Vicuna cleaning lists, Dolly/OpenHermes
de-refusal filters) — and a recipe can add its own (`quality: {refusal_phrases: [...]}`).
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

REFUSAL: dict[str, tuple[str, ...]] = {
    "en": (
        "I'm sorry, but I can't",
        "I'm sorry, but I cannot",
        "I am sorry, but I cannot",
        "I cannot assist with",
        "I can't assist with",
        "I cannot help with",
        "I can't help with that",
        "I am unable to provide",
        "I'm unable to provide",
        "I cannot fulfill",
        "I can't fulfill",
        "I cannot comply",
        "I must decline",
    ),
    "zh": ("抱歉，我无法", "对不起，我无法", "我无法提供", "我不能提供", "我不能帮助"),
}
BOILERPLATE: dict[str, tuple[str, ...]] = {
    "en": (
        "As an AI language model",
        "As an AI developed by",
        "As a language model",
        "As an AI assistant, I",
        "I don't have personal opinions",
        "I do not have personal opinions",
        "I hope this helps",
        "Let me know if you have any other questions",
        "Feel free to ask if you have any",
        "my knowledge cutoff",
    ),
    "zh": (
        "作为一个人工智能语言模型",
        "作为一个AI语言模型",
        "作为一个人工智能",
        "作为AI助手",
        "希望这对你有帮助",
        "希望对您有所帮助",
    ),
}
APOSTROPHES = "'’"


def phrase_pattern(phrases: list[str] | tuple[str, ...]) -> str:
    """One case-insensitive RE2 alternation of literal phrases; a straight apostrophe also matches a curly one."""
    parts = []
    for phrase in phrases:
        escaped = re.escape(phrase)
        parts.append(escaped.replace("'", f"[{APOSTROPHES}]").replace("\\ ", r"\s+").replace(" ", r"\s+"))
    return "(?i)(?:" + "|".join(parts) + ")"


def all_phrases(lists: dict[str, tuple[str, ...]], extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Every phrase of every language, then the recipe's own."""
    return tuple(p for phrases in lists.values() for p in phrases) + tuple(extra)


def contains_any(texts: pa.Array | pa.ChunkedArray, phrases: tuple[str, ...]) -> np.ndarray:
    """Per text: does it contain one of `phrases` (null text: no)."""
    if not phrases:
        return np.zeros(len(texts), dtype=bool)
    hit = pc.match_substring_regex(pc.fill_null(texts, ""), phrase_pattern(phrases))
    return hit.to_numpy(zero_copy_only=False).astype(bool)


def first_phrase(text: str, phrases: tuple[str, ...]) -> str | None:
    """The phrase that matches first in `text` (for messages and examples), or None."""
    m = re.search(phrase_pattern(phrases), text)
    return m.group(0) if m else None
