"""The HTTP service (issue 6), served by a real uvicorn on loopback and called over HTTP."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from flowguard.audit.checkpoint import open_checkpoint
from flowguard.audit.entries import generate_pseudonym_key, write_secret
from flowguard.audit.note import Verifier, generate_key
from flowguard.audit.receipt import verify_receipt
from flowguard.policy import load_policy
from flowguard.registry import load_registry
from flowguard.server.app import ServerConfig, create_app
from flowguard.server.tokens import new_token
from flowguard.store import init_database, open_store

ROOT = Path(__file__).resolve().parent.parent
AALBORG = ROOT / "policies" / "aalborg-aktiv"
FLOW = {"sender": "job-consultant", "recipient": "cafe-manager", "subject": "citizen-0042",
        "data": ["identity.name"], "purpose": "job-matching.employer-contact",
        "subprocess": "co-delivery"}
SUBJECTS = ["citizen-0042", "citizen-0107", "citizen-0233", "citizen-0609"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Setup:
    folder: Path
    policy: Path
    registry: str
    audit: str
    tokens: Path
    log_key: Path
    pseudonym_key: Path
    vkey: str
    token: dict[str, str]

    def config(self, **changes: Any) -> ServerConfig:
        values: dict[str, Any] = {
            "policy": str(self.policy), "registry": self.registry, "audit": self.audit,
            "tokens": str(self.tokens), "log_key": str(self.log_key),
            "pseudonym_key": str(self.pseudonym_key), "batch_limit": 50,
            "max_body_bytes": 64 * 1024, **changes}
        return ServerConfig(**values)


def make_setup(folder: Path, registry: str | None = None, audit: str | None = None) -> Setup:
    policy = folder / "policy"
    shutil.copytree(AALBORG, policy)
    registry = registry or f"sqlite:///{folder / 'registry.db'}"
    audit = audit or f"sqlite:///{folder / 'audit.db'}"
    init_database(registry)
    loaded = load_policy(policy)
    with open_store(registry, loaded) as store:
        store.import_records(load_registry(policy / "consents.yaml", loaded), by="test")
    skey, vkey = generate_key("audit.test/log")
    write_secret(folder / "log.key", skey + "\n")
    generate_pseudonym_key(folder / "pseudonym.key")
    tokens: dict[str, str] = {}
    entries = []
    for name, org, scopes in [
            ("kommune", "aalborg-kommune", ["check", "consent:write", "consent:read",
                                            "audit:read"]),
            ("cafe", "cafe-solsikke", ["check"]),
            ("reader", "aalborg-kommune", ["audit:read"]),
            ("admin", "aalborg-kommune", ["admin"])]:
        secret, digest = new_token()
        tokens[name] = secret
        entries.append({"id": name, "hash": digest, "organization": org, "scopes": scopes})
    (folder / "tokens.yaml").write_text(json.dumps({"tokens": entries}))
    (folder / "tokens.yaml").chmod(0o600)
    return Setup(folder, policy, registry, audit, folder / "tokens.yaml", folder / "log.key",
                 folder / "pseudonym.key", vkey, tokens)


class Served:
    """A uvicorn server in a background thread, and an HTTP client for it."""

    def __init__(self, config: ServerConfig) -> None:
        self.app = create_app(config)
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1",
                                                    port=self.port, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    def post(self, path: str, body: Any, token: str | None, *,
             request_id: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"X-Request-Id": request_id or uuid.uuid4().hex}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.post(path, json=body, headers=headers, **kwargs)

    def get(self, path: str, token: str | None, **kwargs: Any) -> httpx.Response:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return self.client.get(path, headers=headers, **kwargs)

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return make_setup(tmp_path)


@pytest.fixture
def served(setup: Setup) -> Iterator[Served]:
    s = Served(setup.config())
    yield s
    s.stop()


def audit_entries(setup: Setup) -> list[dict[str, Any]]:
    from flowguard.audit.trail import open_audit_log

    log = open_audit_log(setup.audit, create=False)
    try:
        return [json.loads(data) for _, data in log.entries()]
    finally:
        log.close()


# --------------------------------------------------------------------------- checks


def test_check_permit_and_deny_with_decision_json(served: Served, setup: Setup) -> None:
    permit = served.post("/v1/check", FLOW, setup.token["kommune"])
    assert permit.status_code == 200
    assert permit.json()["decision"] == "permit"
    deny = served.post("/v1/check", {**FLOW, "subject": "citizen-0609"}, setup.token["kommune"])
    assert deny.json()["decision"] == "deny"
    assert deny.json()["reason"] == "CONSENT_MISSING"
    decisions = [e for e in audit_entries(setup) if e["kind"] == "decision"]
    assert [d["outcome"] for d in decisions] == ["permit", "deny"]
    assert all(d["subject"].startswith("hmac-sha256:") for d in decisions)


def test_batch_and_its_limit(served: Served, setup: Setup) -> None:
    flows = [FLOW, {**FLOW, "subject": "citizen-0609"}] * 5
    response = served.post("/v1/check/batch", {"flows": flows}, setup.token["kommune"])
    assert response.status_code == 200
    assert [d["decision"] for d in response.json()["decisions"]] == ["permit", "deny"] * 5
    too_many = served.post("/v1/check/batch", {"flows": [FLOW] * 51}, setup.token["kommune"])
    assert too_many.status_code == 413


# --------------------------------------------------------------------------- security


@pytest.mark.parametrize("request_id", [None, "", "short", "has space in it"])
def test_a_missing_or_malformed_request_id_says_which_header_to_send(
        served: Served, setup: Setup, request_id: str | None) -> None:
    headers = {"Authorization": f"Bearer {setup.token['kommune']}"}
    if request_id is not None:
        headers["X-Request-Id"] = request_id
    answer = served.client.post("/v1/check", json=FLOW, headers=headers)
    assert answer.status_code == 422, answer.text
    message = answer.json()["detail"][0]["message"]
    assert "X-Request-Id" in message and "UUID" in message
    assert "Field required" not in answer.text


def test_no_token_or_unknown_token_is_401(served: Served) -> None:
    assert served.post("/v1/check", FLOW, None).status_code == 401
    response = served.post("/v1/check", FLOW, "fgt_not-a-token")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_sender_of_another_organization_is_403_and_audited(served: Served,
                                                           setup: Setup) -> None:
    response = served.post("/v1/check", FLOW, setup.token["cafe"])
    assert response.status_code == 403
    refused = [e for e in audit_entries(setup) if e["kind"] == "access"]
    assert refused == [{**refused[0], "token": "cafe", "organization": "cafe-solsikke",
                        "reason": "sender-outside-organization", "sender": "job-consultant",
                        "outcome": "refused"}]
    assert not [e for e in audit_entries(setup) if e["kind"] == "decision"]


def test_token_without_the_scope_is_403_and_audited(served: Served, setup: Setup) -> None:
    assert served.post("/v1/check", FLOW, setup.token["reader"]).status_code == 403
    grant = served.post("/v1/consents", {"consent": {}}, setup.token["cafe"])
    assert grant.status_code in (403, 422)
    reasons = [e["reason"] for e in audit_entries(setup) if e["kind"] == "access"]
    assert "scope-missing" in reasons


def test_replayed_and_malformed_request_ids_are_refused(served: Served, setup: Setup) -> None:
    first = served.post("/v1/check", FLOW, setup.token["kommune"], request_id="req-0000001")
    assert first.status_code == 200
    again = served.post("/v1/check", FLOW, setup.token["kommune"], request_id="req-0000001")
    assert again.status_code == 409
    assert served.post("/v1/check", FLOW, setup.token["kommune"],
                       request_id="bad id!").status_code == 422
    missing = served.client.post("/v1/check", json=FLOW, headers={
        "Authorization": f"Bearer {setup.token['kommune']}"})
    assert missing.status_code == 422


def test_oversized_bodies_are_413(served: Served, setup: Setup) -> None:
    big = {**FLOW, "data": ["identity.name"] * 20000}
    assert served.post("/v1/check", big, setup.token["kommune"]).status_code == 413

    def chunks() -> Iterator[bytes]:  # no content-length: streamed
        for _ in range(100):
            yield b" " * 1024

    streamed = served.client.post("/v1/check", content=chunks(), headers={
        "Authorization": f"Bearer {setup.token['kommune']}", "X-Request-Id": "stream-0001",
        "Content-Type": "application/json"})
    assert streamed.status_code == 413


def test_validation_errors_name_json_paths_and_never_echo_input(served: Served,
                                                                setup: Setup) -> None:
    response = served.post("/v1/check", {**FLOW, "colour": "citizen-0042", "at": "yesterday"},
                           setup.token["kommune"])
    assert response.status_code == 422
    paths = {p["path"] for p in response.json()["detail"]}
    assert {"$.colour", "$.at"} <= paths
    assert "citizen-0042" not in response.text
    assert "yesterday" not in response.text
    # in plain words, with the format to write, not pydantic's (issue 16)
    messages = {p["path"]: p["message"] for p in response.json()["detail"]}
    assert "write a date as 2026-03-01" in messages["$.at"], messages
    assert "Input should" not in response.text and "Extra inputs" not in response.text


def test_an_unreadable_registry_denies_never_permits(served: Served, setup: Setup) -> None:
    service = served.app.state.service
    service.registry.db.close()
    response = served.post("/v1/check", FLOW, setup.token["kommune"])
    assert response.status_code == 200
    assert response.json()["decision"] == "deny"
    assert response.json()["reason"] == "EVALUATION_ERROR"


@pytest.mark.parametrize("method", ["_by_consent", "_permitted"])
def test_a_decision_that_cannot_be_explained_is_served_and_audited_as_an_error(
        served: Served, setup: Setup, monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    """The engine explains a decision when it is read; if that breaks, the service answers
    that flow with EVALUATION_ERROR (never a 500, never a permit) and audits it so."""
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(served.app.state.service.engine, method, broken)
    if method == "_permitted":  # the permitted flow is the one that fails
        one = served.post("/v1/check", FLOW, setup.token["kommune"])
        assert one.status_code == 200
        assert (one.json()["decision"], one.json()["reason"]) == ("deny", "EVALUATION_ERROR")
        decisions = [e for e in audit_entries(setup) if e["kind"] == "decision"]
        assert [d["outcome"] for d in decisions] == ["deny"]
        return
    missing = {**FLOW, "subject": "citizen-0609"}
    one = served.post("/v1/check", missing, setup.token["kommune"])
    assert one.status_code == 200
    assert one.json()["decision"] == "deny" and one.json()["reason"] == "EVALUATION_ERROR"
    batch = served.post("/v1/check/batch", {"flows": [FLOW, missing]}, setup.token["kommune"])
    assert batch.status_code == 200
    assert [(d["decision"], d["reason"]) for d in batch.json()["decisions"]] == [
        ("permit", "PERMITTED"), ("deny", "EVALUATION_ERROR")]
    decisions = [e for e in audit_entries(setup) if e["kind"] == "decision"]
    assert [d["outcome"] for d in decisions] == ["deny", "permit", "deny"]


# --------------------------------------------------------------------------- consents


def test_consent_grant_withdraw_show_history(served: Served, setup: Setup) -> None:
    token = setup.token["kommune"]
    new = {**FLOW, "subject": "citizen-0609"}
    assert served.post("/v1/check", new, token).json()["decision"] == "deny"
    consent = {"id": "k-http", "subject": "citizen-0609", "given_by": "citizen-0609",
               "given_at": "2026-01-01T00:00:00Z",
               "recipients": [{"organization": "cafe-solsikke"}], "data": ["identity.name"],
               "purposes": ["job-matching"], "evidence": {"method": "signed-form"}}
    granted = served.post("/v1/consents", {"on_behalf_of": "case-worker",
                                           "consent": consent}, token)
    assert granted.status_code == 201, granted.text
    assert served.post("/v1/check", new, token).json()["decision"] == "permit"
    withdrawn = served.post("/v1/consents/k-http/withdraw", {}, token)
    assert withdrawn.status_code == 200
    assert served.post("/v1/check", new, token).json()["reason"] == "CONSENT_WITHDRAWN"
    shown = served.get("/v1/consents/k-http", token).json()
    assert shown["status"] == "withdrawn"
    history = served.get("/v1/consents/k-http/history", token).json()
    assert [e["kind"] for e in history] == ["consent.granted", "consent.withdrawn"]
    again = served.post("/v1/consents/k-http/withdraw", {}, token)
    assert again.status_code == 409 and "already withdrawn" in again.text
    assert served.get("/v1/consents/k-nope", token).status_code == 404
    registry = [e for e in audit_entries(setup) if e["kind"] == "registry"]
    assert [e["event"] for e in registry] == ["consent.granted", "consent.withdrawn"]
    # the recorder is the token (and the actor it names), never client text
    assert [e["by"] for e in registry] == [
        "token:kommune organization:aalborg-kommune on_behalf_of:case-worker",
        "token:kommune organization:aalborg-kommune"]


def test_guardianship_endpoints(served: Served, setup: Setup) -> None:
    token = setup.token["kommune"]
    body = {"guardianship": {
        "id": "g-http", "guardian": "person-x", "subject": "citizen-0609", "kind": "adult",
        "valid_from": "2026-01-01"}}
    assert served.post("/v1/guardianships", body, token).status_code == 201
    listed = served.post("/v1/guardianships/query", {"subject": "citizen-0609"}, token)
    assert [g["id"] for g in listed.json()] == ["g-http"]
    ended = served.post("/v1/guardianships/g-http/end",
                        {"at": "2026-06-01T00:00:00Z"}, token)
    assert ended.status_code == 200


# --------------------------------------------------------------------------- audit


def test_audit_checkpoint_proof_and_consistency(served: Served, setup: Setup) -> None:
    token = setup.token["kommune"]
    for subject in SUBJECTS:
        served.post("/v1/check", {**FLOW, "subject": subject}, token)
    service = served.app.state.service
    service.trail.checkpoint()
    note = served.get("/v1/audit/checkpoint", setup.token["reader"]).text
    checkpoint = open_checkpoint(note, [Verifier(setup.vkey)])
    assert checkpoint.size == 5  # the policy activation and four decisions
    receipt = served.get("/v1/audit/proof/3", setup.token["reader"])
    assert receipt.status_code == 200
    verified = verify_receipt(receipt.text, [Verifier(setup.vkey)],
                              entry=service.trail.log.entry(3))
    assert verified.index == 3
    proof = served.get("/v1/audit/consistency", setup.token["reader"],
                       params={"old": 1, "new": 5}).json()
    assert all(len(base64.b64decode(h)) == 32 for h in proof)
    assert served.get("/v1/audit/proof/99", setup.token["reader"]).status_code == 404
    assert served.get("/v1/audit/checkpoint", setup.token["cafe"]).status_code == 403


# --------------------------------------------------------------------------- policy


def test_reload_swaps_a_good_policy_and_keeps_the_old_on_errors(served: Served,
                                                                setup: Setup) -> None:
    admin = setup.token["admin"]
    before = served.get("/v1/policy", setup.token["kommune"]).json()["digest"]
    policy_file = setup.policy / "policy.yaml"
    original = policy_file.read_text()
    policy_file.write_text(original.replace("rules:", "rules:\n  - {id: broken}", 1))
    bad = served.post("/v1/policy/reload", None, admin)
    assert bad.status_code == 200 and bad.json()["activated"] is False
    assert bad.json()["problems"]
    assert served.get("/v1/policy", setup.token["kommune"]).json()["digest"] == before
    assert served.post("/v1/check", FLOW, setup.token["kommune"]).json()["decision"] == "permit"
    policy_file.write_text(original.replace("Serviceloven", "Serviceloven (ændret)"))
    good = served.post("/v1/policy/reload", None, admin)
    assert good.json()["activated"] is True
    after = served.get("/v1/policy", setup.token["kommune"]).json()["digest"]
    assert after != before == bad.json()["digest"]
    activations = [e["policy_digest"] for e in audit_entries(setup) if e["kind"] == "policy"]
    assert activations == [before, after]
    assert served.post("/v1/policy/reload", None, setup.token["kommune"]).status_code == 403


def test_openapi_and_docs_are_served(served: Served) -> None:
    document = served.get("/openapi.json", None).json()
    assert {"/v1/check", "/v1/check/batch", "/v1/consents", "/v1/audit/checkpoint",
            "/v1/audit/proof/{index}", "/v1/audit/consistency", "/v1/policy",
            "/v1/policy/reload", "/healthz", "/readyz"} <= set(document["paths"])
    # the interactive page loads its script from a CDN: off unless `--docs`
    assert served.get("/docs", None).status_code == 404
    assert served.get("/healthz", None).json() == {"status": "ok"}
    assert served.get("/readyz", None).json()["status"] == "ready"


# --------------------------------------------------------------------------- real processes


def start_cli_server(setup: Setup, port: int, *extra: str,
                     registry: str | None = None, audit: str | None = None
                     ) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "flowguard", "serve", "-p", str(setup.policy),
         "-r", registry or setup.registry, "--audit", audit or setup.audit,
         "--log-key", str(setup.log_key), "--pseudonym-key", str(setup.pseudonym_key),
         "--tokens", str(setup.tokens), "--port", str(port), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
        if process.poll() is not None:
            break
    process.kill()
    raise RuntimeError("server did not start: " + (process.stdout.read() if process.stdout
                                                   else ""))


def test_real_serve_logs_no_citizen_id_and_checkpoints_on_shutdown(setup: Setup) -> None:
    port = free_port()
    process = start_cli_server(setup, port)
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {setup.token['kommune']}"}
    with httpx.Client(base_url=base, timeout=30) as client:
        for subject in SUBJECTS:
            client.post("/v1/check", json={**FLOW, "subject": subject},
                        headers={**auth, "X-Request-Id": uuid.uuid4().hex})
        client.post("/v1/check", json={**FLOW, "subject": "citizen-0042", "oops": 1},
                    headers={**auth, "X-Request-Id": uuid.uuid4().hex})
        client.post("/v1/check/batch", json={"flows": [{**FLOW, "subject": "citizen-0107"}]},
                    headers={"Authorization": f"Bearer {setup.token['cafe']}",
                             "X-Request-Id": uuid.uuid4().hex})
        client.post("/v1/consents/k-0042-cafe/withdraw", json={},
                    headers={**auth, "X-Request-Id": uuid.uuid4().hex})
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    # uvicorn shuts down gracefully, then re-raises the signal it caught
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Traceback" not in output
    for subject in SUBJECTS:
        assert subject not in output
    from flowguard.audit.trail import open_audit_log

    log = open_audit_log(setup.audit, create=False)
    try:
        latest = log.latest_checkpoint()
        assert latest is not None
        assert open_checkpoint(latest, [Verifier(setup.vkey)]).size == log.size
    finally:
        log.close()


def test_two_servers_on_one_postgresql_registry_and_log(tmp_path: Path) -> None:
    from .conftest import postgres_schema

    with postgres_schema() as url:
        setup = make_setup(tmp_path, registry=url, audit=url)
        ports = [free_port(), free_port()]
        processes = [start_cli_server(setup, port) for port in ports]
        try:
            auth = {"Authorization": f"Bearer {setup.token['kommune']}"}
            a, b = (httpx.Client(base_url=f"http://127.0.0.1:{p}", timeout=30) for p in ports)
            for i in range(20):
                for client in (a, b):
                    response = client.post("/v1/check",
                                           json={**FLOW, "subject": SUBJECTS[i % 4]},
                                           headers={**auth, "X-Request-Id": uuid.uuid4().hex})
                    assert response.status_code == 200
            assert b.post("/v1/check", json=FLOW, headers={
                **auth, "X-Request-Id": uuid.uuid4().hex}).json()["decision"] == "permit"
            assert a.post("/v1/consents/k-0042-cafe/withdraw", json={},
                          headers={**auth, "X-Request-Id": uuid.uuid4().hex}).status_code == 200
            after = b.post("/v1/check", json=FLOW,
                           headers={**auth, "X-Request-Id": uuid.uuid4().hex}).json()
            assert after["reason"] == "CONSENT_WITHDRAWN"
            a.close()
            b.close()
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                process.communicate(timeout=60)
        from flowguard.audit.merkle import CompactRange, leaf_hash
        from flowguard.audit.trail import open_audit_log

        log = open_audit_log(url, create=False)
        try:
            indices = [i for i, _ in log.entries()]
            assert indices == list(range(log.size))
            kinds = [json.loads(e)["kind"] for _, e in log.entries()]
            assert kinds.count("decision") == 42 and kinds.count("policy") == 2
            tree = CompactRange()
            roots = {}
            for index, data in log.entries():
                tree.append(leaf_hash(data))
                roots[index + 1] = tree.root()
            for size, note in log.checkpoints():
                assert open_checkpoint(note, [Verifier(setup.vkey)]).root_hash == roots[size]
        finally:
            log.close()


def test_sighup_reloads_the_policy(setup: Setup) -> None:
    port = free_port()
    process = start_cli_server(setup, port)
    auth = {"Authorization": f"Bearer {setup.token['kommune']}"}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            before = client.get("/v1/policy", headers=auth).json()["digest"]
            policy_file = setup.policy / "policy.yaml"
            policy_file.write_text(policy_file.read_text().replace(
                "Serviceloven", "Serviceloven (SIGHUP)"))
            process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 20
            after = before
            while after == before and time.monotonic() < deadline:
                time.sleep(0.1)
                after = client.get("/v1/policy", headers=auth).json()["digest"]
            assert after != before
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
