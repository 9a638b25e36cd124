"""Exactly-once audit of registry changes.

Every registry event gets exactly one audit entry. When the registry and the audit log are
one database, the event and its entry commit in one transaction. Otherwise the registry is
the outbox: the audit log records, per registry identity, the last event it has audited
(`audit_registry_cursors`, written in the same transaction as the entries), and whoever
holds the log's head lock appends the events after it. A registry write takes the log's
lock first, commits the event, then appends and commits the entry; should that last step
fail (a crash, a lost connection), the event stands and the entry is appended at the next
store open, server start or `flowguard audit reconcile`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from flowguard.audit.entries import canonical_entry, registry_entry
from flowguard.audit.log import STATE_COMPONENT, STATE_MIGRATIONS, has_state
from flowguard.audit.trail import AuditTrail
from flowguard.errors import Diagnostic, FlowguardError, StoreError
from flowguard.store._db import Cursor, Database, Row, migrate, redact_url
from flowguard.store.events import RegistryChange, from_micros
from flowguard.store.identity import registry_identity

Reader = Callable[[str, Sequence[Any]], list[Row]]
_BATCH = 5000
_REGISTRY_MARK = b'"kind":"registry"'


@dataclass(frozen=True)
class Reconciled:
    """What bringing the log up to date with a registry did."""

    registry: str
    revision: int
    appended: tuple[int, ...] = field(default=())
    """The registry event numbers appended now, in order."""
    joined: bool = False
    """The log met this registry now (it audits it from `revision` on)."""


class AuditPendingError(FlowguardError):
    """The registry change was committed; its audit entry could not be written yet."""

    def __init__(self, changes: Sequence[RegistryChange], cause: BaseException,
                 audit_url: str, registry_url: str) -> None:
        self.changes = list(changes)
        self.cause = _first_line(cause)
        self.audit_url = redact_url(audit_url)
        self.registry_url = redact_url(registry_url)
        super().__init__(self.message)

    @property
    def message(self) -> str:
        entries = "its audit entry" if len(self.changes) == 1 else "their audit entries"
        return (f"{describe_changes(self.changes)}; {entries} could not be written yet "
                f"({self.cause}): run `flowguard audit reconcile --audit {self.audit_url} "
                f"-r {self.registry_url} --pseudonym-key FILE` (a later change, store open or "
                "server start appends it too)")


_VERBS = {"consent.granted": "consent {} granted", "consent.corrected": "consent {} corrected",
          "consent.withdrawn": "consent {} withdrawn",
          "consent.expired": "consent {} set to expire",
          "guardianship.added": "guardianship {} added",
          "guardianship.ended": "guardianship {} ended"}


def describe_changes(changes: Sequence[RegistryChange]) -> str:
    """What was recorded, in words, never naming a subject."""
    if len(changes) == 1:
        change = changes[0]
        verb = _VERBS.get(change.kind)
        what = verb.format(change.record) if verb and change.record else \
            f"a {change.kind} event"
        return f"{what} (registry event #{change.seq})"
    return (f"{len(changes)} registry events recorded (#{changes[0].seq} to "
            f"#{changes[-1].seq})")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def same_database(a: str, b: str) -> bool:
    """Whether two storage URLs name one database (SQLite: one file)."""
    prefix = "sqlite:///"
    if a.startswith(prefix) and b.startswith(prefix):
        path_a, path_b = a[len(prefix):], b[len(prefix):]
        if not path_a or not path_b or ":memory:" in (path_a, path_b):
            return False
        return os.path.realpath(path_a) == os.path.realpath(path_b)
    return a == b and not a.startswith("sqlite:")


class RegistryOutbox:
    """Delivers one registry's events to one audit trail, each exactly once."""

    lock_timeout = 30.0
    """How long a registry write waits for the audit log's lock on PostgreSQL (seconds; as
    long as SQLite's busy timeout) before it refuses, changing nothing."""

    def __init__(self, registry_db: Database, trail: AuditTrail) -> None:
        self.registry_db = registry_db
        self.trail = trail
        self.log = trail.log
        if not has_state(self.log.db):
            migrate(self.log.db, STATE_COMPONENT, STATE_MIGRATIONS)
        self.identity = registry_identity(registry_db)
        self.same_database = same_database(registry_db.url, self.log.url)

    # ------------------------------------------------------------------ reading

    def audited_up_to(self) -> int | None:
        """The last registry event the log has audited; None before the first reconcile."""
        row = self.log.db.read_one("SELECT seq FROM audit_registry_cursors WHERE registry = ?",
                                   (self.identity,))
        return None if row is None else int(row[0])

    def _revision(self) -> int:
        row = self.registry_db.read_one("SELECT revision FROM registry_head WHERE id = 1")
        return int(row[0]) if row else 0

    # ------------------------------------------------------------------ delivering

    def reconcile(self, *, only_if_behind: bool = False, history: bool = False) -> Reconciled:
        """Append every registry event the log lacks, in one transaction on the log. A log
        meeting the registry for the first time audits it from its current revision on;
        with `history`, every earlier event without an entry is appended too."""
        revision = self._revision()
        if only_if_behind and not history:
            audited = self.audited_up_to()
            if audited is not None and audited >= revision:
                return Reconciled(self.identity, revision)
        if self.same_database:
            with self.registry_db.write() as cursor:
                return self.append_missing(cursor, _reader(cursor), joined_at=revision,
                                           history=history)
        with self.log.db.write() as cursor:
            return self.append_missing(cursor, self.registry_db.read, joined_at=revision,
                                       history=history)

    def catch_up(self) -> tuple[int, ...]:
        """At store open and server start: append what the log lacks (cheaply checked
        first); returns the event numbers appended. Raises `StoreError` when the log lacks
        events and cannot take them now."""
        try:
            return self.reconcile(only_if_behind=True).appended
        except FlowguardError:
            raise
        except Exception as exc:
            raise StoreError([Diagnostic(
                f"the audit log lacks registry events and cannot take them now "
                f"({_first_line(exc)}); nothing was changed", redact_url(self.log.url),
                code="audit-unavailable",
                hint="another process may hold its write lock; try again")]
            ) from None

    def append_missing(self, cursor: Cursor, read: Reader, *, joined_at: int | None = None,
                       history: bool = False) -> Reconciled:
        """Under the log's head lock: append the events after the log's cursor for this
        registry, and move the cursor, in the caller's transaction.

        Without a cursor yet, the log meets the registry now: a log that holds entries of
        registry events already (written before cursors were kept) takes the ones it lacks
        from its first such event on; otherwise it starts at `joined_at`."""
        self.log.lock_head(cursor)
        if history:
            cursor.execute("SELECT count(*) FROM audit_registry_cursors WHERE registry <> ?",
                           (self.identity,))
            others = cursor.fetchone()
            if others is not None and int(others[0]):
                raise StoreError([Diagnostic(
                    "the log audits another registry too, and its entries do not say which "
                    "registry they come from: --history cannot tell what this one lacks",
                    redact_url(self.log.url), code="history",
                    hint="reconcile without --history")])
        cursor.execute("SELECT seq FROM audit_registry_cursors WHERE registry = ?",
                       (self.identity,))
        row = cursor.fetchone()
        present = _audited_seqs(cursor) if row is None or history else None
        if history:
            since = 0
        elif row is not None:
            since = int(row[0])
        elif present:
            since = min(present) - 1
        else:
            since = joined_at or 0
        joined = row is None
        appended: list[int] = []
        while True:
            rows = read("SELECT seq, recorded_at, kind, subject, record, actor FROM "
                        f"registry_events WHERE seq > ? ORDER BY seq LIMIT {_BATCH}", (since,))
            new = [r for r in rows if present is None or int(r[0]) not in present]
            if new:
                self.log.append_in(cursor, [self._entry(r) for r in new])
                appended.extend(int(r[0]) for r in new)
            if rows:
                since = int(rows[-1][0])
            if len(rows) < _BATCH:
                break
        if row is None:
            cursor.execute("INSERT INTO audit_registry_cursors (registry, seq) VALUES (?, ?)",
                           (self.identity, since))
        elif since > int(row[0]):
            cursor.execute("UPDATE audit_registry_cursors SET seq = ? WHERE registry = ?",
                           (since, self.identity))
        return Reconciled(self.identity, max(since, int(row[0]) if row else 0),
                          tuple(appended), joined)

    def _entry(self, row: Row) -> bytes:
        seq, recorded_at, kind, subject, record, actor = row
        return canonical_entry(registry_entry(
            seq=int(seq), kind=str(kind), record=record, subject=str(subject), by=str(actor),
            recorded_at=from_micros(int(recorded_at)), pseudonym=self.trail.pseudonym))

    @contextmanager
    def _log_locked(self) -> Iterator[Cursor]:
        """The log's write transaction with its head locked; a log that cannot be locked
        (another process holds it past the timeout) refuses before the registry changes."""
        with ExitStack() as stack:
            try:
                cursor = stack.enter_context(self.log.db.write())
                if self.log.db.dialect == "postgresql":  # SQLite waits its busy timeout
                    cursor.execute(f"SET LOCAL lock_timeout = {int(self.lock_timeout * 1000)}")
                self.log.lock_head(cursor)
            except Exception as exc:
                raise _unwritable(self.log.url, exc) from None
            yield cursor

    @contextmanager
    def audited(self, write: Callable[[Callable[[Cursor], None] | None],
                                      AbstractContextManager[Any]]) -> Iterator[Any]:
        """Run a registry write transaction (`write(before_commit)` yields its writer, whose
        `changes` are the events it recorded) so that its events are audited exactly once."""
        if self.same_database:
            def before_commit(cursor: Cursor) -> None:
                self.append_missing(cursor, _reader(cursor))

            with write(before_commit) as writer:
                yield writer
            return
        committed: list[RegistryChange] = []
        try:
            with self._log_locked() as cursor:
                with write(None) as writer:
                    yield writer
                committed = list(writer.changes)
                if committed:
                    self.append_missing(cursor, self.registry_db.read)
        except Exception as exc:
            if committed:
                raise AuditPendingError(committed, exc, self.log.url,
                                        self.registry_db.url) from exc
            raise


