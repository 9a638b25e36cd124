"""`who-can-receive`, `what-can-receive` and `ropa` (issue 5): exact over the finite domain
(checked against the engine point by point on random policies), and their commands."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings

from flowguard import Engine, load_policy
from flowguard._cli import cli
from flowguard.analysis import Reach, ropa, what_can_receive, who_can_receive
from flowguard.design import PolicyIndex
from flowguard.model import Flow, Policy, ReasonCode
from flowguard.reports import ropa_html, ropa_json, ropa_markdown
from tests.strategies import policies

from .conftest import EXAMPLES, SMALL_POLICY

AALBORG = EXAMPLES / "aalborg-aktiv"
AT = datetime(2026, 3, 1, tzinfo=UTC)
Write = Callable[[str, str], Path]
Point = tuple[str, str, str, str, str]  # sender, recipient, leaf, purpose, sub-process


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


def ok(result: Result, code: int) -> Result:
    text = result.stdout + result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"exception {result.exception!r}\n{text}") from result.exception
    assert "Traceback" not in text, text
    assert result.exit_code == code, (result.exit_code, text)
    return result


def receivable_by_engine(policy: Policy) -> dict[Point, str]:
    """Every point where some citizen's flow can be permitted, with how: `check` against an
    empty registry permits (a law) or asks for consent."""
    engine = Engine(policy)
    found = {}
    for point in itertools.product(sorted(policy.actors), sorted(policy.actors),
                                   policy.category_tree.all_leaves(),
                                   sorted(policy.purpose_tree.ids), list(policy.subprocesses)):
        sender, recipient, leaf, purpose, subprocess = point
        decision = engine.check(Flow(sender=sender, recipient=recipient, subject="anyone",
                                     data=(leaf,), purpose=purpose, subprocess=subprocess,
                                     at=AT))
        code = decision.reason
        if code is ReasonCode.PERMITTED:
            found[point] = "lawful"
        elif code is ReasonCode.CONSENT_MISSING:
            found[point] = "needs-consent"
    return found


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(policies(0, 6))
def test_who_and_what_can_receive_are_exact(policy: Policy) -> None:
    expected = receivable_by_engine(policy)
    reach = Reach(PolicyIndex(policy))
    by_who: dict[Point, str] = {}
    for category in sorted(policy.category_tree.ids):
        answer = who_can_receive(reach, category)
        for row in answer.rows:
            for point in itertools.product(row.senders, [row.recipient], row.leaves,
                                           row.purposes, row.subprocesses):
                by_who[point] = row.status.outcome
        if category in policy.category_tree.all_leaves():
            assert {p for p in by_who if p[2] == category} == {
                p for p in expected if p[2] == category}
    assert by_who == expected
    by_what: dict[Point, str] = {}
    for actor in sorted(policy.actors):
        for row in what_can_receive(reach, actor).rows:
            points = list(itertools.product(row.senders, [row.recipient], row.leaves,
                                            row.purposes, row.subprocesses))
            assert not set(points) & set(by_what), "rows overlap"
            by_what.update(dict.fromkeys(points, row.status.outcome))
    assert by_what == expected


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(policies(0, 6))
def test_the_record_of_processing_is_exact(policy: Policy) -> None:
    expected = receivable_by_engine(policy)
    record = ropa(policy)
    tree = policy.category_tree
    got: set[tuple[str, str, str]] = set()
    bases: dict[str, set[str]] = {}
    for activity in record.activities:
        for recipient in activity.recipients:
            leaves = {leaf for c in recipient.categories for leaf in tree.leaves(c)}
            got |= {(activity.purpose, recipient.organization, leaf) for leaf in leaves}
        bases[activity.purpose] = {b for b, _, _, _ in activity.bases}
    want = {(p, policy.actors[r].organization, leaf) for (_, r, leaf, p, _) in expected}
    assert got == want
    for purpose, found in bases.items():
        kinds = {expected[point] for point in expected if point[3] == purpose}
        assert ("lawful" in kinds) == bool(found - {"consent", "explicit consent"})
        assert ("needs-consent" in kinds) == bool(found & {"consent", "explicit consent"})
    assert set(record.unused_purposes) == {
        p for p in policy.purposes if p not in {point[3] for point in expected}}


# --------------------------------------------------------------------------- shipped example


def test_ropa_of_the_shipped_example() -> None:
    policy = load_policy(AALBORG)
    record = ropa(policy)
    activities = {a.purpose: a for a in record.activities}
    evaluation = activities["service-evaluation"]
    assert [r.organization for r in evaluation.recipients] == ["evalueringscenter-nord"]
    assert evaluation.bases == (("consent", None, None, ("evaluation-data",)),)
    assert "no-health-in-evaluation" in evaluation.restrictions
    safeguarding = activities["safeguarding"]
    assert ("legal-obligation", "Barnets Lov § 133", "social-protection",
            ("child-concern-notification",)) in safeguarding.bases
    employer = activities["job-matching.employer-contact"]
    assert {r.organization for r in employer.recipients} >= {"cafe-solsikke",
                                                            "dagligvarer-noerresundby"}
    cafe = next(r for r in employer.recipients if r.organization == "cafe-solsikke")
    assert cafe.special == () and cafe.bases == ("consent",)
    assert "Delete the contact details within 30 days after the placement ends" in \
        employer.obligations
    text = ropa_markdown(record)
    for heading in ("## Controller", "## Categories of data subjects",
                    "## Processing activities (per purpose)", "## Restrictions",
                    "## Transfers to third countries", "## Data categories"):
        assert heading in text
    assert "Aalborg Kommune" in text and "Serviceloven § 148" in text
    assert "from age 18" in text
    html = ropa_html(record)
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html
    document = json.loads(ropa_json(record))
    assert document["controller"]["organization"] == "aalborg-kommune"
    assert [a["purpose"] for a in document["activities"]] == sorted(activities)


def test_ropa_command(tmp_path: Path) -> None:
    result = ok(invoke("ropa", AALBORG), 0)
    assert result.stdout.startswith("# Record of processing activities")
    out, page = tmp_path / "ropa.json", tmp_path / "ropa.html"
    ok(invoke("ropa", AALBORG, "--json", "-o", out, "--html", page), 0)
    assert json.loads(out.read_text(encoding="utf-8"))["format"] == "flowguard.ropa/1"
    assert "<svg" not in page.read_text(encoding="utf-8")
    ok(invoke("ropa", tmp_path / "missing"), 2)


def test_who_and_what_commands(write: Write) -> None:
    policy = write("p/policy.yaml", SMALL_POLICY)
    result = ok(invoke("who-can-receive", "health", "-p", policy), 0)
    assert result.stdout.startswith("Who can receive health")
    assert result.stdout.rstrip().endswith("2 recipients, 2 rows")
    document = json.loads(ok(invoke("who-can-receive", "health.medication", "-p", policy,
                                    "--json", "--purpose", "job-matching"), 0).stdout)
    assert document["recipients"] == ["cafe-manager", "case-worker"]
    how = {r["recipient"]: r["status"]["outcome"] for r in document["rows"]}
    assert how == {"cafe-manager": "needs-consent", "case-worker": "lawful"}
    assert all(r["purposes"] == ["job-matching"] for r in document["rows"])
    what = json.loads(ok(invoke("what-can-receive", "volunteer", "-p", policy, "--json"),
                         0).stdout)
    # the shelter may get the name with consent; health data is forbidden to it
    assert {leaf for r in what["rows"] for leaf in r["leaves"]} == {"identity.name"}
    nothing = ok(invoke("what-can-receive", "consultant", "-p", policy), 0)
    assert "nothing" in nothing.stdout


@pytest.mark.parametrize("args, message", [
    (["who-can-receive", "helth"], "unknown data category `helth` (did you mean `health`?)"),
    (["what-can-receive", "volunter"], "unknown actor `volunter`"),
    (["who-can-receive", "health", "--purpose", "job-matchng"], "unknown purpose"),
    (["who-can-receive", "health", "--subprocess", "co-desing"], "unknown sub-process"),
    (["who-can-receive", "health", "--from", "nobody"], "unknown actor `nobody`"),
])
def test_reach_commands_bad_input(write: Write, args: list[str], message: str) -> None:
    policy = write("p/policy.yaml", SMALL_POLICY)
    result = ok(invoke(*args, "-p", policy), 2)
    assert message in result.stderr
