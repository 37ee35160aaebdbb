"""Data in Markdown (report.md, `dataforge diff --markdown`): shown as text, never read as HTML or Markdown.

report.md lands in CI job summaries and pull-request comments, where GitHub renders HTML and Markdown: a role
named `<img src=x onerror=…>` or a source named `a|b` must show as written, not as an image or a table cell.
"""

from __future__ import annotations

import re

# Characters that start or end Markdown constructs (emphasis, links, code, tables, strikethrough, headings);
# each is written backslash-escaped, which CommonMark and GitHub render as the character itself. `_` between
# letters or digits (`min_rows`) starts no emphasis on GitHub and stays as it is.
_ACTIVE = re.compile(r"([\\`*\[\]|~#])|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
# What makes HTML: a tag or comment (`<` before a letter, `/`, `!` or `?`) and an entity (`&amp;`, `&#60;`).
_TAG = re.compile(r"<(?=[A-Za-z/!?])")
_ENTITY = re.compile(r"&(?=#?[A-Za-z0-9]+;)")


def text(value: object, limit: int | None = None) -> str:
    """`value` as Markdown text on one line: whitespace collapsed, cut at `limit` characters (with …), what could
    start HTML (a tag, an entity) written as entities, Markdown's active characters backslash-escaped (`|` too,
    so the text stays in its table cell). `1 < 2` stays as it is."""
    shown = " ".join(str(value).split())
    if limit is not None and len(shown) > limit:
        shown = shown[: limit - 1] + "…"
    shown = _TAG.sub("&lt;", _ENTITY.sub("&amp;", shown))
    return _ACTIVE.sub(lambda m: "\\" + m.group(0), shown)


def code(value: object, *, cell: bool = False) -> str:
    """`value` as an inline code span on one line: HTML inside a code span is shown, not run; a backtick in the
    value gets a longer fence. In a table `cell`, `|` is escaped (GitHub reads `\\|` in a cell's code span as
    `|`; elsewhere a code span shows every character as it is)."""
    shown = " ".join(str(value).split())
    longest = max((len(run) for run in re.findall(r"`+", shown)), default=0)
    fence = "`" * (longest + 1)
    if shown.startswith("`") or shown.endswith("`") or not shown.strip():
        shown = f" {shown} "
    if cell:
        shown = shown.replace("|", "\\|")
    return f"{fence}{shown}{fence}"
