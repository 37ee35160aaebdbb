from builders import chat, qa, quiet, table
from dataforge.recipe import Filters
from dataforge.stages.filter import filter_examples, row_measures


def test_row_measures_count_turns_chars_and_blank_messages():
    t = table(
        chat("s", 0, ("user", "abc"), ("assistant", "de"), ("user", "f"), ("assistant", "   ")),
        qa("s", 1, "x", "yz"),
    )
    m = row_measures(t)
    assert m["turns"].tolist() == [2, 1]
    assert m["chars"].tolist() == [3 + 2 + 1 + 3, 3]
    assert m["blank"].tolist() == [1, 0]


def test_each_rule_filters_with_its_reason_and_first_rule_wins():
    t = table(
        qa("s", 0, "q", "   "),  # blank answer
        chat("s", 1, *[("user", "q"), ("assistant", "a")] * 4),  # 4 turns
        qa("s", 2, "q", "a" * 50),  # long
        qa("s", 3, "q", "ok"),
        chat("s", 4, ("user", "q"), ("assistant", " "), *[("user", "q"), ("assistant", "a")] * 3),  # blank AND long
    )
    result = filter_examples(t, Filters(max_turns=3, max_chars=40), quiet)
    assert result.tables["examples"]["id"].to_pylist() == ["s:3"]
    reasons = {r["example_id"]: r["reason"] for r in result.tables["rejects"].to_pylist()}
    assert reasons == {"s:0": "blank_message", "s:1": "too_many_turns", "s:2": "too_many_chars", "s:4": "blank_message"}
    assert set(result.tables["rejects"]["outcome"].to_pylist()) == {"filtered"}
    assert result.stats == {"filtered": 4}


def test_defaults_keep_everything_valid_and_non_blank():
    t = table(qa("s", 0, "q", "a"), chat("s", 1, *[("user", "q"), ("assistant", "a")] * 20))
    result = filter_examples(t, Filters(), quiet)
    assert result.tables["examples"].num_rows == 2
    assert result.tables["rejects"].num_rows == 0


def test_drop_empty_off_keeps_blank_rows():
    result = filter_examples(table(qa("s", 0, "q", "  ")), Filters(drop_empty=False), quiet)
    assert result.tables["examples"].num_rows == 1
