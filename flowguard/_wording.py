"""Counts in the operator's text (CLI output and the library messages it prints): "1 entry",
"2 entries", never "1 entries"."""

from __future__ import annotations


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """`count` and the noun agreeing with it: `counted(1, "entry", "entries")` is "1 entry",
    `counted(2, "checkpoint")` "2 checkpoints" (the plural defaults to singular + "s")."""
    noun = singular if count == 1 else (plural if plural is not None else singular + "s")
    return f"{count} {noun}"
