"""Whole summaries in `flowguard --help` (issue 16, item 6).

click makes a command's summary from its help text by stopping at the first word that ends
in a period, and then cuts it to the terminal with "...": "The GDPR Art." Here each
command's summary is its help's first sentence, whole (an abbreviation such as "Art." or
"e.g." does not end it); click wraps a summary that is longer than the line.
"""

from __future__ import annotations

import inspect

import click

_ABBREVIATIONS = frozenset({"art.", "e.g.", "i.e.", "cf.", "etc.", "no.", "nr.", "vs.",
                            "(e.g.", "(i.e.", "(cf.", "(art."})


def first_sentence(text: str) -> str:
    """The first sentence of the first paragraph of a help text."""
    paragraph = inspect.cleandoc(text).split("\n\n")[0]
    words: list[str] = []
    for word in paragraph.split():
        words.append(word)
        if word.endswith(".") and word.lower() not in _ABBREVIATIONS:
            break
    return " ".join(words)


def whole_summaries(command: click.Command) -> None:
    """Give every command under `command` that has none a whole one-sentence summary."""
    if command.short_help is None and command.help:
        command.short_help = first_sentence(command.help)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            whole_summaries(sub)
