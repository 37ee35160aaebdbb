"""Render fidelity (#14): every family, every kind of conversation, judged against the template and an oracle.

* Targets whose tokenizer cannot encode ordinary text (a folder holding only a chat template) are refused by
  `load_target` before any row is rendered; every full-tokenizer family still loads.
* The conversation suite (`suite.py`) renders through the real engine for every fixture family — the
  template-only ones through stand-in tokenizers (`standins.py`) — and each row is judged by `suite.judge`:
  ids equal `apply_chat_template(tokenize=True)`, trained text equals the oracle's (`oracle.py`, sentinel
  alignment, independent of the engine's prefix method), or the row is rejected with a reason that is true.
* A hypothesis property test asserts the same invariant on generated conversations for Qwen2.5, Llama-3.1,
  GLM-4 and Mistral v0.2.
* The README's fidelity table is what `python tests/render/matrix.py` prints.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matrix
import pytest
import suite
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataforge.errors import DataError
from dataforge.record import Example, Kind, Message, Provenance, Role, ToolCall
from dataforge.render.target import load_target

TEMPLATE_ONLY = suite.TEMPLATE_ONLY

# ── 1. a folder with only a chat template is not a tokenizer ─────────────────────────────────────────────


@pytest.mark.parametrize("family", TEMPLATE_ONLY)
def test_a_template_only_folder_is_refused_naming_what_is_missing(fixture_path, family):
    folder = fixture_path(f"templates/{family}").resolve()
    with pytest.raises(DataError) as caught:
        load_target(family, str(folder), folder.parent)
    message = caught.value.message
    assert "\n" not in message
    assert (
        f"{folder} has a chat template but no vocabulary (tokenizer.json, tokenizer.model or vocab.json + merges.txt)"
        in message
    )
    assert caught.value.hint and "full tokenizer files" in caught.value.hint


def test_gemma3s_added_tokens_only_tokenizer_is_refused_with_its_size(fixture_path):
    folder = fixture_path("templates/gemma-3-it").resolve()
    with pytest.raises(DataError, match="transformers built a tokenizer of its 6,415 added tokens only"):
        load_target("gemma", str(folder), folder.parent)


@pytest.mark.parametrize("family", suite.FULL)
def test_every_full_tokenizer_family_still_loads(fixture_path, family):
    if family == "mistral-7b-instruct-v0.2":
        pytest.importorskip("sentencepiece")
    tgt = suite.target(family, fixture_path)
    tok = tgt.tokenizer
    text = "Ordinary words, 普通的文字 and Кириллица."
    assert tok.decode(tok.encode(text, add_special_tokens=False)).strip() == text
    assert len(tok) > 30_000 and tgt.template


def test_a_tokenizer_that_cannot_encode_text_is_refused_whatever_its_files(tmp_path):
    """The probe, not the file names, decides: a tokenizer.json whose vocabulary is a handful of control
    tokens (every word becomes `<unk>`) is refused too."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    backend = Tokenizer(models.WordLevel({"<unk>": 0, "<|im_start|>": 1, "<|im_end|>": 2}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    folder = tmp_path / "tiny"
    folder.mkdir()
    backend.save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "<unk>", "chat_template": "{{ messages }}"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(DataError, match=r"cannot encode ordinary text: .* are '<unk>'") as caught:
        load_target("tiny", "tiny", tmp_path)
    assert "\n" not in caught.value.message


# ── 2. the conversation suite ────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("family", suite.FAMILIES)
def test_every_row_renders_faithfully_or_is_rejected_truly(fixture_path, family):
    """Every case of the suite for one family: rendered as the oracle says, or rejected with a true reason.

    One test per family (not per case), so a family whose fixture is absent is one skip, not twenty; the
    failure lists every wrong case with what the engine did."""
    if suite.needs_sentencepiece(family):
        pytest.importorskip("sentencepiece")
    wrong = []
    for case in suite.CASES:
        verdict = suite.run_case(family, case, fixture_path)
        if not verdict.ok:
            wrong.append(f"{family} / {case}: {verdict.outcome}: {verdict.wrong}")
    assert wrong == []
    assert len(suite.CASES) >= 20


