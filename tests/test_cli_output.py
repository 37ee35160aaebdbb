"""What the CLI prints from data is printed as it is: never read as terminal markup or emoji codes, never
wrapped inside a line (one reject per line in logs and pipes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def dataforge(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dataforge", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def chat(user: str, role: str = "assistant") -> str:
    return json.dumps({"messages": [{"role": "user", "content": user}, {"role": role, "content": "fine"}]})


def test_a_reject_on_line_100_and_a_role_that_looks_like_markup_print_verbatim(tmp_path):
    lines = [chat(f"question {i} " + "padding " * 12) for i in range(99)]
    lines.append(chat("the hundredth", role="[/x]"))
    lines.append(chat("styled?", role="[red]robot"))
    (tmp_path / "data.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = dataforge("validate", "data.jsonl", "--format", "openai", cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    out = done.stdout.splitlines()
    assert out[0].startswith("data.jsonl:100: messages[1].role: unknown role '[/x]'")
    assert out[1].startswith("data.jsonl:101: messages[1].role: unknown role '[red]robot'")
    assert "💯" not in done.stdout
    assert out[2] == "data.jsonl: openai, 101 records, 99 valid, 2 invalid"
    assert len(out) == 3  # one line per reject, however long: no wrapping at 80 columns in a pipe
    assert all(len(line) > 80 for line in out[:2])


HOSTILE = ("[/x]", "[red]bold[/red]", ":100:", "[link=file:///etc/passwd]x[/link]")
REPO = Path(__file__).resolve().parents[1]


def hostile_data(root: Path) -> Path:
    """A folder whose one file's path looks like markup (`[red]bold[/red][/x]:100:.jsonl`: the folder is
    `[red]bold[/red][`), with rows whose roles, unknown fields and contents do too; returns the file."""
    folder = root / "data" / "[red]bold[" / "red]["
    folder.mkdir(parents=True)
    rows = [
        {"messages": [{"role": "user", "content": f"q{i} [red]bold[/red] :100: {HOSTILE[3]}"},
                      {"role": "assistant", "content": f"a{i} [/x] answer number {i}"}]}
        for i in range(6)
    ]  # fmt: skip
    rows.append({"messages": [{"role": "user", "content": "q"}, {"role": HOSTILE[3], "content": "a"}]})
    rows.append({"messages": [{"role": "user", "content": "q"}, {"role": "[/x]", "content": "a"}]})
    path = folder / "x]:100:.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def invoke(*args: str) -> tuple[int, str]:
    """The command run in this process (the CLI's own consoles, much faster than a fresh interpreter per
    command): (exit code, stdout and stderr)."""
    from typer.testing import CliRunner

    from dataforge.cli import app

    done = CliRunner().invoke(app, list(args), catch_exceptions=True)
    assert done.exception is None or isinstance(done.exception, SystemExit), repr(done.exception)
    return done.exit_code, done.stdout + done.stderr


def assert_clean(done: tuple[int, str]) -> str:
    """Both streams, after checking that nothing crashed or was read as an emoji code."""
    code, both = done
    assert "Traceback" not in both and "MarkupError" not in both, both
    assert "💯" not in both and code in (0, 1), both
    return both


def test_markup_and_emoji_codes_in_data_print_verbatim_in_every_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = hostile_data(tmp_path)
    shown = "data/[red]bold[/red][/x]:100:.jsonl"
    assert data.relative_to(tmp_path).as_posix() == shown
    roles = f"unknown role '{HOSTILE[3]}'"

    # Given as the folder: the file's own name is a glob pattern (`[red]` is a character class).
    both = assert_clean(invoke("validate", "data", "--format", "openai"))
    assert f"{shown}:7: messages[1].role: {roles}" in both
    assert f"{shown}:8: messages[1].role: unknown role '[/x]'" in both

    both = assert_clean(invoke("convert", "data", "--to", "sharegpt", "-o", "out.jsonl"))
    assert f"rejected {shown}:7: messages[1].role: {roles}" in both
    assert "→ 6 sharegpt records in out.jsonl" in both

    both = assert_clean(invoke("dedup", "data", "-o", "kept.jsonl"))
    assert "kept.rejects.jsonl" in both

    tokenizer = str(REPO / "data" / "tokenizers" / "demo-chatml")
    both = assert_clean(invoke("render", "data", "-t", tokenizer, "--show", "1"))
    assert f"q0 [red]bold[/red] :100: {HOSTILE[3]}" in both  # the row as written, not styled or linked
    assert "[[a0 [/x] answer number 0" in both

    recipe = tmp_path / "mix.yaml"
    recipe.write_text(
        "name: hostile\nsources:\n  - name: odd\n    from: data\n    format: openai\n"
        f"render:\n  - name: chat\n    tokenizer: {tokenizer}\n    max_length: 256\n"
        "checks:\n  min_rows: 1\n  require_template_checks: true\n",
        encoding="utf-8",
    )
    assert "stage(s) to run" in assert_clean(invoke("plan", "mix.yaml"))
    both = assert_clean(invoke("build", "mix.yaml"))
    assert "Built hostile: " in both
    out = tmp_path / "data" / "processed" / "hostile"
    assert "All gates pass." in assert_clean(invoke("check", str(out)))
    both = assert_clean(invoke("diff", str(out), str(out), "--all"))
    assert "odd in" in both
    report = (out / "report" / "report.md").read_text(encoding="utf-8")
    assert "unknown role '\\[link=file:///etc/passwd\\]x\\[/link\\]'" in report


def test_boolean_options_show_no_value_in_help():
    for command in ("build", "diff", "train", "dedup", "push"):
        code, shown = invoke(command, "--help")
        assert code == 0 and "<bool>" not in shown, shown
    code, shown = invoke("dedup", "--help")
    assert "--no-near" in shown and "<float>" in shown
