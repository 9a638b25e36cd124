"""Tables that fit the terminal without breaking a word (issue 16, item 6).

rich shrinks a table that is too wide by folding its cells mid-word ("co-commissi/oning",
"decisi…"). Here every column is at least as wide as its longest word (an id, a reason
code), the remaining width goes to the columns that can use it, and cells wrap only at
spaces. When even the longest words do not fit side by side (a very narrow terminal), each
row is printed as a block of `column: value` lines instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rich.cells import cell_len
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

Cell = str | Text


def _text(value: Cell) -> Text:
    return value if isinstance(value, Text) else Text.from_markup(value)


def _longest_word(text: Text) -> int:
    return max((cell_len(word) for line in text.plain.split("\n") for word in line.split()),
               default=0)


def _longest_line(text: Text) -> int:
    return max((cell_len(line) for line in text.plain.split("\n")), default=0)


def column_widths(headers: Sequence[str], rows: Sequence[Sequence[Text]], width: int,
                  ratios: Sequence[int] | None = None) -> list[int] | None:
    """Content widths of the columns (without padding) so that the table is at most `width`
    wide and no word is broken; None when the longest words alone do not fit."""
    count = len(headers)
    available = width - (3 * count + 1)  # a border between and around, a space each side
    lowest = [max([_longest_word(Text(h)) for h in headers[c:c + 1]]
                  + [_longest_word(row[c]) for row in rows]) for c in range(count)]
    highest = [max([cell_len(headers[c])] + [_longest_line(row[c]) for row in rows])
               for c in range(count)]
    if sum(lowest) > available:
        return None
    widths = list(lowest)
    weights = list(ratios) if ratios is not None else [1] * count
    wanting = {c: highest[c] - lowest[c] for c in range(count) if highest[c] > lowest[c]}
    remaining = available - sum(widths)
    while remaining > 0 and wanting:
        total = sum(max(weights[c], 1) for c in wanting)
        given = 0
        for c in sorted(wanting):
            share = min(max(1, remaining * max(weights[c], 1) // total), wanting[c],
                        remaining - given)
            widths[c] += share
            wanting[c] -= share
            given += share
            if given >= remaining:
                break
        wanting = {c: left for c, left in wanting.items() if left > 0}
        if given == 0:
            break
        remaining -= given
    return widths


def fitted_table(console: Console, headers: Sequence[str], rows: Sequence[Sequence[Cell]], *,
                 title: str | None = None, ratios: Sequence[int] | None = None
                 ) -> RenderableType:
    """A table of `rows` (cells as rich markup or Text) that fits `console.width` with every
    word whole, or, when that cannot be, one block of `header: value` lines per row."""
    texts = [[_text(value) for value in row] for row in rows]
    widths = column_widths(headers, texts, console.width, ratios)
    if widths is not None:
        table = Table(title=title, show_lines=False, expand=False)
        for header, width in zip(headers, widths, strict=True):
            table.add_column(header, width=width, overflow="fold")
        for row in texts:
            table.add_row(*row)
        return table
    # too narrow for the words side by side: a block per row, wrapped at spaces here (the
    # console may be in soft-wrap mode, which would leave the wrapping to the terminal)
    lines: list[Text] = []
    if title:
        lines.append(Text(title, style="bold"))
    for row in texts:
        lines.append(Text(wrap_line(row[0].plain, console.width), style="bold"))
        for header, value in zip(headers[1:], row[1:], strict=True):
            for part in value.plain.split("\n"):
                lines.append(Text(wrap_line(f"{header}: {part}", console.width, "  ")))
                header = " " * len(header)
    return Group(*lines)


def wrap_line(text: str, width: int, indent: str = "") -> str:
    """One line of plain text wrapped at spaces to `width`, continuation lines indented
    under its text (`indent` plus its own leading spaces); a word (an id) is never broken,
    even when it is longer than the line. Runs of spaces inside a line are kept."""
    lead = text[: len(text) - len(text.lstrip(" "))]
    hanging = indent + lead + "  "
    lines: list[str] = []
    current = indent + lead
    for word in re.findall(r"\S+ *", text.lstrip(" ")):
        if current.strip() and cell_len(current + word.rstrip()) > width:
            lines.append(current.rstrip())
            current = hanging
        current += word
    lines.append(current.rstrip())
    return "\n".join(lines)
