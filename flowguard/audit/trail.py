"""The audit trail the engine and the registry write to: an `AuditLog`, the pseudonym key
that hides subjects, and the log's signing key."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flowguard.audit.entries import (
    Pseudonymizer,
    decision_entry,
    load_pseudonym_key,
    policy_entry,
    read_secret,
    registry_entry,
)
from flowguard.audit.log import AppendResult, AuditLog, init_audit
from flowguard.audit.note import KeyFormatError, Signer
from flowguard.errors import Diagnostic
from flowguard.model import Decision, Policy
from flowguard.store._db import Database, connect
from flowguard.store.events import RegistryChange


class AuditTrail:
    """Appends decisions, registry changes and policy activations to one log."""

    def __init__(self, log: AuditLog, pseudonym: Pseudonymizer) -> None:
        self.log = log
        self.pseudonym = pseudonym

    def record_policy(self, policy: Policy) -> AppendResult:
        """A policy activation: its text is kept, addressed by digest, for later replay."""
        self.log.store_policy(policy)
        return self.log.append([policy_entry(policy, datetime.now(UTC))])

    def record_decisions(self, decisions: Sequence[Decision], policy: Policy,
                         registry_revision: int | None) -> AppendResult:
        return self.log.append(self.decision_entries(decisions, policy, registry_revision))

    def decision_entries(self, decisions: Sequence[Decision], policy: Policy,
                         registry_revision: int | None) -> list[dict[str, Any]]:
        """The entries of `decisions`, each with the registry revision it was decided at
        (`registry_revision` for a decision that names none: an evaluation error)."""
        actors = policy.actors
        return [
            decision_entry(d, self.pseudonym,
                           registry_revision=registry_revision if d.registry_revision is None
                           else d.registry_revision,
                           organization=actors[d.flow.recipient].organization
                           if d.flow.recipient in actors else "")
            for d in decisions]

    def record_registry_changes(self, changes: Sequence[RegistryChange]) -> AppendResult:
        return self.log.append([
            registry_entry(seq=c.seq, kind=c.kind, record=c.record, subject=c.subject,
                           by=c.by, recorded_at=c.recorded_at, pseudonym=self.pseudonym)
            for c in changes])

    def checkpoint(self) -> str:
        return self.log.checkpoint()

    def close(self) -> None:
        self.log.close()


def load_signer(path: str | Path) -> Signer:
    """The log's note signing key from its file (mode 0600, as `keys generate` writes)."""
    from flowguard.audit.entries import KeyFileError

    text = read_secret(Path(path), "log signing key").strip()
    try:
        return Signer(text)
    except KeyFormatError:
        raise KeyFileError([Diagnostic("not a note signing key (PRIVATE+KEY+name+id+key)",
                                       str(path), code="key")]) from None


def open_audit_log(url: str, *, log_key: str | Path | None = None,
                   checkpoint_every: int = 1000,
                   checkpoint_seconds: float = 60.0, create: bool = True) -> AuditLog:
    """The audit log at `url` (created or migrated first when `create`)."""
    db: Database = connect(url)
    try:
        if create:
            init_audit(db)
        signer = load_signer(log_key) if log_key is not None else None
        return AuditLog(db, signer=signer, checkpoint_every=checkpoint_every,
                        checkpoint_seconds=checkpoint_seconds)
    except Exception:
        db.close()
        raise


def open_audit(url: str, *, pseudonym_key: str | Path, log_key: str | Path | None = None,
               checkpoint_every: int = 1000, checkpoint_seconds: float = 60.0) -> AuditTrail:
    """An audit trail to write to: the log at `url` and the key files it needs."""
    pseudonym = load_pseudonym_key(pseudonym_key)
    log = open_audit_log(url, log_key=log_key, checkpoint_every=checkpoint_every,
                         checkpoint_seconds=checkpoint_seconds)
    return AuditTrail(log, pseudonym)
