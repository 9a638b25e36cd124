"""The registry store under concurrent processes (SQLite and PostgreSQL).

* Freshness across processes: an `Engine` in one OS process sees a withdrawal (or a grant)
  committed by another process at its very next check, although it had cached the subject's
  facts. A negative control with a registry whose `revision` is frozen gives the stale
  answer, which shows the test would fail for an engine that cached without reading the
  revision.
* A stress run: 8 concurrent workers (4 spawned processes x 2 threads, so that the
  coordination row is contended both across processes and inside one process's pool) record
  random grants, withdrawals, expiries, corrections, guardianships and subjects for
  `FLOWGUARD_STRESS_SECONDS` seconds (default 30 under CI=true, 5 otherwise). Afterwards the
  event log must be gap-free, hold exactly the successful operations, respect the store's
  refusal rules in sequence order, replay to the stored state, and decide flows as an
  in-memory registry built from that replay does.
* Append-only: raw SQL cannot update or delete a registry event on either database.

Processes are coordinated with pipes, queues and a barrier; nothing waits on a sleep.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import random
import sqlite3
import threading
import time
import traceback
from collections import Counter
from collections.abc import Collection, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

from flowguard import Engine, InMemoryRegistry, Policy, RegistryError, load_policy
from flowguard.registry import SubjectRecords, load_registry
from flowguard.store import RegistryStore, init_database, open_store
from flowguard.store.events import Event, SubjectState, encode, replay
from flowguard.store.registry_store import _CHANGED_SUBJECTS_LIMIT
from tests.conftest import SMALL_POLICY

SPAWN = multiprocessing.get_context("spawn")
REPLY_TIMEOUT_S = 120.0  # a child that does not answer in this time has failed


def _stress_seconds() -> float:
    default = "30" if os.environ.get("CI") == "true" else "5"
    return float(os.environ.get("FLOWGUARD_STRESS_SECONDS", default))


def _policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(SMALL_POLICY, encoding="utf-8")
    return path


@contextmanager
def _store(url: str, policy: Policy | None = None) -> Iterator[RegistryStore]:
    store = open_store(url, policy)
    try:
        yield store
    finally:
        store.close()


def _receive(conn: Connection, what: str) -> Any:
    """The child's next answer; fails the test (instead of hanging) if it never comes, and
    re-raises a child's exception text."""
    if not conn.poll(REPLY_TIMEOUT_S):
        pytest.fail(f"{what}: no answer within {REPLY_TIMEOUT_S:.0f} s")
    try:
        status, value = conn.recv()
    except EOFError:
        pytest.fail(f"{what}: the process ended without answering")
    if status != "ok":
        pytest.fail(f"{what} failed in the child process:\n{value}")
    return value


def _ask(conn: Connection, request: Any, what: str) -> Any:
    conn.send(request)
    return _receive(conn, what)


def _serve(conn: Connection, handle: Any) -> None:
    """Answer requests on `conn` with `handle(request)` until None arrives."""
    try:
        while True:
            request = conn.recv()
            if request is None:
                return
            try:
                conn.send(("ok", handle(request)))
            except Exception:
                conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


# --------------------------------------------------------------------------- a. freshness

class _FrozenRevision:
    """A registry whose `revision` never moves: what an engine that cached facts without
    reading the revision would see. Used only as a negative control."""

    def __init__(self, store: RegistryStore) -> None:
        self._store = store
        self._revision = store.revision

    @property
    def revision(self) -> int:
        return self._revision

    def records_of(self, subject_id: str, revision: int | None = None) -> SubjectRecords:
        return self._store.records_of(subject_id)  # the newest records, as that engine read

    def changed_since(self, revision: int) -> Collection[str] | None:
        return self._store.changed_since(revision)


