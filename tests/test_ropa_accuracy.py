"""The record of processing says what the policy says (issue 16 item 4): aggregates are not
personal data, processing inside the controller is not a disclosure, categories are named as
the rules write them, and minors are mentioned only where the service admits them."""

from __future__ import annotations

import pytest

from flowguard import load_policy
from flowguard.analysis import ropa
from flowguard.reports import ropa_html, ropa_markdown

from .conftest import EXAMPLES

HOME_CARE = EXAMPLES / "senior-home-care"


@pytest.fixture(scope="module")
def record():  # type: ignore[no-untyped-def]
    return ropa(load_policy(HOME_CARE))


def test_aggregates_are_not_listed_as_personal_data(record) -> None:  # type: ignore[no-untyped-def]
    evaluation = next(a for a in record.activities if a.purpose == "service-evaluation")
    assert evaluation.categories == ()
    assert evaluation.other_data == ("statistics",)
    assert all("statistics" not in c for a in record.activities for c in a.categories)
    text = ropa_markdown(record)
    assert "Categories of personal data: none" in text
    assert "Other data, not personal data (aggregates): `statistics`" in text
    assert "| `statistics` | Samlede tal, hvor ingen kan genkendes |  | no (aggregate) |" in text


@pytest.mark.parametrize("example", ["senior-home-care", "aalborg-aktiv", "youth-services"])
def test_the_controller_is_never_a_recipient_of_its_own_processing(example: str) -> None:
    policy = load_policy(EXAMPLES / example)
    assert policy.service is not None and policy.service.controller
    record = ropa(policy)
    for activity in record.activities:
        assert policy.service.controller not in {r.organization for r in activity.recipients}
    assert any(a.within_controller for a in record.activities)


def test_categories_are_named_as_the_rules_write_them(record) -> None:  # type: ignore[no-untyped-def]
    visiting = next(a for a in record.activities if a.purpose == "visiting-friend")
    assert visiting.categories == ("identity.contact", "identity.name", "social.interests")
    cleaning = next(a for a in record.activities if a.purpose == "cleaning")
    assert cleaning.categories == ("home.keybox-code", "identity.address", "identity.name")
    # a parent a rule names stays whole
    care = next(a for a in record.activities if a.purpose == "home-care")
    assert "identity" in care.categories and "health" in care.categories


def test_minors_are_mentioned_only_where_the_service_admits_them(record) -> None:  # type: ignore[no-untyped-def]
    seniors = " ".join(record.subjects)
    assert "Minors" not in seniors and "parental" not in seniors
    assert "aged 65 or older" in seniors
    assert "Minors" not in ropa_html(record)
    aalborg = " ".join(ropa(load_policy(EXAMPLES / "aalborg-aktiv")).subjects)
    assert "Minors (under 18) may take part" in aalborg


def test_selectors_are_echoed_as_the_rules_write_them() -> None:
    import json

    from flowguard.analysis import Reach, what_can_receive
    from flowguard.design import PolicyIndex
    from flowguard.reports import reach_json

    policy = load_policy(HOME_CARE)
    # nordby-kommune is the only public organisation: the rule says `organization`, not sector
    answer = json.loads(reach_json(what_can_receive(Reach(PolicyIndex(policy)), "cleaner")))
    senders = [s for row in answer["rows"] for s in row["senders"]]
    assert {"organization": "nordby-kommune"} in senders
    assert {"sector": "public"} not in senders
