"""The audit trail the engine and the registry write to: an `AuditLog`, the pseudonym key
that hides subjects, and the log's signing key."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
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
from flowguard.audit.log import (
    AppendResult,
    AuditError,
    AuditLog,
    has_state,
    init_audit,
    is_current,
)
from flowguard.audit.note import KeyFormatError, Signer
from flowguard.audit.unknown import hide_unknown
from flowguard.errors import Diagnostic
from flowguard.model import Decision, Policy
from flowguard.store._db import Database, connect
from flowguard.store.events import RegistryChange

PSEUDONYM_SETTING = "pseudonym-key"


class AuditTrail:
    """Appends decisions, registry changes and policy activations to one log."""

    def __init__(self, log: AuditLog, pseudonym: Pseudonymizer) -> None:
        self.log = log
        self.pseudonym = pseudonym
        self.notices: list[str] = []
        """What opening the trail did that its user should be told (a key recorded)."""
        self.sign_error: str | None = None
        """Why `close` could not sign a checkpoint over the entries appended, if it could
        not."""

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
        entries = [
            decision_entry(d, self.pseudonym,
                           registry_revision=registry_revision if d.registry_revision is None
                           else d.registry_revision,
                           organization=actors[d.flow.recipient].organization
                           if d.flow.recipient in actors else "")
            for d in decisions]
        # an id the policy lacks is kept as its keyed hash, never raw (issue 13)
        return [e if e["outcome"] == "permit" else hide_unknown(e, policy, self.pseudonym)
                for e in entries]

    def record_registry_changes(self, changes: Sequence[RegistryChange]) -> AppendResult:
        return self.log.append([
            registry_entry(seq=c.seq, kind=c.kind, record=c.record, subject=c.subject,
                           by=c.by, recorded_at=c.recorded_at, pseudonym=self.pseudonym)
            for c in changes])

    def checkpoint(self) -> str:
        return self.log.checkpoint()

    def close(self) -> None:
        """Sign a checkpoint covering every entry this trail appended (when it has the
        log's key), then close. A failure to sign is logged and kept in `sign_error` (the
        entries stand; a later signer covers them); the log is closed in any case."""
        try:
            self.log.sign_appended()
        except Exception as exc:
            text = str(exc).strip()
            self.sign_error = text.splitlines()[0] if text else type(exc).__name__
            logging.getLogger("flowguard.audit").error(
                "no checkpoint could be signed over the entries appended (%s)",
                type(exc).__name__)
        finally:
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
    """The audit log at `url` (created or migrated first when `create`). A log key named
    other than the log's origin is refused (`AuditError` naming the key file)."""
    signer = load_signer(log_key) if log_key is not None else None
    db: Database = connect(url, create=create)
    try:
        if create and not is_current(db):  # no write lock taken when there is nothing to do
            init_audit(db)
        try:
            return AuditLog(db, signer=signer, checkpoint_every=checkpoint_every,
                            checkpoint_seconds=checkpoint_seconds)
        except AuditError as exc:
            raise AuditError([replace(d, file=str(log_key)) for d in exc.diagnostics]) \
                from None
    except Exception:
        db.close()
        raise


def open_audit(url: str, *, pseudonym_key: str | Path, log_key: str | Path | None = None,
               checkpoint_every: int = 1000, checkpoint_seconds: float = 60.0) -> AuditTrail:
    """An audit trail to write to: the log at `url` and the key files it needs. A log key
    named other than the log's origin, or a pseudonym key other than the log's, is refused
    here, before anything is written."""
    pseudonym = load_pseudonym_key(pseudonym_key)
    log = open_audit_log(url, log_key=log_key, checkpoint_every=checkpoint_every,
                         checkpoint_seconds=checkpoint_seconds)
    try:
        notice = bind_pseudonym_key(log, pseudonym, str(pseudonym_key))
    except Exception:
        log.close()
        raise
    trail = AuditTrail(log, pseudonym)
    if notice is not None:
        trail.notices.append(notice)
    return trail


def _key_error(message: str, place: str, hint: str) -> AuditError:
    return AuditError([Diagnostic(message, place, code="key", hint=hint)])


def bind_pseudonym_key(log: AuditLog, pseudonym: Pseudonymizer, place: str) -> str | None:
    """A writer's check of its pseudonym key: the log's recorded fingerprint must match;
    a log without one gets this key's (a new log silently; a log written before
    fingerprints were kept with a notice, returned). Raises `AuditError` on a mismatch."""
    if not has_state(log.db):
        return None  # a log opened without being migrated: only a reader's check applies
    fingerprint = pseudonym.fingerprint
    recorded = log.setting(PSEUDONYM_SETTING)
    notice = None
    if recorded is None:
        had_entries = log.size > 0
        recorded = log.record_setting(PSEUDONYM_SETTING, fingerprint)
        if recorded == fingerprint and had_entries:
            notice = ("this audit log kept no fingerprint of its pseudonym key (it was "
                      "written before flowguard recorded one): the key given is now recorded "
                      "as the log's, and every other key will be refused")
    if recorded != fingerprint:
        raise _mismatch(place)
    return notice


def check_pseudonym_key(log: AuditLog, pseudonym: Pseudonymizer, place: str) -> str | None:
    """A reader's check: raises `AuditError` when the key is not the log's; returns a
    warning when the log records no fingerprint to check against."""
    recorded = log.setting(PSEUDONYM_SETTING)
    if recorded is None:
        return ("this audit log records no fingerprint of its pseudonym key yet (it was "
                "written before flowguard recorded one), so the key given could not be "
                "checked; the next writer that opens the log records it")
    if recorded != pseudonym.fingerprint:
        raise _mismatch(place)
    return None


def _mismatch(place: str) -> AuditError:
    return _key_error(
        "this is not the audit log's pseudonym key: its fingerprint differs from the one "
        "the log recorded; nothing was read or written with it", place,
        "give the pseudonym key the log was written with; another key finds none of a "
        "citizen's entries, and would give the citizen a second pseudonym")
