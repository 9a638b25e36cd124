"""The language layer: which languages exist, and how a browser's preference picks one."""

from __future__ import annotations

import pytest

from flowguard.i18n import LANGUAGES, UnknownLanguageError, negotiate, translations


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("da-DK,da;q=0.9,en;q=0.8", "da"),
        ("fi", "fi"),
        ("sv-SE,fi;q=0.5", "fi"),
        ("de-DE,de;q=0.9", "en"),
        ("en;q=0.1,da;q=0.9", "da"),
        ("da;q=0,fi;q=0.2", "fi"),
        ("", "en"),
        (None, "en"),
        ("da;q=bogus,fi", "fi"),
    ],
)
def test_accept_language_picks_the_best_language_flowguard_speaks(
    header: str | None, expected: str
) -> None:
    assert negotiate(header) == expected


def test_an_unknown_language_is_refused_naming_the_ones_that_exist() -> None:
    with pytest.raises(UnknownLanguageError, match="en, da, fi"):
        translations("sv")


def test_every_language_has_translations() -> None:
    for language in LANGUAGES:
        assert translations(language).gettext("x") == "x"
