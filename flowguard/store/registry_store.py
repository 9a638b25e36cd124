"""The consent registry as an append-only event store on SQLite or PostgreSQL.

Every change is an `Event` with a gap-free sequence number, taken under one coordination
row (`registry_head`) so that sequence order is commit order on both databases. The
head's `revision` is what the engine reads before each check: a change committed by any
process is seen by the next check everywhere, and only the changed subjects' cached facts
are dropped. A check "as of" a past time reads the events recorded up to then.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flowguard.errors import Diagnostic, RegistryError
from flowguard.model import STORED, Consent, Evidence, Guardianship, Policy, Subject
from flowguard.registry import NO_RECORDS, InMemoryRegistry, SubjectRecords, validate_records
from flowguard.store._db import Cursor, Database, Migration, Row, migrate, require_schema
from flowguard.store.events import (
    Event,
    RegistryChange,
    SubjectState,
    encode,
    from_micros,
    micros,
    record_body,
    replay,
)
from flowguard.store.identity import init_identity
from flowguard.text import MAX_RECORDER, free_text

if TYPE_CHECKING:
    from flowguard.audit.outbox import RegistryOutbox
    from flowguard.audit.trail import AuditTrail

COMPONENT = "registry"
_APPEND_ONLY = "registry events are append-only: record a new event instead"
_TABLES = (
    "CREATE TABLE registry_head (id INTEGER PRIMARY KEY CHECK (id = 1),"
    " revision BIGINT NOT NULL, recorded_at BIGINT NOT NULL)",
    "INSERT INTO registry_head VALUES (1, 0, 0)",
    "CREATE TABLE registry_events (seq BIGINT PRIMARY KEY, recorded_at BIGINT NOT NULL,"
    " kind TEXT NOT NULL, subject TEXT NOT NULL, record TEXT, actor TEXT NOT NULL,"
    " evidence TEXT, body TEXT NOT NULL)",
    "CREATE INDEX registry_events_by_subject ON registry_events (subject, seq)",
    "CREATE INDEX registry_events_by_record ON registry_events (record, kind)",
    "CREATE INDEX registry_events_by_time ON registry_events (recorded_at)",
)
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1, "append-only registry events with a coordination row",
        sqlite=(
            *_TABLES,
            "CREATE TRIGGER registry_events_no_update BEFORE UPDATE ON registry_events "
            f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END",
            "CREATE TRIGGER registry_events_no_delete BEFORE DELETE ON registry_events "
            f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END",
        ),
        postgresql=(
            *_TABLES,
            "CREATE FUNCTION registry_events_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{_APPEND_ONLY}'; END $$",
            "CREATE TRIGGER registry_events_no_change BEFORE UPDATE OR DELETE ON "
            "registry_events FOR EACH ROW EXECUTE FUNCTION registry_events_append_only()",
            "CREATE TRIGGER registry_events_no_truncate BEFORE TRUNCATE ON registry_events "
            "FOR EACH STATEMENT EXECUTE FUNCTION registry_events_append_only()",
        ),
    ),
)

MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        2, "SQLite: refuse INSERT OR REPLACE over an event (REPLACE deletes without firing "
           "the DELETE trigger)",
        sqlite=("CREATE TRIGGER registry_events_no_replace BEFORE INSERT ON registry_events "
                "WHEN EXISTS (SELECT 1 FROM registry_events WHERE seq = NEW.seq) "
                f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END",),
        postgresql=(),  # no REPLACE; ON CONFLICT DO UPDATE fires the UPDATE trigger
    ),
)

_EVENT_COLUMNS = "seq, recorded_at, kind, subject, record, actor, evidence, body"
_CHANGED_SUBJECTS_LIMIT = 1000


def init_registry(db: Database) -> list[Migration]:
    """Create or migrate the registry schema (`flowguard registry init`), with its
    identity (flowguard.store.identity)."""
    applied = migrate(db, COMPONENT, MIGRATIONS)
    init_identity(db)
    return applied


@dataclass(frozen=True)
class ImportSummary:
    subjects: int
    guardianships: int
    consents: int
    unchanged: int


def _error(message: str, source: str, code: str = "invalid") -> RegistryError:
    return RegistryError([Diagnostic(message, source, code=code)])


def _event(row: Row) -> Event:
    seq, recorded_at, kind, subject, record, actor, evidence, body = row
    return Event.model_validate({
        "seq": seq, "recorded_at": from_micros(recorded_at), "kind": kind, "subject": subject,
        "record": record, "by": actor,
        "evidence": None if evidence is None else json.loads(evidence),
        "body": json.loads(body)}, context=STORED)


class RegistryStore:
    """A registry in a database: the `Registry` the engine reads, plus the writes that
    record changes as events. Pass `policy` to check every written reference against it.
    With `audit`, every event gets exactly one audit entry (`flowguard.audit.outbox`): a
    write raises `AuditPendingError` when its event stands but the entry is not written yet."""

    def __init__(self, db: Database, policy: Policy | None = None, *,
                 pinned: int | None = None, audit: AuditTrail | None = None) -> None:
        self.db = db
        self.policy = policy
        self.audit = audit
        self._pinned = pinned
        if pinned is None:
            require_schema(db, COMPONENT, MIGRATIONS)
        self._outbox: RegistryOutbox | None = None
        self.reconciled: tuple[int, ...] = ()
        """The events whose missing audit entries were appended when the store opened."""
        if audit is not None and pinned is None:
            from flowguard.audit.outbox import RegistryOutbox

            self._outbox = RegistryOutbox(db, audit)
            self.reconciled = self._outbox.catch_up()

    @property
    def url(self) -> str:
        return self.db.url

    # ------------------------------------------------------------------ Registry

    @property
    def revision(self) -> int:
        if self._pinned is not None:
            return self._pinned
        row = self.db.read_one("SELECT revision FROM registry_head WHERE id = 1")
        return int(row[0]) if row else 0

    def records_of(self, subject_id: str, revision: int | None = None) -> SubjectRecords:
        state = self.state_of(subject_id, revision)
        if state.subject is None and not state.consents and not state.guardianships:
            return NO_RECORDS
        return state.records()

    def changed_since(self, revision: int) -> Collection[str] | None:
        if self._pinned is not None:
            return ()
        # walk the `seq` index from the revision on (DISTINCT would scan a whole index)
        rows = self.db.read("SELECT subject FROM registry_events WHERE seq > ? ORDER BY seq "
                            f"LIMIT {_CHANGED_SUBJECTS_LIMIT + 1}", (revision,))
        if len(rows) > _CHANGED_SUBJECTS_LIMIT:
            return None
        return {r[0] for r in rows}

    # ------------------------------------------------------------------ reading

    def as_of(self, when: datetime) -> RegistryStore:
        """A read-only view of the registry as it was recorded at `when`."""
        row = self.db.read_one("SELECT max(seq) FROM registry_events WHERE recorded_at <= ?",
                               (micros(when),))
        return self.at_revision(int(row[0]) if row and row[0] is not None else 0)

    def at_revision(self, revision: int) -> RegistryStore:
        """A read-only view of the registry after event `revision`."""
        return RegistryStore(self.db, self.policy, pinned=revision)

    def _upto(self, revision: int | None = None) -> int:
        """The last event a read may see: the view's pinned revision, and `revision`."""
        upto = self._pinned if self._pinned is not None else 2**62
        return upto if revision is None else min(upto, revision)

    def state_of(self, subject_id: str, revision: int | None = None) -> SubjectState:
        """The subject's state after its events up to `revision` (None: all of them).
        Events are numbered in commit order, so the events up to a revision read from the
        head are exactly the registry at that revision."""
        rows = self.db.read(
            "SELECT kind, subject, record, body FROM registry_events "
            "WHERE subject = ? AND seq <= ? ORDER BY seq", (subject_id, self._upto(revision)))
        return replay(rows).get(subject_id, SubjectState())

    def subject_of(self, record_id: str, kind: str) -> str | None:
        """The subject a consent (`consent.granted`) or guardianship (`guardianship.added`)
        belongs to."""
        row = self.db.read_one("SELECT subject FROM registry_events WHERE record = ? AND "
                               "kind = ? AND seq <= ?", (record_id, kind, self._upto()))
        return None if row is None else str(row[0])

    def consent(self, consent_id: str) -> tuple[Consent, int] | None:
        """The current version of a consent and its version number."""
        subject = self.subject_of(consent_id, "consent.granted")
        if subject is None:
            return None
        state = self.state_of(subject)
        current = state.consent(consent_id)
        return None if current is None else (current, state.version_of(consent_id))

    def history(self, record_id: str) -> list[Event]:
        """Every event of one consent or guardianship, oldest first."""
        rows = self.db.read(f"SELECT {_EVENT_COLUMNS} FROM registry_events WHERE record = ? "
                            "AND seq <= ? ORDER BY seq", (record_id, self._upto()))
        return [_event(r) for r in rows]

    def subject_history(self, subject_id: str) -> list[Event]:
        rows = self.db.read(f"SELECT {_EVENT_COLUMNS} FROM registry_events WHERE subject = ? "
                            "AND seq <= ? ORDER BY seq", (subject_id, self._upto()))
        return [_event(r) for r in rows]

    def events(self, since: int = 0, batch: int = 5000) -> Iterator[Event]:
        """All events after `since`, in order."""
        upto = self._upto()
        while True:
            rows = self.db.read(f"SELECT {_EVENT_COLUMNS} FROM registry_events WHERE seq > ? "
                                f"AND seq <= ? ORDER BY seq LIMIT {batch}", (since, upto))
            for row in rows:
                yield _event(row)
            if len(rows) < batch:
                return
            since = rows[-1][0]

    def snapshot(self) -> InMemoryRegistry:
        """The whole current state folded in memory (export, listings, replay checks)."""
        upto = self._upto()
        states: dict[str, SubjectState] = {}
        since = 0
        while True:
            rows = self.db.read("SELECT seq, kind, subject, record, body FROM registry_events "
                                "WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT 20000",
                                (since, upto))
            for _, kind, subject, record, body in rows:
                state = states.get(subject)
                if state is None:
                    state = states[subject] = SubjectState()
                state.apply(kind, record, body)
            if len(rows) < 20000:
                break
            since = rows[-1][0]
        subjects = {s: st.subject for s, st in states.items() if st.subject is not None}
        return InMemoryRegistry(
            subjects,
            [g for st in states.values() for g in st.guardianships.values()],
            [c.current() for st in states.values() for c in st.consents.values()])

    # ------------------------------------------------------------------ writing

    @contextmanager
    def _transaction(self) -> Iterator[_Writer]:
        if self._pinned is not None:
            raise _error("a registry view as of a past time is read-only", self.url,
                         code="read-only")
        if self._outbox is None:
            with self._write(None) as writer:
                yield writer
        else:  # each event audited exactly once (flowguard.audit.outbox)
            with self._outbox.audited(self._write) as writer:
                yield writer

    @contextmanager
    def _write(self, before_commit: Callable[[Cursor], None] | None) -> Iterator[_Writer]:
        with self.db.write() as cursor:
            lock = " FOR UPDATE" if self.db.dialect == "postgresql" else ""
            cursor.execute(f"SELECT revision, recorded_at FROM registry_head WHERE id = 1{lock}")
            head = cursor.fetchone()
            assert head is not None
            writer = _Writer(cursor, int(head[0]), max(time.time_ns() // 1000, int(head[1])),
                             keep_changes=self.audit is not None)
            yield writer
            if writer.revision != head[0]:
                cursor.execute("UPDATE registry_head SET revision = ?, recorded_at = ? "
                               "WHERE id = 1", (writer.revision, writer.recorded_at))
                if before_commit is not None:
                    before_commit(cursor)

    def _validate(self, section: str, data: Mapping[str, Any], source: str,
                  known_subject: Callable[[str], bool]) -> Any:
        _, guardianships, consents = validate_records(
            {section: [dict(data)]}, source=source, policy=self.policy,
            known_subject=known_subject)
        return (guardianships or consents)[0]

    def add_subject(self, subject_id: str, subject: Subject | Mapping[str, Any], *, by: str,
                    evidence: Evidence | None = None) -> Event:
        source = "<subject>"
        data = subject.model_dump(exclude_none=True) if isinstance(subject, Subject) \
            else dict(subject)
        subjects, _, _ = validate_records({"subjects": {subject_id: data}}, source=source,
                                          policy=self.policy)
        record = subjects[subject_id]
        with self._transaction() as w:
            if w.subject_known(subject_id):
                raise _error("the subject is already recorded in the registry", source,
                             code="duplicate")
            return w.append("subject.recorded", subject_id, None, by, evidence,
                            record_body(record))

    def grant(self, consent: Consent | Mapping[str, Any], *, by: str) -> Event:
        """Record a new consent (its `evidence` is the event's evidence)."""
        data = _as_data(consent)
        source = f"<consent {data.get('id', '?')}>"
        with self._transaction() as w:
            record: Consent = self._validate("consents", data, source, w.subject_known)
            if w.subject_of(record.id, "consent.granted") is not None:
                raise _error(f"consent `{record.id}` is already in the registry", source,
                             code="duplicate")
            return w.append("consent.granted", record.subject, record.id, by, record.evidence,
                            record_body(record))

    def correct(self, consent: Consent | Mapping[str, Any], *, by: str) -> Event:
        """Record a new version of a consent that supersedes the current one (withdrawal
        and expiry already recorded still apply)."""
        data = _as_data(consent)
        source = f"<consent {data.get('id', '?')}>"
        with self._transaction() as w:
            record: Consent = self._validate("consents", data, source, w.subject_known)
            subject = w.subject_of(record.id, "consent.granted")
            if subject is None:
                raise _error(f"no consent `{record.id}` in the registry to correct", source,
                             code="unknown-reference")
            if subject != record.subject:
                raise _error(f"consent `{record.id}`: a correction cannot move a consent to "
                             "another subject; withdraw it and grant a new one", source)
            return w.append("consent.corrected", subject, record.id, by, record.evidence,
                            record_body(record))

    def withdraw(self, consent_id: str, *, by: str, at: datetime | None = None,
                 evidence: Evidence | None = None) -> Event:
        """Record a withdrawal (GDPR Art. 7(3)): the consent id is all it needs."""
        return self._end_consent("consent.withdrawn", "withdrawn_at", consent_id, by, at,
                                 evidence)

    def expire(self, consent_id: str, *, by: str, at: datetime | None = None,
               evidence: Evidence | None = None) -> Event:
        """Record that a consent ends at `at` (an agreed end, not a withdrawal)."""
        return self._end_consent("consent.expired", "expires_at", consent_id, by, at, evidence)

    def _end_consent(self, kind: str, field: str, consent_id: str, by: str,
                     at: datetime | None, evidence: Evidence | None) -> Event:
        source = f"<consent {consent_id}>"
        with self._transaction() as w:
            subject = w.subject_of(consent_id, "consent.granted")
            if subject is None:
                raise _error(f"no consent `{consent_id}` in the registry", source,
                             code="unknown-reference")
            current = w.state(subject).consent(consent_id)
            assert current is not None
            when = at.astimezone(UTC) if at is not None else from_micros(w.recorded_at)
            if when < current.given_at:
                raise _error(f"consent `{consent_id}` was given at "
                             f"{current.given_at.isoformat()}; it cannot end before that",
                             source)
            if kind == "consent.withdrawn" and current.withdrawn_at is not None:
                raise _error(f"consent `{consent_id}` is already withdrawn "
                             f"(at {current.withdrawn_at.isoformat()})", source,
                             code="duplicate")
            previous = getattr(current, field)
            if kind == "consent.expired" and previous is not None and previous <= when:
                raise _error(f"consent `{consent_id}` already expires at "
                             f"{previous.isoformat()}", source, code="duplicate")
            return w.append(kind, subject, consent_id, by, evidence,
                            {field: when.isoformat()})

    def add_guardianship(self, guardianship: Guardianship | Mapping[str, Any], *,
                         by: str) -> Event:
        data = _as_data(guardianship)
        source = f"<guardianship {data.get('id', '?')}>"
        with self._transaction() as w:
            record: Guardianship = self._validate("guardianships", data, source,
                                                  w.subject_known)
            if w.subject_of(record.id, "guardianship.added") is not None:
                raise _error(f"guardianship `{record.id}` is already in the registry", source,
                             code="duplicate")
            return w.append("guardianship.added", record.subject, record.id, by,
                            record.evidence, record_body(record))

    def end_guardianship(self, guardianship_id: str, *, by: str, at: datetime | None = None,
                         evidence: Evidence | None = None) -> Event:
        source = f"<guardianship {guardianship_id}>"
        with self._transaction() as w:
            subject = w.subject_of(guardianship_id, "guardianship.added")
            if subject is None:
                raise _error(f"no guardianship `{guardianship_id}` in the registry", source,
                             code="unknown-reference")
            current = w.state(subject).guardianships[guardianship_id]
            when = at.astimezone(UTC) if at is not None else from_micros(w.recorded_at)
            if when <= current.valid_from:
                raise _error(f"guardianship `{guardianship_id}` starts at "
                             f"{current.valid_from.isoformat()}; it must end after that",
                             source)
            if current.valid_until is not None and current.valid_until <= when:
                raise _error(f"guardianship `{guardianship_id}` already ends at "
                             f"{current.valid_until.isoformat()}", source, code="duplicate")
            return w.append("guardianship.ended", subject, guardianship_id, by, evidence,
                            {"valid_until": when.isoformat()})

    def import_records(self, registry: InMemoryRegistry, *, by: str,
                       source: str = "<import>") -> ImportSummary:
        """Record a whole registry (e.g. a file) in one transaction: all or nothing.
        Records already stored with the same content are skipped, so an import can be
        repeated; a stored record with different content is an error."""
        subjects = registry.subjects
        consents = registry.all_consents()
        guardianships = registry.all_guardianships()
        added = [0, 0, 0]
        unchanged = 0
        problems: list[Diagnostic] = []
        with self._transaction() as w:
            existing = w.existing_records() if w.revision else {}

            def known(subject_id: str) -> bool:
                return subject_id in subjects or ("subject.recorded", subject_id) in existing

            if self.policy is not None:
                validate_records(_as_file(subjects, guardianships, consents), source=source,
                                 policy=self.policy, known_subject=known)
            unknown = sum(not known(g.subject) for g in guardianships) + sum(
                not known(k.subject) for k in consents)
            if unknown:
                problems.append(Diagnostic(
                    f"{unknown} record(s) name a subject that is neither in the import nor "
                    "recorded in the registry", source, code="unknown-reference"))
            rows: list[tuple[str, str, str | None, Evidence | None, dict[str, Any]]] = []
            batches: tuple[tuple[str, str, list[tuple[str, Any]]], ...] = (
                ("subject.recorded", "subject", list(subjects.items())),
                ("guardianship.added", "guardianship", [(g.id, g) for g in guardianships]),
                ("consent.granted", "consent", [(k.id, k) for k in consents]))
            for index, (kind, noun, items) in enumerate(batches):
                for record_id, record in items:
                    body = record_body(record)
                    stored = existing.get((kind, record_id))
                    if stored is not None:
                        if stored == body:
                            unchanged += 1
                            continue
                        what = "a subject" if noun == "subject" else f"{noun} `{record_id}`"
                        problems.append(Diagnostic(
                            f"{what} is already in the registry with different content"
                            + ("" if noun == "subject" else "; record a correction instead"),
                            source, code="conflict"))
                        continue
                    subject = record_id if noun == "subject" else record.subject
                    rows.append((kind, subject, None if noun == "subject" else record_id,
                                 getattr(record, "evidence", None), body))
                    added[index] += 1
            if problems:
                raise RegistryError(problems)
            w.append_many(rows, by)
        return ImportSummary(added[0], added[1], added[2], unchanged)

    def close(self) -> None:
        if self._pinned is None:
            self.db.close()

    def __enter__(self) -> RegistryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _as_data(record: Consent | Guardianship | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(record, Consent | Guardianship):
        return record.model_dump(mode="json", exclude_none=True)
    return dict(record)


def _as_file(subjects: Mapping[str, Subject], guardianships: list[Guardianship],
             consents: list[Consent]) -> dict[str, Any]:
    return {"subjects": {s: record_body(v) for s, v in subjects.items()},
            "guardianships": [record_body(g) for g in guardianships],
            "consents": [record_body(k) for k in consents]}


class _Writer:
    """Appends events inside one write transaction, holding the coordination row."""

    def __init__(self, cursor: Cursor, revision: int, recorded_at: int, *,
                 keep_changes: bool = False) -> None:
        self.cursor = cursor
        self.revision = revision
        self.recorded_at = recorded_at
        self.keep_changes = keep_changes
        self.changes: list[RegistryChange] = []

    def subject_known(self, subject_id: str) -> bool:
        self.cursor.execute("SELECT 1 FROM registry_events WHERE subject = ? AND "
                            "kind = 'subject.recorded' LIMIT 1", (subject_id,))
        return self.cursor.fetchone() is not None

    def subject_of(self, record_id: str, kind: str) -> str | None:
        self.cursor.execute("SELECT subject FROM registry_events WHERE record = ? AND kind = ?",
                            (record_id, kind))
        row = self.cursor.fetchone()
        return None if row is None else str(row[0])

    def state(self, subject_id: str) -> SubjectState:
        self.cursor.execute("SELECT kind, subject, record, body FROM registry_events "
                            "WHERE subject = ? ORDER BY seq", (subject_id,))
        rows = self.cursor.fetchall()
        return replay(rows).get(subject_id, SubjectState())

    def existing_records(self) -> dict[tuple[str, str], dict[str, Any]]:
        """The stored body of every subject, guardianship and consent as first recorded."""
        self.cursor.execute("SELECT kind, subject, record, body FROM registry_events WHERE "
                            "kind IN ('subject.recorded', 'consent.granted', "
                            "'guardianship.added')")
        return {(kind, record if record is not None else subject): json.loads(body)
                for kind, subject, record, body in self.cursor.fetchall()}

    def append(self, kind: str, subject: str, record: str | None, by: str,
               evidence: Evidence | None, body: dict[str, Any]) -> Event:
        self.append_many([(kind, subject, record, evidence, body)], by)
        return Event.model_validate({
            "seq": self.revision, "recorded_at": from_micros(self.recorded_at), "kind": kind,
            "subject": subject, "record": record, "by": by, "evidence": evidence,
            "body": body})

    def append_many(self, rows: list[tuple[str, str, str | None, Evidence | None,
                                           dict[str, Any]]], by: str) -> None:
        if not by:
            raise _error("say who records the change (`by`)", "<registry>", code="missing")
        try:
            free_text(by, what="the recorder (`by`)", limit=MAX_RECORDER)
        except ValueError as exc:
            raise _error(str(exc), "<registry>") from None
        first = self.revision + 1
        params = [
            (first + i, self.recorded_at, kind, subject, record, by,
             None if evidence is None else encode(evidence.model_dump(exclude_none=True)),
             encode(body))
            for i, (kind, subject, record, evidence, body) in enumerate(rows)]
        if self.keep_changes:
            when = from_micros(self.recorded_at)
            self.changes.extend(RegistryChange(p[0], p[2], p[3], p[4], by, when) for p in params)
        if params:
            self.cursor.executemany(
                f"INSERT INTO registry_events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                params)
        self.revision += len(params)
