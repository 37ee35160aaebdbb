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


def render(tmp_path, fixture_path, *extra: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "calls.jsonl").write_text(json.dumps(CALL) + "\n", encoding="utf-8")
    template = str(fixture_path("templates/phi-3-mini-4k-instruct"))
    return subprocess.run(
        [sys.executable, "-m", "dataforge", "render", "calls.jsonl", "--template", template, *extra],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


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
