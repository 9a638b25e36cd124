"""canonical_json is RFC 8785 whichever writer produces it (orjson on the common domain,
the rfc8785 package otherwise)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowguard import load_policy
from flowguard.canonical import canonical_json, policy_canonical_form, policy_digest, sha256_digest

ROOT = Path(__file__).resolve().parent.parent
_SPECIAL = "\x00\x01\x08\t\n\x0c\r\x1f\x7f\x80\x9f\"\\/'<>&\u00e6\u2028\u2029\ufeff\U0001f600"
TEXT = st.text(max_size=10) | st.text(st.sampled_from(_SPECIAL), max_size=10)
KEY = TEXT | st.text(st.characters(min_codepoint=0, max_codepoint=127), max_size=6)
NUMBER = st.integers() | st.floats(allow_nan=False, allow_infinity=False)
JSON = st.recursive(
    st.none() | st.booleans() | NUMBER | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEY, inner, max_size=4),
    max_leaves=30)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON)
def test_canonical_json_is_rfc8785(value: Any) -> None:
    try:
        expected = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeEncodeError, ValueError):
        return  # outside JSON (a lone surrogate, an integer beyond 64 bits)
    assert canonical_json(value) == expected


def test_the_shipped_policies_digest_as_rfc8785_says() -> None:
    for folder in ("aalborg-aktiv", "youth-services"):
        policy = load_policy(ROOT / "policies" / folder)
        expected = sha256_digest(rfc8785.dumps(policy_canonical_form(policy)))
        assert policy_digest(policy) == expected
