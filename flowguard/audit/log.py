"""The audit log store (SPEC §9) on SQLite or PostgreSQL.

Each append transaction locks one coordination row (`audit_head`), numbers its entries after
the last one (gap-free leaf indices, whatever the number of writers), extends the Merkle
tree's compact range (O(1) amortised) and stores every newly completed subtree hash, so a
proof needs O(log n) lookups. Checkpoints are signed in the same transaction, so two
checkpoints are always views of one tree. Entries, nodes, checkpoints and policy texts are
never updated or deleted: the schema refuses it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flowguard.audit.checkpoint import Checkpoint, sign_checkpoint
from flowguard.audit.entries import canonical_entry
from flowguard.audit.merkle import (
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root,
)
from flowguard.audit.note import Signer
from flowguard.canonical import canonical_json, policy_canonical_form
from flowguard.errors import Diagnostic, InputError
from flowguard.model import Policy
from flowguard.store._db import (
    Cursor,
    Database,
    Migration,
    migrate,
    require_schema,
    schema_version,
)

COMPONENT = "audit"
_APPEND_ONLY = "the audit log is append-only"


def _tables(blob: str) -> tuple[str, ...]:
    return (
        "CREATE TABLE audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), size BIGINT NOT NULL,"
        " frontier TEXT NOT NULL, checkpoint_size BIGINT NOT NULL,"
        " checkpoint_at BIGINT NOT NULL)",
        "INSERT INTO audit_head VALUES (1, 0, '', 0, 0)",
        f"CREATE TABLE audit_entries (idx BIGINT PRIMARY KEY, entry {blob} NOT NULL)",
        f"CREATE TABLE audit_nodes (level INTEGER NOT NULL, idx BIGINT NOT NULL,"
        f" hash {blob} NOT NULL, PRIMARY KEY (level, idx))",
        "CREATE TABLE audit_checkpoints (size BIGINT PRIMARY KEY, note TEXT NOT NULL,"
        " created_at BIGINT NOT NULL)",
        f"CREATE TABLE audit_policies (digest TEXT PRIMARY KEY, canonical {blob} NOT NULL)",
    )


_IMMUTABLE = ("audit_entries", "audit_nodes", "audit_checkpoints", "audit_policies")
MIGRATIONS = (
    Migration(
        1, "append-only audit log: entries, tree nodes, checkpoints, policy texts",
        sqlite=(*_tables("BLOB"), *(
            f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"
            for table in _IMMUTABLE for op in ("UPDATE", "DELETE"))),
        postgresql=(
            *_tables("BYTEA"),
            "CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{_APPEND_ONLY}'; END $$",
            *(f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
              "FOR EACH ROW EXECUTE FUNCTION audit_append_only()" for table in _IMMUTABLE),
            *(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
              "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()" for table in _IMMUTABLE),
            *(f"REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM PUBLIC" for table in _IMMUTABLE),
        ),
    ),
    Migration(
        2, "SQLite: refuse INSERT OR REPLACE over audit rows (REPLACE deletes without firing "
           "the DELETE triggers)",
        sqlite=tuple(
            f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} WHEN EXISTS "
            f"(SELECT 1 FROM {table} WHERE {where}) "
            f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"
            for table, where in (("audit_entries", "idx = NEW.idx"),
                                 ("audit_nodes", "level = NEW.level AND idx = NEW.idx"),
                                 ("audit_checkpoints", "size = NEW.size"),
                                 ("audit_policies", "digest = NEW.digest"))),
        postgresql=(),  # PostgreSQL has no REPLACE; ON CONFLICT DO UPDATE fires the triggers
    ),
)


STATE_COMPONENT = "audit-state"
_FIXED = "an audit log setting is never changed"
STATE_MIGRATIONS = (
    Migration(
        1, "the log's origin and pseudonym key fingerprint (set once), and the last event "
           "of each registry the log has audited",
        sqlite=(
            "CREATE TABLE audit_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
            *(f"CREATE TRIGGER audit_settings_no_{op.lower()} BEFORE {op} ON audit_settings "
              f"BEGIN SELECT RAISE(ABORT, '{_FIXED}'); END" for op in ("UPDATE", "DELETE")),
            "CREATE TRIGGER audit_settings_no_replace BEFORE INSERT ON audit_settings WHEN "
            "EXISTS (SELECT 1 FROM audit_settings WHERE name = NEW.name) "
            f"BEGIN SELECT RAISE(ABORT, '{_FIXED}'); END",
            "CREATE TABLE audit_registry_cursors (registry TEXT PRIMARY KEY,"
            " seq BIGINT NOT NULL)",
        ),
        postgresql=(
            "CREATE TABLE audit_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "CREATE FUNCTION audit_settings_fixed() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{_FIXED}'; END $$",
            "CREATE TRIGGER audit_settings_no_change BEFORE UPDATE OR DELETE ON audit_settings "
            "FOR EACH ROW EXECUTE FUNCTION audit_settings_fixed()",
            "CREATE TRIGGER audit_settings_no_truncate BEFORE TRUNCATE ON audit_settings "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_settings_fixed()",
            "CREATE TABLE audit_registry_cursors (registry TEXT PRIMARY KEY,"
            " seq BIGINT NOT NULL)",
        ),
    ),
)
"""A component of its own (not migration 3 of `audit`): a reader of a log written before
it still opens the log, and writers add it when they open one."""


def init_audit(db: Database) -> list[Migration]:
    applied = migrate(db, COMPONENT, MIGRATIONS)
    return applied + migrate(db, STATE_COMPONENT, STATE_MIGRATIONS)


def is_current(db: Database) -> bool:
    """Whether the log's schema is this version's (then opening it needs no migration)."""
    return (schema_version(db, COMPONENT) == MIGRATIONS[-1].version
            and schema_version(db, STATE_COMPONENT) == STATE_MIGRATIONS[-1].version)


def has_state(db: Database) -> bool:
    """Whether the log keeps settings and registry cursors (a writer of this version has
    opened it)."""
    return schema_version(db, STATE_COMPONENT) > 0


class AuditError(InputError):
    """The audit log cannot do what was asked (no signing key, an index out of range...)."""


def _error(message: str, source: str = "<audit>", code: str = "audit",
           hint: str | None = None) -> AuditError:
    return AuditError([Diagnostic(message, source, code=code, hint=hint)])


@dataclass(frozen=True)
class AppendResult:
    first: int
    size: int
    checkpoint: str | None


class AuditLog:
    """An audit log in a database. `signer` (the log's Ed25519 note key, whose name is the
    log's origin) signs checkpoints every `checkpoint_every` entries, when
    `checkpoint_seconds` have passed since the last one at an append, and on demand."""

    def __init__(self, db: Database, *, signer: Signer | None = None,
                 checkpoint_every: int = 1000, checkpoint_seconds: float = 60.0) -> None:
        require_schema(db, COMPONENT, MIGRATIONS)
        self.db = db
        self.signer = signer
        self.checkpoint_every = max(1, checkpoint_every)
        self.checkpoint_seconds = checkpoint_seconds
        self._blob = bytes if db.dialect == "sqlite" else _to_bytes
        self.appended = False
        """Whether this object appended entries (then `AuditTrail.close` signs them)."""
        if signer is not None:
            self._bind_origin(signer)

    @property
    def url(self) -> str:
        return self.db.url

    @property
    def origin(self) -> str | None:
        return None if self.signer is None else self.signer.name

    # ------------------------------------------------------------------ keys

    def setting(self, name: str) -> str | None:
        """A value the log keeps once set (`origin`, `pseudonym-key`); None when unset or
        when the log was written before settings were kept."""
        if not has_state(self.db):
            return None
        row = self.db.read_one("SELECT value FROM audit_settings WHERE name = ?", (name,))
        return None if row is None else str(row[0])

    def record_setting(self, name: str, value: str) -> str:
        """Set `name` unless it is set already; returns the value the log keeps."""
        with self.db.write() as cursor:
            self.lock_head(cursor)
            cursor.execute("SELECT value FROM audit_settings WHERE name = ?", (name,))
            row = cursor.fetchone()
            if row is not None:
                return str(row[0])
            cursor.execute("INSERT INTO audit_settings (name, value) VALUES (?, ?)",
                           (name, value))
        return value

    @property
    def recorded_origin(self) -> str | None:
        """The log's origin: as recorded, else the name in its latest checkpoint."""
        origin = self.setting("origin")
        if origin is None:
            latest = self.latest_checkpoint()
            origin = latest.split("\n", 1)[0] if latest else None
        return origin

    def _bind_origin(self, signer: Signer) -> None:
        """Refuse a signing key named other than the log's origin, before anything is
        written (its checkpoints would fail verification for good, and the real key could
        no longer sign); a log's first key names its origin."""
        origin = self.recorded_origin
        if (origin is None or origin == signer.name) and has_state(self.db) \
                and self.setting("origin") is None:
            origin = self.record_setting("origin", signer.name)  # another writer may win
        if origin is not None and origin != signer.name:
            raise _error(f"the log key is named {signer.name!r} but this audit log's origin "
                         f"is {origin!r}; nothing was written", code="key",
                         hint="give the log's own key; a new key for this log must be "
                              f"generated with --name {origin}")

    # ------------------------------------------------------------------ appending

    def append(self, entries: Sequence[dict[str, Any]]) -> AppendResult:
        """Append entries in one transaction (a group commit); returned once durable."""
        encoded = [canonical_entry(e) for e in entries]
        return self.append_encoded(encoded)

    def append_encoded(self, encoded: Sequence[bytes]) -> AppendResult:
        with self.db.write() as cursor:
            return self.append_in(cursor, encoded)

    def lock_head(self, cursor: Cursor) -> tuple[Any, ...]:
        """Lock the log's head row in the caller's transaction (every writer's order)."""
        lock = " FOR UPDATE" if self.db.dialect == "postgresql" else ""
        cursor.execute("SELECT size, frontier, checkpoint_size, checkpoint_at "
                       f"FROM audit_head WHERE id = 1{lock}")
        head = cursor.fetchone()
        assert head is not None
        return head

    def append_in(self, cursor: Cursor, encoded: Sequence[bytes]) -> AppendResult:
        """Append inside the caller's write transaction on the log's database (the
        registry's, when both share one: the event and its entry commit together)."""
        size, frontier, checkpoint_size, checkpoint_at = self.lock_head(cursor)
        tree = CompactRange(int(size), _hashes(frontier))
        first = tree.size
        entry_rows = []
        node_rows: list[tuple[int, int, bytes]] = []
        for offset, data in enumerate(encoded):
            entry_rows.append((first + offset, data))
            node_rows.extend(tree.append(leaf_hash(data)))
        if entry_rows:
            cursor.executemany("INSERT INTO audit_entries (idx, entry) VALUES (?, ?)",
                               entry_rows)
            cursor.executemany("INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)",
                               node_rows)
            self.appended = True
        note = None
        now = time.time()
        every = self.checkpoint_every
        due = (tree.size // every > int(checkpoint_size) // every
               or now - int(checkpoint_at) / 1e6 >= self.checkpoint_seconds)
        if self.signer is not None and tree.size > int(checkpoint_size) and due:
            note = self._insert_checkpoint(cursor, tree)
            checkpoint_size, checkpoint_at = tree.size, int(now * 1e6)
        cursor.execute("UPDATE audit_head SET size = ?, frontier = ?, checkpoint_size = ?, "
                       "checkpoint_at = ? WHERE id = 1",
                       (tree.size, _frontier(tree), checkpoint_size, checkpoint_at))
        return AppendResult(first, tree.size, note)

    def sign_appended(self) -> str | None:
        """Sign a checkpoint covering every entry this object appended (none when it
        appended nothing or has no key): a process signs before it exits."""
        if self.signer is None or not self.appended:
            return None
        note = self.checkpoint()
        self.appended = False
        return note

    def _insert_checkpoint(self, cursor: Any, tree: CompactRange) -> str:
        assert self.signer is not None
        checkpoint = Checkpoint(origin=self.signer.name, size=tree.size, root_hash=tree.root())
        note = sign_checkpoint(checkpoint, [self.signer])
        cursor.execute("INSERT INTO audit_checkpoints (size, note, created_at) VALUES (?, ?, ?)",
                       (tree.size, note, time.time_ns() // 1000))
        return note

    def checkpoint(self) -> str:
        """Sign the current tree head now (or return the checkpoint of this size if one
        exists already)."""
        if self.signer is None:
            raise _error("no signing key: give the log's note key to sign checkpoints",
                         code="key")
        lock = " FOR UPDATE" if self.db.dialect == "postgresql" else ""
        with self.db.write() as cursor:
            cursor.execute(f"SELECT size, frontier FROM audit_head WHERE id = 1{lock}")
            head = cursor.fetchone()
            assert head is not None
            tree = CompactRange(int(head[0]), _hashes(head[1]))
            cursor.execute("SELECT note FROM audit_checkpoints WHERE size = ?", (tree.size,))
            existing = cursor.fetchone()
            if existing is not None:
                return str(existing[0])
            note = self._insert_checkpoint(cursor, tree)
            cursor.execute("UPDATE audit_head SET checkpoint_size = ?, checkpoint_at = ? "
                           "WHERE id = 1", (tree.size, time.time_ns() // 1000))
            return note

    def store_policy(self, policy: Policy) -> str:
        """Keep the policy's canonical text, addressed by its digest (idempotent)."""
        digest = policy.digest
        if self.policy_text(digest) is None:
            text = canonical_json(policy_canonical_form(policy))
            with self.db.write() as cursor:
                cursor.execute("SELECT 1 FROM audit_policies WHERE digest = ?", (digest,))
                if cursor.fetchone() is None:
                    # PostgreSQL: another writer may insert it between our SELECT and INSERT
                    cursor.execute("INSERT INTO audit_policies (digest, canonical) VALUES (?, ?)"
                                   " ON CONFLICT (digest) DO NOTHING", (digest, text))
        return digest

    # ------------------------------------------------------------------ reading

    @property
    def size(self) -> int:
        row = self.db.read_one("SELECT size FROM audit_head WHERE id = 1")
        return int(row[0]) if row else 0

    def policy_text(self, digest: str) -> bytes | None:
        row = self.db.read_one("SELECT canonical FROM audit_policies WHERE digest = ?",
                               (digest,))
        return None if row is None else self._blob(row[0])

    def policy_texts(self) -> list[bytes]:
        """The canonical text of every policy the log keeps."""
        return [self._blob(row[0]) for row in
                self.db.read("SELECT canonical FROM audit_policies ORDER BY digest")]

    def entry(self, index: int) -> bytes:
        row = self.db.read_one("SELECT entry FROM audit_entries WHERE idx = ?", (index,))
        if row is None:
            raise _error(f"no entry {index}: the log has {self.size} entries", code="range")
        return self._blob(row[0])

    def entries(self, start: int = 0, end: int | None = None,
                batch: int = 10000) -> Iterator[tuple[int, bytes]]:
        """(index, entry bytes) in index order, as stored."""
        stop = end if end is not None else 2**62
        while True:
            rows = self.db.read(
                "SELECT idx, entry FROM audit_entries WHERE idx >= ? AND idx < ? ORDER BY idx "
                f"LIMIT {batch}", (start, stop))
            for index, data in rows:
                yield int(index), self._blob(data)
            if len(rows) < batch:
                return
            start = int(rows[-1][0]) + 1

    def checkpoints(self) -> list[tuple[int, str]]:
        return [(int(size), str(note)) for size, note in
                self.db.read("SELECT size, note FROM audit_checkpoints ORDER BY size")]

    def latest_checkpoint(self) -> str | None:
        row = self.db.read_one("SELECT note FROM audit_checkpoints ORDER BY size DESC LIMIT 1")
        return None if row is None else str(row[0])

    def nodes(self, keys: Sequence[tuple[int, int]]) -> list[bytes]:
        """Stored complete-subtree hashes (the Merkle `NodeReader`), in the order asked."""
        if not keys:
            return []
        found: dict[tuple[int, int], bytes] = {}
        for chunk_start in range(0, len(keys), 200):
            chunk = keys[chunk_start:chunk_start + 200]
            condition = " OR ".join("(level = ? AND idx = ?)" for _ in chunk)
            params = [v for key in chunk for v in key]
            for level, index, value in self.db.read(
                    f"SELECT level, idx, hash FROM audit_nodes WHERE {condition}", params):
                found[(int(level), int(index))] = self._blob(value)
        missing = [k for k in keys if k not in found]
        if missing:
            raise _error(f"the log's tree has no node {missing[0]}", code="corrupt")
        return [found[k] for k in keys]

    def root(self, size: int | None = None) -> bytes:
        return root(self.size if size is None else size, self)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        if not 0 <= index < size <= self.size:
            raise _error(f"no inclusion proof of entry {index} in a tree of {size} entries "
                         f"(the log has {self.size})", code="range")
        return inclusion_proof(index, size, self)

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        if not 0 < old <= new <= self.size:
            raise _error(f"no consistency proof from size {old} to {new} (the log has "
                         f"{self.size})", code="range")
        return consistency_proof(old, new, self)

    def close(self) -> None:
        self.db.close()


def _to_bytes(value: Any) -> bytes:
    return bytes(value)


def _hashes(frontier: str) -> list[bytes]:
    return [bytes.fromhex(h) for h in frontier.split(",") if h]


def _frontier(tree: CompactRange) -> str:
    return ",".join(h.hex() for h in tree.hashes)


def utc_now() -> datetime:
    return datetime.now(UTC)
