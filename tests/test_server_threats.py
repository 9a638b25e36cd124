"""The HTTP service's threat model (issue 13, items 1, 6 and 7), one attack per test.

The attacker is a partner organization holding a valid token (`cafe`: the café, a private
employer, with every consent scope), or any client that can reach the port. Each test sends
the attack as the issue reproduced it and checks that it is refused, that the refusal is
audited where it should be, and that nothing else changed. Most run the app in-process
through a real ASGI client; the reload and readiness cases run a real `flowguard serve`.
"""

from __future__ import annotations

import json
import logging
import signal
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowguard.audit.entries import Pseudonymizer
from flowguard.audit.trail import AuditTrail
from flowguard.audit.unknown import MAX_UNKNOWN_IDS, UNKNOWN_PREFIX
from flowguard.errors import InputError
from flowguard.model import Flow
from flowguard.policy import load_policy
from flowguard.registry import load_registry
from flowguard.server.app import create_app
from flowguard.server.tokens import TokenError, load_tokens, new_token
from flowguard.store import open_store

from .test_server import (
    AALBORG,
    FLOW,
    Setup,
    audit_entries,
    free_port,
    make_setup,
    start_cli_server,
)

FORGED = {"id": "k-forged-1", "subject": "citizen-0609", "given_by": "citizen-0609",
          "given_at": "2026-01-01T00:00:00Z", "recipients": [{"organization": "cafe-solsikke"}],
          "data": ["identity", "work"], "purposes": ["job-matching.employer-contact"]}
"""The consent the café forged for itself in the issue."""
CITIZEN_0609_TO_CAFE = {**FLOW, "subject": "citizen-0609", "data": ["identity.name"]}
ALL_CONSENT_SCOPES = ["check", "consent:write", "consent:read"]


def add_tokens(setup: Setup, *tokens: tuple[str, str, list[str], list[str] | None]) -> None:
    """Add tokens (id, organization, scopes, actors) to the setup's tokens file."""
    document = json.loads(setup.tokens.read_text())
    for token_id, organization, scopes, actors in tokens:
        secret, digest = new_token()
        setup.token[token_id] = secret
        entry: dict[str, Any] = {"id": token_id, "hash": digest,
                                 "organization": organization, "scopes": scopes}
        if actors is not None:
            entry["actors"] = actors
        document["tokens"].append(entry)
    setup.tokens.write_text(json.dumps(document))


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    setup = make_setup(tmp_path)
    # the volunteer mentors may record consents themselves (SPEC §3 `records_consents`)
    policy = setup.policy / "policy.yaml"
    text = policy.read_text()
    marker = "  frivillig-mentor-aalborg:\n"
    assert marker in text
    policy.write_text(text.replace(marker, marker + "    records_consents: true\n", 1))
    add_tokens(setup,
               ("cafe-writer", "cafe-solsikke", ALL_CONSENT_SCOPES, None),
               ("mentor", "frivillig-mentor-aalborg", ALL_CONSENT_SCOPES, None),
               ("kommune-jc", "aalborg-kommune", ALL_CONSENT_SCOPES, ["job-consultant"]))
    return setup


class Client:
    """The app behind a real ASGI client, with the request id and token filled in."""

    def __init__(self, client: TestClient, setup: Setup) -> None:
        self.http = client
        self.setup = setup

    def post(self, path: str, body: Any, token: str, **headers: str) -> httpx.Response:
        return self.http.post(path, json=body, headers={
            "Authorization": f"Bearer {self.setup.token[token]}",
            "X-Request-Id": uuid.uuid4().hex, **headers})

    def get(self, path: str, token: str) -> httpx.Response:
        return self.http.get(path, headers={"Authorization": f"Bearer {self.setup.token[token]}"})

    def decision(self, flow: dict[str, Any], token: str = "kommune") -> str:
        answer = self.post("/v1/check", flow, token)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["decision"])


@pytest.fixture
def client(setup: Setup) -> Iterator[Client]:
    with TestClient(create_app(setup.config())) as http:
        yield Client(http, setup)


def registry_events(setup: Setup) -> list[dict[str, Any]]:
    return [e for e in audit_entries(setup) if e["kind"] == "registry"]


def refusals(setup: Setup) -> list[dict[str, Any]]:
    return [e for e in audit_entries(setup) if e["kind"] == "access"]


def log_bytes(setup: Setup) -> bytes:
    return b"\n".join(json.dumps(e).encode() for e in audit_entries(setup))


# --------------------------------------------------------------------------- item 1: authorization


def test_a_partner_cannot_forge_a_consent_for_itself(client: Client, setup: Setup) -> None:
    assert client.decision(CITIZEN_0609_TO_CAFE) == "deny"
    forged = client.post("/v1/consents", {"consent": FORGED}, "cafe-writer")
    assert forged.status_code == 403, forged.text
    assert "records_consents" in forged.json()["detail"]
    # the municipality's next check is still denied: nothing was recorded
    assert client.decision(CITIZEN_0609_TO_CAFE) == "deny"
    assert registry_events(setup) == []
    refused = refusals(setup)
    assert [(e["token"], e["organization"], e["action"], e["reason"]) for e in refused] == [
        ("cafe-writer", "cafe-solsikke", "consent.grant", "organization-may-not-record")]


