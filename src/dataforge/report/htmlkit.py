"""Small HTML building blocks for report.html: escaped tables, figures, sections."""

from __future__ import annotations

from html import escape
from typing import Any

SECTIONS = (
    ("gates", "Gates"),
    ("overview", "Overview"),
    ("formats", "Formats and kinds"),
    ("conversations", "Turns and roles"),
    ("tools", "Tool calls and reasoning"),
    ("lengths", "Token lengths"),
    ("duplicates", "Duplicates"),
    ("rejects", "Rejects"),
    ("templates", "Template checks"),
    ("samples", "Rendered samples"),
)


def num(value: Any) -> str:
    """A number for a table cell: thousands separators, `–` for a missing value."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2%}" if 0 <= value <= 1 else f"{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) else escape(str(value))


def table(head: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    """An HTML table; cells are escaped unless they are already markup (wrapped in `Markup`)."""
    numeric = numeric or set()
    out = ["<table><thead><tr>", *(f"<th>{escape(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>")
        for i, cell in enumerate(row):
            text = cell if isinstance(cell, Markup) else (num(cell) if i in numeric else escape(str(cell)))
            out.append(f'<td class="n">{text}</td>' if i in numeric else f"<td>{text}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


class Markup(str):
    """Text that is already HTML, for `table` to leave as it is."""


def figure(svg: str, caption: str) -> str:
    """An inline SVG plot with its caption."""
    return f'<figure class="plot">{svg}<figcaption class="muted">{escape(caption)}</figcaption></figure>'


def section(key: str, body: str) -> str:
    """One titled section of the page; `key` is its anchor (see SECTIONS)."""
    title = dict(SECTIONS)[key]
    return f'<section id="{key}"><h2>{escape(title)}</h2>{body}</section>'
