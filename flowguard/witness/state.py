"""The witness's memory: for each log origin, the size and root of the latest checkpoint it
cosigned. Check and update happen in one transaction under a lock (SQLite `BEGIN
IMMEDIATE`, PostgreSQL `SELECT ... FOR UPDATE` on the log's row, created beforehand), so two
concurrent submissions for one log never both pass the check against the same old size: the
rollback race of the C2SP tlog-witness text cannot happen."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from flowguard.store._db import Database, Migration, connect, migrate

COMPONENT = "witness"
MIGRATIONS = (
    Migration(
        1, "the latest cosigned tree head of each log",
        sqlite=("CREATE TABLE witness_logs (origin TEXT PRIMARY KEY, size BIGINT NOT NULL,"
                " root BLOB NOT NULL, updated_at BIGINT NOT NULL)",),
        postgresql=("CREATE TABLE witness_logs (origin TEXT PRIMARY KEY, size BIGINT NOT NULL,"
                    " root BYTEA NOT NULL, updated_at BIGINT NOT NULL)",),
    ),
)


@dataclass(frozen=True)
class TreeHead:
    size: int
    root: bytes


class StaleSizeError(Exception):
    """The submitter's old size is not the size the witness holds (HTTP 409)."""

    def __init__(self, size: int, reason: str) -> None:
        self.size = size
        super().__init__(reason)


class WitnessState:
    """The latest cosigned tree head per origin, in a database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    def open(cls, url: str) -> WitnessState:
        db = connect(url)
        migrate(db, COMPONENT, MIGRATIONS)
        return cls(db)

    def latest(self, origin: str) -> TreeHead | None:
        row = self.db.read_one("SELECT size, root FROM witness_logs WHERE origin = ?",
                               (origin,))
        return None if row is None else TreeHead(int(row[0]), bytes(row[1]))

    def advance(self, origin: str, old: int, new: TreeHead,
                check: Callable[[TreeHead | None], None]) -> None:
        """Move the origin's head from size `old` to `new`, atomically.

        Raises :class:`StaleSizeError` when `old` is not the stored size (0 when none is
        stored) or when `new` has the stored size with another root; `check(stored)` runs
        under the lock (the consistency proof) and may raise to refuse. A larger stored
        size is never replaced by a smaller one: `new.size >= old` is the caller's check."""
        if self.db.dialect == "postgresql":
            with self.db.write() as cursor:  # the row must exist to be locked
                cursor.execute("INSERT INTO witness_logs (origin, size, root, updated_at) "
                               "VALUES (?, 0, ?, 0) ON CONFLICT (origin) DO NOTHING",
                               (origin, b""))
        lock = " FOR UPDATE" if self.db.dialect == "postgresql" else ""
        with self.db.write() as cursor:
            cursor.execute(f"SELECT size, root FROM witness_logs WHERE origin = ?{lock}",
                           (origin,))
            row = cursor.fetchone()
            stored = None if row is None or (int(row[0]) == 0 and not bytes(row[1])) \
                else TreeHead(int(row[0]), bytes(row[1]))
            size = 0 if stored is None else stored.size
            if old != size:
                raise StaleSizeError(size, f"old size {old} is not the witness's size {size}")
            if stored is not None and new.size == stored.size and new.root != stored.root:
                raise StaleSizeError(size, f"a different root for size {size}, which the "
                                     "witness has cosigned already")
            check(stored)
            now = time.time_ns() // 1000
            if row is None:
                cursor.execute("INSERT INTO witness_logs (origin, size, root, updated_at) "
                               "VALUES (?, ?, ?, ?)", (origin, new.size, new.root, now))
            else:
                cursor.execute("UPDATE witness_logs SET size = ?, root = ?, updated_at = ? "
                               "WHERE origin = ?", (new.size, new.root, now, origin))

    def close(self) -> None:
        self.db.close()
