"""Language ID, character ratios, phrases, per-role text and the `quality` struct on hand-made rows."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from builders import chat, example, qa, table
from dataforge.quality import lang
from dataforge.quality.phrases import BOILERPLATE, REFUSAL, all_phrases, contains_any, first_phrase
from dataforge.quality.ratios import bad_chars, char_signals
from dataforge.quality.signals import QUALITY_TYPE, SignalOptions, compute_signals, with_signals
from dataforge.quality.turns import role_text
from dataforge.record import Kind, Message, Role


def test_language_of_known_sentences_from_the_bundled_model() -> None:
    langs, scores = lang.detect(
        [
            "The weather is lovely today and we are going for a walk in the park.",
            "今天天气很好，我们去公园散步吧。",
            "Il fait très beau aujourd'hui et nous allons nous promener dans le parc.",
            "Das Wetter ist heute schön und wir gehen im Park spazieren.",
            "",
            None,
            " \n ",
        ]
    )
    assert langs == ["en", "zh", "fr", "de", None, None, None]
    assert all(s > 0.8 for s in scores[:4]) and all(s != s for s in scores[4:])  # NaN where no text


def test_the_model_is_the_file_inside_the_installed_wheel() -> None:
    path = lang.model_path()
    assert path.name == "lid.176.ftz" and "site-packages" in path.parts and path.stat().st_size == 938_013


def test_language_reads_only_the_first_characters_and_one_line() -> None:
    long = "This is English. " * 100 + "这是中文。" * 500  # the Chinese starts past MAX_CHARS
    (code,), _ = lang.detect([long])
    assert code == "en"
    assert lang._clean("a\nb\t c") == "a b c"


def test_character_ratios() -> None:
    got = char_signals(pa.array(["café", "cafÃ© and itâ€™s", "a\ufffdb", "1234 ab", None]))
    assert list(got["chars"]) == [4, 16, 3, 7, 0]
    assert list(got["non_alpha_share"]) == [0.0, 3 / 14, 1 / 3, 4 / 6, 0.0]
    assert list(got["bad_char_share"]) == [0.0, 5 / 16, 1 / 3, 0.0, 0.0]
    assert bad_chars("cafÃ© and itâ€™s") == 5
    # "Ã" + no-break space is à read as Latin-1; "ÃO" in Portuguese capitals is not mojibake.
    assert bad_chars("SÃO PAULO, Ã\xa0la carte") == 2


def test_refusal_and_boilerplate_phrases_match_case_and_apostrophe_insensitively() -> None:
    refusal = all_phrases(REFUSAL)
    texts = pa.array(["I’m sorry, but I  CAN'T do that.", "Sure, here it is.", None, "抱歉，我无法回答这个问题。"])
    assert list(contains_any(texts, refusal)) == [True, False, False, True]
    assert first_phrase("Well, as an AI language model, I think", all_phrases(BOILERPLATE)) == "as an AI language model"
    assert list(contains_any(pa.array(["we ship on mondays"]), all_phrases({}, ("ship on Mondays",)))) == [True]


def test_role_text_joins_the_turns_of_each_role() -> None:
    t = table(
        chat("s", 0, ("user", "hi"), ("assistant", "hello"), ("user", "again"), ("assistant", "sure"), system="sys"),
        qa("s", 1, "q", ""),
        example(2, kind=Kind.PRETRAIN, text="raw text"),
        example(
            3,
            Message(Role.USER, "pick"),
            kind=Kind.PREFERENCE,
            chosen=(Message(Role.ASSISTANT, "good", reasoning="because"),),
            rejected=(Message(Role.ASSISTANT, "bad"),),
        ),
    )
    user, assistant, every = (role_text(t, r) for r in ("user", "assistant", "all"))
    assert user.text.to_pylist() == ["hi\n\nagain", "q", None, "pick"]
    assert list(user.turns) == [2, 1, 0, 1]
    assert assistant.text.to_pylist() == ["hello\n\nsure", None, "raw text", "good"]
    assert every.text.to_pylist() == [
        "sys\n\nhi\n\nhello\n\nagain\n\nsure",
        "q",
        "raw text",
        "pick\n\ngood\n\nbecause\n\nbad",
    ]
    assert role_text(t.slice(1, 3), "assistant").text.to_pylist() == [None, "raw text", "good"]


def test_quality_struct_on_hand_made_rows(tmp_path) -> None:
    t = table(
        qa("s", 0, "What is the capital of France?", "The capital of France is Paris. The capital of France is Paris."),
        qa("s", 1, "Mail me at a@b.com or call 415-555-2671", "I'm sorry, but I can't help with that."),
        example(2, kind=Kind.PRETRAIN, text="raw text here"),
    )
    rows = compute_signals(t).to_pylist()
    first = rows[0]
    assert first["user"]["lang"] == "en" and first["assistant"]["lang"] == "en"
    assert (first["user"]["chars"], first["assistant"]["chars"], first["assistant"]["words"]) == (30, 63, 12)
    assert first["answer_question_ratio"] == 63 / 30
    assert first["words_per_turn"] == 12.0
    assert first["assistant"]["dup_6gram_share"] == 1.0 and first["assistant"]["lrs_share"] == 0.5
    assert first["pii"]["total"] == 0
    second = rows[1]
    assert second["assistant"]["refusal"] is True and second["assistant"]["boilerplate"] is False
    assert second["pii"] == {**{k: 0 for k in second["pii"]}, "email": 1, "phone": 1, "total": 2}
    third = rows[2]
    assert third["user"]["turns"] == 0 and third["user"]["dup_line_share"] is None
    assert third["answer_question_ratio"] is None
    assert third["assistant"]["chars"] == 13

    out = with_signals(t, SignalOptions(lang=False))
    assert out.schema.field("quality").type == QUALITY_TYPE
    assert out.column("quality").to_pylist()[0]["assistant"]["lang"] is None
    pq.write_table(with_signals(out), tmp_path / "q.parquet")  # replaces the column; round-trips in Parquet
    back = pq.read_table(tmp_path / "q.parquet")
    assert back.column_names.count("quality") == 1
    assert back.column("quality").to_pylist() == compute_signals(t).to_pylist()


def test_empty_table() -> None:
    assert len(compute_signals(table())) == 0


@pytest.mark.parametrize("role", ["user", "assistant"])
def test_recipe_phrases_extend_the_lists(role: str) -> None:
    t = table(qa("s", 0, "Per our policy, no.", "Per our policy, no."))
    got = compute_signals(t, SignalOptions(lang=False, refusal_phrases=("per our policy",))).to_pylist()[0]
    assert got[role]["refusal"] is True
