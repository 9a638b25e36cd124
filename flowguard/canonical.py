"""Canonical JSON (RFC 8785) and the content digests built on it."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import orjson
import rfc8785

if TYPE_CHECKING:
    from flowguard.model import Policy


def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS) bytes of a JSON-compatible value.

    For strings, integers within +-(2**53 - 1), booleans, null, lists and objects with
    ASCII keys (a policy, an audit entry), orjson's sorted-key output is exactly JCS and
    some forty times faster than the `rfc8785` package, which writes everything else
    (floats, big integers, other keys); tests compare the two."""
    if _sorted_keys_suffice(value):
        try:
            return bytes(orjson.dumps(value, option=orjson.OPT_SORT_KEYS))
        except orjson.JSONEncodeError:  # a lone surrogate: let rfc8785 say what is wrong
            pass
    return rfc8785.dumps(value)


_SAFE_INT = 2**53 - 1


def _sorted_keys_suffice(value: Any) -> bool:
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return True
    if kind is dict:
        return all(type(k) is str and k.isascii() and _sorted_keys_suffice(v)
                   for k, v in value.items())
    if kind is list or kind is tuple:
        return all(_sorted_keys_suffice(v) for v in value)
    if kind is int:
        return bool(-_SAFE_INT <= value <= _SAFE_INT)
    return False


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def policy_canonical_form(policy: Policy) -> dict[str, Any]:
    """The policy as plain JSON data, independent of file layout and rule order."""
    form: dict[str, Any] = policy.model_dump(mode="json", exclude_none=True)
    form["rules"] = sorted(form["rules"], key=lambda rule: rule["id"])
    return form


def policy_digest(policy: Policy) -> str:
    return sha256_digest(canonical_json(policy_canonical_form(policy)))
