"""Every text of the citizen pages is translated into Danish and Finnish (issue 17): the
messages of the templates (`_("...")`) and of the code (`gettext("...")`, `message(...)`,
the reason texts) each have a non-empty translation in `citizen.po`, and its placeholders
are kept."""

from __future__ import annotations

import ast
import re
from importlib import resources

import pytest
from babel.messages.pofile import read_po

from flowguard.i18n import catalogue_path
from flowguard.server.citizen.render import REASONS

TEMPLATES = resources.files("flowguard") / "templates" / "citizen"
CODE = resources.files("flowguard") / "server" / "citizen" / "__init__.py"


def _template_messages() -> set[str]:
    found: set[str] = set()
    for template in TEMPLATES.iterdir():
        if template.name.endswith(".html"):
            text = template.read_text(encoding="utf-8")
            found |= set(re.findall(r'_\("([^"]+)"\)', text))
            found |= set(re.findall(r"_\('([^']+)'\)", text))
    return found


def _code_messages() -> set[str]:
    found: set[str] = set(REASONS.values())
    for node in ast.walk(ast.parse(CODE.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            continue
        args = node.args[:1] if node.func.id == "gettext" else \
            node.args[2:] if node.func.id == "message" else []
        found |= {a.value for a in args
                  if isinstance(a, ast.Constant) and isinstance(a.value, str)}
    return found


def test_the_extraction_finds_the_pinned_names() -> None:
    messages = _template_messages() | _code_messages()
    assert {"Withdraw", "Confirm withdrawal", "Sign out", "Your consent is withdrawn.",
            "There is no such consent of yours."} <= messages
    assert len(messages) > 60


@pytest.mark.parametrize("language", ["da", "fi"])
def test_every_citizen_message_is_translated(language: str) -> None:
    with catalogue_path(language, "citizen").open("rb") as po_file:
        catalogue = read_po(po_file, locale=language)
    translated = {m.id: m.string for m in catalogue if m.id}
    missing = sorted(m for m in _template_messages() | _code_messages()
                     if not translated.get(m))
    assert missing == []
    for msgid, msgstr in translated.items():
        assert set(re.findall(r"%\(\w+\)s", msgid)) == set(re.findall(r"%\(\w+\)s", msgstr))