def test_a_client_cannot_name_the_recorder(client: Client, setup: Setup) -> None:
    """The issue's forged entry said `"by":"job-consultant"` with no trace of the token."""
    for token in ("cafe-writer", "kommune"):
        answer = client.post("/v1/consents", {"by": "job-consultant", "consent": FORGED}, token)
        assert answer.status_code == 422
        assert "`by` is not accepted" in answer.text and "on_behalf_of" in answer.text
    assert registry_events(setup) == []


def test_the_recorder_is_the_token_and_its_actor(client: Client, setup: Setup) -> None:
    consent = {**FORGED, "id": "k-by-kommune"}
    answer = client.post("/v1/consents", {"consent": consent,
                                          "on_behalf_of": "job-consultant"}, "kommune-jc")
    assert answer.status_code == 201, answer.text
    assert client.decision(CITIZEN_0609_TO_CAFE) == "permit"
    withdrawn = client.post("/v1/consents/k-by-kommune/withdraw", {}, "kommune")
    assert withdrawn.status_code == 200
    assert [e["by"] for e in registry_events(setup)] == [
        "token:kommune-jc organization:aalborg-kommune on_behalf_of:job-consultant",
        "token:kommune organization:aalborg-kommune"]
    with open_store(setup.registry) as store:
        assert [e.by for e in store.history("k-by-kommune")] == [
            "token:kommune-jc organization:aalborg-kommune on_behalf_of:job-consultant",
            "token:kommune organization:aalborg-kommune"]


@pytest.mark.parametrize(("token", "actor"), [
    ("kommune", "cafe-manager"),        # an actor of another organization
    ("kommune", "citizen-0609"),        # no actor at all (and not echoed back)
    ("kommune-jc", "case-worker"),      # its organization's, but not one this token may name
])
def test_on_behalf_of_only_an_actor_the_token_may_act_for(
        client: Client, setup: Setup, token: str, actor: str) -> None:
    answer = client.post("/v1/consents", {"consent": FORGED, "on_behalf_of": actor}, token)
    assert answer.status_code == 403
    assert "citizen-0609" not in answer.text
    assert registry_events(setup) == []
    assert refusals(setup)[-1]["reason"] == "on-behalf-of-outside-organization"


def test_a_partner_cannot_withdraw_read_or_list(client: Client, setup: Setup) -> None:
    assert client.decision(FLOW) == "permit"  # on the municipality's consent k-0042-cafe
    withdraw = client.post("/v1/consents/k-0042-cafe/withdraw", {}, "cafe-writer")
    assert withdraw.status_code == 403
    assert client.decision(FLOW) == "permit"
    for path in ("/v1/consents/k-0042-health-jobcenter",
                 "/v1/consents/k-0042-health-jobcenter/history"):
        answer = client.get(path, "cafe-writer")
        assert answer.status_code == 403
        assert "citizen-0042" not in answer.text and "health" not in answer.text
    guardians = client.post("/v1/guardianships/query", {"subject": "citizen-0107"},
                            "cafe-writer")
    assert guardians.status_code == 403 and "person-anne" not in guardians.text
    ended = client.post("/v1/guardianships/g-0107-vaerge/end", {}, "cafe-writer")
    assert ended.status_code == 403
    assert registry_events(setup) == []
    assert [e["action"] for e in refusals(setup)] == [
        "consent.withdraw", "consent.read", "consent.history", "guardianship.query",
        "guardianship.end"]


MENTOR_K = "frivillig-mentor-aalborg-k-mentor"
MENTOR_G = "frivillig-mentor-aalborg.g-mentor"


