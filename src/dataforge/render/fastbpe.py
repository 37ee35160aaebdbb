"""A tiktoken encoder for byte-level BPE tokenizers (Qwen2/2.5/3, Llama 3, GLM-4 …), checked against the model's own.

tiktoken encodes the same vocabulary several times faster than the `tokenizers` library, but it is a different
program: it merges the adjacent pair whose concatenation has the lowest rank, where `tokenizers` applies the
merges list in order; it splits text with its own regex engine; it knows nothing of normalizers, added-token
flags or offset trimming. So an encoder is built only for tokenizers whose structure says the two agree
(`unsupported`), and used only after it reproduced the tokenizer's ids exactly on probe texts and on the
first texts it is asked to encode (`FastBPE.disagreements`, called by `build` and by `tokens.tokenize`).
Anything else keeps the `tokenizers` path, with the reason.

Labels need each token's place in the text: tiktoken gives no offsets, but a byte-level token is a run of the
text's UTF-8 bytes, so the byte offsets are a cumulative sum of the tokens' byte lengths (`token_bytes`).
"""

from __future__ import annotations

import json
import logging
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# The pre-tokenizer regex of GPT-2's ByteLevel(use_regex=True), as `tokenizers` writes it.
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

# Texts every candidate encoder must encode exactly as the tokenizer does before it is used: the places where
# regex engines, merge orders and special-token matching could disagree.
PROBES = (
    "Hello, world! It's a test: don't, I'LL, we've, they'RE, she'd.",
    "Numbers 0 7 42 123 1234 12345678901234567890 3.14159 -2e10 1,000,000 ١٢٣ ½ Ⅻ",
    "  leading spaces, trailing spaces   \n\n\n\ttabs\t\tand\r\nCRLF \u00a0nbsp \u2003em space\u3000ideographic",
    "def f(x):\n    return x ** 2  # comment\n\n\nclass A:\n\tpass\n",
    "中文字符测试，你好吗？日本語のテキスト。한국어 텍스트입니다.",
    "Emoji 🦜🦜 👩‍👩‍👧‍👦 🇫🇷 ✅❌ and symbols ∑∫√∞ ≠ ≤ €£¥ ©®™ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "Accents: café naïve Zürich São Paulo Ελληνικά русский текст עברית العربية हिन्दी ไทย",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa !!!!!!!!!!!!!!!! ............ ---------- ========",
    '{"name": "get_weather", "arguments": {"city": "Paris", "unit": null}}\n<tool_call>\n</tool_call>',
    "https://example.org/path?q=1&x=%20y#frag user@example.com C:\\Windows\\path",
    "MiXeD CaSe WORDS AND ALLCAPS, camelCaseWord snake_case_word kebab-case-word",
    "",
    " ",
    "\n",
)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from bytes to the printable characters byte-level vocabularies are written in."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


def unsupported(spec: dict[str, Any]) -> str | None:
    """Why the serialised `tokenizers` pipeline `spec` cannot be reproduced by tiktoken, or None when it can.

    What is checked: a BPE model with no dropout, byte fallback, unknown token or word affixes; a byte-level
    alphabet covering all 256 bytes; merges whose results' ids rise in merge order (tiktoken merges by the
    result's rank, `tokenizers` by the merge's position); a pre-tokenizer that is a regex split followed by
    ByteLevel, or ByteLevel with GPT-2's regex; no normalizer other than NFC (texts already in NFC are left
    alone by it; others go to the tokenizer); added tokens without strip or single-word flags, none a
    prefix of another; no post-processor that trims offsets. Whether tiktoken then gives the same ids is
    for `FastBPE.disagreements` to find out.
    """
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        return f"model is {model.get('type')}, not BPE"
    for key in ("dropout", "unk_token"):
        if model.get(key) is not None:
            return f"BPE with {key}={model[key]!r}"
    if model.get("byte_fallback"):
        return "BPE with byte_fallback (a SentencePiece-style vocabulary, not a byte-level one)"
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        return "BPE with a subword prefix or word suffix"
    normalizer = spec.get("normalizer")
    if normalizer is not None and normalizer.get("type") != "NFC":
        return f"normalizer {normalizer.get('type')} changes the text"
    if pattern(spec) is None:
        return "pre-tokenizer is not a regex split followed by ByteLevel (nor GPT-2's ByteLevel)"
    if _trims_offsets(spec.get("post_processor")):
        return "post-processor trims offsets"
    alphabet = set(bytes_to_unicode().values())
    vocab: dict[str, int] = model.get("vocab") or {}
    if any(c not in alphabet for token in vocab for c in token):
        return "vocabulary has tokens outside the byte-level alphabet"
    if not alphabet <= vocab.keys():
        return "vocabulary lacks some of the 256 single bytes"
    previous = -1
    for n, merge in enumerate(model.get("merges") or ()):
        left, right = merge if isinstance(merge, list) else merge.split(" ", 1)
        rank = vocab.get(left + right)
        if rank is None:
            return f"merge {n} ({left!r} + {right!r}) makes no vocabulary token"
        if rank < previous:
            return f"merge {n} makes token {rank} after token {previous}: merge order is not rank order"
        previous = rank
    added = spec.get("added_tokens") or []
    for token in added:
        if token.get("lstrip") or token.get("rstrip") or token.get("single_word"):
            return f"added token {token['content']!r} strips whitespace or matches single words only"
    # tiktoken finds added tokens with a regex alternation in no set order, `tokenizers` takes the longest match:
    # the two agree unless one added token starts another.
    contents = {t["content"] for t in added}
    if any(c[:end] in contents for c in contents for end in range(1, len(c))):
        return "an added token is a prefix of another"
    return None