QWEN_CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>'
HAND_WRITTEN = [
    ("qwen2.5-instruct", "tool_call", [QWEN_CALL, "It is 22 C.<|im_end|>"]),
    ("qwen2.5-instruct", "whitespace", ["\n  Indented answer.  \n\n<|im_end|>", " ok <|im_end|>"]),
    (
        "llama-3.1-instruct",
        "tool_call",
        ['{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>', "It is 22 C.<|eot_id|>"],
    ),
    ("glm-4-9b-chat", "multi_turn", ["\n4.<|user|>", "\n6."]),
    ("qwen3", "multi_turn", ["4.<|im_end|>", "<think>\n\n</think>\n\n6.<|im_end|>"]),
    ("qwen3 (enable_thinking: false)", "multi_turn", ["4.<|im_end|>", "6.<|im_end|>"]),
    ("deepseek-r1-distill-qwen", "single", ["Hello!<｜end▁of▁sentence｜>"]),
    ("mistral-7b-instruct-v0.2", "punctuation", ["(yes) - really.</s>", ".5 is half.</s>"]),
    (
        "mistral-7b-instruct-v0.3",
        "tool_call",
        [
            ' [TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_1"}] </s>',
            " It is 22 C. </s>",
        ],
    ),
    ("gemma-3-it", "system", ["4.<end_of_turn>", "6.<end_of_turn>"]),
]


@pytest.mark.parametrize(("family", "case", "expected"), HAND_WRITTEN)
def test_the_oracle_agrees_with_hand_written_truth(fixture_path, family, case, expected):
    """The oracle itself, checked against trained text written out by hand from each template."""
    if suite.needs_sentencepiece(family):
        pytest.importorskip("sentencepiece")
    tok = suite.target(family, fixture_path).tokenizer
    row = suite.cases(suite.oracle_family(family).stops[0])[case].to_row()
    options = suite.options(family, case)
    ((messages, turns, _, _),) = suite._sequences(row, options.train_on)
    tools = [{"type": "function", "function": f} for f in json.loads(row["tools"])] if row["tools"] else None
    truth = suite.oracle.truth(
        suite._renderer(tok, tools, options.chat_template_kwargs), messages, turns, suite.oracle_family(family)
    )
    assert (truth.unaligned, truth.dropped) == (None, set())
    assert truth.trained == expected


def test_the_oracle_sees_what_a_template_drops(fixture_path):
    tok = suite.target("phi-3-mini-4k-instruct", fixture_path).tokenizer
    row = suite.cases("<|end|>")["tool_call"].to_row()
    ((messages, turns, _, _),) = suite._sequences(row)
    truth = suite.oracle.truth(
        suite._renderer(tok, None, {}), messages, turns, suite.oracle.FAMILIES["phi-3-mini-4k-instruct"]
    )
    assert truth.dropped == {"tool_calls"}


def test_the_judge_is_not_lenient(fixture_path):
    """A trained run missing the answer's first character (the old Mistral `](` behaviour) is wrong; one that
    also trains a token straddling the prompt, or lacks whitespace a special token swallowed, is accepted as
    such; one that trains the header is wrong."""
    tok = suite.target("qwen2.5-instruct", fixture_path).tokenizer
    header = "<|im_start|>assistant\n"
    text = header + "(yes)<|im_end|>\n"
    truth = suite.oracle.Truth(text, [(len(header), len(text) - 1)])
    want = suite.expected_runs(tok, text, truth.regions)
    assert want == ["(yes)<|im_end|>"]
    im_start = tok.convert_tokens_to_ids("<|im_start|>")
    assert suite._tolerated(tok, [suite.Run("yes)<|im_end|>", "yes", 7)], want, truth) is None
    assert suite._tolerated(tok, [suite.Run("\n(yes)<|im_end|>", "\n(", 7)], want, truth) == "straddling"
    assert suite._tolerated(tok, [suite.Run("assistant\n(yes)<|im_end|>", "assistant", im_start)], want, truth) is None
    spaced = suite.oracle.Truth(header + "  (yes)<|im_end|>", [(len(header), len(header) + 17)])
    want = suite.expected_runs(tok, spaced.text, spaced.regions)
    assert suite._tolerated(tok, [suite.Run("(yes)<|im_end|>", "(", im_start)], want, spaced) == "absorbed"
    assert suite._tolerated(tok, [suite.Run("(yes)<|im_end|>", "(", 7)], want, spaced) is None


