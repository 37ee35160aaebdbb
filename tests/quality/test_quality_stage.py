"""The quality stage: thresholds per signal and role filter rows with the signal as reason and the value in the
message; PII is kept, redacted or rejected; the recipe section refuses unknown signals."""

from __future__ import annotations

import pydantic
import pytest

from builders import qa, quiet, table
from dataforge.quality.policy import Quality, Rule, threshold_rules
from dataforge.record import table_to_examples
from dataforge.stages.quality import quality_examples

ROWS = table(
    qa("s", 0, "What is the capital of France?", "Paris is the capital and largest city of France."),
    qa("s", 1, "Say it again", "again\nagain\nagain\nagain"),  # 3 of 4 lines repeat
    qa("s", 2, "Wie spät ist es?", "Es ist drei Uhr nachmittags, sagte er freundlich."),  # German answer
    qa("s", 3, "Mail me at john@example.com", "I'm sorry, but I can't help with that request."),
)


def run(**section):
    return quality_examples(ROWS, Quality(**section), "quality:s", quiet)


def test_threshold_filters_with_the_signal_as_reason_and_the_value_in_the_message() -> None:
    out = run(max_dup_line_share=0.5, lang_id=False)
    rejects = out.tables["rejects"].to_pylist()
    assert [(r["example_id"], r["reason"], r["outcome"], r["field"]) for r in rejects] == [
        ("s:1", "dup_line_share", "filtered", "quality.assistant.dup_line_share")
    ]
    assert rejects[0]["message"] == "assistant dup_line_share 0.75 > max 0.5"
    assert out.tables["examples"]["id"].to_pylist() == ["s:0", "s:2", "s:3"]
    assert out.stats["filtered"] == 1 and out.stats["removed"] == {"dup_line_share": 1}
    signals = out.tables["signals"]
    assert signals["kept"].to_pylist() == [True, False, True, True]
    assert signals["reason"].to_pylist() == [None, "dup_line_share", None, None]


def test_language_rule_per_role_and_first_failing_check_wins() -> None:
    out = run(lang={"assistant": ["en"], "min_score": 0.5}, refusal="drop", max_dup_line_share=0.5)
    reasons = {r["example_id"]: (r["reason"], r["message"]) for r in out.tables["rejects"].to_pylist()}
    assert set(reasons) == {"s:1", "s:2", "s:3"}
    assert reasons["s:2"][0] == "lang" and reasons["s:2"][1].startswith("assistant language de (")
    assert reasons["s:2"][1].endswith("); expected en with confidence >= 0.5")
    assert reasons["s:3"] == ("refusal", "assistant turn holds a refusal phrase")
    assert out.stats["lang"]["assistant"] == {"en": 1}
    assert len(out.tables["examples"]) + out.stats["filtered"] == len(ROWS)


def test_pii_keep_redact_reject() -> None:
    kept = run(lang_id=False)
    assert kept.stats["pii_rows"] == 1 and kept.stats["filtered"] == 0
    assert table_to_examples(kept.tables["examples"])[3].messages[0].content == "Mail me at john@example.com"
    redacted = run(pii="redact", lang_id=False)
    assert table_to_examples(redacted.tables["examples"])[3].messages[0].content == "Mail me at <EMAIL>"
    assert redacted.stats["redacted"] == 1
    rejected = run(pii="reject", lang_id=False)
    assert [(r["example_id"], r["reason"], r["message"]) for r in rejected.tables["rejects"].to_pylist()] == [
        ("s:3", "pii", "PII found: 1 email")
    ]


def test_a_number_is_the_assistants_threshold_and_per_role_values_apply_to_each() -> None:
    policy = Quality(max_top_2gram_share=0.2, max_words={"user": 50, "assistant": 500}, min_words_per_turn=2)
    assert threshold_rules(policy) == [
        Rule("words", "user", "max", 50.0),
        Rule("words", "assistant", "max", 500.0),
        Rule("top_2gram_share", "assistant", "max", 0.2),
        Rule("words_per_turn", None, "min", 2.0),
    ]


@pytest.mark.parametrize(
    "section",
    [{"max_dup_lines": 0.3}, {"lang": {"bot": ["en"]}}, {"pii": "mask"}, {"max_words_per_turn": {"user": 3}}],
)
def test_unknown_signals_and_values_are_errors(section) -> None:
    with pytest.raises(pydantic.ValidationError):
        Quality(**section)
