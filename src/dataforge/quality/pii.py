"""PII and secrets: e-mail, phone, IP (v4, v6), credit-card (Luhn), IBAN (mod 97), API keys and private keys.

Each detector is a regex that finds candidates and a validator that confirms them (a Luhn check, the IBAN
checksum, the IP's syntax, the digit count of a phone number, the mix of characters in a token), so that
look-alikes — dates, version strings, UUIDs, hashes, order numbers — are not reported. Precision and recall on a
labelled corpus of positives and look-alike negatives are measured in tests/quality/test_quality_pii.py.

Two rules beyond the plain formats: an e-mail address spelled out against scrapers with bracketed words
("john [at] example [dot] com", "(at)", "(dot)", any case) is an address; a number written only in pairs of
digits ("01 23 45 67 89") is a phone number only when it starts with the trunk prefix 0, as national numbers in
that style do ("12 34 56 78 90" is not).

Over a column, a cheap RE2 pass (`pyarrow.compute`) picks the rows that can hold a match at all; only those run
the Python regexes and validators. `redact` replaces each confirmed match by a typed placeholder (`<EMAIL>`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

KINDS = ("secret", "email", "iban", "credit_card", "ipv6", "ipv4", "phone")  # also the order overlaps are settled in
PLACEHOLDERS = {
    "secret": "<SECRET>",
    "email": "<EMAIL>",
    "iban": "<IBAN>",
    "credit_card": "<CREDIT_CARD>",
    "ipv6": "<IP>",
    "ipv4": "<IP>",
    "phone": "<PHONE>",
}

# Image and code file names look like addresses ("logo@2x.png"): a top-level domain that is a file extension is not one.
FILE_EXTENSIONS = frozenset("png jpg jpeg gif svg webp bmp ico js ts css py json yaml yml md txt html pdf zip".split())

# IBAN length by country (ISO 13616 registry, the countries most often seen).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21,
    "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18,
    "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23,
    "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27,
    "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29,
    "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TN": 24, "TR": 26,
    "UA": 29, "VG": 24, "XK": 20,
}  # fmt: skip

_DATE_START = re.compile(
    r"(?:19|20)\d\d[-./ ](?:0?[1-9]|1[0-2])[-./ ]\d\d|\d\d[-./](?:0?[1-9]|1[0-2])[-./](?:19|20)\d\d"
)
_VERSION_BEFORE = re.compile(r"(?i)(?:\bversion|\bver\.?|\brelease|\bv)\s*$")
_PAIRS_ONLY = re.compile(r"\d\d(?:[ .]\d\d)+")
# Addresses spelled out against scrapers: "john [at] example [dot] com", "john(at)example(dot)com", any case. Only the
# bracketed words count: a bare "at"/"dot" ("look at example dot com") is prose far more often than an address.
_OBFUSCATED_AT = r"\s*[\[(]\s*(?i:at)\s*[\])]\s*"
_OBFUSCATED_DOT_RE = r"\s*[\[(]\s*(?i:dot)\s*[\])]\s*"
_OBFUSCATED_DOT = re.compile(_OBFUSCATED_DOT_RE)


@dataclass(frozen=True)
class Found:
    """One confirmed match: its kind and its span in the text."""

    kind: str
    start: int
    end: int
    value: str


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a digit string (credit cards): doubling every second digit from the right."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_network(digits: str) -> str | None:
    """The card network that issues numbers of this prefix and length, if any (Visa, Mastercard, Amex, …)."""
    n = len(digits)
    p2, p3, p4 = int(digits[:2]), int(digits[:3]), int(digits[:4])
    if digits[0] == "4" and n in (13, 16, 19):
        return "visa"
    if (51 <= p2 <= 55 or 2221 <= p4 <= 2720) and n == 16:
        return "mastercard"
    if p2 in (34, 37) and n == 15:
        return "amex"
    if (p4 == 6011 or p2 == 65 or 644 <= p3 <= 649) and 16 <= n <= 19:
        return "discover"
    if 3528 <= p4 <= 3589 and 16 <= n <= 19:
        return "jcb"
    if (300 <= p3 <= 305 or p2 in (36, 38, 39)) and 14 <= n <= 19:
        return "diners"
    if p2 == 62 and 16 <= n <= 19:
        return "unionpay"
    return None


def iban_ok(compact: str) -> bool:
    """ISO 13616: the right length for its country and `int(rearranged) % 97 == 1` (ISO 7064 mod 97-10)."""
    if IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _mixed(token: str) -> bool:
    """A random-looking token has digits and letters (a word or a name like `sk-learn-tutorial` does not)."""
    return any(c.isdigit() for c in token) and any(c.isalpha() for c in token)


def _ok_email(m: re.Match[str], text: str) -> bool:
    return _OBFUSCATED_DOT.split(m.group(0))[-1].rsplit(".", 1)[-1].lower() not in FILE_EXTENSIONS


def _ok_phone(m: re.Match[str], text: str) -> bool:
    value = m.group(0)
    digits = sum(c.isdigit() for c in value)
    if _DATE_START.match(value):
        return False
    if value.startswith("+"):
        return 8 <= digits <= 15
    # Written in pairs only ("01 23 45 67 89": France, Belgium, Morocco), a national number starts with its trunk
    # prefix 0; pairs that do not ("12 34 56 78 90") are page numbers, scores or a list, not a phone number.
    if _PAIRS_ONLY.fullmatch(value) and not value.startswith("0"):
        return False
    return 10 <= digits <= 15


def _ok_ipv4(m: re.Match[str], text: str) -> bool:
    # "version 1.2.3.4" and "v1.2.3.4" are version numbers, not addresses.
    return not _VERSION_BEFORE.search(text[max(0, m.start() - 12) : m.start()])


def _ok_ipv6(m: re.Match[str], text: str) -> bool:
    value = m.group(0)
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    groups = [g for g in value.split(":") if g]
    # "A::B" (C++ scopes) and "::1" (loopback) are valid syntax but not someone's address.
    return len(groups) >= 3 or any(len(g) == 4 for g in groups)


def _ok_card(m: re.Match[str], text: str) -> bool:
    value = m.group(0)
    if " " in value and "-" in value:
        return False
    digits = value.replace(" ", "").replace("-", "")
    return 13 <= len(digits) <= 19 and card_network(digits) is not None and luhn_ok(digits)


def _ok_iban(m: re.Match[str], text: str) -> bool:
    return iban_ok(m.group(0).replace(" ", ""))


def _ok_token(m: re.Match[str], text: str) -> bool:
    token = m.group(0)
    return token.startswith("-----BEGIN") or _mixed(token.split("_", 1)[-1] if "_" in token[:12] else token[3:])


_IBAN_ALTERNATIVES = "|".join(
    rf"{cc}\d{{2}}(?: ?[A-Z0-9]{{4}}){{{(n - 4) // 4}}}(?: ?[A-Z0-9]{{{(n - 4) % 4}}})?"
    if (n - 4) % 4
    else rf"{cc}\d{{2}}(?: ?[A-Z0-9]{{4}}){{{(n - 4) // 4}}}"
    for cc, n in IBAN_LENGTHS.items()
)


@dataclass(frozen=True)
class Detector:
    """A kind of PII: a cheap RE2 pattern any match contains (to pick rows), the exact regex and its validator."""

    kind: str
    prefilter: str
    pattern: re.Pattern[str]
    valid: Callable[[re.Match[str], str], bool]


DETECTORS: tuple[Detector, ...] = (
    Detector(
        "secret",
        r"A[A-Z]{3}[A-Z0-9]{16}|gh[pousr]_|github_pat_|hf_|sk-|PRIVATE KEY-----",
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----)?"
            r"|(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9])"
            r"|(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{36}(?![A-Za-z0-9_])"
            r"|(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9_]{82}(?![A-Za-z0-9_])"
            r"|(?<![A-Za-z0-9_])hf_[A-Za-z0-9]{34}(?![A-Za-z0-9_])"
            r"|(?<![A-Za-z0-9_-])sk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_-]{20,}(?![A-Za-z0-9_-])"
        ),
        _ok_token,
    ),
    Detector(
        "email",
        rf"@|{_OBFUSCATED_AT}",
        re.compile(
            rf"(?<![\w.+%-])[A-Za-z0-9][A-Za-z0-9._%+-]{{0,63}}(?:@|{_OBFUSCATED_AT})"
            rf"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?(?:\.|{_OBFUSCATED_DOT_RE}))+"
            r"[A-Za-z]{2,24}(?![\w-])"
        ),
        _ok_email,
    ),
    Detector(
        "iban",
        r"[A-Z]{2}\d{2} ?[A-Z0-9]{4}",
        re.compile(rf"(?<![A-Za-z0-9])(?:{_IBAN_ALTERNATIVES})(?![A-Za-z0-9])"),
        _ok_iban,
    ),
    Detector(
        "credit_card",
        r"(?:\d[ -]?){12}\d",
        re.compile(r"(?<![\w.-])(?:\d[ -]?){12,18}\d(?![\w-]|\.\d)"),
        _ok_card,
    ),
    Detector(
        "ipv6",
        r"[0-9A-Fa-f]{1,4}::?[0-9A-Fa-f]{0,4}:",
        re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:]|\.\d)"),
        _ok_ipv6,
    ),
    Detector(
        "ipv4",
        r"\d\.\d{1,3}\.\d{1,3}\.\d",
        re.compile(
            r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w]|\.\d)"
        ),
        _ok_ipv4,
    ),
    Detector(
        "phone",
        r"\+\d|\d{2}[ .\-)]",
        re.compile(
            r"(?<![\w+.-])(?:\+\d{8,15}"
            r"|\+\d{1,3}[ .-]\d(?:[ .-]\d{2,8}){2,4}"  # a one-digit area code after the country: +33 1 23 45 67 89
            r"|(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,8}){1,4})"
            r"(?![\w]|[.-]\d)"
        ),
        _ok_phone,
    ),
)
DETECTOR = {d.kind: d for d in DETECTORS}


def find_pii(text: str, kinds: tuple[str, ...] = KINDS) -> list[Found]:
    """Every confirmed match in `text`, in text order; where two overlap, the kind earlier in `KINDS` wins."""
    taken: list[Found] = []
    for kind in KINDS:
        if kind not in kinds:
            continue
        detector = DETECTOR[kind]
        for m in detector.pattern.finditer(text):
            if not detector.valid(m, text):
                continue
            if any(m.start() < f.end and f.start < m.end() for f in taken):
                continue
            taken.append(Found(kind, m.start(), m.end(), m.group(0)))
    return sorted(taken, key=lambda f: f.start)


def redact(text: str, kinds: tuple[str, ...] = KINDS) -> tuple[str, list[Found]]:
    """`text` with each match replaced by its placeholder, and the matches."""
    found = find_pii(text, kinds)
    if not found:
        return text, found
    out, at = [], 0
    for f in found:
        out += [text[at : f.start], PLACEHOLDERS[f.kind]]
        at = f.end
    out.append(text[at:])
    return "".join(out), found


def candidate_kinds(texts: pa.Array, kinds: tuple[str, ...] = KINDS) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """The texts that can hold a match of `kinds` (indices, a superset of the hits), and for each the kinds whose
    prefilter it matches — the only detectors that can confirm something in it.

    One RE2 pass with every prefilter as one alternation finds the rows; the per-kind passes then run on those rows
    only (a few percent of a chat corpus), and the Python regexes only for the kinds each row can hold.
    """
    if not kinds or len(texts) == 0:
        return np.zeros(0, dtype=np.int64), []
    filled = pc.fill_null(texts, "")
    either = "|".join(f"(?:{DETECTOR[kind].prefilter})" for kind in kinds)
    rows = np.flatnonzero(pc.match_substring_regex(filled, either).to_numpy(zero_copy_only=False))
    if len(rows) == 0:
        return rows, []
    subset = filled.take(pa.array(rows, type=pa.int64()))
    hits = np.stack(
        [pc.match_substring_regex(subset, DETECTOR[kind].prefilter).to_numpy(zero_copy_only=False) for kind in kinds],
        axis=1,
    )
    per_row = [tuple(kind for kind, hit in zip(kinds, row_hits, strict=True) if hit) for row_hits in hits.tolist()]
    return rows, per_row


def candidate_rows(texts: pa.Array, kinds: tuple[str, ...] = KINDS) -> np.ndarray:
    """Indices of the texts that can hold a match of `kinds` (an RE2 pass; a superset of the hits)."""
    return candidate_kinds(texts, kinds)[0]


def pii_counts(texts: pa.Array | pa.ChunkedArray, kinds: tuple[str, ...] = KINDS) -> dict[str, np.ndarray]:
    """Per text, how many confirmed matches of each kind it holds (int32 arrays keyed by kind)."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    counts = {kind: np.zeros(len(texts), dtype=np.int32) for kind in kinds}
    rows, row_kinds = candidate_kinds(texts, kinds)
    values = texts.take(pa.array(rows, type=pa.int64())).to_pylist()
    for row, text, can_hold in zip(rows, values, row_kinds, strict=True):
        for f in find_pii(text or "", can_hold):
            counts[f.kind][row] += 1
    return counts


