"""Audit log entries (SPEC §9): what is logged for a decision, a registry change and a policy
activation, and their canonical bytes.

An entry names the subject only by `HMAC-SHA256(pseudonym key, subject id)`: whoever holds
the key can find a citizen's entries (right of access) but the log itself identifies no one.
Entries carry ids, codes and times, never free text that could hold an identifier.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

from flowguard.errors import Diagnostic, InputError
from flowguard.model import CategoryDecision, Decision, Policy

_orjson: Any
try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - a declared dependency
    _orjson = None

ENTRY_VERSION = 1
PSEUDONYM_PREFIX = "hmac-sha256:"
FINGERPRINT_LABEL = b"flowguard\x00audit log pseudonym key fingerprint\x00v1"
LOGIN_LABEL = b"flowguard\x00citizen login\x00v1\x00"
LOGIN_PREFIX = "login-hmac-sha256:"


class KeyFileError(InputError):
    """A key file is missing, unreadable, malformed or readable by others."""


def canonical_entry(entry: dict[str, Any]) -> bytes:
    """RFC 8785 bytes of an entry. Entries hold only strings, integers, booleans, null,
    lists and objects with ASCII keys, for which orjson's sorted-key output (and, without
    orjson, sorted-key compact `json.dumps`) is exactly JCS: tests compare both with the
    `rfc8785` package. A float, an integer beyond 64 bits or a lone surrogate is refused."""
    _check_domain(entry)
    if _orjson is not None:
        try:
            return bytes(_orjson.dumps(entry, option=_orjson.OPT_SORT_KEYS))
        except _orjson.JSONEncodeError as exc:  # a lone surrogate, a non-str key
            raise ValueError(f"not an audit entry: {exc}") from None
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


_SAFE_INT = 2**53 - 1


def _check_domain(value: Any) -> None:
    """Refuse what RFC 8785 would write differently from us: floats, and integers beyond
    the IEEE-754 safe range."""
    kind = type(value)
    if kind is dict:
        for item in value.values():
            _check_domain(item)
    elif kind is list or kind is tuple:
        for item in value:
            _check_domain(item)
    elif kind is int:
        if not -_SAFE_INT <= value <= _SAFE_INT:
            raise ValueError("audit entries hold integers within +-(2**53 - 1) only")
    elif kind is float:
        raise ValueError("audit entries hold no floating-point numbers")


_LAST_TIME: list[Any] = [None, ""]


def _time(value: datetime) -> str:
    if value == _LAST_TIME[0]:  # a batch's decisions share their instant
        return str(_LAST_TIME[1])
    text = value.isoformat(timespec="microseconds").replace("+00:00", "Z")
    _LAST_TIME[:] = [value, text]
    return text


class Pseudonymizer:
    """Maps a subject id to its pseudonym in the log."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("a pseudonym key has at least 32 bytes")
        self._key = key
        self._cache: dict[str, str] = {}

    @property
    def fingerprint(self) -> str:
        """What the log records of its pseudonym key: a keyed hash of a fixed label (with a
        NUL, so no subject id has it as its pseudonym); never the key."""
        digest = hmac.new(self._key, FINGERPRINT_LABEL, hashlib.sha256).hexdigest()
        return PSEUDONYM_PREFIX + digest

    def __call__(self, subject_id: str) -> str:
        cached = self._cache.get(subject_id)
        if cached is not None:
            return cached
        digest = hmac.new(self._key, subject_id.encode("utf-8"), hashlib.sha256).hexdigest()
        if len(self._cache) >= 100_000:
            self._cache.clear()
        pseudonym = self._cache[subject_id] = PSEUDONYM_PREFIX + digest
        return pseudonym

    def login(self, value: str) -> str:
        """The keyed hash a citizen's login value (a national id from an ID token) is linked
        by: domain-separated from subject pseudonyms, so neither can stand for the other."""
        digest = hmac.new(self._key, LOGIN_LABEL + value.encode("utf-8"),
                          hashlib.sha256).hexdigest()
        return LOGIN_PREFIX + digest


def generate_pseudonym_key(path: Path) -> None:
    """Write a new random 32-byte pseudonym key (hex) readable by its owner only."""
    _write_secret(path, secrets.token_hex(32) + "\n")


def load_pseudonym_key(path: str | Path) -> Pseudonymizer:
    text = read_secret(Path(path), "pseudonym key")
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise KeyFileError([Diagnostic("a pseudonym key file holds 64 hex digits", str(path),
                                       code="key")]) from None
    if len(key) < 32:
        raise KeyFileError([Diagnostic("a pseudonym key file holds 64 hex digits", str(path),
                                       code="key")])
    return Pseudonymizer(key)