# ── 3. generated conversations ───────────────────────────────────────────────────────────────────────────

PROPERTY_FAMILIES = ["qwen2.5-instruct", "llama-3.1-instruct", "glm-4-9b-chat", "mistral-7b-instruct-v0.2"]
# Mistral v0.2's template takes neither a system prompt nor tools (a template_error, true but uninformative).
SHAPES = {"mistral-7b-instruct-v0.2": {"system": False, "tools": False}}
ORDINARY = [" ", "  ", "\n", "\n\n", "\t", ".", ",", "(", ")", "!", "?", "'", '"', "-", "你好", "🚀", "é", "42"]
# Special-token strings of the families (and near misses: `<think>` is an added, non-special token of Qwen3).
SPECIAL = ["<think>", "</think>", "<|im_start|>", "<|im_end|>", "<|eot_id|>", "[INST]", "[/INST]", "</s>", "<|user|>"]
WORDS = st.sampled_from(["hello", "world", "yes", "no", "42", "你好", "🚀", "café"])
TEXT = st.builds(
    lambda pre, word, post, special, front: (
        (special if front else "") + "".join(pre) + word + "".join(post) + ("" if front else special)
    ),
    st.lists(st.sampled_from(ORDINARY), max_size=3),
    WORDS,
    st.lists(st.sampled_from(ORDINARY), max_size=3),
    st.sampled_from([""] * 15 + SPECIAL),  # about one text in three conversations holds one
    st.booleans(),
)


@st.composite
def conversations(draw, system: bool = True, tools: bool = True) -> Example:
    """A canonical conversation from the record's alphabet: an optional system prompt, 1–3 exchanges whose
    assistant turns may reason, call tools (answered by tool messages) or carry weight 0; texts open or close
    with whitespace, punctuation and now and then a special-token string."""
    messages: list[Message] = []
    if system and draw(st.booleans()):
        messages.append(Message(Role.SYSTEM, draw(TEXT)))
    use_tools = tools and draw(st.booleans())
    for n in range(draw(st.integers(1, 3))):
        messages.append(Message(Role.USER, draw(TEXT)))
        if use_tools and draw(st.booleans()):
            calls = tuple(
                ToolCall("get_weather", {"city": draw(TEXT)}, id=f"call_{n}_{j}")
                for j in range(draw(st.integers(1, 2)))
            )
            messages.append(Message(Role.ASSISTANT, None, tool_calls=calls))
            for call in calls:
                messages.append(Message(Role.TOOL, draw(TEXT), tool_call_id=call.id, name="get_weather"))
        reasoning = draw(TEXT) if draw(st.integers(0, 5)) == 0 else None
        weight = draw(st.sampled_from([None, None, None, 0.0]))
        messages.append(Message(Role.ASSISTANT, draw(TEXT), reasoning=reasoning, weight=weight))
    return Example(
        id="generated",
        kind=Kind.SFT,
        provenance=Provenance("generated", "generated.jsonl", 0, 1),
        messages=tuple(messages),
        tools=[suite.WEATHER] if use_tools else None,
    )


@pytest.mark.parametrize("family", PROPERTY_FAMILIES)
def test_generated_conversations_render_faithfully_or_are_rejected_truly(fixture_path, family):
    if family == "mistral-7b-instruct-v0.2":
        pytest.importorskip("sentencepiece")
    tgt = suite.target(family, fixture_path)

    @settings(
        max_examples=75,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(conversations(**SHAPES.get(family, {})))
    def check(example: Example) -> None:
        verdict = suite.judge(family, example, tgt)
        assert verdict.ok, f"{verdict.outcome}: {verdict.wrong}\n{suite.row_json(example)}"

    check()


# ── 4. the README table ──────────────────────────────────────────────────────────────────────────────────


def test_the_readme_fidelity_table_is_what_the_script_prints(fixture_path):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    begin, end = matrix.BEGIN, matrix.END
    assert begin in readme and end in readme, f"README.md lacks the {begin} … {end} block"
    current = readme[readme.index(begin) + len(begin) : readme.index(end)].strip("\n")
    expected = matrix.table(fixture_path).strip("\n")
    assert current == expected, f"README table is stale: run `{matrix.COMMAND}`"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q", "-p", "no:cacheprovider"]))
