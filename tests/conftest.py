from __future__ import annotations

import os
import textwrap
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "policies"

SMALL_POLICY = """\
version: 1
service: {id: small, controller: kommune}
jurisdictions: {DK: {majority_age: 18, consent_age: 15}}
default_jurisdiction: DK
organizations:
  kommune: {kind: municipality, sector: public}
  cafe:    {kind: employer, sector: private}
  shelter: {kind: ngo, sector: voluntary}
actors:
  case-worker: {organization: kommune, role: case-worker}
  consultant:  {organization: kommune, role: job-consultant}
  cafe-manager: {organization: cafe, role: manager}
  volunteer:   {organization: shelter, role: coordinator}
data_categories:
  identity.name: {}
  work.preferences: {}
  work.capacity: {}
  health: {special: true}
  health.diagnosis: {}
  health.medication: {}
purposes:
  job-matching: {}
  job-matching.employer-contact: {}
  evaluation: {}
subprocesses:
  co-design:   {co_produced: true, order: 2}
  co-delivery: {co_produced: true, order: 3}
rules:
  - id: b-to-employer
    effect: permit
    sender: {organization: kommune}
    recipient: {kind: employer}
    data: [identity.name, work]
    purposes: [job-matching]
    subprocesses: [co-delivery]
    basis: consent
    obligations: [delete after the placement ends, do not pass on]
  - id: a-to-employer-too
    effect: permit
    recipient: {organization: cafe}
    data: [identity.name]
    purposes: [job-matching]
    basis: consent
    obligations: [do not pass on]
  - id: health-to-case-worker
    effect: permit
    recipient: {role: case-worker}
    data: [health]
    purposes: [job-matching]
    basis: public-task
    law: "Serviceloven § 12"
    art9: social-protection
  - id: health-to-employer-by-consent
    effect: permit
    recipient: {kind: employer}
    data: [health.medication]
    purposes: [job-matching]
    basis: consent
  - id: no-health-to-voluntary
    effect: forbid
    recipient: {sector: voluntary}
    data: [health]
  - id: name-to-shelter
    effect: permit
    recipient: {organization: shelter}
    data: [identity.name, health.diagnosis]
    purposes: [job-matching]
    basis: consent
"""

SMALL_REGISTRY = """\
subjects:
  adult-1: {birth_date: 1990-02-28}
  minor-1: {birth_date: 2010-06-15}
  leap-1: {birth_date: 2008-02-29}
  nobirth-1: {}
guardianships:
  - {id: g-parent, guardian: parent-1, subject: minor-1, kind: parental, valid_from: 2010-06-15}
  - {id: g-adult, guardian: guardian-1, subject: adult-1, kind: adult, scope: [health],
     valid_from: 2020-01-01, valid_until: 2026-06-01}
consents:
  - {id: k-2, subject: adult-1, given_by: adult-1, given_at: 2026-01-01T00:00:00Z,
     recipients: [{organization: cafe}], data: [identity.name, work], purposes: [job-matching]}
  - {id: k-1, subject: adult-1, given_by: adult-1, given_at: 2026-01-01T00:00:00Z,
     recipients: [{kind: employer}], data: [identity.name], purposes: [job-matching],
     expires_at: 2026-12-31}
  - {id: k-health, subject: adult-1, given_by: guardian-1, given_at: 2026-02-01T00:00:00Z,
     recipients: [{organization: cafe}], data: [health.medication], purposes: [job-matching],
     explicit: true}
  - {id: k-minor, subject: minor-1, given_by: parent-1, given_at: 2026-01-01T00:00:00Z,
     recipients: [{organization: cafe}], data: [identity.name], purposes: [job-matching]}
  - {id: k-minor-own, subject: minor-1, given_by: minor-1, given_at: 2026-01-01T00:00:00Z,
     recipients: [{organization: cafe}], data: [work.preferences], purposes: [job-matching]}
  - {id: k-leap, subject: leap-1, given_by: leap-1, given_at: 2023-03-01T00:00:00Z,
     recipients: [{organization: cafe}], data: [identity.name], purposes: [job-matching]}
"""


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return _write


# --------------------------------------------------------------------------- stores

POSTGRES_URL = os.environ.get("FLOWGUARD_TEST_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_or_skip() -> None:
    """PostgreSQL tests may skip on a laptop without it, never under CI=true."""
    import psycopg

    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and PostgreSQL at {POSTGRES_URL} is unreachable: {exc}")
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is unreachable")


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema; the URL puts it first on the search path."""
    import psycopg

    _postgres_or_skip()
    name = f"fg_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, uninitialised database of each kind the registry runs on."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
    else:
        with postgres_schema() as url:
            yield url
