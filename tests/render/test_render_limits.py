"""Bounds on rendering (issue 15): a template that loops or builds huge values rejects its row, not the build;
a render worker that dies fails the stage with a message instead of hanging it."""

import os
import signal
import threading
import time
from multiprocessing import active_children
from pathlib import Path

import pytest

from builders import chat, qa, quiet, table
from dataforge.errors import DataError
from dataforge.recipe import RenderTarget
from dataforge.render.engine import RenderOptions, render_rows
from dataforge.render.limits import TemplateTimeout, deadline
from dataforge.render.locate import arguments_end
from dataforge.render.target import load_target
from dataforge.stages.render import options_of, render_split

DEMO = Path(__file__).resolve().parents[2] / "data" / "tokenizers" / "demo-chatml"

# ChatML, with traps sprung by words in a message: loops without end, or values too big to build.
TRAPS = (
    "{%- for m in messages %}"
    "{%- if 'LOOP' in m.content %}"
    "{%- for i in range(100000) %}{%- for j in range(100000) %}{%- endfor %}{%- endfor %}"
    "{%- endif %}"
    "{%- if 'TIMES' in m.content %}{{ 'x' * 10**12 }}{%- endif %}"
    "{%- if 'COUNTED' in m.content %}{{ 'x' * (10**12 + messages|length) }}{%- endif %}"
    "{%- if 'POWER' in m.content %}{{ 10 ** (10**9 + messages|length) }}{%- endif %}"
    "{%- if 'DOUBLED' in m.content %}{%- set ns = namespace(s=m.content * 5000) %}"
    "{%- for i in range(12) %}{%- set ns.s = ns.s + ns.s %}{%- endfor %}{{ ns.s }}{%- endif %}"
    "{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)


@pytest.fixture(scope="module")
def traps(tmp_path_factory):
    folder = tmp_path_factory.mktemp("traps")
    (folder / "traps.jinja").write_text(TRAPS)
    return load_target("traps", str(DEMO), folder, chat_template="traps.jinja")


def _render(target, *questions, timeout=0.2):
    rows = [qa("s", i, q, "An answer.").to_row() for i, q in enumerate(questions)]
    return render_rows(rows, target, RenderOptions(template_timeout_s=timeout))


def test_a_template_that_loops_without_end_rejects_the_row_and_the_others_render(traps):
    result = _render(traps, "What is a river?", "Please LOOP", "And a lake?")
    assert result.table["id"].to_pylist() == ["s:0", "s:2"]
    assert result.problems == [
        {
            "id": "s:1",
            "reason": "template_timeout",
            "message": "rendering the row with the chat template of target 'traps' took longer than "
            "template_timeout_s (0.2 s); the template may loop without end on it",
        }
    ]


def test_values_too_big_to_build_reject_the_row(traps):
    result = _render(traps, "fine", "TIMES", "COUNTED", "POWER", "DOUBLED", "fine too")
    assert result.table["id"].to_pylist() == ["s:0", "s:5"]
    big = (
        "the chat template would build a string of 1,000,000,000,{} characters with `*` (at most 10,000,000 "
        "characters are rendered)"
    )
    assert [(p["id"], p["reason"], p["message"]) for p in result.problems] == [
        ("s:1", "template_output_too_large", big.format("000")),
        ("s:2", "template_output_too_large", big.format("002")),
        ("s:3", "template_output_too_large", "the chat template would compute an integer of over 65,536 bits (`**`)"),
        (
            "s:4",
            "template_output_too_large",
            "the chat template would build a string of 17,920,000 characters with `+` (at most 10,000,000 "
            "characters are rendered)",
        ),
    ]


def test_the_time_limit_is_set_per_target_in_the_recipe(traps):
    spec = RenderTarget(name="traps", tokenizer=str(DEMO), template_timeout_s=0.25)
    assert options_of(spec).template_timeout_s == 0.25
    assert RenderTarget(name="t", tokenizer="x").template_timeout_s == 10.0
    rendered, dropped, _, _ = render_split(
        table(qa("s", 0, "LOOP", "a"), qa("s", 1, "ok", "b")), traps, options_of(spec), quiet, "train"
    )
    assert rendered["id"].to_pylist() == ["s:1"]
    assert [(d["example_id"], d["reason"], d["stage"], d["line"]) for d in dropped] == [
        ("s:0", "template_timeout", "render:traps", 1)
    ]


def test_a_template_that_loops_on_every_conversation_fails_the_target(tmp_path):
    (tmp_path / "forever.jinja").write_text(
        "{%- for i in range(100000) %}{%- for j in range(100000) %}{%- endfor %}{%- endfor %}"
    )
    target = load_target("forever", str(DEMO), tmp_path, chat_template="forever.jinja")
    spec = RenderTarget(name="forever", tokenizer=str(DEMO), template_timeout_s=0.2)
    with pytest.raises(DataError) as err:
        render_split(table(qa("s", 0, "q", "a")), target, options_of(spec), quiet, "train")
    assert err.value.message == (
        "render target 'forever': the chat template did not finish rendering one of dataforge's probe "
        "conversations within template_timeout_s (0.2 s)"
    )
    assert err.value.hint == (
        "the template may loop without end: check it, or raise the target's `template_timeout_s` if it is only slow"
    )


def test_a_deadline_gives_back_a_timer_that_was_running():
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *_: fired.append(True))
    try:
        signal.setitimer(signal.ITIMER_REAL, 30)
        with deadline(5):
            pass
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 25 < left <= 30 and not fired
        signal.setitimer(signal.ITIMER_REAL, 0)
        with pytest.raises(TemplateTimeout), deadline(0.05):
            while True:
                pass
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_deeply_nested_tool_call_arguments_reject_the_row(traps):
    deep = "[" * 5000 + "]" * 5000
    row = chat("s", 0, ("user", "q"), ("assistant", "a")).to_row()
    row["messages"][1]["tool_calls"] = [{"id": "c1", "name": "f", "arguments": deep}]
    result = render_rows([row], traps, RenderOptions())
    assert result.problems == [
        {
            "id": "s:0",
            "reason": "too_deep",
            "field": "messages[1].tool_calls[0].arguments",
            "message": "JSON nested 5000 levels deep in messages[1].tool_calls[0].arguments (dataforge reads at "
            "most 200 levels)",
        }
    ]
    # Deep JSON written after a call's arguments never reaches the parser.
    assert arguments_end('f {"a": 1} ' + "[" * 5000, 1, '{"a": 1}') == 10
    assert arguments_end("f " + "{" * 5000, 1, '{"a": 1}') is None