def test_an_organization_that_records_consents_sees_only_its_own(
        client: Client, setup: Setup) -> None:
    mine = {**FORGED, "id": MENTOR_K, "recipients": [{"organization":
                                                         "frivillig-mentor-aalborg"}],
            "purposes": ["job-matching"]}
    assert client.post("/v1/consents", {"consent": mine}, "mentor").status_code == 201
    assert client.get(f"/v1/consents/{MENTOR_K}", "mentor").status_code == 200
    assert client.get(f"/v1/consents/{MENTOR_K}/history", "mentor").status_code == 200
    # the municipality's consent looks exactly like one that does not exist
    theirs = client.get("/v1/consents/k-0042-health-jobcenter", "mentor")
    missing = client.get("/v1/consents/k-does-not-exist", "mentor")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["detail"].replace("k-0042-health-jobcenter", "X") == \
        missing.json()["detail"].replace("k-does-not-exist", "X")
    assert client.get("/v1/consents/k-0042-health-jobcenter/history",
                      "mentor").status_code == 404
    assert client.post("/v1/consents/k-0042-cafe/withdraw", {}, "mentor").status_code == 404
    assert client.decision(FLOW) == "permit"
    # guardianships: only those it recorded
    ward = {"id": MENTOR_G, "guardian": "person-x", "subject": "citizen-0107",
            "kind": "adult", "valid_from": "2026-01-01"}
    assert client.post("/v1/guardianships", {"guardianship": ward}, "mentor").status_code == 201
    listed = client.post("/v1/guardianships/query", {"subject": "citizen-0107"}, "mentor")
    assert [g["id"] for g in listed.json()] == [MENTOR_G]
    everything = client.post("/v1/guardianships/query", {"subject": "citizen-0107"}, "kommune")
    assert sorted(g["id"] for g in everything.json()) == sorted(["g-0107-vaerge", MENTOR_G])
    assert client.post("/v1/guardianships/g-0107-vaerge/end", {},
                       "mentor").status_code == 404
    # the controller sees and withdraws what the mentors recorded
    assert client.get(f"/v1/consents/{MENTOR_K}", "kommune").status_code == 200
    assert client.post(f"/v1/consents/{MENTOR_K}/withdraw", {}, "kommune").status_code == 200


def test_records_consents_is_in_the_schema_and_lint(tmp_path: Path) -> None:
    from flowguard.lint import lint
    from flowguard.schema import json_schema

    organization = json_schema("policy")["$defs"]["Organization"]["properties"]
    assert {"type": "boolean"} in organization["records_consents"]["anyOf"]
    policy = tmp_path / "policy.yaml"
    policy.write_text((AALBORG / "policy.yaml").read_text().replace(
        "    kind: employer\n", "    kind: employer\n    records_consents: maybe\n", 1))
    errors = [d for d in lint(policy) if d.severity == "error"]
    assert errors and "records_consents" in errors[0].render()


# --------------------------------------------------------------------------- item 6: the log


def test_an_unknown_id_is_logged_as_its_keyed_hash(client: Client, setup: Setup) -> None:
    """The issue: a citizen id sent as `recipient` landed in the append-only log raw."""
    flow = {**FLOW, "recipient": "citizen-0609", "data": ["identity.name", "invented.cat"]}
    answer = client.post("/v1/check", flow, "kommune")
    assert answer.status_code == 200 and answer.json()["decision"] == "deny"
    raw = log_bytes(setup)
    assert b"citizen-0609" not in raw and b"invented.cat" not in raw
    entry = [e for e in audit_entries(setup) if e["kind"] == "decision"][-1]
    pseudonym = Pseudonymizer(bytes.fromhex(setup.pseudonym_key.read_text().strip()))
    assert entry["recipient"] == UNKNOWN_PREFIX + pseudonym("citizen-0609")
    assert entry["recipient"].startswith("unknown:hmac-sha256:")
    assert UNKNOWN_PREFIX + pseudonym("invented.cat") in entry["data"]
    assert "identity.name" in entry["data"]  # a known id stays readable


def test_a_flood_of_unknown_ids_is_refused_before_anything_is_written(
        client: Client, setup: Setup) -> None:
    before = len(audit_entries(setup))
    invented = [f"x{i:03d}" + "y" * 180 for i in range(MAX_UNKNOWN_IDS + 1)]
    answer = client.post("/v1/check", {**FLOW, "data": invented}, "kommune")
    assert answer.status_code == 422 and f"at most {MAX_UNKNOWN_IDS}" in answer.text
    batch = {"flows": [{**FLOW, "data": [c]} for c in invented]}
    assert client.post("/v1/check/batch", batch, "kommune").status_code == 422
    assert len(audit_entries(setup)) == before
    # a few typos are still decided (and denied)
    assert client.post("/v1/check", {**FLOW, "data": invented[:MAX_UNKNOWN_IDS]},
                       "kommune").json()["decision"] == "deny"


def test_a_refused_unknown_sender_is_hashed_in_the_refusal(client: Client,
                                                           setup: Setup) -> None:
    answer = client.post("/v1/check", {**FLOW, "sender": "citizen-0609"}, "kommune")
    assert answer.status_code == 403 and "citizen-0609" not in answer.text
    assert b"citizen-0609" not in log_bytes(setup)
    assert refusals(setup)[-1]["sender"].startswith("unknown:hmac-sha256:")


_POLICY = load_policy(AALBORG)
_KNOWN = sorted(_POLICY.category_tree.ids)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(invented=st.lists(st.from_regex(r"[a-z][a-z0-9.-]{2,30}", fullmatch=True),
                         min_size=1, max_size=5),
       known=st.lists(st.sampled_from(_KNOWN), max_size=3),
       field=st.sampled_from(["recipient", "purpose", "subprocess", "data"]))
