"""Exactly-once audit of registry changes (issue 12, item 2), on SQLite and PostgreSQL.

Every registry event gets exactly one audit entry, whatever fails: the audit log locked by
another process (the change is refused, nothing changed), a crash between the registry
commit and the audit append (the change stands; the next store open, server start or
`flowguard audit reconcile` appends the entry, once), one database for both (one
transaction), and several reconcilers or writers at once (no duplicate, no gap)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowguard._cli import cli
from flowguard.audit.entries import generate_pseudonym_key, write_secret
from flowguard.audit.log import AuditLog
from flowguard.audit.note import generate_key
from flowguard.audit.outbox import AuditPendingError, RegistryOutbox
from flowguard.audit.trail import AuditTrail, open_audit, open_audit_log
from flowguard.policy import load_policy
from flowguard.store import init_database, open_store
from flowguard.store._db import SqliteDatabase
from flowguard.store.events import RegistryChange

from .conftest import postgres_schema

ROOT = Path(__file__).resolve().parent.parent
AALBORG = ROOT / "policies" / "aalborg-aktiv"
ORIGIN = "audit.outbox.test/log"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


class Setup:
    """A registry imported with the log attached, the log's keys, and CLI options."""

    def __init__(self, folder: Path, registry: str, audit: str) -> None:
        self.folder = folder
        self.registry = registry
        self.audit = audit
        skey, self.vkey = generate_key(ORIGIN)
        self.log_key = folder / "log.key"
        write_secret(self.log_key, skey + "\n")
        self.pseudonym_key = folder / "pseudonym.key"
        generate_pseudonym_key(self.pseudonym_key)
        imported = run("registry", "import", str(AALBORG / "consents.yaml"), "-r", registry,
                       "-p", str(AALBORG), "--by", "anne", *self.audit_options)
        assert imported.exit_code == 0, imported.output

    @property
    def audit_options(self) -> list[str]:
        return ["--audit", self.audit, "--log-key", str(self.log_key), "--pseudonym-key",
                str(self.pseudonym_key)]

    def trail(self) -> AuditTrail:
        return open_audit(self.audit, pseudonym_key=self.pseudonym_key, log_key=self.log_key)

    def grant(self, consent_id: str, *extra: str) -> Result:
        return run("consent", "grant", "-r", self.registry, "-p", str(AALBORG), "--by", "anne",
                   "--id", consent_id, "--subject", "citizen-0042", "--given-at",
                   "2026-02-01T09:00:00Z", "--recipient", "organization:cafe-solsikke",
                   "--data", "identity.name", "--purpose", "job-matching", *extra)

    def registry_seqs(self) -> Counter[int]:
        """How many audit entries each registry event has."""
        log = open_audit_log(self.audit, create=False)
        try:
            return Counter(entry["seq"] for entry in
                           (json.loads(data) for _, data in log.entries())
                           if entry["kind"] == "registry")
        finally:
            log.close()

    def revision(self) -> int:
        with open_store(self.registry) as store:
            return store.revision

    def has_consent(self, consent_id: str) -> bool:
        with open_store(self.registry) as store:
            return store.consent(consent_id) is not None

    def assert_exactly_once(self) -> None:
        seqs = self.registry_seqs()
        assert seqs == Counter(range(1, self.revision() + 1)), seqs


