"""The citizen pages over HTTP (issue 17, items 1, 3, 4 and 6): OpenID Connect sign-in with
PKCE against a provider the tests start on loopback, cookie flags, CSRF, withdrawal honoured
by the next check, the access report, and the attacks a security officer would try."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowguard.audit.entries import load_pseudonym_key
from flowguard.store import open_store

from .citizen_fixtures import LOGINS, UNLINKED, Browser, Citizen, start_citizen
from .test_server import FLOW, audit_entries


@pytest.fixture
def citizen(tmp_path: Path) -> Iterator[Citizen]:
    c = start_citizen(tmp_path)
    yield c
    c.stop()


@pytest.fixture
def browser(citizen: Citizen) -> Iterator[Browser]:
    b = Browser(citizen)
    yield b
    b.close()


def _consent_ids(html: str) -> set[str]:
    return set(re.findall(r'/me/withdraw/([A-Za-z0-9._-]+)"', html))


def test_sign_in_lists_all_my_consents_and_sets_safe_cookies(citizen: Citizen,
                                                              browser: Browser) -> None:
    assert "Sign in" in browser.get("/me/").text
    page = browser.sign_in(LOGINS["citizen-0042"])
    assert page.status_code == 200
    assert _consent_ids(page.text) == {"k-0042-cafe", "k-0042-health-jobcenter",
                                       "k-0042-placements", "k-0042-centre",
                                       "k-0042-evaluation"}
    assert "Café Solsikken ApS" in page.text and "citizen-0107" not in page.text
    session = [c for c in browser.set_cookies if c.startswith("fg_session=")]
    assert session, browser.set_cookies
    for header in browser.set_cookies:
        lowered = header.lower()
        assert "httponly" in lowered and "secure" in lowered and "samesite=lax" in lowered
    # the cookie carries the login's keyed hash, never the national id or the subject id
    assert all(LOGINS["citizen-0042"] not in c and "citizen-0042" not in c
               for c in browser.set_cookies)
    # PKCE S256 and client_secret_basic were used
    assert citizen.provider.token_requests[-1]["auth"].startswith("Basic ")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert "<script" not in page.text


def test_the_lawful_status_is_the_engines_reading(citizen: Citizen, browser: Browser) -> None:
    # k-0512-health was agreed orally: recorded, in its term, but not explicit, so it does
    # not count for health data (SPEC §5) - the page says so, as a check would deny
    page = browser.sign_in(LOGINS["citizen-0512"])
    assert "recorded, but it does not count" in page.text
    assert "it was not given explicitly" in page.text
    flow = {"sender": "case-worker", "recipient": "job-consultant", "subject": "citizen-0512",
            "data": ["health.diagnosis"], "purpose": "job-matching",
            "subprocess": "co-delivery"}
    decision = citizen.served.post("/v1/check", flow, citizen.setup.token["kommune"]).json()
    assert decision["decision"] == "deny"
    assert "CONSENT_NOT_EXPLICIT" in json.dumps(decision)


def test_client_secret_post_when_the_provider_offers_only_that(tmp_path: Path) -> None:
    c = start_citizen(tmp_path, auth_method="client_secret_post")
    b = Browser(c)
    try:
        page = b.sign_in(LOGINS["citizen-0042"])
        assert "k-0042-cafe" in page.text
        assert c.provider.token_requests[-1]["auth"] == ""
    finally:
        b.close()
        c.stop()


def test_withdraw_confirm_records_self_service_and_the_next_check_denies(
        citizen: Citizen, browser: Browser) -> None:
    token = citizen.setup.token["kommune"]
    assert citizen.served.post("/v1/check", FLOW, token).json()["decision"] == "permit"
    browser.sign_in(LOGINS["citizen-0042"])
    confirm = browser.get("/me/withdraw/k-0042-cafe")
    assert confirm.status_code == 200 and "Confirm withdrawal" in confirm.text
    assert "Café Solsikken ApS" in confirm.text
    done = browser.post("/me/withdraw/k-0042-cafe", {"csrf": browser.csrf(confirm)})
    assert done.status_code == 303
    listed = browser.get(done.headers["location"])
    assert "Your consent is withdrawn." in listed.text
    assert "/me/withdraw/k-0042-cafe" not in listed.text  # no button on a withdrawn one
    assert "withdrawn" in listed.text
    decision = citizen.served.post("/v1/check", FLOW, token).json()
    assert decision["decision"] == "deny" and decision["reason"] == "CONSENT_WITHDRAWN"
    with open_store(citizen.setup.registry) as store:
        event = store.history("k-0042-cafe")[-1]
    assert event.kind == "consent.withdrawn" and event.by == "citizen-0042"
    assert event.evidence is not None and event.evidence.method == "citizen-self-service"
    keyed = load_pseudonym_key(citizen.setup.pseudonym_key)
    audited = [e for e in audit_entries(citizen.setup) if e.get("event") == "consent.withdrawn"]
    assert audited and audited[-1]["by"] == keyed("citizen-0042")
    assert "citizen-0042" not in json.dumps(audited)
    again = browser.post("/me/withdraw/k-0042-cafe", {"csrf": browser.csrf(confirm)})
    assert again.status_code == 409


def test_missing_or_wrong_csrf_is_403_and_nothing_is_withdrawn(citizen: Citizen,
                                                                browser: Browser) -> None:
    browser.sign_in(LOGINS["citizen-0042"])
    assert browser.post("/me/withdraw/k-0042-cafe").status_code == 403
    assert browser.post("/me/withdraw/k-0042-cafe", {"csrf": "0" * 64}).status_code == 403
    other = Browser(citizen)
    try:
        page = other.sign_in(LOGINS["citizen-0107"])
        # a token of another session is no good either
        stolen = other.csrf(page)
        assert browser.post("/me/withdraw/k-0042-cafe", {"csrf": stolen}).status_code == 403
    finally:
        other.close()
    assert browser.post("/me/logout").status_code == 403
    with open_store(citizen.setup.registry) as store:
        assert [e.kind for e in store.history("k-0042-cafe")] == ["consent.granted"]


def test_another_citizens_consent_cannot_be_seen_or_withdrawn(citizen: Citizen,
                                                              browser: Browser) -> None:
    page = browser.sign_in(LOGINS["citizen-0107"])
    assert "k-0042" not in page.text
    assert browser.get("/me/withdraw/k-0042-cafe").status_code == 404
    denied = browser.post("/me/withdraw/k-0042-cafe", {"csrf": browser.csrf(page)})
    assert denied.status_code == 404
    # the same answer as for an id that does not exist
    assert browser.post("/me/withdraw/k-nope", {"csrf": browser.csrf(page)}).status_code == 404
    # a tampered session cookie is no session at all
    browser.cookies["fg_session"] = browser.cookies["fg_session"][:-2] + "xx"
    assert "Sign in" in browser.get("/me/").text
    with open_store(citizen.setup.registry) as store:
        assert [e.kind for e in store.history("k-0042-cafe")] == ["consent.granted"]


def test_an_unlinked_login_sees_whom_to_contact_and_no_data(citizen: Citizen,
                                                            browser: Browser) -> None:
    page = browser.sign_in(UNLINKED)
    assert page.status_code == 200
    assert "not linked" in page.text and "Jobcenter Aalborg, 99 31 31 31" in page.text
    assert "k-0" not in page.text and "citizen-" not in page.text
    for path in ("/me/received", "/me/withdraw/k-0042-cafe"):
        assert "k-0042" not in browser.get(path).text
    assert browser.post("/me/withdraw/k-0042-cafe",
                        {"csrf": browser.csrf(page)}).status_code == 404


def test_a_guardian_sees_only_what_a_guardianship_in_term_covers(citizen: Citizen,
                                                                 browser: Browser) -> None:
    # person-bente: parental responsibility for citizen-0233 (16): the consent she gave,
    # not the one the girl gave herself
    page = browser.sign_in(LOGINS["person-bente"])
    assert _consent_ids(page.text) == {"k-0233-supermarket"}
    assert "Consents you gave as guardian" in page.text
    done = browser.post("/me/withdraw/k-0233-supermarket", {"csrf": browser.csrf(page)})
    assert done.status_code == 303
    with open_store(citizen.setup.registry) as store:
        event = store.history("k-0233-supermarket")[-1]
    keyed = load_pseudonym_key(citizen.setup.pseudonym_key)
    assert event.kind == "consent.withdrawn" and event.by == keyed("person-bente")
    assert "person-bente" not in json.dumps(audit_entries(citizen.setup))
    # person-anne's værgemål ended on 2026-07-01: she no longer sees what she gave
    anne = Browser(citizen)
    try:
        page = anne.sign_in(LOGINS["person-anne"])
        assert _consent_ids(page.text) == set() and "k-0107" not in page.text
        assert anne.get("/me/withdraw/k-0107-health-jobcenter").status_code == 404
    finally:
        anne.close()


def test_received_lists_my_disclosures_with_proofs_and_never_anothers(
        citizen: Citizen, browser: Browser) -> None:
    token = citizen.setup.token["kommune"]
    assert citizen.served.post("/v1/check", FLOW, token).json()["decision"] == "permit"
    other = {**FLOW, "subject": "citizen-0107", "data": ["work.preferences"]}
    citizen.served.post("/v1/check", other, token)
    trail = citizen.served.app.state.service.trail
    trail.checkpoint()
    browser.sign_in(LOGINS["citizen-0042"])
    page = browser.get("/me/received")
    assert page.status_code == 200
    assert "Café Solsikken ApS" in page.text and "covered by a signed checkpoint" in page.text
    proofs = re.findall(r'/me/received/proof/(\d+)"', page.text)
    assert len(proofs) == 1
    proof = browser.get(f"/me/received/proof/{proofs[0]}")
    assert proof.status_code == 200 and proof.text.startswith("c2sp.org/tlog-proof@v1")
    assert "attachment" in proof.headers["content-disposition"]
    # every other entry of the log is refused, including the other citizen's decision
    for index in range(trail.log.size):
        if str(index) != proofs[0]:
            assert browser.get(f"/me/received/proof/{index}").status_code == 404


def test_language_follows_the_browser_and_the_switcher(citizen: Citizen) -> None:
    for language, withdraw in (("da", "Tilbagekald"), ("fi", "Peruuta"), ("en", "Withdraw")):
        b = Browser(citizen, language)
        try:
            page = b.sign_in(LOGINS["citizen-0042"])
            assert f'<html lang="{language}">' in page.text and f">{withdraw}<" in page.text
        finally:
            b.close()
    b = Browser(citizen, "fi")
    try:
        b.sign_in(LOGINS["citizen-0042"])
        switched = b.get("/me/?lang=da")
        assert '<html lang="da">' in switched.text
        assert '<html lang="da">' in b.get("/me/").text  # remembered
    finally:
        b.close()


def test_sign_in_refuses_a_forged_state_and_a_replayed_code(citizen: Citizen,
                                                            browser: Browser) -> None:
    citizen.provider.login = LOGINS["citizen-0042"]
    start = browser.get("/me/login")
    at_provider = browser.get(start.headers["location"])
    callback = at_provider.headers["location"]
    forged = re.sub(r"state=[^&]+", "state=forged", callback)
    assert browser.get(forged).status_code == 400
    assert browser.get(callback).status_code == 303  # the real one works once
    assert browser.get(callback).status_code == 400  # its code and state are spent
    stranger = Browser(citizen)
    try:  # a callback without the browser's own sign-in cookie
        assert stranger.get(callback).status_code == 400
    finally:
        stranger.close()


def test_logout_ends_the_session(citizen: Citizen, browser: Browser) -> None:
    page = browser.sign_in(LOGINS["citizen-0042"])
    out = browser.post("/me/logout", {"csrf": browser.csrf(page)})
    assert out.status_code == 200 and "signed out" in out.text
    assert "fg_session" not in browser.cookies
    assert "Sign in" in browser.get("/me/").text


def test_sign_in_is_rate_limited_per_address(citizen: Citizen, browser: Browser) -> None:
    codes = [browser.get("/me/login").status_code for _ in range(31)]
    assert codes[:30] == [303] * 30 and codes[30] == 429
