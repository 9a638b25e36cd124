"""The third shipped example (issue 16): senior home care in Nordby. What each partner may
receive is exactly what the issue describes, whatever the registry holds."""

from __future__ import annotations

import json

import pytest

from flowguard import load_policy
from flowguard.analysis import Reach, what_can_receive
from flowguard.design import PolicyIndex, analyse_design, load_design
from flowguard.reports import reach_json

from .conftest import EXAMPLES

HOME_CARE = EXAMPLES / "senior-home-care"


@pytest.fixture(scope="module")
def policy():  # type: ignore[no-untyped-def]
    return load_policy(HOME_CARE)


def _receives(policy, actor: str) -> dict[str, set[str]]:  # type: ignore[no-untyped-def]
    """leaf -> the bases on which `actor` may receive it (`consent` or a law's basis)."""
    answer = json.loads(reach_json(what_can_receive(Reach(PolicyIndex(policy)), actor)))
    found: dict[str, set[str]] = {}
    for row in answer["rows"]:
        for leaf in row["leaves"]:
            found.setdefault(leaf, set()).add(row["how"].split(" (rule")[0])
    return found


def test_the_cleaning_company_gets_name_address_and_key_box_code_only_with_consent(
        policy) -> None:  # type: ignore[no-untyped-def]
    for actor in ("cleaning-supervisor", "cleaner"):
        received = _receives(policy, actor)
        assert set(received) == {"identity.name", "identity.address", "home.keybox-code"}
        assert all(bases == {"with consent"} for bases in received.values()), received


def test_the_visiting_friends_get_name_contact_and_interests_with_consent_never_health(
        policy) -> None:  # type: ignore[no-untyped-def]
    for actor in ("ngo-coordinator", "visiting-friend"):
        received = _receives(policy, actor)
        assert set(received) == {"identity.name", "identity.contact", "social.interests"}
        assert all(bases == {"with consent"} for bases in received.values()), received


def test_the_gp_receives_health_data_under_law(policy) -> None:  # type: ignore[no-untyped-def]
    received = _receives(policy, "gp")
    health = {leaf for leaf in received if leaf.startswith("health.")}
    assert health == {"health.diagnosis", "health.medication", "health.observations"}
    for leaf in health:
        assert received[leaf] == {"without consent on basis public-task, Sundhedsloven § 41, "
                                  "stk. 2, nr. 1, Art. 9(2) health-care"}


def test_the_evaluation_works_on_aggregates_only(policy) -> None:  # type: ignore[no-untyped-def]
    assert set(_receives(policy, "quality-consultant")) == {"statistics.visits"}
    assert not policy.is_personal("statistics.visits")
    assert policy.is_personal("identity.name")


def test_the_service_admits_seniors_only_and_speaks_danish(policy) -> None:  # type: ignore[no-untyped-def]
    assert policy.service.language == "da"
    assert policy.service.citizens.min_age == 65
    assert not policy.service.citizens.admits_under(18)


def test_the_design_passes_without_findings_but_the_gp_and_family_warnings(
        policy) -> None:  # type: ignore[no-untyped-def]
    report = analyse_design(policy, load_design(HOME_CARE / "design.yaml", policy))
    assert not report.failed
    assert {(f.check, f.flow) for f in report.findings} == {
        ("special-outside-public", "h9"), ("special-outside-public", "h10")}
    assert {item.organization for item in report.plan} == {
        "rengoering-plus", "besoegsvennerne", "paaroerende"}
