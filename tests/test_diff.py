"""`flowguard diff` (issue 5): the exact change in what is lawful between two policy versions,
over sender x recipient x leaf category x purpose x sub-process, as grouped statements.
Checked against the engine point by point on random policy pairs."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowguard import Engine
from flowguard._cli import cli
from flowguard.analysis import CHANGE_KINDS, PolicyDiff, diff_policies
from flowguard.model import Flow, Policy, ReasonCode, Rule
from flowguard.policy import load_policy
from tests.strategies import draw_policy, draw_rule, with_rules

from .conftest import EXAMPLES, SMALL_POLICY

AALBORG = EXAMPLES / "aalborg-aktiv"
AT = datetime(2026, 3, 1, tzinfo=UTC)
Write = Callable[[str, str], Path]
Key = tuple[object, ...]


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


def ok(result: Result, code: int) -> Result:
    text = result.stdout + result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"exception {result.exception!r}\n{text}") from result.exception
    assert "Traceback" not in text, text
    assert result.exit_code == code, (result.exit_code, text)
    return result


# --------------------------------------------------------------------------- brute force


def status_key(engine: Engine, policy: Policy, sender: str, recipient: str, leaf: str,
               purpose: str, subprocess: str) -> Key:
    """What `check` says about one point for any citizen (an empty registry): the same
    reading of lawfulness as the diff, from the decision alone."""
    if (sender not in policy.actors or recipient not in policy.actors
            or leaf not in policy.category_tree or purpose not in policy.purpose_tree
            or subprocess not in policy.subprocesses):
        return ("unknown",)
    decision = engine.check(Flow(sender=sender, recipient=recipient, subject="nobody",
                                 data=(leaf,), purpose=purpose, subprocess=subprocess,
                                 at=AT))
    keys = []
    for category in decision.categories:  # several where the leaf is a parent here
        code = category.reasons[0].code
        if code is ReasonCode.PERMITTED:
            assert category.basis is not None
            basis = category.basis
            keys.append(("lawful", basis.basis, basis.law, basis.art9))
        elif code is ReasonCode.CONSENT_MISSING:
            assert category.remedy is not None and category.remedy.consent is not None
            keys.append(("needs-consent", category.remedy.consent.explicit))
        else:
            keys.append(({ReasonCode.FORBIDDEN: "forbidden",
                          ReasonCode.NO_PERMIT_RULE: "no-rule"}[code],))
    # a flow is permitted only when every leaf is: the worst leaf speaks for the category
    worst = next(o for o in WORST_FIRST if any(k[0] == o for k in keys))
    same = [k for k in keys if k[0] == worst]
    if worst == "needs-consent":
        return ("needs-consent", any(k[1] for k in same))
    if worst == "lawful":
        return same[0] if len(set(same)) == 1 else ("lawful", None, None, None)
    return (worst,)


WORST_FIRST = ("forbidden", "no-rule", "needs-consent", "lawful")


def level(key: Key) -> int:
    if key[0] == "lawful":
        return 3
    if key[0] == "needs-consent":
        return 1 if key[1] else 2
    return 0


def expected_kind(old: Key, new: Key) -> str | None:
    if old == new:
        return None
    if level(new) != level(old):
        return "widen" if level(new) > level(old) else "narrow"
    if level(old) == 3:
        return "basis"
    return None if "unknown" in (old[0], new[0]) else "deny-reason"


def brute_force(old: Policy, new: Policy) -> set[tuple[str, ...]]:
    engines = (Engine(old), Engine(new))
    actors = sorted(set(old.actors) | set(new.actors))
    leaves = sorted(set(old.category_tree.all_leaves()) | set(new.category_tree.all_leaves()))
    purposes = sorted(old.purpose_tree.ids | new.purpose_tree.ids)
    subprocesses = sorted(set(old.subprocesses) | set(new.subprocesses))
    changed = set()
    for point in itertools.product(actors, actors, leaves, purposes, subprocesses):
        before = status_key(engines[0], old, *point)
        after = status_key(engines[1], new, *point)
        kind = expected_kind(before, after)
        if kind is not None:
            changed.add((*point, kind))
    return changed


def expand(diff: PolicyDiff) -> list[tuple[str, ...]]:
    return [(s, r, leaf, p, sp, c.kind) for c in diff.changes for r in c.recipients
            for leaf in c.leaves for s in c.senders for p in c.purposes
            for sp in c.subprocesses]


@st.composite
def policy_pairs(draw: st.DrawFn) -> tuple[Policy, Policy]:
    """A policy and a revision of it: some rules changed, removed or added (the vocabulary
    the same), or a second policy drawn independently (special categories may differ)."""
    old = draw_policy(draw, 0, 6)
    if draw(st.integers(0, 3)) == 0:
        return old, draw_policy(draw, 0, 6)
    special = frozenset(c for c in old.category_tree.ids if old.is_special(c))
    rules: list[Rule] = []
    for rule in old.rules:
        choice = draw(st.integers(0, 4))
        if choice == 0:
            continue  # removed
        rules.append(draw_rule(draw, rule.id, special) if choice == 1 else rule)
    for i in range(draw(st.integers(0, 2))):
        rules.append(draw_rule(draw, f"new{i}", special))
    return old, with_rules(old, rules)


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(policy_pairs())
def test_the_diff_is_exactly_the_engine_change(pair: tuple[Policy, Policy]) -> None:
    old, new = pair
    diff = diff_policies(old, new)
    found = expand(diff)
    assert len(found) == len(set(found)), "statements overlap"
    assert sum(c.tuples for c in diff.changes) == len(found)
    assert set(found) == brute_force(old, new)
    assert diff.widened == any(c.kind == "widen" for c in diff.changes)


# --------------------------------------------------------------------------- statements


@pytest.fixture
def aalborg() -> Policy:
    return load_policy(AALBORG)


def revised(write: Write, old: str, new: str) -> Policy:
    text = (AALBORG / "policy.yaml").read_text(encoding="utf-8")
    assert old in text
    return load_policy(write("revised/policy.yaml", text.replace(old, new)))


def test_identical_policies_have_no_change(aalborg: Policy) -> None:
    diff = diff_policies(aalborg, load_policy(AALBORG))
    assert diff.changes == () and diff.vocabulary == ()
    assert not diff.widened and not diff.narrowed


def test_a_widening_reads_as_a_statement(write: Write, aalborg: Policy) -> None:
    # employers may get medication with consent, and the forbid keeps health data away
    # from the voluntary sector only
    text = (AALBORG / "policy.yaml").read_text(encoding="utf-8")
    for old, new in (("    recipient: {sector: [private, voluntary]}\n    data: [health]\n",
                      "    recipient: {sector: [voluntary]}\n    data: [health]\n"),
                     ("    data: [identity.name, identity.contact, work]\n",
                      "    data: [identity.name, identity.contact, work, health.medication]\n")):
        assert text.count(old) == 1
        text = text.replace(old, new)
    revision = load_policy(write("revised/policy.yaml", text))
    diff = diff_policies(aalborg, revision)
    assert diff.widened and not diff.narrowed
    widened = [c for c in diff.changes if c.kind == "widen"]
    assert [c.text for c in widened] == [
        "every actor in the private sector may now receive `health.medication` for "
        "`job-matching.employer-contact` at `co-delivery` from `job-consultant` of "
        "`aalborg-kommune` with explicit consent (rule `employer-contact`) (before: forbidden "
        "by rule `no-health-outside-public-sector`)"]
    assert widened[0].recipients == ("cafe-manager", "supermarket-manager")
    # still denied elsewhere, but no longer by the forbid: a change of reason
    others = [c for c in diff.changes if c.kind != "widen"]
    assert others and all(c.kind == "deny-reason" for c in others)
    assert all("now no permit rule (before: forbidden by rule "
               "`no-health-outside-public-sector`)" in c.text for c in others)
    assert set(expand(diff)) == brute_force(aalborg, revision)


def test_a_narrowing_and_a_basis_change(write: Write, aalborg: Policy) -> None:
    narrowed = revised(write, "    basis: public-task\n    law: \"Serviceloven § 103\"\n",
                       "    basis: consent\n")
    diff = diff_policies(aalborg, narrowed)
    assert diff.narrowed and not diff.widened
    assert all(c.kind == "narrow" for c in diff.changes)
    assert any("`job-consultant` of `aalborg-kommune` now needs consent to receive" in c.text
               and "(before: without consent, on basis public-task, Serviceloven § 103 "
                   "(rule `case-to-jobcenter`))" in c.text for c in diff.changes)
    rebased = revised(write, "    law: \"Serviceloven § 103\"\n",
                      "    law: \"Serviceloven § 104\"\n")
    basis = diff_policies(aalborg, rebased)
    assert {c.kind for c in basis.changes} == {"basis"}
    assert "now on basis public-task, Serviceloven § 104" in basis.changes[0].text


def test_vocabulary_changes_are_listed(write: Write, small_policy: Policy) -> None:
    text = SMALL_POLICY.replace("  evaluation: {}\n", "  evaluation: {}\n  research: {}\n")
    text = text.replace("  volunteer:   {organization: shelter, role: coordinator}\n",
                        "  volunteer:   {organization: shelter, role: coordinator}\n"
                        "  volunteer2:  {organization: shelter, role: coordinator}\n")
    new = load_policy(write("new/policy.yaml", text))
    diff = diff_policies(small_policy, new)
    sections = {v.section: v for v in diff.vocabulary}
    assert sections["actors"].added == ("volunteer2",)
    assert sections["purposes"].added == ("research",)
    # the new actor may receive what the shelter's rules give: a widening for it
    assert any(c.kind == "widen" and c.recipients == ("volunteer2",) for c in diff.changes)
    assert set(expand(diff)) == brute_force(small_policy, new)


def test_a_category_split_into_leaves(write: Write) -> None:
    old = load_policy(write("old/policy.yaml", SMALL_POLICY))
    text = SMALL_POLICY.replace("  work.capacity: {}\n",
                                "  work.capacity: {}\n  work.capacity.hours: {}\n"
                                "  work.capacity.tasks: {}\n")
    new = load_policy(write("new/policy.yaml", text))
    diff = diff_policies(old, new)
    assert set(expand(diff)) == brute_force(old, new)


@pytest.fixture
def small_policy(write: Write) -> Policy:
    return load_policy(write("small/policy.yaml", SMALL_POLICY))


# --------------------------------------------------------------------------- the command


def test_diff_command(write: Write) -> None:
    old = write("old/policy.yaml", SMALL_POLICY)
    new = write("new/policy.yaml", SMALL_POLICY.replace(
        "  - id: no-health-to-voluntary\n    effect: forbid\n"
        "    recipient: {sector: voluntary}\n    data: [health]\n", ""))
    same = ok(invoke("diff", old, old, "--fail-on", "widen"), 0)
    assert "no change in what is lawful" in same.stdout
    result = ok(invoke("diff", old, new), 0)
    assert "widen" in result.stdout and "may now receive" in result.stdout
    ok(invoke("diff", old, new, "--fail-on", "widen"), 1)
    ok(invoke("diff", old, new, "--fail-on", "narrow"), 0)
    ok(invoke("diff", new, old, "--fail-on", "narrow"), 1)
    ok(invoke("diff", old, new, "--fail-on", "any"), 1)
    document = yaml.safe_load(ok(invoke("diff", old, new, "--json"), 0).stdout)
    assert document["format"] == "flowguard.diff/1"
    assert document["summary"]["widened"] is True
    assert {c["kind"] for c in document["changes"]} <= set(CHANGE_KINDS)
    first = document["changes"][0]
    assert first["recipients"] == ["volunteer"]
    assert first["before"]["outcome"] == "forbidden"
    assert first["after"]["outcome"] == "needs-consent" and first["after"]["explicit"]
    markdown = ok(invoke("diff", old, new, "--markdown"), 0).stdout
    assert markdown.startswith("# Policy change") and "## widen" in markdown


def test_diff_command_bad_input(write: Write, tmp_path: Path) -> None:
    old = write("old/policy.yaml", SMALL_POLICY)
    bad = write("bad/policy.yaml", SMALL_POLICY.replace("effect: forbid", "effect: deny"))
    result = ok(invoke("diff", old, bad), 2)
    assert "policy.yaml:" in result.stderr
    ok(invoke("diff", old, tmp_path / "missing"), 2)
    ok(invoke("diff", old, old, "--fail-on", "sideways"), 2)
