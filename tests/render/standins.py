"""Stand-in tokenizers for the template-only fixture families, built from a real vocabulary of the same kind.

The fixtures hold only the chat template (and sometimes the tokenizer_config.json) of DeepSeek-R1-Distill-Qwen,
SmolLM3, Phi-4-mini, Mistral v0.3, Gemma-2 and Gemma-3: their vocabularies are megabytes. `load_target` refuses
such folders (they cannot encode ordinary text), so the fidelity suite renders these templates through a
stand-in: a real tokenizer of the same kind with none of its own added tokens, plus the family's special and
added tokens, and the family's own template.

* byte-level BPE (DeepSeek-R1-Distill-Qwen is Qwen-based; SmolLM3 and Phi-4-mini are byte-level BPEs too):
  the Qwen2.5 `vocab.json` + `merges.txt` (Qwen2 pre-tokenizer);
* SentencePiece (Mistral v0.3, Gemma-2, Gemma-3): the Mistral v0.2 `tokenizer.model` (its `<unk>`/`<s>`/`</s>`
  kept where a family uses the same strings).

Each family's tokens come from its tokenizer_config.json (`added_tokens_decoder`, with its `special` flag, and
the bos/eos/unk/pad tokens) where the fixture has one; for the families whose fixture has none (Mistral v0.3,
Gemma-2, DeepSeek's config lists only bos/eos) they are written out below from the template's own control
strings. Token ids differ from the real model's, text does not: what the template renders, which strings are
single special tokens and how ordinary text is split by a vocabulary of that kind are what the suite checks.
Gemma-3's 6,406 non-special `<unusedN>`/image placeholder tokens are left out (the templates never write them).
"""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from dataforge.render.target import LoadedTarget, tokenizer_digest

BPE, SENTENCEPIECE = "qwen2.5-instruct", "mistral-7b-instruct-v0.2"

# family → (base vocabulary family, extra tokens as (content, special) for fixtures without a full config)
STANDINS: dict[str, tuple[str, list[tuple[str, bool]]]] = {
    "deepseek-r1-distill-qwen": (
        BPE,
        [
            ("<｜User｜>", False),
            ("<｜Assistant｜>", False),
            ("<think>", False),
            ("</think>", False),
            ("<｜tool▁calls▁begin｜>", False),
            ("<｜tool▁calls▁end｜>", False),
            ("<｜tool▁call▁begin｜>", False),
            ("<｜tool▁call▁end｜>", False),
            ("<｜tool▁sep｜>", False),
            ("<｜tool▁outputs▁begin｜>", False),
            ("<｜tool▁outputs▁end｜>", False),
            ("<｜tool▁output▁begin｜>", False),
            ("<｜tool▁output▁end｜>", False),
        ],
    ),
    "smollm3": (BPE, []),
    "phi-4-mini-instruct": (BPE, []),
    "mistral-7b-instruct-v0.3": (
        SENTENCEPIECE,
        [
            (t, True)
            for t in (
                "[INST]",
                "[/INST]",
                "[TOOL_CALLS]",
                "[AVAILABLE_TOOLS]",
                "[/AVAILABLE_TOOLS]",
                "[TOOL_RESULTS]",
                "[/TOOL_RESULTS]",
            )
        ],
    ),
    "gemma-2-it": (SENTENCEPIECE, [(t, True) for t in ("<bos>", "<eos>", "<pad>", "<start_of_turn>", "<end_of_turn>")]),
    "gemma-3-it": (SENTENCEPIECE, []),
}
SPECIAL_MAP = {  # bos/eos/unk/pad of the families whose fixture has no tokenizer_config.json
    "mistral-7b-instruct-v0.3": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "gemma-2-it": {"bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>", "pad_token": "<pad>"},
}


def family_template(folder: Path) -> str:
    """The family's own chat template: chat_template.jinja, chat_template.json or tokenizer_config.json."""
    if (folder / "chat_template.jinja").exists():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    if (folder / "chat_template.json").exists():
        return json.loads((folder / "chat_template.json").read_text(encoding="utf-8"))["chat_template"]
    return json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))["chat_template"]


def _content(value: Any) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


def family_tokens(family: str, folder: Path) -> tuple[dict[str, str], list[tuple[str, bool]]]:
    """(bos/eos/unk/pad map, [(token, special)]) of the family, from its config or the table above."""
    extra = STANDINS[family][1]
    config_path = folder / "tokenizer_config.json"
    if not config_path.exists():
        return dict(SPECIAL_MAP[family]), list(extra)
    config = json.loads(config_path.read_text(encoding="utf-8"))
    roles = {k: _content(config.get(k)) for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    roles = {k: v for k, v in roles.items() if v}
    tokens = [(v["content"], bool(v.get("special"))) for v in (config.get("added_tokens_decoder") or {}).values()]
    if family == "gemma-3-it":
        tokens = [(t, s) for t, s in tokens if s]
    tokens += [(t, True) for t in roles.values() if t not in {c for c, _ in tokens}]
    return roles, tokens + [e for e in extra if e[0] not in {c for c, _ in tokens}]


@functools.cache
def _scratch() -> tempfile.TemporaryDirectory:
    """Where the base vocabularies are copied; removed when the interpreter exits."""
    return tempfile.TemporaryDirectory(prefix="dataforge-standins-")


@functools.cache
def _base(base_folder: Path, kind: str) -> Path:
    """A folder holding only the base vocabulary, no added tokens, no template."""
    out = Path(_scratch().name) / kind
    out.mkdir()
    if kind == BPE:
        for name in ("vocab.json", "merges.txt"):
            shutil.copy(base_folder / name, out / name)
        config = {"tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": None, "unk_token": None}
    else:
        shutil.copy(base_folder / "tokenizer.model", out / "tokenizer.model")
        config = {
            "tokenizer_class": "LlamaTokenizer",
            "bos_token": "<s>",
            "eos_token": "</s>",
            "unk_token": "<unk>",
            "add_bos_token": False,
            "add_eos_token": False,
            "legacy": False,
        }
    (out / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return out


def standin(family: str, fixture_path) -> LoadedTarget:
    """A LoadedTarget over the stand-in tokenizer of a template-only `family` (see the module docstring)."""
    return _standin(
        family,
        fixture_path(f"templates/{family}").resolve(),
        fixture_path(f"templates/{STANDINS[family][0]}").resolve(),
    )


@functools.cache
def _standin(family: str, folder: Path, base_folder: Path) -> LoadedTarget:
    from tokenizers import AddedToken
    from transformers import AutoTokenizer

    kind = STANDINS[family][0]
    tok = AutoTokenizer.from_pretrained(str(_base(base_folder, kind)))
    roles, tokens = family_tokens(family, folder)
    vocab = tok.get_vocab()
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t, s in tokens if not s and t not in vocab])
    tok.add_special_tokens(
        {
            **roles,
            "additional_special_tokens": [
                AddedToken(t, special=True, normalized=False) for t, s in tokens if s and t not in roles.values()
            ],
        }
    )
    tok.chat_template = family_template(folder)
    return LoadedTarget(
        name=f"{family} (stand-in)",
        tokenizer=tok,
        template=tok.chat_template,
        tokenizer_digest=tokenizer_digest(tok),
        template_digest=None,
        source=str(folder),
    )
