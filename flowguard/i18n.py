"""Languages of the texts flowguard shows people: English, Danish and Finnish.

Product strings live in gettext catalogues shipped as package data,
``flowguard/locale/<lang>/LC_MESSAGES/<domain>.po``; they are compiled in memory on first use,
so a catalogue edit needs no build step. English is the source language: a message missing from
a catalogue is shown in English, and ``tests`` check every catalogue is complete.
"""

from __future__ import annotations

import gettext
import io
from functools import lru_cache
from importlib import resources
from typing import Final

from babel import Locale, UnknownLocaleError
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LANGUAGES: Final = ("en", "da", "fi")
DEFAULT_LANGUAGE: Final = "en"


class UnknownLanguageError(ValueError):
    """A language flowguard has no texts for."""

    def __init__(self, language: str) -> None:
        super().__init__(
            f"unknown language {language!r}: write one of {', '.join(LANGUAGES)}"
        )
        self.language = language


def checked_language(language: str) -> str:
    """``language`` if flowguard speaks it, else :class:`UnknownLanguageError`."""
    if language not in LANGUAGES:
        raise UnknownLanguageError(language)
    return language


def catalogue_path(language: str, domain: str = "flowguard") -> resources.abc.Traversable:
    """Where the ``.po`` catalogue of ``domain`` in ``language`` is shipped."""
    return resources.files("flowguard") / "locale" / language / "LC_MESSAGES" / f"{domain}.po"


@lru_cache(maxsize=32)
def translations(language: str, domain: str = "flowguard") -> gettext.NullTranslations:
    """The translations of ``domain`` into ``language`` (English needs none)."""
    checked_language(language)
    source = catalogue_path(language, domain)
    if language == DEFAULT_LANGUAGE or not source.is_file():
        return gettext.NullTranslations()
    with source.open("rb") as po_file:
        catalogue = read_po(po_file, locale=language, domain=domain)
    compiled = io.BytesIO()
    write_mo(compiled, catalogue)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def negotiate(accept_language: str | None, default: str = DEFAULT_LANGUAGE) -> str:
    """The best of :data:`LANGUAGES` for an HTTP ``Accept-Language`` header, else ``default``."""
    if not accept_language:
        return default
    wanted = []
    for part in accept_language.split(","):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag:
            wanted.append((quality, tag.strip().replace("-", "_")))
    ordered = [tag for quality, tag in sorted(wanted, key=lambda w: -w[0]) if quality > 0]
    best = Locale.negotiate(ordered, list(LANGUAGES), sep="_")
    return str(best.language) if best is not None else default


def locale_of(language: str) -> Locale:
    """The Babel locale used to format dates and numbers in ``language``."""
    try:
        return Locale.parse(checked_language(language))
    except UnknownLocaleError as exc:  # pragma: no cover - Babel ships all three
        raise UnknownLanguageError(language) from exc
