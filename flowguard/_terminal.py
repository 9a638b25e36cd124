"""Stored text, made safe to show in a terminal.

Free text in the registry and the audit log (`by`, evidence, descriptions, ids read from
files) was written by someone else: it is never interpreted. `safe` escapes every control
character (C0 and C1, DEL, CR/LF, and the Unicode format characters that reorder or hide
text), so it can neither forge a line nor drive the terminal (ANSI CSI, OSC hyperlinks or
titles). `cell` also keeps rich markup in it from being interpreted where rich would
(table cells); print plain strings with `markup=False`.
"""

from __future__ import annotations

import re
import unicodedata

from rich.text import Text

# C0 controls (incl. TAB, CR, LF, ESC), DEL, C1 controls; then Unicode line and paragraph
# separators and the bidirectional and invisible format characters (category Cf)
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def safe(value: object, *, backslash: bool = True) -> str:
    """`value` as one line of inert text: control and format characters escaped as
    `\\xNN`/`\\uNNNN`/`\\UNNNNNNNN` (a backslash as `\\\\`, so an escape cannot be forged either;
    `backslash=False` for text whose backslashes are escapes already)."""
    text = str(value)
    if text.isascii() and text.isprintable() and "\\" not in text:
        return text  # the common case: nothing to do
    out = []
    for char in text:
        if char == "\\" and backslash:
            out.append("\\\\")
        elif _unsafe(char):
            out.append(_escape(char))
        else:
            out.append(char)
    return "".join(out)


def safe_lines(text: str) -> str:
    """A block of lines we formatted (YAML, say, whose own escapes stay as they are): each
    line made `safe`, the line breaks kept."""
    return "\n".join(safe(line, backslash=False) for line in text.split("\n"))


def cell(value: object) -> Text:
    """`value` for a rich table cell: `safe`, and never read as markup."""
    return Text(safe(value))


def cell_lines(text: str) -> Text:
    """A block of lines we formatted, for a rich table cell (`safe_lines`, no markup)."""
    return Text(safe_lines(text))


def _unsafe(char: str) -> bool:
    return bool(_UNSAFE.match(char)) or unicodedata.category(char) in ("Cf", "Cs", "Co", "Cn")


def safe_json(text: str) -> str:
    """JSON text (`json.dumps(..., ensure_ascii=False)`) with every control or format
    character escaped the JSON way (`\\u009b`, surrogate pairs above U+FFFF): the same JSON,
    inert in a terminal. Outside strings JSON has only ASCII, so only strings change."""
    if text.isascii() and text.isprintable():
        return text
    out = []
    for char in text:
        if char != "\n" and _unsafe(char):
            code = ord(char)
            if code < 0x10000:
                out.append(f"\\u{code:04x}")
            else:
                code -= 0x10000
                out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
        else:
            out.append(char)
    return "".join(out)