def _engine_process(url: str, policy_path: str, conn: Connection, frozen: bool) -> None:
    """Process A: one engine on the store, checking the flows it is sent."""
    policy = load_policy(policy_path)
    store = open_store(url, policy)
    engine = Engine(policy, _FrozenRevision(store) if frozen else store)

    def check(flows: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return [(d.decision, str(d.reason)) for d in (engine.check(f) for f in flows)]

    try:
        _serve(conn, check)
    finally:
        store.close()


def _writer_process(url: str, policy_path: str, conn: Connection) -> None:
    """Process B: records the changes it is sent, each committed before it answers."""
    store = open_store(url, load_policy(policy_path))

    def write(request: tuple[str, tuple[Any, ...], dict[str, Any]]) -> tuple[int, str]:
        operation, args, kwargs = request
        event: Event = getattr(store, operation)(*args, **kwargs)
        return event.seq, event.kind

    try:
        _serve(conn, write)
    finally:
        store.close()


FRESHNESS_REGISTRY = """\
subjects:
  anna: {birth_date: 1990-02-01}
  bo: {}
  carl: {birth_date: 1985-07-12}
  dora: {birth_date: 1979-03-30}
consents:
  - {id: k-anna, subject: anna, given_by: anna, given_at: 2026-01-01T00:00:00Z,
     recipients: [{organization: cafe}], data: [work], purposes: [job-matching]}
  - {id: k-carl, subject: carl, given_by: carl, given_at: 2026-01-01T00:00:00Z,
     recipients: [{organization: cafe}], data: [work], purposes: [job-matching]}
  - {id: k-dora, subject: dora, given_by: dora, given_at: 2020-01-01T00:00:00Z,
     recipients: [{organization: cafe}], data: [work], purposes: [job-matching]}
"""


def _flow(subject: str, at: str | None = "2026-03-01T12:00:00Z") -> dict[str, Any]:
    flow = {"sender": "case-worker", "recipient": "cafe-manager", "subject": subject,
            "data": ["work.preferences"], "purpose": "job-matching",
            "subprocess": "co-delivery"}
    return flow if at is None else {**flow, "at": at}


def _run_freshness(store_url: str, tmp_path: Path, *, frozen: bool) -> list[Any]:
    """Process A checks, process B changes the registry, A checks again; returns A's
    answers round by round."""
    policy_path = _policy_file(tmp_path)
    registry_path = tmp_path / "registry.yaml"
    registry_path.write_text(FRESHNESS_REGISTRY, encoding="utf-8")
    policy = load_policy(policy_path)
    init_database(store_url)
    with _store(store_url, policy) as store:
        store.import_records(load_registry(registry_path, policy), by="setup")

    a_end, a_child = SPAWN.Pipe()
    b_end, b_child = SPAWN.Pipe()
    a = SPAWN.Process(target=_engine_process, args=(store_url, str(policy_path), a_child,
                                                    frozen), daemon=True)
    b = SPAWN.Process(target=_writer_process, args=(store_url, str(policy_path), b_child),
                      daemon=True)
    a.start()
    b.start()
    a_child.close()
    b_child.close()
    answers = []
    try:
        # A decides, and so caches the facts of anna, bo, carl and dora
        answers.append(_ask(a_end, [_flow("anna"), _flow("bo"), _flow("carl"),
                                    _flow("dora", at=None)], "A, round 0"))
        # B withdraws anna's consent as of a past time; A's very next check must see it
        _ask(b_end, ("withdraw", ("k-anna",), {
            "by": "process-b", "at": datetime(2026, 2, 1, tzinfo=UTC)}), "B, withdraw k-anna")
        answers.append(_ask(a_end, [_flow("anna"), _flow("carl")], "A, round 1"))
        # B withdraws dora's consent now; A's next check, at its own now, must see it
        _ask(b_end, ("withdraw", ("k-dora",), {"by": "process-b"}), "B, withdraw k-dora")
        answers.append(_ask(a_end, [_flow("dora", at=None)], "A, round 2"))
        # B grants bo a consent: a denial cached as CONSENT_MISSING must not outlive it
        _ask(b_end, ("grant", ({
            "id": "k-bo", "subject": "bo", "given_by": "bo",
            "given_at": "2026-01-15T00:00:00Z", "recipients": [{"organization": "cafe"}],
            "data": ["work.preferences"], "purposes": ["job-matching"]},),
            {"by": "process-b"}), "B, grant k-bo")
        answers.append(_ask(a_end, [_flow("bo")], "A, round 3"))
    finally:
        for end, process in ((a_end, a), (b_end, b)):
            with suppress(OSError):  # the child may have died already
                end.send(None)
            process.join(REPLY_TIMEOUT_S)
            if process.is_alive():
                process.kill()
            end.close()
    assert a.exitcode == 0 and b.exitcode == 0, (a.exitcode, b.exitcode)
    return answers


PERMIT = ("permit", "PERMITTED")


def test_a_change_in_another_process_is_seen_by_the_next_check(store_url: str,
                                                                tmp_path: Path) -> None:
    answers = _run_freshness(store_url, tmp_path, frozen=False)
    assert answers[0] == [PERMIT, ("deny", "CONSENT_MISSING"), PERMIT, PERMIT]
    assert answers[1] == [("deny", "CONSENT_WITHDRAWN"), PERMIT]  # carl's facts untouched
    assert answers[2] == [("deny", "CONSENT_WITHDRAWN")]
    assert answers[3] == [PERMIT]


def test_negative_control_a_frozen_revision_gives_the_stale_answer(store_url: str,
                                                                   tmp_path: Path) -> None:
    """The same exchange with a registry whose `revision` never changes: the engine keeps
    its cached facts and answers as before the changes. The test above asserts the
    opposite, so it fails for an engine that caches without reading the revision."""
    answers = _run_freshness(store_url, tmp_path, frozen=True)
    assert answers[0] == [PERMIT, ("deny", "CONSENT_MISSING"), PERMIT, PERMIT]
    assert answers[1] == [PERMIT, PERMIT]
    assert answers[2] == [PERMIT]
    assert answers[3] == [("deny", "CONSENT_MISSING")]


# --------------------------------------------------------------------------- b. stress

STRESS_PROCESSES = 4
STRESS_THREADS = 2  # per process: 8 workers in all
N_SUBJECTS = 60
N_NEW_SUBJECTS = 30  # contended ids that workers race to record
N_SHARED_CONSENTS = 300  # contended consent ids
N_SHARED_GUARDIANSHIPS = 80
GUARDIANS = [f"p-{i}" for i in range(6)]
RECIPIENTS = [[{"organization": "cafe"}], [{"kind": "employer"}],
              [{"organization": "shelter"}], [{"role": "case-worker"}],
              [{"organization": "cafe"}, {"organization": "shelter"}]]
CATEGORIES = ["identity.name", "work", "work.preferences", "work.capacity", "health",
              "health.medication", "health.diagnosis"]
PURPOSES = ["job-matching", "job-matching.employer-contact", "evaluation"]
SUBPROCESSES = ["co-design", "co-delivery"]
ACTORS = ["case-worker", "consultant", "cafe-manager", "volunteer"]
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
SPAN_S = 4 * 365 * 86_400


def _subject_ids() -> list[str]:
    return [f"s-{i:02d}" for i in range(N_SUBJECTS)]


def _subject_body(i: int) -> dict[str, Any]:
    kind = i % 4
    if kind == 0:
        return {}
    if kind == 1:  # a minor during the window, of age 15 (consent age) in it
        return {"birth_date": f"{2010 + i % 3}-0{1 + i % 9}-1{i % 10}"}
    return {"birth_date": f"{1950 + i}-0{1 + i % 9}-2{i % 8}", "jurisdiction": "DK"}


def _time(rng: random.Random) -> datetime:
    return EPOCH + timedelta(seconds=rng.randrange(SPAN_S))


def _owner(record_id: str) -> str:
    """The subject a contended record id belongs to, the same in every worker."""
    return f"s-{int(record_id.rsplit('-', 1)[1]) % N_SUBJECTS:02d}"


def _consent_body(rng: random.Random, consent_id: str, subject: str) -> dict[str, Any]:
    given = _time(rng)
    body: dict[str, Any] = {
        "id": consent_id, "subject": subject,
        "given_by": subject if rng.random() < 0.6 else rng.choice(GUARDIANS),
        "given_at": given.isoformat(), "recipients": rng.choice(RECIPIENTS),
        "data": sorted(set(rng.sample(CATEGORIES, rng.randint(1, 2)))),
        "purposes": [rng.choice(PURPOSES[:2])] if rng.random() < 0.8 else [PURPOSES[2]],
        "explicit": rng.random() < 0.5}
    if rng.random() < 0.3:
        body["subprocesses"] = [rng.choice(SUBPROCESSES)]
    if rng.random() < 0.5:
        body["expires_at"] = (given + timedelta(days=rng.randint(1, 900))).isoformat()
    if rng.random() < 0.3:
        body["evidence"] = {"method": "signed-form", "reference": f"ref-{consent_id}"}
    return body


def _guardianship_body(rng: random.Random, guardianship_id: str,
                       subject: str) -> dict[str, Any]:
    start = EPOCH - timedelta(days=rng.randint(0, 3000))
    body: dict[str, Any] = {
        "id": guardianship_id, "guardian": rng.choice(GUARDIANS), "subject": subject,
        "kind": rng.choice(["adult", "parental"]), "valid_from": start.isoformat()}
    if rng.random() < 0.5:
        body["scope"] = rng.choice([["health"], ["work", "identity"], ["health", "work"]])
    if rng.random() < 0.2:
        body["valid_until"] = (start + timedelta(days=rng.randint(30, 3000))).isoformat()
    return body


def _stress_worker(store: RegistryStore, worker: int, seed: int, deadline: float
                   ) -> dict[str, Any]:
    """Random changes until `deadline`. Returns the operations that succeeded (with what the
    store returned), the refusals (RegistryError) and any other exception."""
    rng = random.Random(seed * 1000 + worker)
    by = f"worker-{worker}"
    subjects = _subject_ids()
    consents: dict[str, str] = {}  # ids this worker believes exist -> subject
    guardianships: list[str] = []
    done: list[dict[str, Any]] = []
    refused: Counter[str] = Counter()
    failures: list[str] = []
    n = 0
    while time.monotonic() < deadline:
        n += 1
        roll = rng.random()
        try:
            if roll < 0.30:
                operation = "grant"
                if rng.random() < 0.3:
                    record = f"k-x-{rng.randrange(N_SHARED_CONSENTS)}"
                    subject = _owner(record)
                else:
                    record, subject = f"k-{worker}-{n}", rng.choice(subjects)
                event = store.grant(_consent_body(rng, record, subject), by=by)
                consents[record] = subject
            elif roll < 0.60:
                if consents and rng.random() < 0.8:
                    record = rng.choice(list(consents))
                else:
                    record = f"k-x-{rng.randrange(N_SHARED_CONSENTS)}"
                at = None if rng.random() < 0.5 else _time(rng)
                if roll < 0.45:
                    operation = "withdraw"
                    event = store.withdraw(record, by=by, at=at)
                elif roll < 0.53:
                    operation = "expire"
                    event = store.expire(record, by=by, at=at)
                else:
                    operation = "correct"
                    subject = consents.get(record) or _owner(record)
                    event = store.correct(_consent_body(rng, record, subject), by=by)
            elif roll < 0.78:
                operation = "add_guardianship"
                if rng.random() < 0.4:
                    record = f"g-x-{rng.randrange(N_SHARED_GUARDIANSHIPS)}"
                    subject = _owner(record)
                else:
                    record, subject = f"g-{worker}-{n}", rng.choice(subjects)
                event = store.add_guardianship(_guardianship_body(rng, record, subject),
                                               by=by)
                guardianships.append(record)
            elif roll < 0.93:
                operation = "end_guardianship"
                record = (rng.choice(guardianships) if guardianships and rng.random() < 0.8
                          else f"g-x-{rng.randrange(N_SHARED_GUARDIANSHIPS)}")
                event = store.end_guardianship(
                    record, by=by, at=None if rng.random() < 0.5 else _time(rng))
            else:
                operation = "add_subject"
                record = f"n-{rng.randrange(N_NEW_SUBJECTS)}"
                event = store.add_subject(record, _subject_body(rng.randrange(8)), by=by)
        except RegistryError as exc:
            refused[f"{operation}: {exc.diagnostics[0].code}"] += 1
            continue
        except Exception:
            failures.append(f"{operation} {record}: {traceback.format_exc()}")
            if len(failures) >= 5:
                break
            continue
        done.append({"operation": operation, "record": record, "by": by,
                     "event": event.model_dump(mode="json")})
    return {"done": done, "refused": refused, "failures": failures}


def _stress_process(url: str, policy_path: str, first_worker: int, threads: int, seed: int,
                    seconds: float, barrier: Any, results: Any) -> None:
    """One process of the stress run: `threads` workers sharing one store (and so one
    SQLite connection or one PostgreSQL pool)."""
    try:
        store = open_store(url, load_policy(policy_path))
    except Exception:
        results.put((first_worker, [{"done": [], "refused": Counter(),
                                     "failures": [traceback.format_exc()]}]))
        barrier.abort()
        return
    outcome: list[dict[str, Any]] = [{} for _ in range(threads)]
    try:
        barrier.wait(REPLY_TIMEOUT_S)  # every process is connected: start together
        deadline = time.monotonic() + seconds

        def run(i: int) -> None:
            try:
                outcome[i] = _stress_worker(store, first_worker + i, seed, deadline)
            except Exception:
                outcome[i] = {"done": [], "refused": Counter(),
                              "failures": [traceback.format_exc()]}

        workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    except Exception:
        outcome = [{"done": [], "refused": Counter(), "failures": [traceback.format_exc()]}]
    finally:
        store.close()
    results.put((first_worker, outcome))


def _sample_flows(rng: random.Random, subjects: list[str], per_subject: int
                  ) -> list[dict[str, Any]]:
    flows = []
    for subject in subjects:
        for _ in range(per_subject):
            flows.append({
                "sender": rng.choice(ACTORS), "recipient": rng.choice(ACTORS),
                "subject": subject, "data": [rng.choice(CATEGORIES)],
                "purpose": rng.choice(PURPOSES), "subprocess": rng.choice(SUBPROCESSES),
                "at": _time(rng).isoformat()})
    return flows


def _comparable(decision: Any) -> str:
    """A decision without what differs between registries and runs (an in-memory registry
    is at revision 0)."""
    return json.dumps(decision.model_dump(mode="json", exclude={
        "decision_id", "evaluated_at", "registry_revision"}), sort_keys=True)


def _records_key(records: SubjectRecords) -> tuple[Any, ...]:
    """A subject's records in a form that ignores the order of consents and guardianships."""
    return (None if records.subject is None else records.subject.model_dump(mode="json"),
            sorted(encode(k.model_dump(mode="json")) for k in records.consents),
            sorted(encode(g.model_dump(mode="json")) for g in records.guardianships))


def _check_refusal_rules(events: list[Event]) -> None:
    """Walk the log in sequence order and check that every event was allowed by the state
    before it: the store reads and appends under one lock, so no race may slip an event
    past a rule (two grants of one id, two withdrawals, a later expiry, ...)."""
    states: dict[str, SubjectState] = {}
    owner: dict[tuple[str, str], str] = {}  # (record kind, id) -> subject
    for e in events:
        state = states.setdefault(e.subject, SubjectState())
        where = f"event {e.seq} ({e.kind} {e.record or e.subject})"
        if e.kind == "subject.recorded":
            assert state.subject is None, f"{where}: the subject was already recorded"
        elif e.kind in ("consent.granted", "guardianship.added"):
            noun = e.kind.split(".")[0]
            assert (noun, e.record) not in owner, f"{where}: the id was already used"
            owner[(noun, e.record)] = e.subject
        else:
            noun = e.kind.split(".")[0]
            assert owner.get((noun, e.record)) == e.subject, f"{where}: unknown record"
            if e.kind == "consent.withdrawn":
                current = state.consent(e.record)
                assert current is not None and current.withdrawn_at is None, \
                    f"{where}: the consent was already withdrawn"
            elif e.kind == "consent.expired":
                current = state.consent(e.record)
                new = datetime.fromisoformat(e.body["expires_at"])
                assert current is not None and (current.expires_at is None
                                                or new < current.expires_at), \
                    f"{where}: the consent already expired no later than {new}"
            elif e.kind == "guardianship.ended":
                g = state.guardianships[e.record]
                new = datetime.fromisoformat(e.body["valid_until"])
                assert g.valid_until is None or new < g.valid_until, \
                    f"{where}: the guardianship already ended no later than {new}"
        state.apply(e.kind, e.record, e.body)


def test_concurrent_writers_lose_nothing_and_replay_to_the_stored_state(
        store_url: str, tmp_path: Path) -> None:
    """8 workers (4 processes x 2 threads) write for FLOWGUARD_STRESS_SECONDS seconds
    (default 30 under CI=true, 5 otherwise); FLOWGUARD_STRESS_SEED repeats a run."""
    seconds = _stress_seconds()
    seed = int(os.environ.get("FLOWGUARD_STRESS_SEED", random.randrange(10**6)))
    policy_path = _policy_file(tmp_path)
    policy = load_policy(policy_path)
    init_database(store_url)
    with _store(store_url, policy) as store:
        _stress(store, policy, policy_path, seconds, seed)


def _stress(store: RegistryStore, policy: Policy, policy_path: Path, seconds: float,
            seed: int) -> None:
    rng = random.Random(seed)
    for i, subject in enumerate(_subject_ids()):
        store.add_subject(subject, _subject_body(i), by="setup")
    setup_revision = store.revision
    assert setup_revision == N_SUBJECTS

    # an engine that has cached every subject's facts before the run must be fresh after it
    flows = _sample_flows(rng, _subject_ids() + [f"n-{i}" for i in range(N_NEW_SUBJECTS)], 12)
    stale_engine = Engine(policy, store)
    stale_engine.check_many(flows)

    barrier = SPAWN.Barrier(STRESS_PROCESSES)
    results = SPAWN.Queue()
    processes = [SPAWN.Process(target=_stress_process, daemon=True, args=(
        store.url, str(policy_path), p * STRESS_THREADS, STRESS_THREADS, seed, seconds,
        barrier, results)) for p in range(STRESS_PROCESSES)]
    for p in processes:
        p.start()
    outcomes: list[dict[str, Any]] = []
    try:
        for _ in processes:
            try:
                outcomes.extend(results.get(timeout=seconds + 3 * REPLY_TIMEOUT_S)[1])
            except queue.Empty:
                pytest.fail(f"a stress process did not report within "
                            f"{seconds + 3 * REPLY_TIMEOUT_S:.0f} s")
    finally:
        for p in processes:
            p.join(REPLY_TIMEOUT_S)
            if p.is_alive():
                p.kill()
    context = f"(seed {seed}; rerun with FLOWGUARD_STRESS_SEED={seed})"
    failures = [f for o in outcomes for f in o["failures"]]
    assert not failures, f"{context} operations failed otherwise than refused:\n" + \
        "\n".join(failures)
    assert [p.exitcode for p in processes] == [0] * STRESS_PROCESSES
    done = [d for o in outcomes for d in o["done"]]
    refused = sum((o["refused"] for o in outcomes), Counter())
    kinds = Counter(d["operation"] for d in done)
    # the run did real, contended work of every kind
    assert len(outcomes) == STRESS_PROCESSES * STRESS_THREADS
    assert set(kinds) == {"grant", "withdraw", "expire", "correct", "add_guardianship",
                          "end_guardianship", "add_subject"}, (kinds, refused)
    assert any(key.endswith("duplicate") for key in refused), refused
    print(f"stress {context}: {seconds:.0f} s, {len(done)} events "
          f"{dict(sorted(kinds.items()))}; refused {dict(sorted(refused.items()))}")

    events = list(store.events())
    # gap-free, in order, and the head agrees
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), context
    assert store.revision == len(events)
    # nothing lost and nothing extra: each success is exactly one event written by a worker
    by_seq = {e.seq: e for e in events}
    worker_events = [e for e in events if e.seq > setup_revision]
    assert len(done) == len(worker_events), (context, len(done), len(worker_events))
    assert sorted(d["event"]["seq"] for d in done) == [e.seq for e in worker_events]
    expected_kind = {"grant": "consent.granted", "withdraw": "consent.withdrawn",
                     "expire": "consent.expired", "correct": "consent.corrected",
                     "add_guardianship": "guardianship.added",
                     "end_guardianship": "guardianship.ended",
                     "add_subject": "subject.recorded"}
    for d in done:
        logged = by_seq[d["event"]["seq"]]
        assert logged.model_dump(mode="json") == d["event"], (context, d, logged)
        assert logged.kind == expected_kind[d["operation"]], (context, d)
        assert (logged.subject if d["operation"] == "add_subject"
                else logged.record) == d["record"], (context, d)
        assert logged.by == d["by"]
    # recorded_at never goes back in sequence order (so `as_of` views are prefixes)
    assert all(a.recorded_at <= b.recorded_at for a, b in pairwise(events))
    # each event was allowed by the state before it
    _check_refusal_rules(events)

    # replaying the log gives the stored state: snapshot and per-subject reads
    states = replay((e.kind, e.subject, e.record, e.body) for e in events)
    snapshot = store.snapshot()
    assert all(st.subject is not None for st in states.values())  # no record of nobody
    assert set(snapshot.subjects) == set(states)
    for subject_id, state in states.items():
        expected = _records_key(state.records())
        assert _records_key(store.records_of(subject_id)) == expected, (context, subject_id)
        assert _records_key(snapshot.records_of(subject_id)) == expected, (context, subject_id)
    # exactly the changed subjects, or None ("cannot tell": drop every cached fact) when
    # more events than the store's limit came after the revision
    changed = store.changed_since(setup_revision)
    if len(worker_events) > _CHANGED_SUBJECTS_LIMIT:
        assert changed is None
    else:
        assert changed == {e.subject for e in worker_events}
    recent = events[-10:]
    assert store.changed_since(recent[0].seq - 1) == {e.subject for e in recent}
    # a view at an earlier revision is the replay of the log up to it
    for revision in sorted(rng.sample(range(setup_revision, len(events) + 1), 3)):
        past = replay((e.kind, e.subject, e.record, e.body) for e in events[:revision])
        view = store.at_revision(revision).snapshot()
        for subject_id, state in past.items():
            assert _records_key(view.records_of(subject_id)) == \
                _records_key(state.records()), (context, revision, subject_id)

    # decisions: a fresh engine on the store, the engine that cached facts before the run,
    # and an engine on an in-memory registry built from the replay agree
    replayed = InMemoryRegistry(
        {s: st.subject for s, st in states.items() if st.subject is not None},
        [g for st in states.values() for g in st.guardianships.values()],
        [c.current() for st in states.values() for c in st.consents.values()])
    expected_decisions = [_comparable(d) for d in Engine(policy, replayed).check_many(flows)]
    with _store(store.url, policy) as fresh:
        assert [_comparable(d) for d in Engine(policy, fresh).check_many(flows)] == \
            expected_decisions, f"{context}: a fresh engine on the store disagrees"
    assert [_comparable(stale_engine.check(f)) for f in flows] == expected_decisions, \
        f"{context}: the engine that cached facts before the run answers from stale facts"
    outcomes_seen = Counter(json.loads(d)["reason"] for d in expected_decisions)
    assert len(outcomes_seen) >= 3, outcomes_seen  # the sample is not all one answer