def pattern(spec: dict[str, Any]) -> str | None:
    """The tiktoken regex equivalent to the pre-tokenizer, or None when it has none."""
    pre = spec.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel":
        return GPT2_PATTERN if pre.get("use_regex", True) and not pre.get("add_prefix_space") else None
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else None
    if not steps or len(steps) != 2:
        return None
    split, byte_level = steps
    regex = (split.get("pattern") or {}).get("Regex")
    if (
        split.get("type") != "Split"
        or regex is None
        or split.get("behavior") != "Isolated"
        or split.get("invert")
        or byte_level.get("type") != "ByteLevel"
        or byte_level.get("use_regex")
        or byte_level.get("add_prefix_space")
    ):
        return None
    return regex


def _trims_offsets(post: dict[str, Any] | None) -> bool:
    if not post:
        return False
    if post.get("type") == "Sequence":
        return any(_trims_offsets(p) for p in post.get("processors") or ())
    return post.get("type") in ("ByteLevel", "RobertaProcessing") and bool(post.get("trim_offsets"))


@dataclass
class FastBPE:
    """A tiktoken encoder equivalent to a byte-level BPE tokenizer, with each token's length in bytes."""

    encoding: Any  # tiktoken.Encoding
    token_bytes: np.ndarray  # int64, indexed by token id
    specials: frozenset[str]  # every added token: the tokenizer matches them in text before BPE
    nfc: bool  # the tokenizer normalises to NFC: texts not already in NFC must go to it

    def takes(self, text: str) -> bool:
        """Whether `text` can be encoded here (else the tokenizer must, e.g. text its normalizer changes)."""
        return not self.nfc or text.isascii() or unicodedata.is_normalized("NFC", text)

    def encode(self, text: str) -> np.ndarray:
        """Token ids of `text`, added tokens included, as uint32."""
        return self.encoding.encode_to_numpy(text, allowed_special=self.specials, disallowed_special=())

    def disagreements(self, tok: Any, texts: Sequence[str]) -> list[str]:
        """The texts (of those it takes) on which the encoder's ids differ from the tokenizer's."""
        texts = [t for t in texts if self.takes(t)]
        if not texts:
            return []
        expected = tok(list(texts), add_special_tokens=False, return_attention_mask=False)["input_ids"]
        return [t for t, ids in zip(texts, expected, strict=True) if self.encode(t).tolist() != list(ids)]


def build(tok: Any) -> tuple[FastBPE | None, str]:
    """(encoder, why) for a transformers fast tokenizer: an encoder checked on `PROBES`, or None and the reason."""
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        return None, "not a fast tokenizer"
    try:
        import tiktoken
    except ImportError:
        return None, "tiktoken is not installed"
    spec = json.loads(backend.to_str())
    why = unsupported(spec)
    if why is not None:
        return None, why
    to_byte = {c: b for b, c in bytes_to_unicode().items()}
    vocab: dict[str, int] = spec["model"]["vocab"]
    ranks = {bytes(to_byte[c] for c in token): rank for token, rank in vocab.items()}
    added = {t["content"]: t["id"] for t in spec.get("added_tokens") or ()}
    size = max([*ranks.values(), *added.values()]) + 1
    token_bytes = np.zeros(size, np.int64)
    for token, rank in ranks.items():
        token_bytes[rank] = len(token)
    for content, rank in added.items():
        token_bytes[rank] = len(content.encode())
    try:
        encoding = tiktoken.Encoding(
            f"dataforge-{id(tok)}", pat_str=pattern(spec), mergeable_ranks=ranks, special_tokens=added
        )
    except Exception as exc:  # e.g. a regex tiktoken's engine does not accept
        return None, f"tiktoken refused the vocabulary or regex: {exc}"
    fast = FastBPE(encoding, token_bytes, frozenset(added), nfc=spec.get("normalizer") is not None)
    probes = [*PROBES, "".join(added), " ".join(added) + " x", "x\n".join(added)]
    wrong = fast.disagreements(tok, probes)
    if wrong:
        return None, f"tiktoken's ids differ from the tokenizer's on {wrong[0][:60]!r}"
    return fast, "byte-level BPE: tiktoken, verified on probe texts"
