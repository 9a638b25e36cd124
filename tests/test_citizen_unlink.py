"""Unlinking a citizen's login (issue 17 follow-up): `flowguard subject unlink` and
`POST /v1/logins/unlink` record an audited `login.unlinked` registry event (keyed hash only),
under the authorization rules of flowguard.server.authz (as linking and granting on a form
now do too); the login then sees the "not linked" page."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowguard._cli import cli
from flowguard.audit.entries import load_pseudonym_key
from flowguard.server.tokens import new_token
from flowguard.store import open_store
from flowguard.store.logins import person_of_login

from .citizen_fixtures import LOGINS, Browser, Citizen, start_citizen
from .test_server import Setup, audit_entries

VALUE = LOGINS["citizen-0042"]


def _grant_rights(setup: Setup) -> None:
    """The mentor network may record consents; the café gets `consent:write` without it."""
    policy = setup.policy / "policy.yaml"
    text = policy.read_text(encoding="utf-8")
    marker = '    name: "Frivillig Mentor Aalborg"\n'
    assert marker in text
    policy.write_text(text.replace(marker, marker + "    records_consents: true\n"),
                      encoding="utf-8")
    table = json.loads(setup.tokens.read_text())
    for name, org in (("mentor", "frivillig-mentor-aalborg"), ("cafe-writer", "cafe-solsikke")):
        secret, digest = new_token()
        setup.token[name] = secret
        table["tokens"].append({"id": name, "hash": digest, "organization": org,
                                "scopes": ["consent:write"]})
    setup.tokens.write_text(json.dumps(table))


@pytest.fixture
def citizen(tmp_path: Path) -> Iterator[Citizen]:
    c = start_citizen(tmp_path, prepare=_grant_rights)
    yield c
    c.stop()


def _cli(setup: Setup, *args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["subject", *args, "-r", setup.registry,
                                      "--audit", setup.audit, "--log-key", str(setup.log_key),
                                      "--pseudonym-key", str(setup.pseudonym_key)],
                                input=stdin, catch_exceptions=False)
    return result.exit_code, result.output


def _sees_not_linked(citizen: Citizen, value: str) -> bool:
    browser = Browser(citizen)
    try:
        page = browser.sign_in(value)
        return "not linked" in page.text and "k-0" not in page.text
    finally:
        browser.close()


def test_cli_unlink_ends_the_link_audited_and_the_login_sees_not_linked(
        citizen: Citizen) -> None:
    setup = citizen.setup
    assert not _sees_not_linked(citizen, VALUE)
    code, output = _cli(setup, "unlink", "citizen-0042", "--login", "-", "--by", "clerk",
                        stdin=VALUE + "\n")
    assert code == 0 and "unlinked the login" in output, output
    assert VALUE not in output
    keyed = load_pseudonym_key(setup.pseudonym_key)
    with open_store(setup.registry) as store:
        assert person_of_login(store, keyed.login(VALUE)) is None
        assert person_of_login(store, keyed.login(LOGINS["citizen-0107"])) == "citizen-0107"
        events = [e for e in store.subject_history("citizen-0042")
                  if e.kind == "login.unlinked"]
    assert len(events) == 1 and events[0].by == "clerk"
    assert events[0].record == keyed.login(VALUE)
    unlinked = [e for e in audit_entries(setup) if e.get("event") == "login.unlinked"]
    assert len(unlinked) == 1 and unlinked[0]["subject"] == keyed("citizen-0042")
    dumped = json.dumps(audit_entries(setup))
    assert "citizen-0042" not in dumped and VALUE not in dumped
    assert _sees_not_linked(citizen, VALUE)
    # unlinking twice, or a login linked to someone else, is refused plainly
    code, output = _cli(setup, "unlink", "citizen-0042", "--login", VALUE)
    assert code == 2 and "not linked to anyone" in output and "Traceback" not in output
    code, output = _cli(setup, "unlink", "citizen-0042", "--login", LOGINS["citizen-0107"])
    assert code == 2 and "not linked to this person" in output
    assert VALUE not in output and LOGINS["citizen-0107"] not in output
    # and the login may be linked again, to the same or another person
    assert _cli(setup, "link", "citizen-0042", "--login", VALUE)[0] == 0
    assert not _sees_not_linked(citizen, VALUE)


def test_http_unlink_follows_the_authorization_rules(citizen: Citizen) -> None:
    served, token = citizen.served, citizen.setup.token
    body = {"login": VALUE}
    assert served.post("/v1/logins/unlink", body, None).status_code == 401
    assert served.post("/v1/logins/unlink", body, token["cafe"]).status_code == 403  # no scope
    # an organization with `consent:write` but not allowed to record: 403, audited
    refused = served.post("/v1/logins/unlink", body, token["cafe-writer"])
    assert refused.status_code == 403 and "may not record" in refused.text
    assert served.post("/v1/logins", {"person": "citizen-0609", "login": "0909090909"},
                       token["cafe-writer"]).status_code == 403
    access = [e for e in audit_entries(citizen.setup) if e.get("reason") ==
              "organization-may-not-record" and e.get("organization") == "cafe-solsikke"]
    assert {e.get("action") for e in access} == {"login.unlink", "login.link"}
    # a `records_consents` organization: not a login linked by someone else (404, as unknown)
    other = served.post("/v1/logins/unlink", body, token["mentor"])
    assert other.status_code == 404
    assert served.post("/v1/logins/unlink", {"login": "1111111111"},
                       token["mentor"]).text == other.text
    assert not _sees_not_linked(citizen, VALUE)
    # ... but one its own token linked
    linked = served.post("/v1/logins", {"person": "citizen-0609", "login": "0909090909"},
                         token["mentor"])
    assert linked.status_code == 201, linked.text
    mine = served.post("/v1/logins/unlink", {"login": "0909090909"}, token["mentor"])
    assert mine.status_code == 200 and mine.json()["kind"] == "login.unlinked"
    # the controller unlinks any login; the recorder is its token; a client `by` is refused
    assert served.post("/v1/logins/unlink", {**body, "by": "x"},
                       token["kommune"]).status_code == 422
    done = served.post("/v1/logins/unlink", body, token["kommune"])
    assert done.status_code == 200 and VALUE not in done.text
    assert served.post("/v1/logins/unlink", body, token["kommune"]).status_code == 404
    with open_store(citizen.setup.registry) as store:
        event = [e for e in store.subject_history("citizen-0042")
                 if e.kind == "login.unlinked"][-1]
    assert event.by == "token:kommune organization:aalborg-kommune"
    assert _sees_not_linked(citizen, VALUE)


def test_http_grant_on_a_form_follows_the_authorization_rules(tmp_path: Path) -> None:
    citizen = start_citizen(tmp_path, prepare=_grant_rights,
                            design=str(tmp_path / "policy" / "design.yaml"))
    try:
        served, token = citizen.served, citizen.setup.token
        body = {"form": "cafe-solsikke/job-matching.employer-contact", "id": "k-0609-f",
                "subject": "citizen-0609", "given_at": "2026-03-01T10:00:00Z"}
        refused = served.post("/v1/consents/form", body, token["cafe-writer"])
        assert refused.status_code == 403 and "may not record" in refused.text
        assert served.post("/v1/consents/form", {**body, "by": "clerk"},
                           token["kommune"]).status_code == 422
        made = served.post("/v1/consents/form", {**body, "on_behalf_of": "case-worker"},
                           token["kommune"])
        assert made.status_code == 201, made.text
        with open_store(citizen.setup.registry) as store:
            assert store.history("k-0609-f")[0].by == \
                "token:kommune organization:aalborg-kommune on_behalf_of:case-worker"
    finally:
        citizen.stop()