def _reader(cursor: Cursor) -> Reader:
    def read(sql: str, params: Sequence[Any]) -> list[Row]:
        cursor.execute(sql, params)
        return cursor.fetchall()

    return read


def _audited_seqs(cursor: Cursor) -> set[int]:
    """The registry event numbers a log written before cursors were kept has entries for
    (read once, when a registry is first reconciled with the log)."""
    seqs: set[int] = set()
    start = 0
    while True:
        cursor.execute("SELECT idx, entry FROM audit_entries WHERE idx >= ? ORDER BY idx "
                       "LIMIT 10000", (start,))
        rows = cursor.fetchall()
        for _, data in rows:
            raw = bytes(data)
            if _REGISTRY_MARK in raw:
                try:
                    entry = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(entry, dict) and entry.get("kind") == "registry" \
                        and isinstance(entry.get("seq"), int):
                    seqs.add(entry["seq"])
        if len(rows) < 10000:
            return seqs
        start = int(rows[-1][0]) + 1


def _unwritable(url: str, exc: BaseException) -> StoreError:
    return StoreError([Diagnostic(
        f"the audit log cannot be written ({_first_line(exc)}); nothing was changed",
        redact_url(url), code="audit-unavailable",
        hint="another process may hold its write lock; try again")])


__all__ = ["AuditPendingError", "Reconciled", "RegistryOutbox", "describe_changes",
           "same_database"]