def _write_secret(path: Path, text: str) -> None:
    if path.exists():
        raise KeyFileError([Diagnostic("the key file exists already; refusing to overwrite "
                                       "it", str(path), code="exists")])
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_secret(path: Path, text: str) -> None:
    """Create a file with mode 0600 holding `text`; never overwrites."""
    _write_secret(path, text)


def read_secret(path: Path, what: str) -> str:
    """A secret file's text; refuses a file that group or others may read."""
    try:
        mode = path.stat().st_mode
        if mode & 0o077:
            raise KeyFileError([Diagnostic(
                f"the {what} file may be read by others (mode {oct(mode & 0o777)})", str(path),
                code="key", hint=f"chmod 600 {path}")])
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyFileError([Diagnostic(f"cannot read the {what} file: {exc.strerror}",
                                       str(path), code="key")]) from None


def decision_entry(decision: Decision, pseudonym: Pseudonymizer, *, organization: str,
                   registry_revision: int | None) -> dict[str, Any]:
    """What the log keeps of a decision: enough to show a citizen who received what and on
    which basis, and to re-evaluate it later against the recorded policy and registry."""
    flow = decision.flow
    categories = []
    rules: set[str] = set()
    consents: set[str] = set()
    for c in decision.categories:
        item, item_rules, item_consents = _category_part(c)
        categories.append(item)
        rules.update(item_rules)
        consents.update(item_consents)
    entry: dict[str, Any] = {
        "v": ENTRY_VERSION, "kind": "decision", "time": _time(decision.evaluated_at),
        "decision_id": decision.decision_id, "outcome": decision.decision,
        "reason": decision.reason, "sender": flow.sender, "recipient": flow.recipient,
        "organization": organization, "subject": pseudonym(flow.subject),
        "data": list(flow.data), "purpose": flow.purpose, "subprocess": flow.subprocess,
        "at": _time(flow.at) if flow.at is not None else None,
        "categories": categories, "rules": sorted(rules), "consents": sorted(consents),
        "policy_digest": decision.policy_digest, "registry_revision": registry_revision,
    }
    return entry


def _category_part(c: CategoryDecision) -> tuple[dict[str, Any], tuple[str, ...],
                                                 tuple[str, ...]]:
    """The entry's view of one category decision, with its rule and consent ids."""
    reasons = c.reasons
    # a reason code is a str enum: both encoders write its value
    item: dict[str, Any] = {"category": c.category, "decision": c.decision}
    if reasons:
        item["reason"] = reasons[0].code
    basis = c.basis
    if basis is not None:
        item["rule"] = basis.rule
        item["basis"] = basis.basis
        for key, value in (("consent", basis.consent), ("law", basis.law),
                           ("art9", basis.art9)):
            if value is not None:
                item[key] = value
    rules = tuple(r.rule for r in reasons if r.rule)
    consents = tuple(r.consent for r in reasons if r.consent)
    return item, rules, consents


def registry_entry(*, seq: int, kind: str, record: str | None, subject: str, by: str,
                   recorded_at: datetime, pseudonym: Pseudonymizer) -> dict[str, Any]:
    """A registry change: which record, by whom, when; never the record's content (it may
    name the citizen or a relative)."""
    return {"v": ENTRY_VERSION, "kind": "registry", "time": _time(recorded_at),
            "event": kind, "seq": seq, "record": record, "subject": pseudonym(subject),
            # a citizen recording their own change is named by pseudonym only
            "by": pseudonym(by) if by == subject else by}


def policy_entry(policy: Policy, at: datetime) -> dict[str, Any]:
    service = policy.service.id if policy.service is not None else None
    return {"v": ENTRY_VERSION, "kind": "policy", "time": _time(at),
            "policy_digest": policy.digest, "service": service}


def access_entry(*, token: str, organization: str, action: str, reason: str,
                 at: datetime, sender: str | None = None) -> dict[str, Any]:
    """A refused request to the HTTP service (who tried what, and why it was refused)."""
    entry: dict[str, Any] = {"v": ENTRY_VERSION, "kind": "access", "time": _time(at),
                             "token": token, "organization": organization, "action": action,
                             "outcome": "refused", "reason": reason}
    if sender is not None:
        entry["sender"] = sender
    return entry
