"""Registry events and the fold that derives the current state from them.

Nothing in a registry store is updated or deleted: granting, withdrawing, expiring and
correcting a consent, recording a subject, adding and ending a guardianship are each an
`Event`. The state at any revision is `replay` of the events up to it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, TypeVar

from flowguard.model import (
    STORED,
    Consent,
    Evidence,
    Guardianship,
    Instant,
    Model,
    Subject,
)
from flowguard.registry import SubjectRecords

EventKind = Literal[
    "subject.recorded",
    "consent.granted",
    "consent.corrected",
    "consent.withdrawn",
    "consent.expired",
    "guardianship.added",
    "guardianship.ended",
    "login.linked",
    "login.unlinked",
]
EVENT_KINDS: tuple[EventKind, ...] = EventKind.__args__  # type: ignore[attr-defined]


class Event(Model):
    """One change to the registry, as recorded."""

    seq: int
    recorded_at: Instant
    kind: EventKind
    subject: str
    record: str | None = None
    by: str
    evidence: Evidence | None = None
    body: dict[str, Any]


class RegistryChange(NamedTuple):
    """What the audit trail records of an event: never its body."""

    seq: int
    kind: str
    subject: str
    record: str | None
    by: str
    recorded_at: datetime


def encode(value: Any) -> str:
    """The stored JSON text of an event body or evidence."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_body(record: Subject | Consent | Guardianship) -> dict[str, Any]:
    body: dict[str, Any] = record.model_dump(mode="json", exclude_none=True)
    return body


def micros(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000)


def from_micros(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, UTC)


@dataclass
class _ConsentState:
    record: Consent
    version: int
    withdrawn_at: datetime | None = None
    expires_at: datetime | None = None

    def current(self) -> Consent:
        withdrawn = _earliest(self.record.withdrawn_at, self.withdrawn_at)
        expires = _earliest(self.record.expires_at, self.expires_at)
        if withdrawn == self.record.withdrawn_at and expires == self.record.expires_at:
            return self.record
        return self.record.model_copy(update={"withdrawn_at": withdrawn, "expires_at": expires})


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


@dataclass
class SubjectState:
    """One subject's records folded from its events."""

    subject: Subject | None = None
    consents: dict[str, _ConsentState] = field(default_factory=dict)
    guardianships: dict[str, Guardianship] = field(default_factory=dict)

    def apply(self, kind: str, record: str | None, body: str | dict[str, Any]) -> None:
        """Apply one event; `body` is its stored JSON text or that text parsed."""
        if kind == "subject.recorded":
            self.subject = _parse(Subject, body)
        elif kind == "consent.granted":
            assert record is not None
            self.consents[record] = _ConsentState(_parse(Consent, body), 1)
        elif kind == "consent.corrected":
            assert record is not None
            old = self.consents[record]
            self.consents[record] = _ConsentState(_parse(Consent, body), old.version + 1,
                                                  old.withdrawn_at, old.expires_at)
        elif kind == "consent.withdrawn":
            assert record is not None
            state = self.consents[record]
            state.withdrawn_at = _earliest(state.withdrawn_at, _instant(body, "withdrawn_at"))
        elif kind == "consent.expired":
            assert record is not None
            state = self.consents[record]
            state.expires_at = _earliest(state.expires_at, _instant(body, "expires_at"))
        elif kind == "guardianship.added":
            assert record is not None
            self.guardianships[record] = _parse(Guardianship, body)
        elif kind == "guardianship.ended":
            assert record is not None
            g = self.guardianships[record]
            until = _earliest(g.valid_until, _instant(body, "valid_until"))
            self.guardianships[record] = g.model_copy(update={"valid_until": until})
        elif kind in ("login.linked", "login.unlinked"):
            pass  # a login linked to or unlinked from this person (flowguard.store.logins)
        else:
            raise ValueError(f"unknown registry event kind `{kind}`")

    def consent(self, consent_id: str) -> Consent | None:
        state = self.consents.get(consent_id)
        return None if state is None else state.current()

    def version_of(self, consent_id: str) -> int:
        return self.consents[consent_id].version

    def records(self) -> SubjectRecords:
        return SubjectRecords(self.subject,
                              tuple(s.current() for s in self.consents.values()),
                              tuple(self.guardianships.values()))


_R = TypeVar("_R", Subject, Consent, Guardianship)


def _parse(model: type[_R], body: str | dict[str, Any]) -> _R:
    if isinstance(body, str):
        return model.model_validate_json(body, context=STORED)
    return model.model_validate(body, context=STORED)


def _instant(body: str | dict[str, Any], key: str) -> datetime:
    data = json.loads(body) if isinstance(body, str) else body
    return datetime.fromisoformat(data[key]).astimezone(UTC)


def replay(events: Iterable[tuple[str, str, str | None, str | dict[str, Any]]]
           ) -> dict[str, SubjectState]:
    """Fold `(kind, subject, record, body)` tuples, in order, into each subject's state
    (`body` as stored JSON text or parsed)."""
    states: dict[str, SubjectState] = {}
    for kind, subject, record, body in events:
        state = states.get(subject)
        if state is None:
            state = states[subject] = SubjectState()
        state.apply(kind, record, body)
    return states
