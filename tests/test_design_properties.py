"""The design's symbolic classification has the engine's semantics (issue 5): for random
policies, registries and designs, every flow that `check` permits was called lawful or
needs-consent, and a needs-consent flow is permitted exactly when the registry holds a valid
consent in its scope; categories, rules and the consent to collect agree with the decision.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from flowguard import Engine, InMemoryRegistry
from flowguard.design import CITIZEN, Design, DesignFlow, analyse_design
from flowguard.model import (
    CategoryDecision,
    Consent,
    Flow,
    Policy,
    ReasonCode,
    Selector,
    Subject,
)
from tests.strategies import SUBJECTS, World, grantor_worlds, pick, worlds
from tests.test_properties import Oracle, ancestor_or_self

SETTINGS = settings(deadline=None, max_examples=150,
                    suppress_health_check=[HealthCheck.too_slow])
CONSENT_REASONS = {
    ReasonCode.CONSENT_WITHDRAWN, ReasonCode.CONSENT_EXPIRED,
    ReasonCode.CONSENT_NOT_YET_VALID, ReasonCode.CONSENT_NOT_EXPLICIT,
    ReasonCode.GRANTOR_NOT_AUTHORIZED, ReasonCode.GRANTOR_AUTHORITY_ENDED,
    ReasonCode.CONSENT_MISSING}


def as_design(flows: tuple[Flow, ...], citizen: tuple[int, ...] = ()) -> Design:
    """The flows as a design; those at positions in `citizen` get the citizen as sender."""
    return Design.model_validate({"design": {}, "flows": [
        DesignFlow.model_validate({
            "id": f"f{i}", "from": CITIZEN if i in citizen else f.sender, "to": f.recipient,
            "data": list(f.data), "purpose": f.purpose, "subprocess": f.subprocess})
        for i, f in enumerate(flows)]})


def holds_valid_consent(oracle: Oracle, flow: Flow, category: str) -> bool:
    """SPEC §5 step 5 read literally: some consent of the subject is in scope and counts."""
    assert flow.at is not None
    t = flow.at.astimezone(UTC)
    return any(
        k.subject == flow.subject
        and any(oracle.matches(s, flow.recipient) for s in k.recipients)
        and any(ancestor_or_self(d, category) for d in k.data)
        and any(ancestor_or_self(p, flow.purpose) for p in k.purposes)
        and (k.subprocesses is None or flow.subprocess in k.subprocesses)
        and not oracle.consent_failures(k, category, t)
        for k in oracle.consents)


@st.composite
def designed_worlds(draw: st.DrawFn) -> tuple[World, tuple[int, ...]]:
    """Random worlds, and worlds where consents often count (`grantor_worlds`: one
    consent-based permit for everything, consents for everything), as designs."""
    if draw(st.booleans()):
        world = draw(worlds(unknown=True, max_flows=6, max_consents=6))
    else:
        world = draw(grantor_worlds(max_flows=6))
    citizen = tuple(i for i in range(len(world.flows)) if draw(st.integers(0, 5)) == 0)
    return world, citizen


@SETTINGS
@given(designed_worlds())
def test_check_permits_only_what_the_design_allows(case: tuple[World, tuple[int, ...]]
                                                    ) -> None:
    world, citizen = case
    report = analyse_design(world.policy, as_design(world.flows, citizen))
    engine = world.engine()
    oracle = Oracle(world.policy, world.registry)
    for i, (flow, result) in enumerate(zip(world.flows, report.flows, strict=True)):
        if i in citizen:
            assert result.outcome in ("with-citizen", "invalid")
            continue
        decision = engine.check(flow)
        context = (flow, result.outcome, decision.decision, decision.reason)
        if decision.permit:
            assert result.outcome in ("lawful", "needs-consent"), context
        if result.outcome == "lawful":
            assert decision.permit, context
        event(f"flow {result.outcome}, {decision.decision}")
        decided: dict[str, CategoryDecision] = {c.category: c for c in decision.categories}
        assert set(decided) == {c.category for c in result.categories}, context
        for c in result.categories:
            d = decided[c.category]
            code = d.reasons[0].code
            if c.outcome == "invalid":
                assert code is ReasonCode.UNKNOWN_ENTITY, context
                continue
            assert c.status is not None
            if c.outcome == "forbidden":
                assert code is ReasonCode.FORBIDDEN, context
                assert tuple(r.rule for r in d.reasons) == c.status.rules, context
            elif c.outcome == "no-rule":
                assert code is ReasonCode.NO_PERMIT_RULE, context
            elif c.outcome == "lawful":
                assert d.decision == "permit" and d.basis is not None, context
                assert (d.basis.rule, d.basis.basis, d.basis.law) == (
                    c.status.rules[0], c.status.basis, c.status.law), context
            else:
                assert c.consent is not None
                event(f"needs-consent category, {d.decision}")
                # permitted exactly when the registry holds such a consent
                assert (d.decision == "permit") == holds_valid_consent(
                    oracle, flow, c.category), context
                if d.decision == "permit":
                    assert d.basis is not None and d.basis.basis == "consent", context
                    assert d.basis.rule == c.status.rules[0], context
                else:
                    assert code in CONSENT_REASONS, context
                    assert d.remedy is not None and d.remedy.consent is not None
                    needed = d.remedy.consent
                    assert needed.recipient == Selector(organization=(c.consent.organization,))
                    assert needed.categories == (c.category,)
                    assert (needed.purpose, needed.subprocess) == (c.consent.purpose,
                                                                  c.consent.subprocess)
                    assert needed.explicit == c.consent.explicit
                    assert needed.rules == c.consent.rules, context


@SETTINGS
@given(worlds(unknown=True, max_flows=6, max_consents=0), st.data())
def test_the_consent_plan_makes_every_needs_consent_flow_lawful(world: World,
                                                                data: st.DataObject) -> None:
    """A citizen who can consent for themselves and gives every consent of the plan gets
    exactly the flows the design called lawful or needs-consent; with a guardian whose
    guardianship covers everything, the same."""
    policy: Policy = world.policy
    report = analyse_design(policy, as_design(world.flows))
    subject = data.draw(pick(SUBJECTS))
    given_at = datetime(2019, 1, 1, tzinfo=UTC)
    consents = tuple(
        Consent(id=f"plan-{p.id}", subject=subject, given_by=subject, given_at=given_at,
                recipients=(Selector(organization=(p.organization,)),), data=p.categories,
                purposes=(p.purpose,), subprocesses=p.subprocesses, explicit=p.explicit)
        for p in report.plan)
    engine = Engine(policy, InMemoryRegistry({subject: Subject()}, (), consents))
    for flow, result in zip(world.flows, report.flows, strict=True):
        decision = engine.check(flow.model_copy(update={"subject": subject}))
        assert decision.permit == (result.outcome in ("lawful", "needs-consent")), (
            flow, result.outcome, decision.reason)


@SETTINGS
@given(worlds(unknown=True, max_flows=6, max_consents=0))
def test_reports_of_random_designs_render(world: World) -> None:
    from flowguard.reports import (
        design_html,
        design_json,
        design_markdown,
        design_sarif,
        swimlane_svg,
    )

    report = analyse_design(world.policy, as_design(world.flows, (0,)))
    assert design_json(report) == design_json(report)
    svg = swimlane_svg(report)
    assert svg.count('class="flow outcome-') == len(world.flows)
    for render in (design_html, design_sarif, design_markdown):
        assert render(report)
