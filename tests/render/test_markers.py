"""Templates with `{% generation %}` markers: the derived labels are checked against the markers, not trusted."""

from pathlib import Path

from builders import chat
from dataforge.render.engine import RenderOptions, render_rows
from dataforge.render.target import load_target

DEMO = Path(__file__).resolve().parents[2] / "data" / "tokenizers" / "demo-chatml"

MARKED = (
    "{%- for message in messages %}"
    "{%- if message.role == 'assistant' %}{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}{{- message.content + '<|im_end|>\\n' }}{%- endgeneration %}"
    "{%- else %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def _target(tmp_path, template: str):
    path = tmp_path / "t.jinja"
    path.write_text(template)
    return load_target("t", str(DEMO), tmp_path, chat_template=str(path))


def _trained_text(target, result):
    row = result.table.to_pylist()[0]
    return target.tokenizer.decode([t for t, lab in zip(row["input_ids"], row["labels"], strict=True) if lab != -100])


def test_markers_that_cover_the_turn_agree_with_the_derived_labels(tmp_path):
    target = _target(tmp_path, MARKED)
    assert target.has_generation_markers
    result = render_rows([chat("s", 0, ("user", "Hi"), ("assistant", "Hello there")).to_row()], target, RenderOptions())
    assert _trained_text(target, result) == "Hello there<|im_end|>"
    assert result.notes == {}


def test_markers_that_leave_out_the_end_of_turn_token_are_reported(tmp_path):
    short = MARKED.replace(
        "{%- generation %}{{- message.content + '<|im_end|>\\n' }}{%- endgeneration %}",
        "{%- generation %}{{- message.content }}{%- endgeneration %}{{- '<|im_end|>\\n' }}",
    )
    target = _target(tmp_path, short)
    result = render_rows([chat("s", 0, ("user", "Hi"), ("assistant", "Hello there")).to_row()], target, RenderOptions())
    # dataforge still trains the end-of-turn token (a model must learn to stop) and says the markers disagree.
    assert _trained_text(target, result) == "Hello there<|im_end|>"
    assert result.notes == {"generation_markers_disagree": 1}


def test_a_tokenizer_that_loses_text_is_reported(tmp_path):
    from tokenizers import normalizers

    target = _target(tmp_path, MARKED)
    target.tokenizer.backend_tokenizer.normalizer = normalizers.Lowercase()  # decode can no longer restore case
    result = render_rows([chat("s", 0, ("user", "Hi"), ("assistant", "Hello There")).to_row()], target, RenderOptions())
    assert result.notes["round_trip_failure"] == 1


def test_a_template_that_ignores_the_system_prompt_is_reported(tmp_path):
    from dataforge.render.engine import template_checks

    honours = template_checks(_target(tmp_path, MARKED), RenderOptions())
    assert honours == {
        "end_of_turn_token": "<|im_end|>",
        "ignores_system_prompt": False,
        "has_generation_markers": True,
        "history_renders_as_prefix": True,
        "token_encoder": "tiktoken",  # the demo tokenizer is a byte-level BPE
        "token_encoder_why": "byte-level BPE: tiktoken, verified on probe texts",
    }
    drops_system = MARKED.replace(
        "{%- for message in messages %}", "{%- for message in messages if message.role != 'system' %}"
    )
    assert template_checks(_target(tmp_path, drops_system), RenderOptions())["ignores_system_prompt"] is True


def test_a_tokenizer_without_a_chat_template_is_a_clear_error(tmp_path):
    import pytest

    from dataforge.render.spans import SpanError

    target = load_target("t", str(DEMO), tmp_path)
    target.template = None
    with pytest.raises(SpanError) as err:
        render_rows([chat("s", 0, ("user", "Hi"), ("assistant", "Yo")).to_row()], target, RenderOptions())
    assert err.value.reason == "no_chat_template"


def test_every_row_is_round_tripped_not_a_sample(tmp_path):
    """The encode/decode check covers every row of a batch (it used to look at the first 8 only)."""
    from tokenizers import normalizers

    target = _target(tmp_path, MARKED)
    target.tokenizer.backend_tokenizer.normalizer = normalizers.Lowercase()
    rows = [chat(f"s{i}", i, ("user", "Hi"), ("assistant", f"Hello There {i}")).to_row() for i in range(20)]
    result = render_rows(rows, target, RenderOptions())
    assert result.notes["round_trip_failure"] == 20