def redact_array(
    texts: pa.Array | pa.ChunkedArray, kinds: tuple[str, ...] = KINDS
) -> tuple[pa.Array, dict[str, np.ndarray]]:
    """`texts` with every match replaced by its placeholder, and the per-text counts of what was replaced."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    counts = {kind: np.zeros(len(texts), dtype=np.int32) for kind in kinds}
    rows, row_kinds = candidate_kinds(texts, kinds)
    if len(rows) == 0:
        return texts, counts
    values = texts.to_pylist()
    for row, can_hold in zip(rows, row_kinds, strict=True):
        if values[row] is None:
            continue
        values[row], found = redact(values[row], can_hold)
        for f in found:
            counts[f.kind][row] += 1
    return pa.array(values, type=texts.type), counts


def _redact_messages(column: pa.Array, kinds: tuple[str, ...]) -> tuple[pa.Array, np.ndarray]:
    """A list<message> column with `content` and `reasoning` redacted, and the matches per row (all kinds)."""
    flat = pc.list_flatten(column)
    parents = pc.list_parent_indices(column).to_numpy(zero_copy_only=False)
    found = np.zeros(len(column), dtype=np.int64)
    children = []
    for field in flat.type:
        child = pc.struct_field(flat, field.name)
        if field.name in ("content", "reasoning"):
            child, counts = redact_array(child, kinds)
            per_message = sum(counts.values(), np.zeros(len(flat), dtype=np.int64))
            found += np.bincount(parents, weights=per_message, minlength=len(column)).astype(np.int64)
        children.append(child)
    rebuilt = pa.StructArray.from_arrays(children, fields=list(flat.type), mask=flat.is_null())
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
    offsets = pa.array(np.concatenate(([0], np.cumsum(lengths))).astype(np.int32))
    return pa.ListArray.from_arrays(offsets, rebuilt, type=column.type, mask=column.is_null()), found


def redact_examples(examples: pa.Table, kinds: tuple[str, ...] = KINDS) -> tuple[pa.Table, np.ndarray]:
    """`examples` (EXAMPLE_SCHEMA) with PII in every message's content and reasoning, and in `text`, replaced by
    placeholders; and how many matches each row had."""
    found = np.zeros(examples.num_rows, dtype=np.int64)
    for name in ("messages", "chosen", "rejected"):
        column = examples[name].combine_chunks()
        if pc.sum(pc.fill_null(pc.list_value_length(column), 0)).as_py():
            column, hits = _redact_messages(column, kinds)
            found += hits
            examples = examples.set_column(examples.schema.get_field_index(name), examples.schema.field(name), column)
    text, counts = redact_array(examples["text"], kinds)
    found += sum(counts.values(), np.zeros(examples.num_rows, dtype=np.int64))
    examples = examples.set_column(examples.schema.get_field_index("text"), examples.schema.field("text"), text)
    return examples, found
