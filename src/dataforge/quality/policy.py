"""The recipe's `quality:` section: which signals filter rows, at which thresholds, per role; and what PII does.

```yaml
quality:
  lang: {assistant: [en, zh], min_score: 0.65}   # allowed languages per role, and the least confidence
  max_dup_line_share: 0.3                         # a number: the assistant's; {user: 0.5, assistant: 0.3}: each
  min_answer_question_ratio: 0.05                 # row-level signals take a number
  refusal: drop                                   # keep (default) | drop
  pii: redact                                     # keep (default) | redact | reject
```

Every key is a known signal (`max_<signal>`, `min_<signal>`) or setting; anything else is a recipe error with
a suggestion, like every other section.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from .pii import KINDS
from .repetition import DUP_NGRAMS, TOP_NGRAMS

Share = Annotated[float, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class PerRole(_Strict):
    """A threshold for each role; an unset role is not checked."""

    user: Share | None = None
    assistant: Share | None = None


class LangRule(_Strict):
    """Languages (ISO 639 codes as fastText's lid.176 writes them: en, zh, fr, …) each role's text must be in."""

    user: list[str] | None = Field(default=None, min_length=1, description="Languages the user turns may be in.")
    assistant: list[str] | None = Field(
        default=None, min_length=1, description="Languages the assistant turns may be in."
    )
    min_score: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.0, description="Least language-ID confidence; below it the row is filtered (reason `lang`)."
    )


# Per-role signals a threshold can be put on, with what they measure (README: Quality signals).
ROLE_THRESHOLDS: dict[str, str] = {
    "chars": "characters of the role's turns",
    "words": "words of the role's turns",
    "dup_line_share": "lines repeating an earlier line / lines (Gopher: max 0.3)",
    "dup_line_char_share": "characters in repeated lines / characters (Gopher: max 0.2)",
    "dup_para_share": "paragraphs repeating an earlier one / paragraphs (Gopher: max 0.3)",
    "dup_para_char_share": "characters in repeated paragraphs / characters (Gopher: max 0.2)",
    **{
        f"top_{n}gram_share": f"characters of the most frequent repeated {n}-gram / word characters" for n in TOP_NGRAMS
    },
    **{f"dup_{n}gram_share": f"characters covered by repeated {n}-grams / word characters" for n in DUP_NGRAMS},
    "lrs_share": "characters of the longest repeated word sequence / word characters",
    "non_alpha_share": "characters neither letters nor whitespace / non-whitespace characters",
    "bad_char_share": "characters in U+FFFD or mojibake / characters",
}
ROW_THRESHOLDS: dict[str, str] = {
    "answer_question_ratio": "assistant characters / user characters",
    "words_per_turn": "assistant words per assistant turn",
}
MIN_ONLY_LOW = ("chars", "words")  # the role signals a lower bound makes sense for


def _threshold_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, what in ROLE_THRESHOLDS.items():
        fields[f"max_{name}"] = (Share | PerRole | None, Field(default=None, description=f"Most {what}."))
        if name in MIN_ONLY_LOW:
            fields[f"min_{name}"] = (Share | PerRole | None, Field(default=None, description=f"Fewest {what}."))
    for name, what in ROW_THRESHOLDS.items():
        fields[f"max_{name}"] = (Share | None, Field(default=None, description=f"Most {what}."))
        fields[f"min_{name}"] = (Share | None, Field(default=None, description=f"Least {what}."))
    return fields


class _QualityBase(_Strict):
    """Quality signals (README: Quality signals): rows breaking a threshold are filtered with the signal as reason."""

    lang: LangRule | None = Field(default=None, description="Allowed languages per role, and the least confidence.")
    lang_id: bool = Field(
        default=True, description="Identify languages even without a `lang` rule (for the report's language mix)."
    )
    pii: Literal["keep", "redact", "reject"] = Field(
        default="keep",
        description="PII found in any text: `keep` counts it; `redact` replaces it by typed placeholders (<EMAIL>); "
        "`reject` filters the row (reason `pii`).",
    )
    pii_kinds: list[Literal[KINDS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(KINDS), description="Which kinds of PII are looked for."
    )
    refusal: Literal["keep", "drop"] = Field(default="keep", description="`drop` filters rows whose assistant refuses.")
    boilerplate: Literal["keep", "drop"] = Field(
        default="keep", description="`drop` filters rows whose assistant turns hold boilerplate phrases."
    )
    refusal_phrases: list[str] = Field(default_factory=list, description="More refusal phrases (case-insensitive).")
    boilerplate_phrases: list[str] = Field(default_factory=list, description="More boilerplate phrases.")


Quality = create_model("Quality", __base__=_QualityBase, **_threshold_fields())
Quality.__doc__ = _QualityBase.__doc__


@dataclass(frozen=True)
class Rule:
    """One check: `signal` of `role` (None: a row-level signal) must be `op` ('max' or 'min') `limit`."""

    signal: str
    role: str | None
    op: str
    limit: float

    @property
    def path(self) -> tuple[str, ...]:
        return (self.role, self.signal) if self.role else (self.signal,)


def threshold_rules(policy: BaseModel) -> list[Rule]:
    """The recipe's thresholds as rules, in recipe-model order; a bare number on a role signal is the assistant's."""
    rules: list[Rule] = []
    for key in type(policy).model_fields:
        op, _, signal = key.partition("_")
        if op not in ("max", "min") or signal not in ROLE_THRESHOLDS | ROW_THRESHOLDS:
            continue
        value = getattr(policy, key)
        if value is None:
            continue
        if signal in ROW_THRESHOLDS:
            rules.append(Rule(signal, None, op, float(value)))
        elif isinstance(value, PerRole):
            rules += [Rule(signal, role, op, float(v)) for role in ("user", "assistant") if (v := getattr(value, role))
                      is not None]  # fmt: skip
        else:
            rules.append(Rule(signal, "assistant", op, float(value)))
    return rules
