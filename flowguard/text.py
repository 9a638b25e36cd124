"""Checks on short free text and record ids that travel into the registry, the audit log
and people's terminals (issue 13): nothing there may be read as a control sequence, a new
line or markup by whoever displays it, and nothing may grow without bound."""

from __future__ import annotations

import re

MAX_FREE_TEXT = 200
MAX_RECORDER = 700
"""A registry event's recorder: over HTTP `token:<id> organization:<org> on_behalf_of:<actor>`,
three ids of at most 200 characters each."""


def free_text(value: str, *, what: str = "this text", limit: int = MAX_FREE_TEXT) -> str:
    """`value` if it is 1-`limit` printable characters (no control characters, line breaks,
    tabs or invisible format characters), else `ValueError` saying what to write."""
    if not value:
        raise ValueError(f"{what} is empty: write at least one character")
    if len(value) > limit:
        raise ValueError(f"{what} has {len(value)} characters: write at most {limit}")
    if not value.isprintable():
        raise ValueError(f"{what} holds a control, line-break or invisible character: "
                         "write printable text on one line")
    return value


def record_id(value: str) -> str:
    """A consent's or guardianship's id: refused when it holds `/` (it could be recorded
    but never named in a URL path) or six or more digits in a row (a personal identity
    number; ids must not carry personal data)."""
    if "/" in value:
        raise ValueError("a consent or guardianship id may not contain `/` (it must fit in "
                         "a URL path): use `-`, `.` or `:` instead")
    if _DIGITS.search(value):
        raise ValueError("an id with six or more digits in a row looks like a personal "
                         "identity number (CPR/HETU): choose an id that says nothing about "
                         "the person")
    return value


_DIGITS = re.compile(r"[0-9]{6}")
"""Six digits in a row: a CPR number (DDMMYY-SSSS) or a HETU (DDMMYY-NNNC) starts so; an id
that carries one would put a citizen's identity into the append-only audit log."""