def _kill_render_worker(killed: list[int], stop: threading.Event) -> None:
    """SIGKILL a render worker as soon as one runs: a real death, as the OOM killer deals it."""
    while not killed and not stop.is_set():
        for proc in active_children():
            if proc.name == "dataforge-shard":
                time.sleep(0.3)  # its first batch is sent by then (the worker is still importing: it holds it)
                os.kill(proc.pid, signal.SIGKILL)
                killed.append(proc.pid)
                return
        time.sleep(0.01)


def test_a_render_worker_that_dies_fails_the_stage_with_a_message():
    target = load_target("demo", str(DEMO), DEMO.parent)
    spec = RenderTarget(name="demo", tokenizer=str(DEMO), workers=2)
    examples = table(*[qa("s", i, f"Question {i}?", "An answer.") for i in range(64)])
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_render_worker, args=(killed, stop), daemon=True)
    killer.start()
    try:
        with pytest.raises(DataError) as err:
            render_split(examples, target, options_of(spec), quiet, "train", 2, 0, batch_rows=4)
    finally:
        stop.set()
        killer.join(5)
    assert len(killed) == 1
    # The first death ends the render: the killed worker held batch 0 or batch 1 (each worker gets one at once).
    assert err.value.message in {
        f"render target 'demo': a render worker process died while rendering train rows {rows}: killed by signal 9 "
        "(SIGKILL), likely out of memory"
        for rows in ("0-3", "4-7")
    }
    assert err.value.hint == (
        "rerun with `workers: 1` on this render target (it then renders in the build's own process), or give the "
        "build more memory"
    )
    assert [p for p in active_children() if p.name == "dataforge-shard"] == []  # the other one is stopped too
