"""The shipped examples load cleanly, lint cleanly and their test cases pass; together their
cases produce every reason code the engine can give for a flow."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowguard.lint import lint
from flowguard.model import ReasonCode
from flowguard.testing import load_suite

from .conftest import EXAMPLES

SUITES = sorted(EXAMPLES.glob("*/tests.yaml"))


def test_the_examples_ship() -> None:
    assert {p.parent.name for p in SUITES} == {"aalborg-aktiv", "youth-services",
                                                "senior-home-care"}


@pytest.mark.parametrize("suite", SUITES, ids=lambda p: p.parent.name)
def test_example_cases_pass(suite: Path) -> None:
    result = load_suite(suite).run()
    assert result.failed == 0, [(r.case.name, r.problems) for r in result.results
                                if not r.passed]
    assert result.passed >= 20


@pytest.mark.parametrize("suite", SUITES, ids=lambda p: p.parent.name)
def test_example_policy_lints_without_errors_or_warnings(suite: Path) -> None:
    assert lint(suite.parent) == []


@pytest.mark.parametrize("suite", SUITES, ids=lambda p: p.parent.name)
def test_example_registry_lint_flags_exactly_the_consents_its_cases_are_denied_on(
        suite: Path) -> None:
    """The example registries hold consents given without authority or without being
    explicit on purpose (their cases show the denials): `lint -r` warns of exactly those,
    one reading of SPEC §5 with the engine, and of nothing else."""
    statuses = {"GRANTOR_NOT_AUTHORIZED": "grantor-not-authorized",
                "CONSENT_NOT_EXPLICIT": "not-explicit"}
    warned = {(d.message.split("`")[1], d.code)
              for d in lint(suite.parent, suite.parent / "consents.yaml")}
    denied = {(reason.consent, statuses[reason.code.value])
              for r in load_suite(suite).run().results for c in r.decision.categories
              for reason in c.reasons
              if reason.consent is not None and reason.code.value in statuses}
    assert len(denied) >= 2  # each example shows at least two such denials
    assert warned == denied


@pytest.mark.parametrize("suite", SUITES, ids=lambda p: p.parent.name)
def test_example_cases_produce_every_reason_code(suite: Path) -> None:
    produced = {r.decision.reason for r in load_suite(suite).run().results}
    expected = set(ReasonCode) - {ReasonCode.EVALUATION_ERROR}
    assert expected <= produced, sorted(expected - produced)
