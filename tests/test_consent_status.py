"""A consent's status is its lawful status (issue 12, item 3): derived by the engine's own
reading of SPEC §5, shown by `consent show/list`, warned of (and with --strict refused) by
`grant` and `import`, and reported by `lint -r`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from flowguard._cli import cli
from flowguard.consents import STATUSES, usable
from flowguard.engine import Engine
from flowguard.lint import lint
from flowguard.model import Consent, ReasonCode
from flowguard.policy import load_policy
from flowguard.registry import InMemoryRegistry, load_registry

from .conftest import EXAMPLES, SMALL_POLICY

AALBORG = EXAMPLES / "aalborg-aktiv"
NOW = datetime(2026, 3, 1, 10, tzinfo=UTC)

# a guardian whose guardianship covers health only records a consent for the name
REGISTRY = {
    "subjects": {"citizen-1": {"birth_date": "1950-01-01"}},
    "guardianships": [{"id": "g-1", "guardian": "person-anne", "subject": "citizen-1",
                       "kind": "adult", "scope": ["health"], "valid_from": "2025-01-01"}],
    "consents": [],
}
BY_GUARDIAN_NAME = {
    "id": "k-name", "subject": "citizen-1", "given_by": "person-anne",
    "given_at": "2026-01-01T09:00:00Z", "recipients": [{"organization": "cafe"}],
    "data": ["identity.name"], "purposes": ["job-matching"], "explicit": True}
BY_STRANGER = {**BY_GUARDIAN_NAME, "id": "k-stranger", "given_by": "person-nobody"}
NOT_EXPLICIT = {**BY_GUARDIAN_NAME, "id": "k-health", "given_by": "citizen-1",
                "data": ["health.medication"], "explicit": False}
OWN = {**BY_GUARDIAN_NAME, "id": "k-own", "given_by": "citizen-1",
       "expires_at": "2027-01-01"}


def _yaml(value: Any) -> str:
    return yaml.safe_dump(json.loads(json.dumps(value)))  # no aliases


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(SMALL_POLICY)
    return path


def _engine(policy_file: Path, *consents: dict[str, Any]) -> Engine:
    policy = load_policy(policy_file)
    data = {**REGISTRY, "consents": list(consents)}
    from flowguard.registry import validate_records

    subjects, guardianships, records = validate_records(data, source="<test>", policy=policy)
    return Engine(policy, InMemoryRegistry(subjects, guardianships, records))


def _status(engine: Engine, record: dict[str, Any], at: datetime = NOW) -> tuple[str, str]:
    status = engine.consent_status(record["id"], at)
    return status.status, status.reason


def test_a_consent_its_guardian_had_no_authority_to_give_is_not_active(
        policy_file: Path) -> None:
    engine = _engine(policy_file, BY_GUARDIAN_NAME, BY_STRANGER, NOT_EXPLICIT, OWN)
    status, reason = _status(engine, BY_GUARDIAN_NAME)
    assert status == "grantor-not-authorized"
    assert "no guardianship covering `identity.name`" in reason
    status, reason = _status(engine, BY_STRANGER)
    assert status == "grantor-not-authorized"
    assert "neither the subject nor a guardian" in reason and "person-nobody" not in reason
    assert _status(engine, NOT_EXPLICIT)[0] == "not-explicit"
    assert _status(engine, OWN)[0] == "active"
    assert _status(engine, OWN, datetime(2025, 12, 1, tzinfo=UTC))[0] == "not-yet-valid"
    assert _status(engine, OWN, datetime(2027, 1, 1, tzinfo=UTC))[0] == "expired"
    # and the engine's decision agrees: the name is denied for the reason the status gives
    flow = {"sender": "consultant", "recipient": "cafe-manager", "subject": "citizen-1",
            "data": ["identity.name"], "purpose": "job-matching", "subprocess": "co-delivery",
            "at": NOW}
    only_guardian = _engine(policy_file, BY_GUARDIAN_NAME)
    assert only_guardian.check(flow).reason is ReasonCode.GRANTOR_NOT_AUTHORIZED


def test_authority_ended_and_withdrawn(policy_file: Path) -> None:
    ended = {**BY_GUARDIAN_NAME, "id": "k-med", "data": ["health.medication"]}
    engine = _engine(policy_file, ended)
    assert _status(engine, ended)[0] == "active"
    policy = load_policy(policy_file)
    registry = json.loads(json.dumps(REGISTRY))
    registry["guardianships"][0]["valid_until"] = "2026-02-01"
    registry["consents"] = [ended, {**OWN, "withdrawn_at": "2026-02-01"}]
    from flowguard.registry import validate_records

    engine = Engine(policy, InMemoryRegistry(*validate_records(registry, source="<t>",
                                                               policy=policy)))
    assert _status(engine, ended)[0] == "grantor-authority-ended"
    status = engine.consent_status("k-own", NOW)
    assert status.status == "withdrawn" and "2026-02-01" in status.reason


def test_every_status_is_known_and_unused_consents_are_found(policy_file: Path) -> None:
    assert set(STATUSES) == {"active", "not-yet-valid", "expired", "withdrawn",
                             "grantor-not-authorized", "grantor-authority-ended",
                             "not-explicit"}
    engine = _engine(policy_file, OWN)
    assert usable(engine, Consent.model_validate(OWN))
    # the volunteer's shelter is permitted the name only on another purpose
    evaluation = Consent.model_validate({**OWN, "recipients": [{"organization": "kommune"}],
                                         "purposes": ["evaluation"]})
    assert not usable(engine, evaluation)


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def db(tmp_path: Path, policy_file: Path) -> str:
    url = f"sqlite:///{tmp_path}/registry.db"
    registry = tmp_path / "registry.yaml"
    registry.write_text(_yaml(REGISTRY))
    result = run("registry", "import", str(registry), "-r", url, "-p", str(policy_file))
    assert result.exit_code == 0, result.output
    return url


def _grant(db: str, policy_file: Path, record: dict[str, Any], tmp_path: Path,
           *extra: str) -> Result:
    file = tmp_path / f"{record['id']}.yaml"
    file.write_text(_yaml(record))
    return run("consent", "grant", "--file", str(file), "-r", db, "-p", str(policy_file),
               *extra)


@pytest.mark.parametrize(("record", "status"), [(BY_GUARDIAN_NAME, "grantor-not-authorized"),
                                                (BY_STRANGER, "grantor-not-authorized"),
                                                (NOT_EXPLICIT, "not-explicit")])
def test_grant_warns_and_strict_refuses(db: str, policy_file: Path, tmp_path: Path,
                                        record: dict[str, Any], status: str) -> None:
    refused = _grant(db, policy_file, record, tmp_path, "--strict")
    assert refused.exit_code == 2, refused.output
    assert f"consent `{record['id']}` would be {status}" in refused.output
    assert "Traceback" not in refused.output
    shown = run("consent", "show", record["id"], "-r", db, "-p", str(policy_file))
    assert shown.exit_code == 2 and "no consent" in shown.output  # nothing was written
    granted = _grant(db, policy_file, record, tmp_path)
    assert granted.exit_code == 0, granted.output
    assert f"warning: consent `{record['id']}` would be {status}" in granted.output
    shown = run("consent", "show", record["id"], "-r", db, "-p", str(policy_file), "--json")
    payload = json.loads(shown.output)
    assert payload["status"] == status and payload["reason"]
    listed = run("consent", "list", "-r", db, "-p", str(policy_file), "--status", status,
                 "--json")
    assert [k["id"] for k in json.loads(listed.output)] == [record["id"]]
    table = run("consent", "list", "-r", db, "-p", str(policy_file))
    assert status in table.output and "active" not in table.output


def test_a_valid_grant_says_nothing_and_is_active(db: str, policy_file: Path,
                                                  tmp_path: Path) -> None:
    granted = _grant(db, policy_file, OWN, tmp_path, "--strict")
    assert granted.exit_code == 0 and "warning" not in granted.output
    shown = run("consent", "show", "k-own", "-r", db, "-p", str(policy_file))
    assert "(version 1): active" in shown.output
    subject = yaml.safe_load(run("subject", "show", "citizen-1", "-r", db, "-p",
                                 str(policy_file)).output)
    assert subject["consents"][0]["status"] == "active"


def test_status_needs_the_policy(db: str, policy_file: Path, tmp_path: Path) -> None:
    assert _grant(db, policy_file, OWN, tmp_path).exit_code == 0
    for args in (["consent", "show", "k-own"], ["consent", "list"],
                 ["subject", "show", "citizen-1"]):
        result = run(*args, "-r", db)
        assert result.exit_code == 2, result.output
        assert "lawful status under the policy" in result.output
        assert "--policy" in result.output


def test_import_warns_strict_refuses_all_or_nothing(tmp_path: Path, policy_file: Path) -> None:
    url = f"sqlite:///{tmp_path}/fresh.db"
    file = tmp_path / "all.yaml"
    file.write_text(_yaml({**REGISTRY, "consents": [OWN, BY_GUARDIAN_NAME]}))
    refused = run("registry", "import", str(file), "-r", url, "-p", str(policy_file),
                  "--strict")
    assert refused.exit_code == 2
    assert "consent `k-name` would be grantor-not-authorized" in refused.output
    assert "k-own" not in refused.output
    empty = run("registry", "export", "-r", url)
    assert yaml.safe_load(empty.output)["consents"] == []
    imported = run("registry", "import", str(file), "-r", url, "-p", str(policy_file))
    assert imported.exit_code == 0
    assert "warning: consent `k-name` would be grantor-not-authorized" in imported.output


def test_lint_reports_the_same_on_a_file_and_a_database(db: str, policy_file: Path,
                                                       tmp_path: Path) -> None:
    evaluation = {**OWN, "id": "k-unused", "recipients": [{"organization": "kommune"}],
                  "purposes": ["evaluation"]}
    for record in (BY_GUARDIAN_NAME, BY_STRANGER, NOT_EXPLICIT, OWN, evaluation):
        assert _grant(db, policy_file, record, tmp_path).exit_code == 0
    file = tmp_path / "registry-file.yaml"
    file.write_text(_yaml({**REGISTRY, "consents": [
        BY_GUARDIAN_NAME, BY_STRANGER, NOT_EXPLICIT, OWN, evaluation]}))
    expected = {("k-name", "grantor-not-authorized"), ("k-stranger", "grantor-not-authorized"),
                ("k-health", "not-explicit"), ("k-unused", "unused-consent")}
    for location in (db, str(file)):
        found = {(d.message.split("`")[1], d.code) for d in lint(policy_file, location)}
        assert found == expected, location
    result = run("lint", str(policy_file), "-r", db)
    assert "unused-consent" not in result.output  # the code is in --json; words here
    assert "can never be used" in result.output


# --------------------------------------------------------------------------- one reading

_EXAMPLE_POLICY = load_policy(AALBORG)
_EXAMPLE = load_registry(AALBORG / "consents.yaml", _EXAMPLE_POLICY)
_CONSENTS = sorted(_EXAMPLE.all_consents(), key=lambda k: k.id)
_ENGINE = Engine(_EXAMPLE_POLICY, _EXAMPLE)
_CONSENT_CODES = {ReasonCode.CONSENT_WITHDRAWN: "withdrawn",
                  ReasonCode.CONSENT_EXPIRED: "expired",
                  ReasonCode.CONSENT_NOT_YET_VALID: "not-yet-valid",
                  ReasonCode.CONSENT_NOT_EXPLICIT: "not-explicit",
                  ReasonCode.GRANTOR_NOT_AUTHORIZED: "grantor-not-authorized",
                  ReasonCode.GRANTOR_AUTHORITY_ENDED: "grantor-authority-ended"}


_SENDERS = sorted({a for rule in _EXAMPLE_POLICY.rules
                   if rule.effect == "permit" and rule.basis == "consent"
                   for a in (_ENGINE.actors_matching(rule.sender) or _EXAMPLE_POLICY.actors)})


def _scope(k: Consent) -> tuple[list[str], list[str], list[str]]:
    actors = sorted({a for s in k.recipients for a in _ENGINE.actors_matching(s) or ()})
    leaves = sorted({c for d in k.data for c in _EXAMPLE_POLICY.category_tree.leaves(d)})
    purposes = sorted({p for q in k.purposes
                       for p in _EXAMPLE_POLICY.purpose_tree.descendants_or_self(q)})
    return actors, leaves, purposes


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(consent=st.sampled_from(_CONSENTS), data=st.data(),
       at=st.datetimes(min_value=datetime(2025, 6, 1), max_value=datetime(2027, 6, 1),
                       timezones=st.just(UTC)))
def test_status_and_decision_are_one_reading_of_spec_5(consent: Consent, data: st.DataObject,
                                                        at: datetime) -> None:
    """For a flow in the consent's scope that reaches its consent step: the engine
    permits on this consent only where the status names no problem for the leaf; denies
    citing it exactly with the first problem the status names for the leaf; and where the
    status names none, permits."""
    actors, leaves, purposes = _scope(consent)
    assume(actors and leaves and purposes)
    recipient = data.draw(st.sampled_from(actors))
    leaf = data.draw(st.sampled_from(leaves))
    purpose = data.draw(st.sampled_from(purposes))
    subprocess = data.draw(st.sampled_from(sorted(consent.subprocesses
                                                  or _EXAMPLE_POLICY.subprocesses)))
    sender = data.draw(st.sampled_from(_SENDERS))
    decision = _ENGINE.check({"sender": sender, "recipient": recipient,
                              "subject": consent.subject, "data": [leaf],
                              "purpose": purpose, "subprocess": subprocess, "at": at})
    category = decision.categories[0]
    status = _ENGINE.consent_status(consent, at)
    for_leaf = [p.status for p in status.problems if not p.categories or leaf in p.categories]
    if category.decision == "permit":
        if category.basis is not None and category.basis.consent == consent.id:
            assert for_leaf == [], (status, category)
        return
    cited = [r for r in category.reasons if r.consent == consent.id]
    if cited:
        assert for_leaf and for_leaf[0] == _CONSENT_CODES[cited[0].code], (status, category)
    elif any(r.code in _CONSENT_CODES or r.code is ReasonCode.CONSENT_MISSING
             for r in category.reasons):
        pytest.fail(f"consent {consent.id} in scope but not considered: {category}")
    else:
        assume(False)  # decided before the consent step (forbidden, no permit rule)


def test_the_statuses_at_a_time_step_through_a_consents_life(policy_file: Path) -> None:
    engine = _engine(policy_file, OWN)
    given = datetime(2026, 1, 1, 9, tzinfo=UTC)
    assert _status(engine, OWN, given - timedelta(microseconds=1))[0] == "not-yet-valid"
    assert _status(engine, OWN, given)[0] == "active"
    assert _status(engine, OWN, datetime(2026, 12, 31, 23, 59, tzinfo=UTC))[0] == "active"
    assert _status(engine, OWN, datetime(2027, 1, 1, tzinfo=UTC))[0] == "expired"