# --------------------------------------------------------------------------- c. append-only

_TAMPER_SQLITE = [
    "UPDATE registry_events SET actor = 'mallory' WHERE seq = 1",
    "UPDATE registry_events SET body = '{}'",
    "DELETE FROM registry_events WHERE seq = 2",
    "DELETE FROM registry_events",
    "INSERT INTO registry_events (seq, recorded_at, kind, subject, record, actor, evidence,"
    " body) VALUES (1, 0, 'subject.recorded', 'x', NULL, 'mallory', NULL, '{}')"
    " ON CONFLICT (seq) DO UPDATE SET actor = 'mallory'",
    # SQLite runs no DELETE trigger for the rows a REPLACE removes (unless PRAGMA
    # recursive_triggers is on): registry schema v2 guards these with an INSERT trigger
    "INSERT OR REPLACE INTO registry_events (seq, recorded_at, kind, subject, record, actor,"
    " evidence, body) VALUES (1, 0, 'subject.recorded', 'x', NULL, 'mallory', NULL, '{}')",
    "REPLACE INTO registry_events (seq, recorded_at, kind, subject, record, actor, evidence,"
    " body) VALUES (1, 0, 'subject.recorded', 'x', NULL, 'mallory', NULL, '{}')",
]
_TAMPER_POSTGRESQL = [
    *_TAMPER_SQLITE[:5],
    "TRUNCATE registry_events",
]