@pytest.fixture(params=["sqlite", "postgresql"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(registry, audit): two SQLite files, or two PostgreSQL schemas."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}", f"sqlite:///{tmp_path / 'audit.db'}"
    else:
        with postgres_schema() as registry, postgres_schema() as audit:
            yield registry, audit


@pytest.fixture
def setup(tmp_path: Path, urls: tuple[str, str]) -> Setup:
    return Setup(tmp_path, *urls)


@pytest.fixture
def sqlite_setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path, f"sqlite:///{tmp_path / 'registry.db'}",
                 f"sqlite:///{tmp_path / 'audit.db'}")


# --------------------------------------------------------------------------- one write


def test_every_imported_and_granted_event_is_audited_once(setup: Setup) -> None:
    setup.assert_exactly_once()
    granted = setup.grant("k-new", *setup.audit_options)
    assert granted.exit_code == 0, granted.output
    assert "granted consent k-new" in granted.stdout
    setup.assert_exactly_once()
    log = open_audit_log(setup.audit, create=False)
    try:  # the process signed a checkpoint over everything it appended before it exited
        latest = log.latest_checkpoint()
        assert latest is not None and int(latest.split("\n")[1]) == log.size
    finally:
        log.close()


def _short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wait 0.3 s, not 30 s, for another process's SQLite write lock."""
    original = SqliteDatabase.__init__

    def init(self: SqliteDatabase, url: str, path: str, *, create: bool = True) -> None:
        original(self, url, path, create=create)
        self._conn.execute("PRAGMA busy_timeout=300")

    monkeypatch.setattr(SqliteDatabase, "__init__", init)


def test_a_locked_audit_log_refuses_the_change_and_says_nothing_changed(
        sqlite_setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reproduction: another process holds the audit database's write lock."""
    setup = sqlite_setup
    size_before = sum(setup.registry_seqs().values())
    revision = setup.revision()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sqlite3, sys
            conn = sqlite3.connect({str(setup.folder / 'audit.db')!r}, isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")
            print("locked", flush=True)
            sys.stdin.read()
            """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        _short_busy_timeout(monkeypatch)
        refused = setup.grant("k-locked", *setup.audit_options)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
    assert refused.exit_code == 2, refused.output
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "audit log cannot be written" in lines[0] and "nothing was changed" in lines[0]
    assert "internal error" not in refused.output
    assert not setup.has_consent("k-locked") and setup.revision() == revision
    assert sum(setup.registry_seqs().values()) == size_before
    granted = setup.grant("k-locked", *setup.audit_options)  # the lock is gone: it works
    assert granted.exit_code == 0, granted.output
    setup.assert_exactly_once()


def test_a_locked_postgresql_audit_log_refuses_the_change_within_its_timeout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same on PostgreSQL: another process holds the log's head row."""
    with postgres_schema() as registry, postgres_schema() as audit:
        setup = Setup(tmp_path, registry, audit)
        revision = setup.revision()
        size_before = sum(setup.registry_seqs().values())
        holder = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(f"""
                import sys, psycopg
                conn = psycopg.connect({audit!r})
                conn.execute("SELECT 1 FROM audit_head WHERE id = 1 FOR UPDATE")
                print("locked", flush=True)
                sys.stdin.read()
                """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            monkeypatch.setattr(RegistryOutbox, "lock_timeout", 0.3)
            refused = setup.grant("k-locked", *setup.audit_options)
        finally:
            assert holder.stdin is not None
            holder.stdin.close()
            holder.wait(timeout=10)
        assert refused.exit_code == 2, refused.output
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and "nothing was changed" in lines[0], lines
        assert not setup.has_consent("k-locked") and setup.revision() == revision
        assert sum(setup.registry_seqs().values()) == size_before
        assert setup.grant("k-locked", *setup.audit_options).exit_code == 0
        setup.assert_exactly_once()


def _fail_appends(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(self: RegistryOutbox, *args: Any, **kwargs: Any) -> Any:
        raise OSError("disk I/O error (simulated)")

    monkeypatch.setattr(RegistryOutbox, "append_missing", fail)


def test_a_change_whose_entry_fails_stands_and_says_so_then_reconcile_appends_it_once(
        setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        _fail_appends(patch)
        pending = setup.grant("k-pending", *setup.audit_options)
    assert pending.exit_code == 1, pending.output
    message = pending.stderr.strip()
    assert len(message.splitlines()) == 1
    revision = setup.revision()
    assert f"consent k-pending granted (registry event #{revision}); its audit entry could " \
           "not be written yet (disk I/O error (simulated))" in message
    assert "flowguard audit reconcile --audit" in message and "internal error" not in message
    assert "nothing was changed" not in message
    assert setup.has_consent("k-pending")
    assert revision not in setup.registry_seqs()  # the log is one event short, for now

    options = ["--audit", setup.audit, "-r", setup.registry, "--pseudonym-key",
               str(setup.pseudonym_key), "--log-key", str(setup.log_key)]
    reconciled = run("audit", "reconcile", *options)
    assert reconciled.exit_code == 0, reconciled.output
    assert reconciled.stdout.splitlines()[0] == \
        f"appended the audit entries of 1 registry event: #{revision}"
    setup.assert_exactly_once()
    again = run("audit", "reconcile", *options)
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines()[0] == "nothing was missing"
    assert f"up to #{revision}" in again.stdout
    setup.assert_exactly_once()
    verified = run("audit", "verify", "--audit", setup.audit, "--vkey", setup.vkey)
    assert verified.exit_code == 0, verified.output
    assert "not signed for yet" not in verified.stdout  # reconcile signed what it appended


_CRASH = """
import os, sys
from flowguard.audit.log import AuditLog
from flowguard.audit.trail import open_audit
from flowguard.policy import load_policy
from flowguard.store import open_store

registry, audit, pseudonym_key, policy = sys.argv[1:5]
trail = open_audit(audit, pseudonym_key=pseudonym_key)
store = open_store(registry, load_policy(policy), audit=trail)

def crash(*args, **kwargs):
    os._exit(9)  # the process dies after the registry commit, before the audit commit

AuditLog.append_in = crash
store.withdraw("k-0042-cafe", by="anne")
"""


def test_a_crash_between_commit_and_append_is_healed_at_the_next_store_open(
        setup: Setup) -> None:
    before = setup.revision()
    crashed = subprocess.run([sys.executable, "-c", _CRASH, setup.registry, setup.audit,
                              str(setup.pseudonym_key), str(AALBORG)],
                             capture_output=True, text=True, timeout=60)
    assert crashed.returncode == 9, crashed.stderr
    assert setup.revision() == before + 1  # the withdrawal stands
    assert before + 1 not in setup.registry_seqs()
    trail = setup.trail()
    try:
        with open_store(setup.registry, audit=trail) as store:
            assert store.reconciled == (before + 1,)
        with open_store(setup.registry, audit=trail) as store:
            assert store.reconciled == ()
    finally:
        trail.close()
    setup.assert_exactly_once()


def test_server_start_appends_what_the_log_lacks(setup: Setup,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from flowguard.server.app import ServerConfig, Service

    with monkeypatch.context() as patch:
        _fail_appends(patch)
        assert setup.grant("k-server", *setup.audit_options).exit_code == 1
    tokens = setup.folder / "tokens.yaml"
    tokens.write_text('{"tokens": []}', encoding="utf-8")
    tokens.chmod(0o600)
    service = Service(ServerConfig(
        policy=str(AALBORG), tokens=str(tokens), registry=setup.registry, audit=setup.audit,
        log_key=str(setup.log_key), pseudonym_key=str(setup.pseudonym_key)))
    try:
        assert getattr(service.registry, "reconciled", ()) == (setup.revision(),)
    finally:
        service.trail.close() if service.trail is not None else None
        service.registry.close()  # type: ignore[attr-defined]
    setup.assert_exactly_once()


def test_the_http_service_says_a_change_stands_without_its_entry(
        sqlite_setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from flowguard.server.app import ServerConfig, create_app
    from flowguard.server.tokens import new_token

    setup = sqlite_setup
    secret, digest = new_token()
    tokens = setup.folder / "tokens.yaml"
    tokens.write_text(json.dumps({"tokens": [{
        "id": "kommune", "hash": digest, "organization": "aalborg-kommune",
        "scopes": ["consent:write", "consent:read"]}]}), encoding="utf-8")
    tokens.chmod(0o600)
    config = ServerConfig(policy=str(AALBORG), tokens=str(tokens), registry=setup.registry,
                          audit=setup.audit, log_key=str(setup.log_key),
                          pseudonym_key=str(setup.pseudonym_key))
    consent = {"id": "k-http", "subject": "citizen-0042", "given_by": "citizen-0042",
               "given_at": "2026-02-01T09:00:00Z",
               "recipients": [{"organization": "cafe-solsikke"}], "data": ["identity.name"],
               "purposes": ["job-matching"]}
    with TestClient(create_app(config)) as client, monkeypatch.context() as patch:
        _fail_appends(patch)
        answer = client.post("/v1/consents", json={"consent": consent},
                             headers={"Authorization": f"Bearer {secret}",
                                      "X-Request-Id": "request-0001"})
    assert answer.status_code == 500, answer.text
    body = answer.json()
    revision = setup.revision()
    assert body["recorded"] == [{"seq": revision, "kind": "consent.granted",
                                 "record": "k-http"}]
    assert body["detail"].startswith(f"consent k-http granted (registry event #{revision}); "
                                     "its audit entry could not be written yet")
    assert setup.has_consent("k-http") and revision not in setup.registry_seqs()
    with TestClient(create_app(config)):  # the next start appends it
        pass
    setup.assert_exactly_once()


# --------------------------------------------------------------------------- one database


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'flowguard.db'}"
    else:
        with postgres_schema() as url:
            yield url


def test_one_database_commits_the_event_and_its_entry_together(
        tmp_path: Path, shared_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    setup = Setup(tmp_path, shared_url, shared_url)
    setup.assert_exactly_once()
    trail = setup.trail()
    policy = load_policy(AALBORG)
    try:
        with open_store(shared_url, policy, audit=trail) as store:
            outbox = store._outbox
            assert outbox is not None and outbox.same_database
            revision = store.revision
            size = trail.log.size

            def fail(self: AuditLog, *args: Any) -> Any:
                raise OSError("no space left on device (simulated)")

            with monkeypatch.context() as patch:
                patch.setattr(AuditLog, "append_in", fail)
                with pytest.raises(OSError):
                    store.withdraw("k-0042-cafe", by="anne")
            # the entry could not be written, so the event was not committed either
            assert store.revision == revision and trail.log.size == size
            store.withdraw("k-0042-cafe", by="anne")
            assert store.revision == revision + 1 and trail.log.size == size + 1
    finally:
        trail.close()
    setup.assert_exactly_once()


# --------------------------------------------------------------------------- concurrency


def test_concurrent_reconcilers_append_each_missing_event_once(setup: Setup) -> None:
    policy = load_policy(AALBORG)
    with open_store(setup.registry, policy) as store:  # changes made without the audit log
        for number in range(30):
            store.grant({"id": f"k-c{number}", "subject": "citizen-0042",
                         "given_by": "citizen-0042", "given_at": "2026-02-01T09:00:00Z",
                         "recipients": [{"organization": "cafe-solsikke"}],
                         "data": ["identity.name"], "purposes": ["job-matching"]}, by="anne")
    missing = set(range(setup.revision() - 29, setup.revision() + 1))
    assert not missing & set(setup.registry_seqs())
    barrier = threading.Barrier(6)
    appended: list[tuple[int, ...]] = []
    errors: list[BaseException] = []

    def reconcile() -> None:
        try:
            trail = setup.trail()
            store = open_store(setup.registry)
            try:
                outbox = RegistryOutbox(store.db, trail)
                barrier.wait()
                appended.append(outbox.reconcile().appended)
            finally:
                store.close()
                trail.close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=reconcile) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert sorted(seq for part in appended for seq in part) == sorted(missing)
    setup.assert_exactly_once()


def test_concurrent_audited_writers_leave_no_gap_and_no_duplicate(setup: Setup) -> None:
    policy = load_policy(AALBORG)
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def writer(number: int) -> None:
        try:
            trail = setup.trail()
            try:
                with open_store(setup.registry, policy, audit=trail) as store:
                    barrier.wait()
                    for index in range(8):
                        store.grant({"id": f"k-w{number}-{index}", "subject": "citizen-0042",
                                     "given_by": "citizen-0042",
                                     "given_at": "2026-02-01T09:00:00Z",
                                     "recipients": [{"organization": "cafe-solsikke"}],
                                     "data": ["identity.name"],
                                     "purposes": ["job-matching"]}, by="anne")
            finally:
                trail.close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    setup.assert_exactly_once()


# --------------------------------------------------------------------------- older logs


def test_a_log_written_before_cursors_gets_exactly_its_missing_events(tmp_path: Path) -> None:
    """A log one event short from before this version (no cursor): the first store open
    appends that event and no other."""
    registry = f"sqlite:///{tmp_path / 'registry.db'}"
    audit = f"sqlite:///{tmp_path / 'audit.db'}"
    init_database(registry)
    policy = load_policy(AALBORG)
    from flowguard.registry import load_registry

    with open_store(registry, policy) as store:
        store.import_records(load_registry(AALBORG / "consents.yaml", policy), by="anne")
        events = list(store.events())
    generate_pseudonym_key(tmp_path / "pseudonym.key")
    trail = open_audit(audit, pseudonym_key=tmp_path / "pseudonym.key")
    lost = events[3].seq
    trail.record_registry_changes([
        RegistryChange(e.seq, e.kind, e.subject, e.record, e.by, e.recorded_at)
        for e in events if e.seq != lost])
    try:
        with open_store(registry, audit=trail) as store:
            assert store.reconciled == (lost,)
    finally:
        trail.close()
    log = open_audit_log(audit, create=False)
    try:
        seqs = Counter(json.loads(data)["seq"] for _, data in log.entries())
    finally:
        log.close()
    assert seqs == Counter(e.seq for e in events)


def test_reconcile_reports_a_first_meeting_and_history_on_request(sqlite_setup: Setup,
                                                                  tmp_path: Path) -> None:
    other = f"sqlite:///{tmp_path / 'other.db'}"
    imported = run("registry", "import", str(AALBORG / "consents.yaml"), "-r", other,
                   "-p", str(AALBORG), "--by", "anne")
    assert imported.exit_code == 0
    shared = run("audit", "reconcile", "--audit", sqlite_setup.audit, "-r", other,
                 "--pseudonym-key", str(sqlite_setup.pseudonym_key), "--history")
    assert shared.exit_code == 2 and "audits another registry too" in shared.stderr
    log = open_audit_log(f"sqlite:///{tmp_path / 'fresh.db'}")  # a log of its own
    log.close()
    options = ["--audit", f"sqlite:///{tmp_path / 'fresh.db'}", "-r", other,
               "--pseudonym-key", str(sqlite_setup.pseudonym_key)]
    first = run("audit", "reconcile", *options)
    assert first.exit_code == 0, first.output
    with open_store(other) as store:
        revision = store.revision
    assert first.stdout.splitlines()[0] == (
        "the log had not audited this registry before: it audits it from event "
        f"#{revision} on (--history appends the earlier events)")
    history = run("audit", "reconcile", *options, "--history")
    assert history.exit_code == 0, history.output
    assert history.stdout.splitlines()[0] == \
        f"appended the audit entries of {revision} registry events: #1 to #{revision}"
    assert run("audit", "reconcile", *options).stdout.startswith("nothing was missing")


def test_reconcile_refuses_bad_input_in_one_line(sqlite_setup: Setup, tmp_path: Path) -> None:
    missing_log = run("audit", "reconcile", "--audit", f"sqlite:///{tmp_path / 'none.db'}",
                      "-r", sqlite_setup.registry, "--pseudonym-key",
                      str(sqlite_setup.pseudonym_key))
    a_file = run("audit", "reconcile", "--audit", sqlite_setup.audit, "-r",
                 str(AALBORG / "consents.yaml"), "--pseudonym-key",
                 str(sqlite_setup.pseudonym_key))
    for result in (missing_log, a_file):
        assert result.exit_code == 2, result.output
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "none.db").exists()


def test_the_pending_message_names_no_subject() -> None:
    from datetime import UTC, datetime

    change = RegistryChange(7, "subject.recorded", "citizen-0042", None, "anne",
                            datetime.now(UTC))
    error = AuditPendingError([change], OSError("locked"), "sqlite:///a.db", "sqlite:///r.db")
    assert "citizen-0042" not in error.message
    assert error.message.startswith("a subject.recorded event (registry event #7)")


# --------------------------------------------------------------------------- property

_STEPS = st.lists(st.sampled_from(["write", "write-fails", "write-unaudited", "reopen",
                                   "reconcile"]), min_size=1, max_size=12)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=_STEPS)
def test_any_sequence_of_writes_failures_and_reconciles_never_duplicates(
        tmp_path_factory: pytest.TempPathFactory, steps: list[str]) -> None:
    """Whatever happens, no registry event ever has two entries; after an audited write, a
    store open or a reconcile, each event since the log met the registry has exactly one."""
    folder = tmp_path_factory.mktemp("property")
    registry, audit = f"sqlite:///{folder / 'r.db'}", f"sqlite:///{folder / 'a.db'}"
    init_database(registry)
    generate_pseudonym_key(folder / "p.key")
    policy = load_policy(AALBORG)
    trail = open_audit(audit, pseudonym_key=folder / "p.key")
    store = open_store(registry, policy, audit=trail)
    plain = open_store(registry, policy)
    counter = iter(range(10_000))

    def consent() -> dict[str, Any]:
        return {"id": f"k-p{next(counter)}", "subject": "citizen-0042",
                "given_by": "citizen-0042", "given_at": "2026-02-01T09:00:00Z",
                "recipients": [{"organization": "cafe-solsikke"}], "data": ["identity.name"],
                "purposes": ["job-matching"]}

    def seqs() -> Counter[int]:
        return Counter(json.loads(data)["seq"] for _, data in trail.log.entries())

    try:
        plain.add_subject("citizen-0042", {"birth_date": "1990-01-01"}, by="anne")
        for step in steps:
            if step == "write":
                store.grant(consent(), by="anne")
            elif step == "write-fails":
                original = RegistryOutbox.append_missing
                RegistryOutbox.append_missing = _raise  # type: ignore[method-assign]
                try:
                    with pytest.raises(AuditPendingError):
                        store.grant(consent(), by="anne")
                finally:
                    RegistryOutbox.append_missing = original  # type: ignore[method-assign]
            elif step == "write-unaudited":
                plain.grant(consent(), by="anne")
            elif step == "reopen":
                store.close()
                store = open_store(registry, policy, audit=trail)
            else:
                RegistryOutbox(plain.db, trail).reconcile()
            assert max(seqs().values(), default=1) == 1
            if step in ("write", "reopen", "reconcile"):  # each of these heals the log
                assert seqs() == Counter(range(1, plain.revision + 1)), step
        RegistryOutbox(plain.db, trail).reconcile()
        assert seqs() == Counter(range(1, plain.revision + 1))  # it met the log empty
    finally:
        store.close()
        plain.close()
        trail.close()


def _raise(*args: Any, **kwargs: Any) -> Any:
    raise OSError("simulated")