def test_no_unknown_id_reaches_a_decision_entry_raw(invented: list[str], known: list[str],
                                                    field: str) -> None:
    """Property: whatever ids a flow invents, its audit entry holds none of them raw, and
    holds every known id as it is."""
    from flowguard.engine import Engine

    invented = [i for i in invented if i not in _POLICY.category_tree
                and i not in _POLICY.actors and i not in _POLICY.purpose_tree
                and i not in _POLICY.subprocesses]
    if not invented:
        return
    flow = dict(FLOW)
    if field == "data":
        flow["data"] = [*known, *invented]
    else:
        flow[field] = invented[0]
    decision = Engine(_POLICY).check(Flow.model_validate(flow))
    trail = AuditTrail.__new__(AuditTrail)
    trail.pseudonym = Pseudonymizer(b"k" * 32)
    entry = trail.decision_entries([decision], _POLICY, 0)[0]
    text = json.dumps(entry)
    used = invented if field == "data" else invented[:1]
    for value in used:
        assert f'"{value}"' not in text
        assert json.dumps(UNKNOWN_PREFIX + trail.pseudonym(value)) in text
    for value in known if field == "data" else ():
        assert value in entry["data"]


@pytest.mark.parametrize("method", [
    "signed-form\x1b[31m",          # an ANSI escape that `audit show` passed through
    "signed\r\nflowguard: forged",  # the CR/LF that forged a log line on screen
    "x" * 201,                      # unbounded
    "signed\u202eform",             # an invisible bidi override
])
def test_evidence_is_printable_and_bounded(client: Client, setup: Setup, method: str) -> None:
    consent = {**FORGED, "id": "k-evidence", "evidence": {"method": method}}
    answer = client.post("/v1/consents", {"consent": consent}, "kommune")
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["path"] == "$.consent.evidence.method"
    withdraw = client.post("/v1/consents/k-0042-cafe/withdraw",
                           {"evidence": {"method": "phone", "reference": method}}, "kommune")
    assert withdraw.status_code == 422
    assert registry_events(setup) == []
    with pytest.raises(InputError, match="evidence"):  # the import path refuses it too
        registry = setup.folder / "consents.yaml"
        registry.write_text(json.dumps({"consents": [consent]}))
        load_registry(registry, load_policy(setup.policy))


def test_the_cli_recorder_is_printable(setup: Setup) -> None:
    from flowguard.errors import RegistryError

    with open_store(setup.registry, load_policy(setup.policy)) as store:
        for by in ("anne\r\nforged", "anne\x1b[2J", "a" * 701):
            with pytest.raises(RegistryError, match="recorder"):
                store.withdraw("k-0042-cafe", by=by)


# --------------------------------------------------------------------------- item 7: small ones


def test_an_id_with_a_slash_is_refused(client: Client, setup: Setup) -> None:
    """The issue: it could be granted but never withdrawn or read over HTTP."""
    answer = client.post("/v1/consents", {"consent": {**FORGED, "id": "k/1"}}, "kommune")
    assert answer.status_code == 422 and "`/`" in answer.text
    guardianship = {"id": "g/1", "guardian": "person-x", "subject": "citizen-0609",
                    "kind": "adult", "valid_from": "2026-01-01"}
    assert client.post("/v1/guardianships", {"guardianship": guardianship},
                       "kommune").status_code == 422
    assert registry_events(setup) == []


def test_at_must_be_an_rfc3339_string(client: Client, setup: Setup) -> None:
    # registry writes refuse a number; flows still take Unix seconds (the engine's Python
    # API does, and every way of asking must agree): left for a follow-up
    answer = client.post("/v1/consents/k-0042-cafe/withdraw", {"at": 12345}, "kommune")
    assert answer.status_code == 422 and "RFC 3339" in answer.text
    assert client.decision({**FLOW, "at": "2026-03-01T12:00:00Z"}) == "permit"


def test_two_request_ids_are_refused(client: Client, setup: Setup) -> None:
    answer = client.http.post("/v1/check", json=FLOW, headers=[
        ("Authorization", f"Bearer {setup.token['kommune']}"),
        ("X-Request-Id", "request-000001"), ("X-Request-Id", "request-000002")])
    assert answer.status_code == 400 and "one X-Request-Id" in answer.text
    assert not [e for e in audit_entries(setup) if e["kind"] == "decision"]


def test_docs_are_off_unless_asked(setup: Setup) -> None:
    with TestClient(create_app(setup.config())) as http:
        assert http.get("/docs").status_code == 404
        assert http.get("/redoc").status_code == 404
        assert http.get("/openapi.json").status_code == 200  # the contract stays public
    with TestClient(create_app(setup.config(docs=True))) as http:
        assert http.get("/docs").status_code == 200


