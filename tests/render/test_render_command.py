"""`dataforge render` applies the same unrendered-content policy as a recipe's render target."""

from __future__ import annotations

import json
import subprocess
import sys

CALL = {
    "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}],
        },
        {"role": "tool", "content": "22C"},
        {"role": "assistant", "content": "It is 22C."},
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "weather", "parameters": {}}}],
}


def dataforge_render(cwd, data: str, template: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """`dataforge render DATA --template TEMPLATE ...` run in `cwd`, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "dataforge", "render", data, "--template", template, *extra],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def render(tmp_path, fixture_path, *extra: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "calls.jsonl").write_text(json.dumps(CALL) + "\n", encoding="utf-8")
    return dataforge_render(tmp_path, "calls.jsonl", str(fixture_path("templates/phi-3-mini-4k-instruct")), *extra)


def test_a_dropped_tool_call_rejects_the_row_unless_kept(tmp_path, fixture_path):
    # Phi-3's template renders no tool calls: training turn 1 would train a bare <|end|> as the reply.
    rejected = render(tmp_path, fixture_path)
    assert rejected.returncode == 1
    assert rejected.stderr.startswith("not rendered input:0: tool_calls_not_rendered: the template does not render")
    assert rejected.stdout.splitlines()[0].endswith(
        "0 rows rendered for " + str(fixture_path("templates/phi-3-mini-4k-instruct"))
    )
    kept = render(tmp_path, fixture_path, "--keep-unrendered", "tool_calls")
    assert kept.returncode == 0, kept.stderr
    assert "note: tool_calls_not_rendered: 1 row(s)" in kept.stdout.splitlines()
    wrong = render(tmp_path, fixture_path, "--keep-unrendered", "tools")
    assert (wrong.returncode, wrong.stderr.strip()) == (
        2,
        "error: --keep-unrendered 'tools': expected tool_calls or reasoning",
    )


CHAT = {
    "messages": [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another one?"},
        {"role": "assistant", "content": "Green, this time."},
    ]
}


def test_train_on_first_n_trains_only_the_first_turns_and_says_so_per_turn(tmp_path, fixture_path):
    (tmp_path / "chat.jsonl").write_text(json.dumps(CHAT) + "\n", encoding="utf-8")
    template = str(fixture_path("templates/qwen2.5-instruct"))

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return dataforge_render(tmp_path, "chat.jsonl", template, *extra)

    every, first = run(), run("--train-on", "first_n", "--first-n", "1")
    assert every.returncode == first.returncode == 0, (every.stderr, first.stderr)
    line = next(line for line in first.stdout.splitlines() if line.startswith("trained tokens by assistant turn"))
    cells = dict(cell.split(": ") for cell in line.split("): ", 1)[1].split(", "))
    assert line.startswith("trained tokens by assistant turn (train_on: first_n)")
    assert int(cells["turn 1"].replace(",", "")) > 0 and cells["turn 2"] == "0"
    both = next(line for line in every.stdout.splitlines() if line.startswith("trained tokens by assistant turn"))
    assert "turn 2: 0" not in both  # under `all` the second turn trains too
    # `first_n` without its count (or a count without the mode) is a usage error, in one line, never a traceback
    for extra in (("--train-on", "first_n"), ("--first-n", "2")):
        bad = run(*extra)
        assert bad.returncode == 2
        assert bad.stderr.startswith("error: ") and "first_n" in bad.stderr and "Traceback" not in bad.stderr
