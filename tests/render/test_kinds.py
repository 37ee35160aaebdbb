"""Preference, KTO and pretrain rows through a real template (the shipped demo ChatML tokenizer)."""

from pathlib import Path

from dataforge.record import Example, Kind, Message, Provenance, Role
from dataforge.render.engine import IGNORE, RenderOptions, render_rows
from dataforge.render.target import load_target

DEMO = Path(__file__).resolve().parents[2] / "data" / "tokenizers" / "demo-chatml"
TARGET = load_target("demo", str(DEMO), DEMO.parent)
TOK = TARGET.tokenizer


def _trained(ids, labels):
    return TOK.decode([t for t, lab in zip(ids, labels, strict=True) if lab != IGNORE])


def _prov(row=0):
    return Provenance("p", "p.jsonl", row, row + 1)


def test_a_preference_pair_renders_both_completions_after_one_prompt():
    ex = Example(
        id="p:0",
        kind=Kind.PREFERENCE,
        provenance=_prov(),
        messages=(Message(Role.SYSTEM, "Be kind."), Message(Role.USER, "Is the sky blue?")),
        chosen=(Message(Role.ASSISTANT, "Yes, on a clear day."),),
        rejected=(Message(Role.ASSISTANT, "No."),),
    )
    rendered = render_rows([ex.to_row()], TARGET, RenderOptions())
    assert rendered.problems == []
    row = rendered.table.to_pylist()[0]
    assert row["kind"] == "preference"
    assert _trained(row["input_ids"], row["labels"]) == "Yes, on a clear day.<|im_end|>"
    assert _trained(row["rejected_input_ids"], row["rejected_labels"]) == "No.<|im_end|>"
    prompt = row["n_prompt"]
    assert row["input_ids"][:prompt] == row["rejected_input_ids"][:prompt]  # one shared prompt
    assert TOK.decode(row["input_ids"][:prompt]).endswith("<|im_start|>assistant\n")
    assert row["n_tokens"] == max(len(row["input_ids"]), len(row["rejected_input_ids"]))


def test_a_preference_pair_that_overflows_is_handled_as_one_row():
    ex = Example(
        id="p:1",
        kind=Kind.PREFERENCE,
        provenance=_prov(1),
        messages=(Message(Role.USER, "Tell me about rivers."),),
        chosen=(Message(Role.ASSISTANT, "Rivers flow downhill to the sea. " * 20),),
        rejected=(Message(Role.ASSISTANT, "Water."),),
    )
    dropped = render_rows([ex.to_row()], TARGET, RenderOptions(max_length=40))
    assert [p["reason"] for p in dropped.problems] == ["overflow"]
    cut = render_rows([ex.to_row()], TARGET, RenderOptions(max_length=40, overflow="truncate")).table.to_pylist()[0]
    assert len(cut["input_ids"]) == 40 and cut["truncated"] is True
    assert _trained(cut["rejected_input_ids"], cut["rejected_labels"]) == "Water.<|im_end|>"  # short side intact


def test_kto_trains_the_completion_only_and_keeps_the_label():
    ex = Example(
        id="k:0",
        kind=Kind.KTO,
        provenance=_prov(),
        messages=(
            Message(Role.USER, "Hi"),
            Message(Role.ASSISTANT, "Hello."),
            Message(Role.USER, "Capital of France?"),
            Message(Role.ASSISTANT, "Lyon."),
        ),
        label=False,
    )
    row = render_rows([ex.to_row()], TARGET, RenderOptions()).table.to_pylist()[0]
    assert (row["kind"], row["label"]) == ("kto", False)
    assert _trained(row["input_ids"], row["labels"]) == "Lyon.<|im_end|>"
    assert row["rejected_input_ids"] is None


def test_sft_rows_have_no_preference_columns():
    ex = Example(
        id="s:0", kind=Kind.SFT, provenance=_prov(), messages=(Message(Role.USER, "q"), Message(Role.ASSISTANT, "a"))
    )
    row = render_rows([ex.to_row()], TARGET, RenderOptions()).table.to_pylist()[0]
    assert (row["kind"], row["rejected_input_ids"], row["rejected_labels"], row["label"]) == ("sft", None, None, None)


def test_an_assistant_turn_with_loss_weight_zero_stays_in_the_prompt_untrained():
    ex = Example(
        id="w:0",
        kind=Kind.SFT,
        provenance=_prov(),
        messages=(
            Message(Role.USER, "Hi"),
            Message(Role.ASSISTANT, "Hello there.", weight=0.0),
            Message(Role.USER, "Bye"),
            Message(Role.ASSISTANT, "Goodbye.", weight=1.0),
        ),
    )
    row = render_rows([ex.to_row()], TARGET, RenderOptions()).table.to_pylist()[0]
    assert "Hello there." in TOK.decode(row["input_ids"])
    assert _trained(row["input_ids"], row["labels"]) == "Goodbye.<|im_end|>"
    # The same conversation without weights trains both assistant turns.
    plain = Example(
        id="w:1",
        kind=Kind.SFT,
        provenance=_prov(1),
        messages=tuple(Message(m.role, m.content) for m in ex.messages),
    )
    both = render_rows([plain.to_row()], TARGET, RenderOptions()).table.to_pylist()[0]
    assert both["input_ids"] == row["input_ids"]
    assert _trained(both["input_ids"], both["labels"]) == "Hello there.<|im_end|>Goodbye.<|im_end|>"