def test_a_tokens_file_others_may_read_or_change_is_refused(setup: Setup) -> None:
    for mode in (0o644, 0o660, 0o606):
        setup.tokens.chmod(mode)
        with pytest.raises(TokenError, match=r"chmod 600") as raised:
            load_tokens(setup.tokens)
        assert "read or changed by others" in raised.value.diagnostics[0].message
        with pytest.raises(InputError):
            create_app(setup.config())
    setup.tokens.chmod(0o600)
    assert load_tokens(setup.tokens).tokens


def test_token_new_writes_the_file_owner_only(tmp_path: Path) -> None:
    from flowguard._cli import cli

    tokens = tmp_path / "tokens.yaml"
    runner = CliRunner()
    for token_id in ("one", "two"):
        result = runner.invoke(cli, ["token", "new", "--file", str(tokens), "--id", token_id,
                                      "--organization", "aalborg-kommune", "--scope", "check"])
        assert result.exit_code == 0, result.output
        assert tokens.stat().st_mode & 0o777 == 0o600
    assert [t.id for t in load_tokens(tokens).tokens] == ["one", "two"]


def test_a_token_naming_an_actor_of_another_organization_is_refused(setup: Setup) -> None:
    add_tokens(setup, ("odd", "aalborg-kommune", ["consent:write"], ["cafe-manager"]))
    with pytest.raises(InputError, match="cafe-manager"):
        create_app(setup.config())


