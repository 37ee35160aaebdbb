"""report.html opens in a real browser (headless Chromium) offline, with no console errors and every plot drawn."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install -y chromium)"
)
SECTIONS = ("gates", "overview", "formats", "conversations", "tools", "lengths", "duplicates", "rejects",
            "quality", "templates", "samples")  # fmt: skip


def headless(page: Path, profile: Path, *args: str) -> tuple[str, list[str]]:
    """(the DOM after load, the console messages) of `page` in headless Chromium with every host unreachable."""
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            # Any network fetch fails, so a page that needs one shows it (and logs it).
            "--host-resolver-rules=MAP * ~NOTFOUND",
            # Console messages (log, warning, error, uncaught exceptions) go to stderr as `...:CONSOLE...` lines.
            "--enable-logging=stderr",
            "--v=0",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


def test_the_html_is_self_contained(demo_out):
    html = (demo_out / "report" / "report.html").read_text()
    assert not re.search(r"<script|<link|<iframe|<img|@import|url\((?!#)", html)  # url(#id): a clip path
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids)) > 100  # several inline SVGs, and not one id used twice
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    for key in SECTIONS:
        assert f'<section id="{key}">' in html


@needs_chromium
def test_the_harness_sees_console_errors(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><p>x</p><script>console.error("planted"); missing_function();</script>')
    _, console = headless(page, tmp_path / "profile", "--dump-dom")
    assert any('"planted"' in line for line in console)
    assert any("missing_function is not defined" in line for line in console)


@needs_chromium
def test_the_demo_report_renders_with_every_section_and_plot(demo_out, tmp_path):
    report = demo_out / "report" / "report.html"
    dom, console = headless(report, tmp_path / "profile", "--dump-dom")
    assert console == []
    sections = dict(re.findall(r'<section id="([a-z]+)">(.*?)</section>', dom, flags=re.S))
    assert tuple(sections) == SECTIONS
    plots = {key: body.count('<figure class="plot"><svg') for key, body in sections.items()}
    # The ledger flow; kinds; turns and roles; one length histogram per target; duplicate cluster sizes; one
    # histogram per quality signal that measured rows.
    signals = json.loads((demo_out / "report" / "report.json").read_text())["quality"]["signals"]
    measured = sum(1 for s in signals if s.get("rows"))
    assert measured >= 2  # the demo thresholds dup_line_share and measures the others
    assert plots == {**dict.fromkeys(SECTIONS, 0), "overview": 1, "formats": 1, "conversations": 2, "lengths": 1,
                     "duplicates": 1, "quality": measured}  # fmt: skip
    assert "max_length 160" in sections["lengths"] and "5 row(s) over" in sections["lengths"]
    assert "exact_duplicate" in sections["rejects"] and "data/raw/demo/sharegpt.jsonl:80" in sections["rejects"]
    assert "alpaca:0" in sections["samples"] and '<span class="t">' in sections["samples"]
    assert "&lt;|im_end|&gt;" in sections["templates"]


@needs_chromium
def test_a_screenshot_of_the_report_is_painted(demo_out, tmp_path):
    shot = tmp_path / "report.png"
    _, console = headless(
        demo_out / "report" / "report.html", tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,1600"
    )
    assert console == []
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1280, 1600)
    assert len(data) > 50_000  # text, tables and plots, not a blank page
