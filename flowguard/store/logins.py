"""Citizen logins linked to a person of the registry, without storing the login value.

A municipality links the value an OpenID Connect provider asserts about a citizen (e.g. the
CPR or HETU number in an ID token's claim) to the subject, or to a guardian's person id. Only
the value's keyed hash (:meth:`flowguard.audit.entries.Pseudonymizer.login`) is stored, as
a `login.linked` registry event: append-only, audited like every other change, and the only
place a sign-in is resolved from. A national id is never written anywhere. A link is ended
by a `login.unlinked` event (same record, same subject); the latest of the two decides, so a
login may be linked again afterwards.
"""

from __future__ import annotations

import json

from flowguard.audit.entries import LOGIN_PREFIX
from flowguard.errors import Diagnostic, RegistryError
from flowguard.model import Evidence
from flowguard.store._db import Cursor
from flowguard.store.events import Event
from flowguard.store.registry_store import RegistryStore

KIND = "login.linked"
UNLINKED = "login.unlinked"
_LATEST = ("SELECT kind, subject FROM registry_events WHERE record = ? AND kind IN "
           f"('{KIND}', '{UNLINKED}') ORDER BY seq DESC LIMIT 1")


def _error(message: str, code: str, hint: str | None = None) -> RegistryError:
    return RegistryError([Diagnostic(message, "<login>", code=code, hint=hint)])


def is_login_hash(value: str) -> bool:
    return value.startswith(LOGIN_PREFIX) and len(value) == len(LOGIN_PREFIX) + 64


def link_login(store: RegistryStore, person: str, login_hash: str, *, by: str,
               evidence: Evidence | None = None) -> Event:
    """Link a login (by its keyed hash) to `person`: a recorded subject, or a guardian named
    in a recorded guardianship. A login is linked to one person only."""
    if not is_login_hash(login_hash):
        raise _error("expected a login hash, not a login value", "type",
                     "hash the value with the pseudonym key (Pseudonymizer.login)")
    with store._transaction() as w:
        if not (w.subject_known(person) or _is_guardian(w.cursor, person)):
            raise _error("the person is neither a recorded subject nor a guardian in a "
                         "recorded guardianship", "unknown-reference",
                         "record the subject or the guardianship first")
        linked = _linked(w.cursor, login_hash)
        if linked is not None:
            raise _error("this login is already linked" + (" to this person" if linked == person
                                                          else " to another person"),
                         "duplicate")
        return w.append(KIND, person, login_hash, by, evidence, {})


def unlink_login(store: RegistryStore, login_hash: str, *, by: str,
                 evidence: Evidence | None = None) -> Event:
    """End the link of a login (by its keyed hash): from now on that login is "not linked".
    The event names the person it was linked to, so their history shows it."""
    if not is_login_hash(login_hash):
        raise _error("expected a login hash, not a login value", "type",
                     "hash the value with the pseudonym key (Pseudonymizer.login)")
    with store._transaction() as w:
        person = _linked(w.cursor, login_hash)
        if person is None:
            raise _error("this login is not linked to anyone", "unknown-reference",
                         "check the value; `flowguard subject link` links one")
        return w.append(UNLINKED, person, login_hash, by, evidence, {})


def person_of_login(store: RegistryStore, login_hash: str) -> str | None:
    """The person a login is linked to now, or None."""
    row = store.db.read_one(_LATEST, (login_hash,))
    return None if row is None or row[0] != KIND else str(row[1])


def _linked(cursor: Cursor, login_hash: str) -> str | None:
    cursor.execute(_LATEST, (login_hash,))
    row = cursor.fetchone()
    return None if row is None or row[0] != KIND else str(row[1])


def wards_of(store: RegistryStore, person: str) -> list[str]:
    """The subjects `person` is recorded as a guardian of (ended guardianships too: their
    term is judged where they are used)."""
    rows = store.db.read(_GUARDIANSHIPS)
    return sorted({str(subject) for subject, body in rows
                   if json.loads(body).get("guardian") == person})


_GUARDIANSHIPS = "SELECT subject, body FROM registry_events WHERE kind = 'guardianship.added'"


def _is_guardian(cursor: Cursor, person: str) -> bool:
    cursor.execute(_GUARDIANSHIPS)
    return any(json.loads(body).get("guardian") == person for _, body in cursor.fetchall())