def test_a_failed_http_reload_is_logged_with_its_errors(
        client: Client, setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    policy = setup.policy / "policy.yaml"
    policy.write_text(policy.read_text().replace("    kind: employer\n",
                                                 "    kind: employer\n    colour: red\n", 1))
    with caplog.at_level(logging.ERROR, logger="flowguard.server"):
        answer = client.post("/v1/policy/reload", None, "admin")
    assert answer.status_code == 200 and answer.json()["activated"] is False
    text = caplog.text
    assert "policy reload (HTTP) refused" in text and "colour" in text


def test_readyz_answers_503_within_2_s_on_a_locked_audit_log(client: Client,
                                                              setup: Setup) -> None:
    assert client.http.get("/readyz").status_code == 200
    locker = sqlite3.connect(setup.audit.removeprefix("sqlite:///"), isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        answer = client.http.get("/readyz")
        elapsed = time.monotonic() - started
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert answer.status_code == 503 and "audit log" in answer.json()["detail"]
    assert elapsed < 2.0
    assert client.http.get("/readyz").status_code == 200


def test_sighup_with_a_broken_policy_is_logged_by_a_real_server(setup: Setup) -> None:
    """Run under `flowguard serve` (uvicorn): SIGHUP reloads, and a refusal is logged."""
    port = free_port()
    process = start_cli_server(setup, port)
    try:
        policy = setup.policy / "policy.yaml"
        policy.write_text(policy.read_text().replace(
            "    kind: employer\n", "    kind: employer\n    colour: red\n", 1))
        process.send_signal(signal.SIGHUP)
        time.sleep(1.5)
        base = f"http://127.0.0.1:{port}"
        # and the trust boundary holds over real HTTP too
        forged = httpx.post(f"{base}/v1/consents", json={"consent": FORGED}, headers={
            "Authorization": f"Bearer {setup.token['cafe-writer']}",
            "X-Request-Id": uuid.uuid4().hex}, timeout=10)
        assert forged.status_code == 403
        twice = httpx.post(f"{base}/v1/check", json=FLOW, headers=[
            ("Authorization", f"Bearer {setup.token['kommune']}"),
            ("X-Request-Id", "request-000001"), ("X-Request-Id", "request-000002")],
            timeout=10)
        assert twice.status_code == 400
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert "policy reload (SIGHUP) refused" in output, output
    assert "colour" in output


NASTY = "[bold red]anne[/] \x1b[2J\r\n2026-01-01 flowguard: forged line"


def test_stored_text_is_shown_never_interpreted(setup: Setup) -> None:
    """Text stored before these checks (or written around them) is displayed as escapes:
    `audit show` renders no markup and passes no ANSI, `consent history` prints no CR/LF."""
    from flowguard._cli import cli
    from flowguard.audit.trail import open_audit_log

    log = open_audit_log(setup.audit)
    try:
        log.append([{"v": 1, "kind": "registry", "time": "2026-01-01T00:00:00.000000Z",
                     "event": "consent.withdrawn", "seq": 99, "record": "k-0042-cafe",
                     "subject": "hmac-sha256:" + "0" * 64, "by": NASTY}])
    finally:
        log.close()
    shown = CliRunner().invoke(cli, ["audit", "show", "--audit", setup.audit, "--kind",
                                     "registry"], env={"COLUMNS": "400"})
    assert shown.exit_code == 0, shown.output
    assert "[bold red]anne[/]" in shown.output  # shown as typed, not rendered
    assert "\x1b" not in shown.output and "\\x1b" in shown.output
    assert "\\x0d\\x0a" in shown.output and "\r" not in shown.output

    database = sqlite3.connect(setup.registry.removeprefix("sqlite:///"))
    database.execute("DROP TRIGGER registry_events_no_update")  # a text from before the checks
    database.execute("UPDATE registry_events SET actor = ? WHERE record = 'k-0042-cafe'",
                     (NASTY,))
    database.commit()
    database.close()
    history = CliRunner().invoke(cli, ["consent", "history", "k-0042-cafe", "-r",
                                       setup.registry])
    assert history.exit_code == 0, history.output
    lines = [line for line in history.output.splitlines() if "k-0042-cafe" in line]
    assert lines and all("forged line" in line for line in lines)
    assert "\x1b" not in history.output and "\r" not in history.output


# --------------------------------------------------------------------------- second review
# An outside attacker's findings after issue 13 was closed, one test each.

MENTOR = "frivillig-mentor-aalborg"


def test_a_recording_organization_records_only_consents_for_itself(
        client: Client, setup: Setup) -> None:
    """The shelter granted `recipients: [{organization: cafe-solsikke}]` and the
    municipality's next check for the café was permitted on it."""
    assert client.decision(CITIZEN_0609_TO_CAFE) == "deny"
    for recipients in ([{"organization": "cafe-solsikke"}],
                       [{"organization": [MENTOR, "cafe-solsikke"]}],
                       [{"actor": "cafe-manager"}],
                       [{"actor": ["volunteer-mentor", "cafe-manager"]}],
                       [{"organization": MENTOR}, {"kind": "employer"}],
                       [{}],                                    # everyone
                       [{"actor": "no-such-actor"}]):           # unknown: not confined
        consent = {**FORGED, "id": f"{MENTOR}-k-cafe", "recipients": recipients}
        answer = client.post("/v1/consents", {"consent": consent}, "mentor")
        assert answer.status_code == 403, (recipients, answer.text)
        assert "every recipient is within it" in answer.json()["detail"]
    assert client.decision(CITIZEN_0609_TO_CAFE) == "deny"
    assert registry_events(setup) == []
    assert {e["reason"] for e in refusals(setup)} == {"recipients-outside-organization"}
    for n, recipients in enumerate(([{"organization": MENTOR}],
                                    [{"actor": "volunteer-mentor"}],
                                    [{"organization": MENTOR, "role": "mentor"}])):
        consent = {**FORGED, "id": f"{MENTOR}-k-{n}", "recipients": recipients,
                   "purposes": ["job-matching"]}
        answer = client.post("/v1/consents", {"consent": consent}, "mentor")
        assert answer.status_code == 201, answer.text
    # the controller records for anyone
    answer = client.post("/v1/consents", {"consent": {**FORGED, "id": "k-for-cafe"}},
                         "kommune")
    assert answer.status_code == 201, answer.text
    assert client.decision(CITIZEN_0609_TO_CAFE) == "permit"


def test_a_recording_organization_learns_nothing_from_an_id(client: Client,
                                                            setup: Setup) -> None:
    """A 409 "already in the registry" confirmed that another organization's record
    exists: its ids now live in its own id space, so they cannot collide."""
    mine = {**FORGED, "recipients": [{"organization": MENTOR}], "purposes": ["job-matching"]}
    taken = client.post("/v1/consents", {"consent": {**mine, "id": "k-0042-cafe"}}, "mentor")
    free = client.post("/v1/consents", {"consent": {**mine, "id": "k-0042-none"}}, "mentor")
    assert taken.status_code == free.status_code == 422
    assert taken.json() == {"detail": free.json()["detail"]}
    assert f"must start with `{MENTOR}-` or `{MENTOR}.`" in taken.json()["detail"]
    ward = {"guardian": "person-x", "subject": "citizen-0107", "kind": "adult",
            "valid_from": "2026-01-01"}
    assert client.post("/v1/guardianships", {"guardianship": {**ward, "id": "g-0107-vaerge"}},
                       "mentor").status_code == 422
    # an organization whose id starts with another's cannot reach into its space either
    assert client.post("/v1/consents", {"consent": {**mine, "id": f"{MENTOR}.k-1"}},
                       "mentor").status_code == 201
    # and the controller keeps out of the id space of an organization that records
    intruding = client.post("/v1/consents", {"consent": {**FORGED, "id": f"{MENTOR}-k-2"}},
                            "kommune")
    assert intruding.status_code == 422 and f"`{MENTOR}-`" in intruding.text
    assert [e["reason"] for e in refusals(setup)] == [
        "id-outside-organization", "id-outside-organization", "id-outside-organization",
        "id-of-another-organization"]
    assert [e["record"] for e in registry_events(setup)] == [f"{MENTOR}.k-1"]


_ORGANIZATIONS = sorted(_POLICY.organizations)
_ACTORS = [*sorted(_POLICY.actors), "no-such-actor"]
_KINDS = sorted({o.kind for o in _POLICY.organizations.values() if o.kind})
_ROLES = sorted({a.role for a in _POLICY.actors.values() if a.role})


def _some(values: list[str]) -> st.SearchStrategy[list[str] | None]:
    return st.none() | st.lists(st.sampled_from(values), min_size=1, max_size=3, unique=True)


@settings(max_examples=300, deadline=None)
@given(organization=st.sampled_from(_ORGANIZATIONS), actor=_some(_ACTORS),
       within=_some(_ORGANIZATIONS), kind=_some(_KINDS), role=_some(_ROLES))
def test_a_confined_selector_matches_no_actor_of_another_organization(
        organization: str, actor: list[str] | None, within: list[str] | None,
        kind: list[str] | None, role: list[str] | None) -> None:
    """Property: whatever selector a recording organization writes, if it passes as
    confined to that organization, the engine matches no actor of any other, now or after
    actors are added to other organizations (an unknown actor id is never confined)."""
    from flowguard.engine import Engine
    from flowguard.model import Selector
    from flowguard.server.authz import confined_to

    selector = Selector.model_validate({k: v for k, v in (
        ("actor", actor), ("organization", within), ("kind", kind), ("role", role))
        if v is not None})
    if confined_to(_POLICY, organization, selector):
        matched = Engine(_POLICY).actors_matching(selector) or frozenset()
        assert {_POLICY.actors[a].organization for a in matched} <= {organization}
        assert (within is not None and set(within) == {organization}) or (
            actor is not None and "no-such-actor" not in actor)


def test_the_id_space_of_an_organization_is_its_longest_prefix() -> None:
    from flowguard.server.authz import id_owner

    policy = load_policy(AALBORG)
    assert id_owner(policy, f"{MENTOR}-k-1") == MENTOR
    assert id_owner(policy, "aalborg-kommune.k") == "aalborg-kommune"
    assert id_owner(policy, "k-0042-cafe") is None
    assert id_owner(policy, f"{MENTOR}k-1") is None


@pytest.mark.parametrize("record_id", ["0101903333", "k-0101903333", "k-010190-3333x",
                                       "k.123456"])
def test_an_id_that_looks_like_a_personal_number_is_refused(
        client: Client, setup: Setup, record_id: str) -> None:
    """A consent id `0101903333` put a CPR number into the append-only audit log."""
    answer = client.post("/v1/consents", {"consent": {**FORGED, "id": record_id}}, "kommune")
    assert answer.status_code == 422, answer.text
    assert "looks like a personal identity number" in answer.text
    ward = {"id": record_id, "guardian": "person-x", "subject": "citizen-0107",
            "kind": "adult", "valid_from": "2026-01-01"}
    assert client.post("/v1/guardianships", {"guardianship": ward},
                       "kommune").status_code == 422
    assert record_id.encode() not in log_bytes(setup)
    assert registry_events(setup) == []
    registry = setup.folder / "consents.yaml"  # the import and registry files refuse it too
    registry.write_text(json.dumps({"consents": [{**FORGED, "id": record_id}]}))
    with pytest.raises(InputError, match="personal identity number"):
        load_registry(registry, load_policy(setup.policy))


def test_a_stored_id_with_digits_stays_readable() -> None:
    from flowguard.model import STORED, Consent

    stored = Consent.model_validate({**FORGED, "id": "k-0101903333"}, context=STORED)
    assert stored.id == "k-0101903333"
    assert Consent.model_validate({**FORGED, "id": "k-2026-0042"}).id == "k-2026-0042"


def test_the_cli_grant_refuses_an_id_with_a_personal_number(setup: Setup,
                                                            tmp_path: Path) -> None:
    from flowguard._cli import cli

    consent = tmp_path / "consent.json"
    consent.write_text(json.dumps({**FORGED, "id": "k-0101903333"}))
    result = CliRunner().invoke(cli, ["consent", "grant", "--file", str(consent),
                                      "-r", setup.registry, "-p", str(setup.policy),
                                      "--by", "clerk"])
    assert result.exit_code != 0 and "personal identity number" in result.output, \
        result.output
    assert "Traceback" not in result.output


def _without_token(setup: Setup, token_id: str) -> None:
    document = json.loads(setup.tokens.read_text())
    document["tokens"] = [t for t in document["tokens"] if t["id"] != token_id]
    setup.tokens.write_text(json.dumps(document))


def test_a_removed_token_is_refused_after_a_reload(
        client: Client, setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    """Tokens were read only at start: a revoked token kept working until a restart."""
    assert client.post("/v1/check", FLOW, "cafe-writer").status_code != 401
    _without_token(setup, "cafe-writer")
    assert client.post("/v1/check", FLOW, "cafe-writer").status_code != 401  # not yet
    assert client.post("/v1/policy/reload", None, "admin").json()["activated"] is True
    assert client.post("/v1/check", FLOW, "cafe-writer").status_code == 401
    assert client.decision(FLOW) == "permit"  # the others still work
    # a broken tokens file keeps the table in force, and says why
    setup.tokens.write_text("tokens: [")
    with caplog.at_level(logging.ERROR, logger="flowguard.server"):
        assert client.post("/v1/policy/reload", None, "admin").status_code == 200
    assert "tokens file not reloaded" in caplog.text
    assert client.decision(FLOW) == "permit"
    assert client.post("/v1/check", FLOW, "cafe-writer").status_code == 401


def test_sighup_rereads_the_tokens_of_a_real_server(setup: Setup) -> None:
    port = free_port()
    process = start_cli_server(setup, port)
    base = f"http://127.0.0.1:{port}"

    def status(token: str) -> int:
        return httpx.post(f"{base}/v1/check", json=FLOW, timeout=10, headers={
            "Authorization": f"Bearer {setup.token[token]}",
            "X-Request-Id": uuid.uuid4().hex}).status_code

    try:
        assert status("cafe-writer") != 401
        _without_token(setup, "cafe-writer")
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while status("cafe-writer") != 401 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status("cafe-writer") == 401
        assert status("kommune") == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)


def test_citizen_routes_give_a_recording_organization_no_oracle(tmp_path: Path) -> None:
    """`POST /v1/consents/form` follows the recipients rule; `POST /v1/logins` answered
    "already linked to another person" (409) or "neither a recorded subject ..." (422), so a
    partner could learn which CPR numbers use the service and which persons are recorded."""
    from .citizen_fixtures import LOGINS, start_citizen
    from .test_citizen_unlink import _grant_rights

    citizen = start_citizen(tmp_path, prepare=_grant_rights,
                            design=str(tmp_path / "policy" / "design.yaml"))
    try:
        served, token = citizen.served, citizen.setup.token
        form = {"form": "cafe-solsikke/job-matching.employer-contact", "id": f"{MENTOR}-k-f",
                "subject": "citizen-0609", "given_at": "2026-03-01T10:00:00Z"}
        refused = served.post("/v1/consents/form", form, token["mentor"])
        assert refused.status_code == 403 and "every recipient" in refused.text
        taken = LOGINS["citizen-0042"]
        answers = [served.post("/v1/logins", body, token["mentor"]) for body in (
            {"person": "citizen-0609", "login": taken},    # linked to another person
            {"person": "citizen-0042", "login": taken},    # linked to this person
            {"person": "nobody-recorded", "login": "2222222222"})]
        assert {a.status_code for a in answers} == {422}
        assert len({a.text for a in answers}) == 1
        assert "controller" in answers[0].text
        assert all(taken not in a.text and "another" not in a.text for a in answers)
        # the controller is told why
        assert served.post("/v1/logins", {"person": "citizen-0609", "login": taken},
                           token["kommune"]).status_code == 409
        reasons = [(e["action"], e["reason"]) for e in audit_entries(citizen.setup)
                   if e["kind"] == "access"]
        assert reasons == [("consent.grant", "recipients-outside-organization"),
                           ("login.link", "login-not-linked:duplicate"),
                           ("login.link", "login-not-linked:duplicate"),
                           ("login.link", "login-not-linked:unknown-reference")]
        assert taken.encode() not in log_bytes(citizen.setup)
    finally:
        citizen.stop()


def test_a_fhir_consent_with_a_numeric_server_id_needs_a_flowguard_identifier() -> None:
    from flowguard.errors import RegistryError
    from flowguard.fhir import consent_from_fhir, load_fhir_mapping

    from .test_fhir import MAP, _smart_r4_with_recipient

    policy, mapping = load_policy(AALBORG), load_fhir_mapping(MAP)
    resource = {**_smart_r4_with_recipient(), "id": "1234567"}
    with pytest.raises(RegistryError, match="personal identity number"):
        consent_from_fhir(resource, mapping, policy, source="consent.json")
    resource["identifier"] = [{"system": "urn:flowguard:consent", "value": "k-smart"}]
    assert [c.id for c in consent_from_fhir(resource, mapping, policy).consents] == ["k-smart"]


def test_a_removed_token_is_refused_by_every_worker_after_one_reload(setup: Setup) -> None:
    """`POST /v1/policy/reload` reaches one worker; the other adopts the reload, tokens
    included, before it answers its next request that carries a request id."""
    from .test_server_robustness import Cluster

    cluster = Cluster(setup, 1, "--workers", "2")
    try:
        assert {cluster.post("/v1/check", FLOW, "cafe-writer").status_code
                for _ in range(6)} == {403}  # known (its organization may not send FLOW)
        _without_token(setup, "cafe-writer")
        assert cluster.post("/v1/policy/reload", None, "admin").json()["activated"] is True
        statuses = [cluster.post(path, body, "cafe-writer").status_code
                    for _ in range(6) for path, body in (("/v1/check", FLOW),
                                                         ("/v1/consents", {"consent": FORGED}))]
        assert set(statuses) == {401}, statuses
        assert {cluster.post("/v1/check", FLOW, "kommune").status_code
                for _ in range(6)} == {200}
    finally:
        cluster.stop()
