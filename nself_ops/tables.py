"""The boxed tables every command prints, in one style.

┌──────────────────────────┐
│ Title                    │
├──────────────────────────┤
│ body line                │
└──────────────────────────┘
"""

from __future__ import annotations

import unicodedata

from tabulate import tabulate


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def box(title: str, lines: list[str], min_width: int = 61) -> str:
    """A title and body lines inside a box wide enough for the longest line."""
    inner = max([min_width - 2, _width(title) + 2] + [_width(x) + 2 for x in lines])
    rule = "─" * inner

    def row(text: str) -> str:
        return "│ " + text + " " * (inner - 1 - _width(text)) + "│"

    out = ["┌" + rule + "┐", row(title), "├" + rule + "┤"]
    out += [row(line) for line in lines]
    out.append("└" + rule + "┘")
    return "\n".join(out)


def columns(headers: list[str], rows: list[list], align: list[str] | None = None):
    """Rows laid out in aligned columns (no rules), for use inside a box."""
    text = tabulate(
        rows,
        headers=headers,
        tablefmt="plain",
        colalign=align,
        disable_numparse=True,
    )
    return text.splitlines()
