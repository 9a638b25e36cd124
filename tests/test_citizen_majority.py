"""A parental guardianship ends at the ward's majority (SPEC §5, read by
Engine.guardianships_in_force): from the day after the 18th birthday, the parent no longer
sees, nor can withdraw, the consents they gave for the child on the citizen pages."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import flowguard.server.citizen as pages
from flowguard.store import open_store

from .citizen_fixtures import LOGINS, Browser, Citizen, start_citizen

# citizen-0233 (policies/aalborg-aktiv) is born 2009-09-15; her mother, person-bente, holds
# parental responsibility (g-0233-mother, no valid_until: it ends by law at 18) and gave
# consent k-0233-supermarket for her
BIRTHDAY_18 = datetime(2027, 9, 15, tzinfo=UTC)
CONSENT = "k-0233-supermarket"


@pytest.fixture
def citizen(tmp_path: Path) -> Iterator[Citizen]:
    c = start_citizen(tmp_path)
    yield c
    c.stop()


def _clock(monkeypatch: pytest.MonkeyPatch, at: datetime) -> None:
    """The citizen pages' `now` (they read it from `datetime.now`), set to `at`."""

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Frozen:  # type: ignore[override]
            return cls.fromtimestamp(at.timestamp(), tz)

    monkeypatch.setattr(pages, "datetime", Frozen)


@pytest.mark.parametrize(("day", "sees"), [
    (BIRTHDAY_18 - timedelta(hours=12), True),  # the day before her 18th birthday
    (BIRTHDAY_18 + timedelta(days=1, seconds=1), False),  # the day after
    (BIRTHDAY_18 + timedelta(days=200), False),
])
def test_a_parent_loses_sight_of_the_wards_consents_at_majority(
        citizen: Citizen, monkeypatch: pytest.MonkeyPatch, day: datetime, sees: bool) -> None:
    engine = citizen.served.app.state.service.engine
    assert ("g-0233-mother" in engine.guardianships_in_force("citizen-0233", day)) is sees
    _clock(monkeypatch, day)
    browser = Browser(citizen)
    try:
        page = browser.sign_in(LOGINS["person-bente"])
        assert page.status_code == 200
        assert (f"/me/withdraw/{CONSENT}" in page.text) is sees
        assert ("Consents you gave as guardian" in page.text) is sees
        confirm = browser.get(f"/me/withdraw/{CONSENT}")
        assert confirm.status_code == (200 if sees else 404)
        if sees:  # the control: before her majority, the mother may still withdraw it
            done = browser.post(f"/me/withdraw/{CONSENT}", {"csrf": browser.csrf(page)})
            assert done.status_code == 303
        else:
            refused = browser.post(f"/me/withdraw/{CONSENT}", {"csrf": browser.csrf(page)})
            assert refused.status_code == 404 and CONSENT not in refused.text
            with open_store(citizen.setup.registry) as store:
                kinds = [e.kind for e in store.history(CONSENT)]
            assert "consent.withdrawn" not in kinds
    finally:
        browser.close()
