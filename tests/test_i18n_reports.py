"""Every product string of the reports has a Danish and a Finnish translation (issue 16 item
1): the messages are extracted from the source as Babel does (`_()` and `gettext()` calls in
Python, `{% trans %}` and `_()` in Jinja2 templates); each shipped catalogue translates every
one, keeps its placeholders, holds nothing fuzzy and nothing the source no longer uses."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from flowguard.i18n import LANGUAGES, catalogue_path

PACKAGE = Path(str(resources.files("flowguard")))
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]|\{(\w+)\}")


CITIZEN_DOMAIN = ("server/citizen/", "templates/citizen/")
"""The citizen pages have their own catalogue (`citizen.po`, tests/test_citizen_i18n.py)."""


def _source_messages() -> set[str]:
    found: set[str] = set()
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]
    for _file, _line, message, _comments, _context in extract_from_dir(
            str(PACKAGE), method_map=method_map,
            options_map={"templates/**.html": {"extensions": "jinja2.ext.i18n"}},
            keywords={"_": None, "gettext": None, "ngettext": (1, 2)}):
        if Path(_file).as_posix().startswith(CITIZEN_DOMAIN):
            continue
        found.update([message] if isinstance(message, str) else message)
    return {m for m in found if m}


def _catalogue(lang: str):  # type: ignore[no-untyped-def]
    with catalogue_path(lang).open("rb") as po:
        return read_po(po, locale=lang)


def test_the_source_has_messages_to_translate() -> None:
    messages = _source_messages()
    assert "Who can say yes" in messages
    assert len(messages) >= 30


@pytest.mark.parametrize("lang", [lang for lang in LANGUAGES if lang != "en"])
def test_every_message_is_translated_with_its_placeholders(lang: str) -> None:
    catalogue = _catalogue(lang)
    missing, empty, fuzzy, placeholders = [], [], [], []
    for msgid in sorted(_source_messages()):
        message = catalogue.get(msgid)
        if message is None:
            missing.append(msgid)
            continue
        if not message.string:
            empty.append(msgid)
        if message.fuzzy:
            fuzzy.append(msgid)
        if set(PLACEHOLDER.findall(msgid)) != set(PLACEHOLDER.findall(str(message.string))):
            placeholders.append(msgid)
    assert (missing, empty, fuzzy, placeholders) == ([], [], [], [])


@pytest.mark.parametrize("lang", [lang for lang in LANGUAGES if lang != "en"])
def test_no_catalogue_keeps_messages_the_source_no_longer_uses(lang: str) -> None:
    used = _source_messages()
    stale = sorted(m.id for m in _catalogue(lang) if m.id and m.id not in used)
    assert stale == []