def _fill(url: str, policy: Policy) -> None:
    init_database(url)
    with _store(url, policy) as store:
        store.add_subject("anna", {"birth_date": "1990-02-01"}, by="setup")
        store.grant({"id": "k-1", "subject": "anna", "given_by": "anna",
                     "given_at": "2026-01-01T00:00:00Z",
                     "recipients": [{"organization": "cafe"}], "data": ["work"],
                     "purposes": ["job-matching"]}, by="setup")
        store.withdraw("k-1", by="setup", at=datetime(2026, 2, 1, tzinfo=UTC))


def _contents(url: str) -> tuple[int, list[dict[str, Any]], tuple[Any, ...]]:
    with _store(url) as store:
        return (store.revision, [e.model_dump(mode="json") for e in store.events()],
                _records_key(store.records_of("anna")))


def _raw_execute(url: str, statement: str) -> None:
    """Run one statement outside flowguard, committing if the database accepts it."""
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(url[len("sqlite:///"):])
        try:
            conn.execute(statement)
            conn.commit()
        finally:
            conn.rollback()
            conn.close()
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as pg:
            pg.execute(statement)


def _refused_error(url: str) -> tuple[type[Exception], ...]:
    if url.startswith("sqlite:"):
        return (sqlite3.DatabaseError,)
    import psycopg

    return (psycopg.Error,)


def test_raw_updates_and_deletes_of_events_are_refused(store_url: str, tmp_path: Path) -> None:
    policy = load_policy(_policy_file(tmp_path))
    _fill(store_url, policy)
    before = _contents(store_url)
    assert before[0] == 3
    statements = _TAMPER_SQLITE if store_url.startswith("sqlite:") else _TAMPER_POSTGRESQL
    for statement in statements:
        with pytest.raises(_refused_error(store_url), match="append-only"):
            _raw_execute(store_url, statement)
        assert _contents(store_url) == before, statement
    with _store(store_url, policy) as store:  # the store still appends after the attempts
        event = store.add_subject("bo", {}, by="setup")
        assert event.seq == 4 and store.revision == 4
