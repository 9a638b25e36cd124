"""The registry stores (issue 3): the same tests on SQLite and PostgreSQL (`store_url`),
and the file registry where it applies. History is append-only, the state is derived from
it, a check as of a past time answers as the registry would have then, and bad input
leaves the store unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowguard
from flowguard import Engine, Flow
from flowguard.errors import RegistryError, StoreError
from flowguard.model import Consent, ReasonCode
from flowguard.registry import InMemoryRegistry, load_registry
from flowguard.store import RegistryStore, init_database, open_registry, open_store
from flowguard.store._db import connect
from flowguard.store.events import replay
from flowguard.testing import load_suite

from .conftest import EXAMPLES, SMALL_POLICY, SMALL_REGISTRY

AALBORG = EXAMPLES / "aalborg-aktiv"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def policy(write: Any) -> flowguard.Policy:
    return flowguard.load_policy(write("policy.yaml", SMALL_POLICY))


@pytest.fixture
def file_registry(write: Any, policy: flowguard.Policy) -> InMemoryRegistry:
    return load_registry(write("consents.yaml", SMALL_REGISTRY), policy)


@pytest.fixture
def store(store_url: str, policy: flowguard.Policy,
          file_registry: InMemoryRegistry) -> Iterator[RegistryStore]:
    init_database(store_url)
    s = open_store(store_url, policy)
    s.import_records(file_registry, by="test")
    yield s
    s.close()


def flow(**changes: Any) -> Flow:
    base = {"sender": "consultant", "recipient": "cafe-manager", "subject": "adult-1",
            "data": ["identity.name"], "purpose": "job-matching", "subprocess": "co-delivery",
            "at": "2026-03-01T00:00:00Z"}
    return Flow.model_validate({**base, **changes})


def k_new(**changes: Any) -> dict[str, Any]:
    """A consent for the shelter, which no other consent in SMALL_REGISTRY covers."""
    return {"id": "k-new", "subject": "adult-1", "given_by": "adult-1",
            "given_at": "2026-01-05T00:00:00Z", "recipients": [{"organization": "shelter"}],
            "data": ["identity.name"], "purposes": ["job-matching"], **changes}


def event_rows(store: RegistryStore) -> list[tuple[Any, ...]]:
    return store.db.read("SELECT * FROM registry_events ORDER BY seq")


# --------------------------------------------------------------------------- schema


def test_init_is_idempotent_and_an_uninitialised_database_is_refused(store_url: str) -> None:
    with pytest.raises(StoreError, match="registry init"):
        open_store(store_url)
    assert [m.version for m in init_database(store_url)] == [1, 2]
    assert init_database(store_url) == []
    open_store(store_url).close()


def test_a_newer_schema_is_refused_and_left_alone(store_url: str) -> None:
    init_database(store_url)
    db = connect(store_url)
    with db.write() as cursor:
        cursor.execute("INSERT INTO flowguard_migrations VALUES ('registry', 99, 'future', 0)")
    db.close()
    with pytest.raises(StoreError, match="newer than this flowguard"):
        open_store(store_url)
    with pytest.raises(StoreError, match="newer than this flowguard"):
        init_database(store_url)


def test_unsupported_url_and_unreachable_database_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unsupported storage URL"):
        open_store("mysql://x/y")
    with pytest.raises(StoreError, match="does not exist"):
        open_store(f"sqlite:///{tmp_path}/missing-dir/r.db")
    with pytest.raises(StoreError) as caught:
        open_store("postgresql://nobody:secret@127.0.0.1:1/none?connect_timeout=1")
    assert "secret" not in str(caught.value)


# --------------------------------------------------------------------------- same answers


@pytest.mark.parametrize("example", ["aalborg-aktiv", "youth-services"])
def test_shipped_suites_pass_against_every_store(store_url: str, example: str) -> None:
    base = EXAMPLES / example
    init_database(store_url)
    policy = flowguard.load_policy(base)
    with open_store(store_url, policy) as store:
        store.import_records(load_registry(base / "consents.yaml", policy), by="test")
    result = load_suite(base / "tests.yaml", registry=store_url).run()
    assert result.failed == 0, [r.problems for r in result.results if not r.passed]
    assert result.passed == len(result.results) >= 30


def test_store_and_file_give_the_same_records(store: RegistryStore,
                                              file_registry: InMemoryRegistry) -> None:
    for subject_id in ["adult-1", "minor-1", "leap-1", "nobirth-1", "nobody"]:
        stored = store.records_of(subject_id)
        loaded = file_registry.records_of(subject_id)
        assert stored.subject == loaded.subject
        assert sorted(stored.consents, key=lambda k: k.id) == \
            sorted(loaded.consents, key=lambda k: k.id)
        assert sorted(stored.guardianships, key=lambda g: g.id) == \
            sorted(loaded.guardianships, key=lambda g: g.id)


def test_import_is_repeatable_and_refuses_conflicting_content(
        store: RegistryStore, file_registry: InMemoryRegistry) -> None:
    revision = store.revision
    summary = store.import_records(file_registry, by="test")
    assert (summary.subjects, summary.consents, summary.guardianships) == (0, 0, 0)
    assert summary.unchanged == 12
    changed = InMemoryRegistry(file_registry.subjects, file_registry.all_guardianships(), [
        k.model_copy(update={"explicit": True}) if k.id == "k-2" else k
        for k in file_registry.all_consents()])
    with pytest.raises(RegistryError, match="k-2` is already in the registry with different"):
        store.import_records(changed, by="test")
    assert store.revision == revision


def test_open_registry_takes_files_and_urls(store: RegistryStore, write: Any) -> None:
    assert isinstance(open_registry(write("r.yaml", SMALL_REGISTRY)), InMemoryRegistry)
    opened = open_registry(store.url)
    assert isinstance(opened, RegistryStore)
    assert opened.revision == store.revision
    opened.close()


# --------------------------------------------------------------------------- history


def test_withdrawal_is_seen_by_the_next_check_and_history_keeps_the_grant(
        store: RegistryStore, policy: flowguard.Policy) -> None:
    engine = Engine(policy, store)
    now = flow(data=["work.preferences"], at=None)  # only k-2 covers it
    assert engine.check(now).permit
    before = event_rows(store)
    event = store.withdraw("k-2", by="case-worker-7")
    decision = engine.check(now)
    assert not decision.permit
    assert decision.reason is ReasonCode.CONSENT_WITHDRAWN
    assert event_rows(store)[: len(before)] == before  # nothing rewritten
    kinds = [e.kind for e in store.history("k-2")]
    assert kinds == ["consent.granted", "consent.withdrawn"]
    assert store.history("k-2")[1].by == "case-worker-7"
    assert event.seq == store.revision


def test_a_check_as_of_a_past_time_answers_as_the_registry_did_then(
        store: RegistryStore, policy: flowguard.Policy) -> None:
    live = Engine(policy, store)
    recorded_before = datetime.now(UTC)
    store.withdraw("k-2", by="test")
    store.grant(k_new(), by="test")
    assert live.check(flow(recipient="volunteer", at=None)).permit
    assert not live.check(flow(data=["work.preferences"], at=None)).permit
    then = Engine(policy, store.as_of(recorded_before))
    t = recorded_before.isoformat()
    # the withdrawal of k-2 was not yet recorded
    assert then.check(flow(data=["work.preferences"], at=t)).permit
    assert then.check(flow(recipient="volunteer", at=t)).reason is ReasonCode.CONSENT_MISSING
    with pytest.raises(RegistryError, match="read-only"):
        store.as_of(recorded_before).withdraw("k-1", by="test")


def test_correction_supersedes_and_keeps_the_withdrawal(store: RegistryStore,
                                                        policy: flowguard.Policy) -> None:
    store.grant(k_new(), by="test")
    store.withdraw("k-new", by="test", at=datetime(2026, 6, 1, tzinfo=UTC))
    store.correct(k_new(given_at="2026-03-01T00:00:00Z"), by="test")
    found = store.consent("k-new")
    assert found is not None
    current, version = found
    assert version == 2
    assert current.given_at == datetime(2026, 3, 1, tzinfo=UTC)
    assert current.withdrawn_at == datetime(2026, 6, 1, tzinfo=UTC)
    assert [e.kind for e in store.history("k-new")] == [
        "consent.granted", "consent.withdrawn", "consent.corrected"]
    engine = Engine(policy, store)
    shelter = {"recipient": "volunteer"}
    assert engine.check(flow(**shelter, at="2026-02-01T00:00:00Z")).reason \
        is ReasonCode.CONSENT_NOT_YET_VALID
    assert engine.check(flow(**shelter, at="2026-05-01T00:00:00Z")).permit
    assert engine.check(flow(**shelter, at="2026-07-01T00:00:00Z")).reason \
        is ReasonCode.CONSENT_WITHDRAWN


def test_expiry_and_guardianship_end(store: RegistryStore, policy: flowguard.Policy) -> None:
    engine = Engine(policy, store)
    minor = flow(subject="minor-1", at="2026-05-01T00:00:00Z")
    assert engine.check(minor).permit  # k-minor, given by the parent
    store.end_guardianship("g-parent", by="test", at=datetime(2026, 4, 1, tzinfo=UTC))
    assert engine.check(minor).reason is ReasonCode.GRANTOR_AUTHORITY_ENDED
    store.expire("k-2", by="test", at=datetime(2026, 2, 1, tzinfo=UTC))
    assert engine.check(flow(data=["work.preferences"])).reason is ReasonCode.CONSENT_EXPIRED
    with pytest.raises(RegistryError, match="already ends"):
        store.end_guardianship("g-parent", by="test", at=datetime(2026, 5, 1, tzinfo=UTC))


def test_subjects_and_guardianships_are_recorded(store: RegistryStore,
                                                 policy: flowguard.Policy) -> None:
    store.add_subject("teen-9", {"birth_date": "2012-03-04"}, by="test")
    store.add_guardianship({"id": "g-9", "guardian": "mum-9", "subject": "teen-9",
                            "kind": "parental", "valid_from": "2012-03-04"}, by="test")
    store.grant(k_new(id="k-9", subject="teen-9", given_by="mum-9",
                      data=["identity.name"]), by="test")
    assert Engine(policy, store).check(flow(subject="teen-9", recipient="volunteer")).permit
    records = store.records_of("teen-9")
    assert records.subject is not None and records.subject.birth_date is not None
    assert [g.id for g in records.guardianships] == ["g-9"]


# --------------------------------------------------------------------------- bad input


BAD_WRITES: list[tuple[str, Any, str]] = [
    ("unknown subject", lambda s: s.grant(k_new(subject="ghost-1"), by="t"),
     "not recorded in the registry"),
    ("unknown category", lambda s: s.grant(k_new(data=["helth"]), by="t"),
     "did you mean `health`"),
    ("unknown recipient", lambda s: s.grant(k_new(recipients=[{"organization": "caf"}]),
                                            by="t"), "unknown organization"),
    ("naive time", lambda s: s.grant(k_new(given_at="2026-01-05T00:00:00"), by="t"),
     "no zone"),
    ("unknown key", lambda s: s.grant(k_new(colour="red"), by="t"), "unknown key"),
    ("duplicate consent", lambda s: s.grant(k_new(id="k-1"), by="t"), "already in"),
    ("withdraw missing", lambda s: s.withdraw("k-nope", by="t"), "no consent `k-nope`"),
    ("withdraw twice", lambda s: (s.withdraw("k-1", by="t"), s.withdraw("k-1", by="t")),
     "already withdrawn"),
    ("withdraw before given", lambda s: s.withdraw("k-1", by="t", at=T0 - timedelta(days=1)),
     "cannot end before"),
    ("correct missing", lambda s: s.correct(k_new(id="k-nope"), by="t"), "to correct"),
    ("correct moves subject", lambda s: s.correct(k_new(id="k-1", subject="minor-1"), by="t"),
     "another subject"),
    ("end missing guardianship", lambda s: s.end_guardianship("g-nope", by="t"),
     "no guardianship"),
    ("subject twice", lambda s: s.add_subject("adult-1", {}, by="t"), "already recorded"),
    ("no recorder", lambda s: s.withdraw("k-1", by=""), "who records"),
]


@pytest.mark.parametrize(("name", "write_op", "message"), BAD_WRITES,
                         ids=[b[0] for b in BAD_WRITES])
def test_bad_writes_are_refused_and_change_nothing(store: RegistryStore, name: str,
                                                   write_op: Any, message: str) -> None:
    before = event_rows(store)
    revision = store.revision
    with pytest.raises(RegistryError) as caught:
        write_op(store)
    assert message in str(caught.value)
    if name != "withdraw twice":
        assert event_rows(store) == before
        assert store.revision == revision
    for citizen in ("adult-1", "ghost-1", "minor-1"):
        assert citizen not in str(caught.value)


def test_the_database_itself_refuses_updates_and_deletes(store: RegistryStore) -> None:
    before = event_rows(store)
    for statement in ("UPDATE registry_events SET body = '{}'", "DELETE FROM registry_events"):
        with pytest.raises(Exception, match="append-only"), store.db.write() as cursor:
            cursor.execute(statement)
    assert event_rows(store) == before


# --------------------------------------------------------------------------- replay


OPS = st.lists(st.tuples(st.sampled_from(["grant", "withdraw", "expire", "correct", "end"]),
                         st.integers(0, 5), st.integers(1, 300)), max_size=25)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_state_is_the_replay_of_history_at_every_revision(tmp_path: Path,
                                                          policy: flowguard.Policy,
                                                          ops: list[tuple[str, int, int]]
                                                          ) -> None:
    """Any sequence of changes (refused ones included) leaves a log whose replay up to each
    revision is the state a view at that revision reports."""
    url = f"sqlite:///{tmp_path}/replay-{abs(hash(tuple(ops)))}.db"
    init_database(url)
    s = open_store(url, policy)
    s.add_subject("p", {}, by="t")
    s.add_guardianship({"id": "g", "guardian": "q", "subject": "p", "kind": "adult",
                        "valid_from": "2020-01-01"}, by="t")
    for op, n, day in ops:
        when = T0 + timedelta(days=day)
        consent = {"id": f"k{n}", "subject": "p", "given_by": "p" if day % 2 else "q",
                   "given_at": T0.isoformat(), "recipients": [{"organization": "cafe"}],
                   "data": ["identity.name"] if day % 3 else ["work"],
                   "purposes": ["job-matching"]}
        try:
            if op == "grant":
                s.grant(consent, by="t")
            elif op == "withdraw":
                s.withdraw(f"k{n}", by="t", at=when)
            elif op == "expire":
                s.expire(f"k{n}", by="t", at=when)
            elif op == "correct":
                s.correct(consent, by="t")
            else:
                s.end_guardianship("g", by="t", at=when)
        except RegistryError:
            pass
    events = list(s.events())
    assert [e.seq for e in events] == list(range(1, s.revision + 1))
    for revision in range(0, s.revision + 1):
        state = replay((e.kind, e.subject, e.record, e.body) for e in events[:revision])
        expected = state["p"].records() if "p" in state else None
        got = s.at_revision(revision).records_of("p")
        if expected is None:
            assert got.subject is None and not got.consents
            continue
        assert sorted(got.consents, key=_id) == sorted(expected.consents, key=_id)
        assert list(got.guardianships) == list(expected.guardianships)
    s.close()


def _id(k: Consent) -> str:
    return k.id


def test_insert_or_replace_cannot_rewrite_an_event(tmp_path: Path) -> None:
    """SQLite's REPLACE deletes the old row without firing DELETE triggers."""
    url = f"sqlite:///{tmp_path}/r.db"
    init_database(url)
    with open_store(url) as s:
        s.add_subject("p", {}, by="t")
        before = event_rows(s)
        with pytest.raises(Exception, match="append-only"), s.db.write() as cursor:
            cursor.execute("INSERT OR REPLACE INTO registry_events SELECT seq, recorded_at, "
                           "kind, subject, record, 'mallory', evidence, body "
                           "FROM registry_events")
        assert event_rows(s) == before
