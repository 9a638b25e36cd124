"""Canonical JSON (RFC 8785) and the content digests built on it."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import rfc8785

if TYPE_CHECKING:
    from flowguard.model import Policy


def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS) bytes of a JSON-compatible value."""
    return rfc8785.dumps(value)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def policy_canonical_form(policy: Policy) -> dict[str, Any]:
    """The policy as plain JSON data, independent of file layout and rule order."""
    form: dict[str, Any] = policy.model_dump(mode="json", exclude_none=True)
    form["rules"] = sorted(form["rules"], key=lambda rule: rule["id"])
    return form


def policy_digest(policy: Policy) -> str:
    return sha256_digest(canonical_json(policy_canonical_form(policy)))
