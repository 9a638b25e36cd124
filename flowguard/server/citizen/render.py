"""Rendering of the citizen pages: Jinja2 templates with autoescape (stored text is never
markup), texts from the `citizen` gettext catalogue in the page's language."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from babel.dates import format_date, format_datetime
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from flowguard.i18n import locale_of, translations

DOMAIN = "citizen"

# reason codes (SPEC §5) in the words a citizen reads; translated in citizen.po
REASONS: dict[str, str] = {
    "CONSENT_WITHDRAWN": "withdrawn",
    "CONSENT_EXPIRED": "expired",
    "CONSENT_NOT_YET_VALID": "not yet in force",
    "CONSENT_NOT_EXPLICIT": "does not count for this sensitive data: it was not given "
                            "explicitly",
    "GRANTOR_NOT_AUTHORIZED": "does not count: the person who gave it had no authority to",
    "GRANTOR_AUTHORITY_ENDED": "no longer counts: the authority of the person who gave it "
                               "has ended",
}


@lru_cache(maxsize=1)
def environment() -> Environment:
    return Environment(loader=PackageLoader("flowguard", "templates/citizen"),
                       autoescape=select_autoescape(default=True, default_for_string=True),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(template: str, language: str, **context: Any) -> str:
    catalogue = translations(language, DOMAIN)
    locale = locale_of(language)

    def when(value: datetime | None, with_time: bool = True) -> str:
        if value is None:
            return ""
        if with_time:  # times are kept in UTC; say so
            return format_datetime(value, "medium", tzinfo=UTC, locale=locale) + " UTC"
        return format_date(value, "long", locale=locale)

    return environment().get_template(template).render(
        _=catalogue.gettext, ngettext=catalogue.ngettext, lang=language, when=when,
        **context)
