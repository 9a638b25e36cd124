"""What the citizen pages keep in the database the workers share (flowguard.server.shared;
issue 17 follow-up): ended sessions, so a copied session cookie is refused by every worker
once its owner has signed out, and the rate-limit events, so N workers do not allow N times
the limit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flowguard.server.shared import SharedState

from .citizen_fixtures import LOGINS, Browser, Citizen, PortServed, start_citizen
from .test_server import free_port


@pytest.fixture
def citizen(tmp_path: Path) -> Iterator[Citizen]:
    c = start_citizen(tmp_path)
    yield c
    c.stop()


def _with_cookie(base: str, cookie: str) -> httpx.Response:
    return httpx.get(base + "/me/", headers={"Cookie": f"fg_session={cookie}"}, timeout=30)


def test_a_copied_cookie_is_refused_after_sign_out_by_every_worker(citizen: Citizen) -> None:
    # a second server (another worker) on the same registry database and keys
    other = PortServed(citizen.served.app.state.service.config, free_port())
    browser = Browser(citizen)
    try:
        page = browser.sign_in(LOGINS["citizen-0042"])
        copied = browser.cookies["fg_session"]
        other_base = f"http://127.0.0.1:{other.port}"
        for base in (citizen.base, other_base):  # the copy works before sign-out
            assert "k-0042-cafe" in _with_cookie(base, copied).text
        out = browser.post("/me/logout", {"csrf": browser.csrf(page)})
        assert out.status_code == 200 and "signed out" in out.text
        for base in (citizen.base, other_base):
            after = _with_cookie(base, copied)
            assert after.status_code == 200 and "Sign in" in after.text
            assert "k-0042" not in after.text
        # nor can the copy withdraw (its form token is bound to the ended session)
        refused = httpx.post(other_base + "/me/withdraw/k-0042-cafe",
                             data={"csrf": browser.csrf(page)},
                             headers={"Cookie": f"fg_session={copied}"}, timeout=30)
        assert refused.status_code == 403
        # a new sign-in is a new session and works
        again = browser.sign_in(LOGINS["citizen-0042"])
        assert "k-0042-cafe" in again.text
    finally:
        browser.close()
        other.stop()


def test_ended_sessions_are_shared_and_pruned(store_url: str) -> None:
    one, two = SharedState(store_url), SharedState(store_url)
    try:
        assert not two.session_ended("s-1")
        one.end_session("s-1", time.time() + 1800)
        assert two.session_ended("s-1") and not two.session_ended("s-2")
        one.end_session("s-1", time.time() + 1800)  # twice is fine
        two.end_session("s-old", time.time() - 1)  # already past: pruned by the next end
        one.end_session("s-3", time.time() + 1800)
        assert not one.session_ended("s-old") and one.session_ended("s-3")
        rows = one.db.read("SELECT key FROM flowguard_server_ended_sessions")
        assert all("s-1" not in str(r[0]) for r in rows)  # only digests are stored
    finally:
        one.close()
        two.close()


def test_the_sign_in_limit_is_counted_over_every_worker(citizen: Citizen) -> None:
    other = PortServed(citizen.served.app.state.service.config, free_port())
    try:
        bases = (citizen.base, f"http://127.0.0.1:{other.port}")
        codes = [httpx.get(bases[i % 2] + "/me/login", timeout=30).status_code
                 for i in range(31)]
        assert codes[:30] == [303] * 30 and codes[30] == 429
        assert httpx.get(bases[0] + "/me/login", timeout=30).status_code == 429
    finally:
        other.stop()


def test_rate_limit_is_a_sliding_minute_shared_by_workers(store_url: str) -> None:
    one, two = SharedState(store_url), SharedState(store_url)
    try:
        t = 1_800_000_000.0
        assert [(one if i % 2 else two).allow("k-a", 3, now=t + i) for i in range(4)] == \
            [True, True, True, False]
        assert one.allow("k-b", 3, now=t + 4)  # another client: its own count
        assert not two.allow("k-a", 3, now=t + 60)  # a minute after t, t still counts
        assert two.allow("k-a", 3, now=t + 61.5)  # t and t+1 have left the minute
        assert one.allow("k-a", 3, now=t + 61.6)
        assert not two.allow("k-a", 3, now=t + 61.7)  # t+2, t+61.5, t+61.6
    finally:
        one.close()
        two.close()


def test_a_database_of_the_first_server_migration_is_upgraded(store_url: str) -> None:
    from flowguard.server import shared
    from flowguard.store._db import connect, migrate

    db = connect(store_url)
    try:
        migrate(db, shared.COMPONENT, shared.MIGRATIONS[:1])  # as released before
    finally:
        db.close()
    state = SharedState(store_url)
    try:
        state.end_session("s-1", time.time() + 60)
        assert state.session_ended("s-1") and state.allow("k", 1) and not state.allow("k", 1)
    finally:
        state.close()
