"""Witness cosignatures kept with the audit log's checkpoints.

Checkpoint notes are immutable rows; the cosignature lines witnesses return are kept beside
them (one per checkpoint size and witness key, the first one received) and appended to the
note when it is shown, so `audit checkpoint`, `GET /v1/audit/checkpoint` and receipts carry
them and any C2SP-aware tool can read them. A component of its own: logs written before it
still open, and the table is added when cosignatures are first collected."""

from __future__ import annotations

import time
from collections.abc import Sequence

from flowguard.audit.cosignature import CosignatureVerifier, verify_cosignatures
from flowguard.audit.log import AuditLog
from flowguard.audit.note import NoteError
from flowguard.store._db import Migration, migrate, schema_version

COMPONENT = "audit-cosignatures"
MIGRATIONS = (
    Migration(
        1, "witness cosignatures of the audit log's checkpoints",
        sqlite=("CREATE TABLE audit_cosignatures (size BIGINT NOT NULL, witness TEXT NOT NULL,"
                " line TEXT NOT NULL, received_at BIGINT NOT NULL, PRIMARY KEY (size, witness))",),
        postgresql=("CREATE TABLE audit_cosignatures (size BIGINT NOT NULL,"
                    " witness TEXT NOT NULL, line TEXT NOT NULL, received_at BIGINT NOT NULL,"
                    " PRIMARY KEY (size, witness))",),
    ),
)


def init_cosignatures(log: AuditLog) -> None:
    if schema_version(log.db, COMPONENT) < MIGRATIONS[-1].version:
        migrate(log.db, COMPONENT, MIGRATIONS)


def _has_table(log: AuditLog) -> bool:
    return schema_version(log.db, COMPONENT) > 0


def store_cosignature(log: AuditLog, size: int, witness: str, line: str) -> None:
    """Keep a (verified) cosignature line of the checkpoint of `size` by `witness` (its
    verifier key); a later one by the same witness for the same size is not kept."""
    init_cosignatures(log)
    with log.db.write() as cursor:
        cursor.execute("INSERT INTO audit_cosignatures (size, witness, line, received_at) "
                       "VALUES (?, ?, ?, ?) ON CONFLICT (size, witness) DO NOTHING",
                       (size, witness, line, time.time_ns() // 1000))


def cosignature_lines(log: AuditLog, size: int) -> list[str]:
    if not _has_table(log):
        return []
    return [str(row[0]) for row in log.db.read(
        "SELECT line FROM audit_cosignatures WHERE size = ? ORDER BY witness", (size,))]


def witnessed_size(log: AuditLog, witness: str) -> int:
    """The largest checkpoint size `witness` has cosigned for this log (0 when none)."""
    if not _has_table(log):
        return 0
    row = log.db.read_one("SELECT max(size) FROM audit_cosignatures WHERE witness = ?",
                          (witness,))
    return 0 if row is None or row[0] is None else int(row[0])


def with_cosignatures(log: AuditLog, note: str) -> str:
    """The checkpoint note with the cosignature lines kept for it appended."""
    size_line = note.split("\n", 2)[1] if note.count("\n") >= 2 else ""
    if not size_line.isdigit():
        return note
    lines = [line for line in cosignature_lines(log, int(size_line)) if line not in note]
    return note + "".join(lines)


def cosigned_checkpoints(log: AuditLog) -> Sequence[tuple[int, str]]:
    """Every checkpoint (size, note with its cosignatures), in size order."""
    return [(size, with_cosignatures(log, note)) for size, note in log.checkpoints()]


def quorum_problem(note: str, verifiers: Sequence[CosignatureVerifier], quorum: int) -> str | None:
    """Why the checkpoint note lacks `quorum` valid cosignatures by distinct given witness
    keys (None when it has them). A bad cosignature by a given witness is a problem too."""
    try:
        found = verify_cosignatures(note, verifiers)
    except NoteError as exc:
        return f"a cosignature does not verify ({exc})"
    if len(found) < quorum:
        names = ", ".join(sorted(c.verifier.name for c in found.values())) or "none"
        return (f"{len(found)} valid cosignature(s) by the given witnesses ({names}), "
                f"{quorum} required")
    return None


def first_witnessed(notes: Sequence[str], verifiers: Sequence[CosignatureVerifier]) -> int | None:
    """The index in the size-ordered `notes` of the first checkpoint with a cosignature line
    by a given witness (valid or not: a bad one is then checked, and fails), None when no
    checkpoint has one. Checkpoints signed before the log had witnesses come before it."""
    for index, note in enumerate(notes):
        try:
            if verify_cosignatures(note, verifiers):
                return index
        except NoteError:
            return index
    return None


def latest_cosigned(log: AuditLog) -> str | None:
    """The latest checkpoint note with its cosignature lines (None before the first)."""
    note = log.latest_checkpoint()
    return None if note is None else with_cosignatures(log, note)
