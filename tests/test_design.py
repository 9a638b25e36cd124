"""Flow designs (SPEC §8, issue 5): loading with positioned errors, symbolic classification of
every flow and category, the consent plan, the design checks, and the `flowguard design`
command. The shipped designs show every outcome."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from flowguard import Engine, InMemoryRegistry, load_policy
from flowguard._cli import cli
from flowguard.design import (
    CHECKS,
    CITIZEN,
    OUTCOMES,
    Design,
    DesignError,
    DesignFlow,
    DesignReport,
    analyse_design,
    grantor_options,
    load_design,
)
from flowguard.model import Consent, Flow, Jurisdiction, Policy, Selector, Subject

from .conftest import EXAMPLES, SMALL_POLICY

AALBORG = EXAMPLES / "aalborg-aktiv"
YOUTH = EXAMPLES / "youth-services"
SHIPPED = [AALBORG, YOUTH]

Write = Callable[[str, str], Path]


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


def ok(result: Result, code: int) -> Result:
    text = result.stdout + result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"exception {result.exception!r}\n{text}") from result.exception
    assert "Traceback" not in text, text
    assert result.exit_code == code, (result.exit_code, text)
    return result


def shipped(example: Path) -> DesignReport:
    policy = load_policy(example)
    return analyse_design(policy, load_design(example / "design.yaml", policy))


@pytest.fixture
def small(write: Write) -> Policy:
    return load_policy(write("policy.yaml", SMALL_POLICY))


def flow(flow_id: str, sender: str, recipient: str, data: list[str], purpose: str,
         subprocess: str) -> DesignFlow:
    return DesignFlow.model_validate({"id": flow_id, "from": sender, "to": recipient,
                                      "data": data, "purpose": purpose,
                                      "subprocess": subprocess})


def design(*flows: DesignFlow, holds: dict[str, list[str]] | None = None,
           citizen_side: list[str] | None = None) -> Design:
    return Design.model_validate({"design": {"citizen_side": citizen_side},
                                  "holds": holds or {}, "flows": list(flows)})


# --------------------------------------------------------------------------- shipped designs


@pytest.mark.parametrize("example", SHIPPED, ids=lambda p: p.name)
def test_shipped_designs_show_every_outcome(example: Path) -> None:
    report = shipped(example)
    assert {r.outcome for r in report.flows} == set(OUTCOMES)
    assert report.failed
    assert report.plan
    assert all(report.counts[o] >= 1 for o in OUTCOMES)


def test_shipped_designs_together_run_every_check() -> None:
    found = {x.check for example in SHIPPED for x in shipped(example).findings}
    assert found == set(CHECKS)


def test_aalborg_design_classification() -> None:
    report = shipped(AALBORG)
    by_id = {r.flow.id: r for r in report.flows}
    f3 = by_id["f3"]  # case briefing: a law is the basis
    assert f3.outcome == "lawful"
    assert {c.status.rules for c in f3.categories if c.status} == {("case-to-jobcenter",)}
    assert all(c.status and c.status.basis == "public-task"
               and c.status.law == "Serviceloven § 103" for c in f3.categories)
    f4 = by_id["f4"]  # health data to the job consultant: explicit consent
    assert f4.outcome == "needs-consent"
    for c in f4.categories:
        assert c.consent is not None and c.consent.explicit
        assert c.consent.organization == "aalborg-kommune"
        assert c.consent.rules == ("health-to-job-consultant",)
        assert "from age 18" in c.message and "parent" in c.message
    f8 = by_id["f8"]  # health data to a private employer
    assert f8.outcome == "forbidden"
    assert f8.categories[0].status is not None
    assert f8.categories[0].status.rules == ("no-health-outside-public-sector",)
    assert by_id["f11"].outcome == "no-rule"
    f16 = by_id["f16"]
    assert f16.outcome == "invalid"
    assert "did you mean `follow-up`?" in f16.categories[0].message
    assert by_id["f2"].outcome == by_id["f13"].outcome == "with-citizen"


def test_classification_positions_point_at_the_design_lines() -> None:
    report = shipped(AALBORG)
    lines = (AALBORG / "design.yaml").read_text(encoding="utf-8").splitlines()
    for r in report.flows:
        line, column = r.position
        assert line is not None and column is not None
        assert f"id: {r.flow.id}" in lines[line - 1]
        to_line, _ = r.where("to")
        assert to_line is not None and f"to: {r.flow.recipient}" in lines[to_line - 1]


# --------------------------------------------------------------------------- loading


def test_load_design_reports_every_problem_with_its_position(write: Write,
                                                             small: Policy) -> None:
    path = write("design.yaml", """\
        design: {service: small, colour: blue}
        flows:
          - {id: f1, subprocess: co-design, from: consultant, to: cafe-manager,
             data: [identity.name], purpose: job-matching}
          - {id: f1, subprocess: co-design, from: consultant, to: cafe-manager,
             data: [identity.name], purpose: job-matching}
          - {id: f2, subprocess: co-design, to: cafe-manager, data: [identity.name],
             purpose: job-matching, colour: red}
        """)
    with pytest.raises(DesignError) as caught:
        load_design(path, small)
    rendered = [d.render() for d in caught.value.diagnostics]
    assert any(":1:" in r and "unknown key `colour`" in r for r in rendered), rendered
    assert any(":5:" in r and "used twice" in r for r in rendered), rendered
    assert any(":7:" in r and "missing required key `from`" in r for r in rendered), rendered
    assert any(":8:" in r and "unknown key `colour`" in r for r in rendered), rendered


def test_load_design_checks_its_own_references(write: Write, small: Policy) -> None:
    path = write("design.yaml", """\
        design: {service: other, citizen_side: [consultnt]}
        holds: {case-workr: [identity], consultant: [identiy]}
        flows:
          - {id: f1, subprocess: co-design, from: consultant, to: cafe-manager,
             data: [identity.name], purpose: job-matching}
        """)
    with pytest.raises(DesignError) as caught:
        load_design(path, small)
    messages = " | ".join(d.render() for d in caught.value.diagnostics)
    assert "for service `other`, the policy is for `small`" in messages
    assert "unknown actor `consultnt` (did you mean `consultant`?)" in messages
    assert "unknown actor `case-workr`" in messages
    assert "unknown data category `identiy`" in messages


@pytest.mark.parametrize("text, message", [
    ("flows: []\n", "not a flow design"),
    ("design: {}\nflows: []\n", "lists no flows"),
    ("design: {}\nflows: {f1: x}\n", "flows must be a list"),
    ("design: {}\n---\ndesign: {}\n", "exactly one YAML document"),
    ("design: {}\nflows:\n  - {id: f1, subprocess: s, from: citizen, to: citizen, "
     "data: [a], purpose: p}\n", "shares nothing"),
])
def test_malformed_designs_are_input_errors(write: Write, text: str, message: str) -> None:
    with pytest.raises(DesignError) as caught:
        load_design(write("design.yaml", text))
    assert message in str(caught.value)


def test_a_policy_directory_skips_its_design(tmp_path: Path) -> None:
    # the shipped examples keep design.yaml beside policy.yaml
    policy = load_policy(AALBORG)
    assert policy.service is not None and policy.service.id == "aalborg-aktiv"


# --------------------------------------------------------------------------- classification


def test_unknown_ids_make_a_flow_invalid_and_leave_other_categories_decided(
        small: Policy) -> None:
    report = analyse_design(small, design(
        flow("f1", "consultant", "cafe-manger", ["identity.name"], "job-matching",
             "co-delivery"),
        flow("f2", "consultant", "cafe-manager", ["identity.name", "identity.nme"],
             "job-matching", "co-delivery")))
    f1, f2 = report.flows
    assert f1.outcome == "invalid"
    assert "did you mean `cafe-manager`?" in f1.categories[0].message
    assert f2.outcome == "invalid"
    outcomes = {c.category: c.outcome for c in f2.categories}
    assert outcomes == {"identity.name": "needs-consent", "identity.nme": "invalid"}
    assert f2.problems == (("data.1", "unknown data category `identity.nme` "
                                      "(did you mean `identity.name`?)"),)


def test_the_citizen_endpoint_is_with_citizen(small: Policy) -> None:
    report = analyse_design(small, design(
        flow("f1", CITIZEN, "consultant", ["work"], "job-matching", "co-design"),
        flow("f2", "consultant", CITIZEN, ["work.capacity"], "job-matching", "co-design"),
        flow("f3", CITIZEN, "nobody", ["work"], "job-matching", "co-design")))
    assert [r.outcome for r in report.flows] == ["with-citizen", "with-citizen", "invalid"]
    assert [c.category for c in report.flows[0].categories] == [
        "work.capacity", "work.preferences"]


def test_a_policy_actor_called_citizen_is_decided_by_the_policy(small: Policy) -> None:
    actors = {**small.actors, "citizen": small.actors["volunteer"]}
    policy = Policy(**{**dict(small), "actors": actors})
    report = analyse_design(policy, design(
        flow("f1", "consultant", "citizen", ["identity.name"], "job-matching", "co-design")))
    assert report.flows[0].outcome == "needs-consent"  # rule name-to-shelter
    assert report.citizen_side == ("citizen",)


def test_grantors_per_jurisdiction(small: Policy) -> None:
    assert [(g.who, g.from_age, g.until_age) for g in grantor_options(small)] == [
        ("citizen", 15, None), ("parent", None, 18), ("guardian", None, None)]
    two = Policy(**{**dict(small), "jurisdictions": {
        "DK": Jurisdiction(majority_age=18, consent_age=15),
        "FI": Jurisdiction(majority_age=18)}})
    assert [(g.who, g.jurisdiction) for g in grantor_options(two)] == [
        ("citizen", "DK"), ("citizen", "FI"), ("parent", "DK"), ("parent", "FI"),
        ("guardian", None)]


# --------------------------------------------------------------------------- consent plan


def test_the_plan_merges_per_organization_and_purpose(small: Policy) -> None:
    report = analyse_design(small, design(
        flow("f1", "consultant", "cafe-manager", ["identity.name"], "job-matching",
             "co-delivery"),
        flow("f2", "consultant", "cafe-manager", ["work.preferences"], "job-matching",
             "co-delivery"),
        flow("f3", "case-worker", "cafe-manager", ["health.medication"], "job-matching",
             "co-design"),
        flow("f4", "consultant", "volunteer", ["identity.name"], "job-matching",
             "co-delivery"),
        flow("f5", "consultant", "cafe-manager", ["identity.name"],
             "job-matching.employer-contact", "co-delivery"),
        holds={"consultant": ["identity", "work"], "case-worker": ["health"]}))
    plan = {(p.organization, p.purpose): p for p in report.plan}
    assert set(plan) == {("cafe", "job-matching"), ("shelter", "job-matching"),
                         ("cafe", "job-matching.employer-contact")}
    cafe = plan[("cafe", "job-matching")]
    assert cafe.categories == ("health.medication", "identity.name", "work.preferences")
    assert cafe.explicit and cafe.special == ("health.medication",)
    assert cafe.subprocesses == ("co-design", "co-delivery")  # in `order`
    assert cafe.flows == ("f1", "f2", "f3")
    assert cafe.steps == (("co-design", ("health.medication",), ("f3",)),
                          ("co-delivery", ("identity.name", "work.preferences"),
                           ("f1", "f2")))
    assert cafe.record() == {"recipients": [{"organization": "cafe"}],
                             "data": ["health.medication", "identity.name",
                                      "work.preferences"],
                             "purposes": ["job-matching"],
                             "subprocesses": ["co-design", "co-delivery"], "explicit": True}
    assert [p.id for p in report.plan] == ["consent-1", "consent-2", "consent-3"]
    assert report.plan[0].organization == "cafe"  # first needed at co-design


@pytest.mark.parametrize("example", SHIPPED, ids=lambda p: p.name)
def test_the_plan_granted_by_an_adult_makes_every_needs_consent_flow_permit(
        example: Path) -> None:
    """The consent plan is what the engine needs: an adult who gives every consent of the
    plan gets every needs-consent flow permitted, and nothing else changes."""
    policy = load_policy(example)
    report = analyse_design(policy, load_design(example / "design.yaml", policy))
    at = datetime(2026, 6, 1, tzinfo=UTC)
    given = datetime(2026, 5, 1, tzinfo=UTC)
    consents = [Consent(id=f"k-{p.id}", subject="adult", given_by="adult", given_at=given,
                        recipients=(Selector(organization=(p.organization,)),),
                        data=p.categories, purposes=(p.purpose,),
                        subprocesses=p.subprocesses, explicit=p.explicit)
                for p in report.plan]
    with_plan = Engine(policy, InMemoryRegistry({"adult": Subject()}, (), consents))
    without = Engine(policy)
    for r in report.flows:
        if r.outcome in ("with-citizen", "invalid"):
            continue
        f = Flow(sender=r.flow.sender, recipient=r.flow.recipient, subject="adult",
                 data=r.flow.data, purpose=r.flow.purpose, subprocess=r.flow.subprocess,
                 at=at)
        assert with_plan.check(f).permit == (r.outcome in ("lawful", "needs-consent")), r
        assert without.check(f).permit == (r.outcome == "lawful"), r


def test_the_plan_text_says_what_to_whom_why_when_and_how_to_withdraw() -> None:
    from flowguard.reports.forms import consent_forms, form_paragraphs

    report = shipped(AALBORG)
    forms = {f.key: f for f in consent_forms(report, "en")}
    cafe = next(forms[i.id] for i in report.plan if i.organization == "cafe-solsikke")
    text = "\n".join(form_paragraphs(cafe))
    assert "Café Solsikken ApS" in text  # to whom
    assert "Presenting the citizen to a private employer" in text  # why
    assert "The placement runs" in text  # at which step
    assert "Phone number, e-mail, address" in text  # what, in plain words
    assert "take back your consent" in text and "flowguard" not in text  # no command line
    assert "Tell Aalborg Kommune" in text  # whom to tell
    assert "18 or older" in text and "custody" in text  # the service admits minors
    health = next(forms[i.id] for i in report.plan if i.explicit)
    assert "Tick each item" in "\n".join(form_paragraphs(health))


# --------------------------------------------------------------------------- design checks


def test_forwarding_data_never_received(small: Policy) -> None:
    def forwarding(d: Design) -> list[tuple[str, str | None]]:
        return [(x.check, x.flow) for x in analyse_design(small, d).findings
                if x.check == "forwards-unreceived"]

    flows = (flow("f1", "consultant", "cafe-manager", ["identity.name"], "job-matching",
                  "co-delivery"),)
    assert forwarding(design(*flows)) == [("forwards-unreceived", "f1")]
    # held from the actor's own records, or received at or before the step: fine
    assert not forwarding(design(*flows, holds={"consultant": ["identity"]}))
    received = flow("f0", CITIZEN, "consultant", ["identity.name"], "job-matching",
                    "co-design")
    assert not forwarding(design(received, *flows))
    # received only at a later step does not count
    late = flow("f9", CITIZEN, "consultant", ["identity.name"], "job-matching",
                "co-delivery")
    early = flows[0].model_copy(update={"subprocess": "co-design"})
    assert forwarding(design(early, late)) == [("forwards-unreceived", "f1")]


def test_special_data_to_the_private_or_voluntary_sector(small: Policy) -> None:
    report = analyse_design(small, design(
        flow("f1", "case-worker", "cafe-manager", ["health.medication"], "job-matching",
             "co-delivery"),
        flow("f2", "case-worker", "volunteer", ["health"], "job-matching", "co-delivery"),
        flow("f3", "consultant", "case-worker", ["health"], "job-matching", "co-delivery"),
        holds={"case-worker": ["health"], "consultant": ["health"]}))
    found = {x.flow: x.message for x in report.findings
             if x.check == "special-outside-public"}
    assert set(found) == {"f1", "f2"}
    assert "private sector" in found["f1"] and "explicit consent" in found["f1"]
    assert "voluntary sector" in found["f2"] and "forbids" in found["f2"]


def test_co_produced_step_without_the_citizen(small: Policy) -> None:
    partners_only = flow("f1", "consultant", "cafe-manager", ["identity.name"],
                         "job-matching", "co-delivery")
    holds = {"consultant": ["identity"]}
    found = analyse_design(small, design(partners_only, holds=holds)).findings
    assert [(x.check, x.flow) for x in found] == [("co-produced-without-citizen", "f1")]
    touchpoint = flow("f2", "consultant", CITIZEN, ["identity.name"], "job-matching",
                      "co-delivery")
    assert not analyse_design(small, design(partners_only, touchpoint, holds=holds)).findings
    # an actor the design puts on the citizen's side counts too
    assert not analyse_design(small, design(partners_only, holds=holds,
                                            citizen_side=["cafe-manager"])).findings


def test_purpose_creep(small: Policy) -> None:
    collected = flow("f1", CITIZEN, "case-worker", ["health.diagnosis"], "job-matching",
                     "co-design")
    # passed on for another purpose that no rule covers: creep
    reused = flow("f2", "case-worker", "consultant", ["health.diagnosis"], "evaluation",
                  "co-delivery")
    found = analyse_design(small, design(collected, reused)).findings
    assert [(x.check, x.flow, x.related) for x in found if x.check == "purpose-creep"] == [
        ("purpose-creep", "f2", ("f1",))]
    # for a sub-purpose of the purpose of collection: no creep
    narrower = reused.model_copy(update={"purpose": "job-matching.employer-contact"})
    assert not [x for x in analyse_design(small, design(collected, narrower)).findings
                if x.check == "purpose-creep"]
    # received under a rule whose purposes cover the new purpose: no creep
    by_rule = flow("f1", "consultant", "case-worker", ["health.diagnosis"],
                   "job-matching.employer-contact", "co-design")
    onwards = flow("f2", "case-worker", "cafe-manager", ["health.diagnosis"],
                   "job-matching", "co-delivery")
    report = analyse_design(small, design(by_rule, onwards, holds={"consultant": ["health"]}))
    assert not [x for x in report.findings if x.check == "purpose-creep"]
    # passed on with the citizen's consent for the new purpose (GDPR Art. 6(4)): no creep
    consented = flow("f2", "case-worker", "cafe-manager", ["health.medication"],
                     "job-matching.employer-contact", "co-delivery")
    collected_for_eval = flow("f1", CITIZEN, "case-worker", ["health.medication"],
                              "evaluation", "co-design")
    report = analyse_design(small, design(collected_for_eval, consented))
    assert report.flows[1].outcome == "needs-consent"
    assert not [x for x in report.findings if x.check == "purpose-creep"]


# --------------------------------------------------------------------------- the command


def test_design_command_on_a_shipped_example() -> None:
    result = ok(invoke("design", AALBORG), 1)  # the design fails on purpose
    out = result.stdout
    assert "FAIL 16 flows" in out
    assert "Consent plan" in out and "Consent to share information with" in out
    for check in CHECKS:
        assert check in out


def test_design_command_json(write: Write, small: Policy) -> None:
    path = write("design.yaml", """\
        design: {service: small, name: Small}
        flows:
          - {id: f1, subprocess: co-delivery, from: consultant, to: cafe-manager,
             data: [identity.name], purpose: job-matching}
          - {id: f2, subprocess: co-delivery, from: citizen, to: consultant,
             data: [identity.name], purpose: job-matching}
        """)
    result = ok(invoke("design", write("p/policy.yaml", SMALL_POLICY), path, "--json"), 0)
    document: dict[str, Any] = json.loads(result.stdout)
    assert document["format"] == "flowguard.design/1"
    assert document["summary"]["passed"] is True
    assert document["summary"]["needs-consent"] == 1
    category = document["flows"][0]["categories"][0]
    assert category["consent"]["recipients"] == [{"organization": "cafe"}]
    assert category["consent"]["grantors"][0] == {"who": "citizen", "from_age": 15,
                                                  "jurisdiction": None}
    assert document["flows"][0]["line"] == 3


def test_design_command_exit_codes_and_outputs(write: Write, tmp_path: Path) -> None:
    policy = write("p/policy.yaml", SMALL_POLICY)
    lawful = write("lawful.yaml", """\
        design: {}
        holds: {consultant: [health]}
        flows:
          - {id: f1, subprocess: co-delivery, from: consultant, to: case-worker,
             data: [health.diagnosis], purpose: job-matching}
        """)
    ok(invoke("design", policy, lawful), 0)
    strict = ok(invoke("design", policy, lawful, "--strict"), 1)  # co-produced, no citizen
    assert "co-produced-without-citizen" in strict.stdout
    out = tmp_path / "out.sarif"
    html = tmp_path / "page.html"
    ok(invoke("design", policy, lawful, "--sarif", "-o", out, "--html", html), 0)
    assert json.loads(out.read_text(encoding="utf-8"))["version"] == "2.1.0"
    assert html.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    markdown = ok(invoke("design", policy, lawful, "--markdown"), 0)
    assert markdown.stdout.startswith("# Flow design")
    forbidden = write("forbidden.yaml", """\
        design: {}
        flows:
          - {id: f1, subprocess: co-delivery, from: consultant, to: volunteer,
             data: [health], purpose: job-matching}
        """)
    ok(invoke("design", policy, forbidden), 1)


def test_design_command_bad_input_exits_2_with_positions(write: Write, tmp_path: Path) -> None:
    policy = write("p/policy.yaml", SMALL_POLICY)
    bad = write("bad.yaml", "design: {}\nflows:\n  - {id: f1, from: consultant}\n")
    result = ok(invoke("design", policy, bad), 2)
    assert f"{bad}:3:" in result.stderr and "missing required key" in result.stderr
    ok(invoke("design", tmp_path / "nope", bad), 2)
    ok(invoke("design", policy), 2)  # a policy file has no default design
    result = ok(invoke("design", policy, bad.parent / "missing.yaml"), 2)
    assert "missing.yaml" in result.stderr
    good = write("good.yaml", "design: {}\nflows:\n  - {id: f1, subprocess: co-design, "
                 "from: consultant, to: case-worker, data: [health], purpose: "
                 "job-matching}\n")
    result = ok(invoke("design", policy, good, "-o", tmp_path / "x.json"), 2)
    assert "--output needs" in result.stderr
    ok(invoke("design", policy, good, "--json", "-o", tmp_path / "no" / "dir" / "x"), 2)
