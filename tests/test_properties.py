"""Property tests of the decision engine (SPEC §5, §6) on random policies, registries and flows.

The last group compares the engine with `Oracle`, a deliberately naive evaluator of SPEC §5
written here from the text of the specification: it loops over every rule and consent, keeps
no index, and computes ages from calendar dates on its own.
"""

from __future__ import annotations

import copy
import pickle
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from pydantic import BaseModel, ValidationError

from flowguard import Engine, InMemoryRegistry
from flowguard.audit.entries import generate_pseudonym_key
from flowguard.audit.trail import open_audit
from flowguard.engine import FLOW_ROW_FIELDS
from flowguard.errors import ExplanationError, FlowError
from flowguard.model import (
    DENY_PRECEDENCE,
    Actor,
    Consent,
    DataCategory,
    Decision,
    Flow,
    Guardianship,
    Jurisdiction,
    Organization,
    Policy,
    Purpose,
    Rule,
    Selector,
    Subject,
    Subprocess,
)
from tests.strategies import (
    ACTORS,
    BIRTH_DATES,
    BOUNDS,
    CATEGORIES,
    GUARDIANS,
    INSTANTS,
    ORG_KINDS,
    PURPOSES,
    SUBJECTS,
    SUBPROCESSES,
    UNKNOWN_SUBJECT,
    RegistryParts,
    World,
    around_birthdays,
    as_utc,
    draw_consent,
    draw_insert,
    draw_rule,
    grantor_worlds,
    pick,
    subsets,
    with_rules,
    worlds,
)

VOLATILE = {"decision_id", "evaluated_at"}
SETTINGS = settings(deadline=None, max_examples=100,
                    suppress_health_check=[HealthCheck.too_slow])


def dump(decision: Decision) -> dict[str, Any]:
    return decision.model_dump(exclude=VOLATILE)


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """The path and values of the first place where two dumps differ, for failure messages."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            found = first_difference(a.get(key), b.get(key), f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"


def by_category(decision: Decision) -> dict[str, str]:
    return {c.category: c.decision for c in decision.categories}


def assert_no_new_permits(before: Decision, after: Decision) -> None:
    """Every category (and the flow) denied `before` is still denied `after`."""
    if before.decision == "deny":
        assert after.decision == "deny", (dump(before), dump(after))
    old, new = by_category(before), by_category(after)
    for category, outcome in old.items():
        if outcome == "deny":
            assert new.get(category, "deny") == "deny", (category, dump(before), dump(after))
    assert set(after.permitted) <= set(before.permitted)


# =========================================================================== the oracle

ORACLE_PRECEDENCE = (
    "UNKNOWN_ENTITY", "FORBIDDEN", "NO_PERMIT_RULE", "CONSENT_WITHDRAWN", "CONSENT_EXPIRED",
    "CONSENT_NOT_YET_VALID", "CONSENT_NOT_EXPLICIT", "GRANTOR_NOT_AUTHORIZED",
    "GRANTOR_AUTHORITY_ENDED", "CONSENT_MISSING",
)


def prefixes(name: str) -> list[str]:
    """`a.b.c` -> [`a`, `a.b`, `a.b.c`]: the ancestors of a dotted id, and itself."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def ancestor_or_self(a: str, b: str) -> bool:
    return a == b or b.startswith(a + ".")


def overlap(a: str, b: str) -> bool:
    return ancestor_or_self(a, b) or ancestor_or_self(b, a)


def age_at(birth: date, when: datetime) -> int:
    """Whole years: one is N from 00:00 UTC on one's Nth birthday (29 Feb: from 1 Mar)."""
    day = when.astimezone(UTC).date()
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


@dataclass(frozen=True)
class Verdict:
    decision: str
    code: str
    rule: str | None = None  # the basis rule of a permit
    consent: str | None = None  # the basis consent of a permit
    forbids: tuple[str, ...] = ()  # the forbid rules that apply
    consents: tuple[str, ...] = ()  # the consents that fail for the primary reason


class Oracle:
    """SPEC §5, read literally; slow on purpose."""

    def __init__(self, policy: Policy, parts: RegistryParts) -> None:
        self.policy = policy
        self.subjects = parts.subjects
        self.guardianships = list(parts.guardianships)
        self.consents = list(parts.consents)
        self.categories = {p for c in policy.data_categories for p in prefixes(c)}
        self.purposes = {p for q in policy.purposes for p in prefixes(q)}

    # ------------------------------------------------------------- vocabulary

    def leaves(self, category: str) -> list[str]:
        return sorted(x for x in self.categories if ancestor_or_self(category, x)
                      and not any(y.startswith(x + ".") for y in self.categories))

    def special(self, category: str) -> bool:
        return any(self.policy.data_categories.get(a, DataCategory()).special
                   for a in prefixes(category))

    def matches(self, selector: Selector | None, actor_id: str) -> bool:
        if selector is None:
            return True
        actor = self.policy.actors[actor_id]
        org = self.policy.organizations[actor.organization]
        facts = {"actor": actor_id, "organization": actor.organization, "kind": org.kind,
                 "sector": org.sector, "role": actor.role}
        for key, value in facts.items():
            wanted = getattr(selector, key)
            if wanted is not None and value not in wanted:
                return False
        return True

    # ------------------------------------------------------------- ages and authority

    def _jurisdiction(self, subject: Subject | None) -> Jurisdiction:
        jid = (subject.jurisdiction if subject else None) or self.policy.default_jurisdiction
        assert jid is not None
        return self.policy.jurisdictions[jid]

    def _age(self, subject_id: str, when: datetime) -> float:
        subject = self.subjects.get(subject_id)
        if subject is None or subject.birth_date is None:
            return float("inf")  # no birth date: an adult
        return age_at(subject.birth_date, when)

    def _subject_may_consent(self, subject_id: str, when: datetime) -> bool:
        j = self._jurisdiction(self.subjects.get(subject_id))
        consent_age = j.majority_age if j.consent_age is None else j.consent_age
        return self._age(subject_id, when) >= consent_age

    def _guardianship_valid(self, g: Guardianship, subject_id: str, when: datetime) -> bool:
        if not as_utc(g.valid_from) <= when:
            return False
        if g.valid_until is not None and not when < as_utc(g.valid_until):
            return False
        if g.kind == "parental":
            majority = self._jurisdiction(self.subjects.get(subject_id)).majority_age
            return self._age(subject_id, when) < majority
        return True

    def _grantor_failure(self, k: Consent, category: str, t: datetime) -> str | None:
        given = as_utc(k.given_at)
        if k.given_by == k.subject:
            if not self._subject_may_consent(k.subject, given):
                return "GRANTOR_NOT_AUTHORIZED"
            if not self._subject_may_consent(k.subject, t):
                return "GRANTOR_AUTHORITY_ENDED"
            return None
        mine = [g for g in self.guardianships
                if g.subject == k.subject and g.guardian == k.given_by
                and (g.scope is None or any(ancestor_or_self(s, category) for s in g.scope))]
        if any(self._guardianship_valid(g, k.subject, given)
               and self._guardianship_valid(g, k.subject, t) for g in mine):
            return None
        if any(self._guardianship_valid(g, k.subject, given) for g in mine):
            return "GRANTOR_AUTHORITY_ENDED"
        return "GRANTOR_NOT_AUTHORIZED"

    def consent_failures(self, k: Consent, category: str, t: datetime) -> list[str]:
        """Every reason `k` does not count (empty: it counts)."""
        failures = []
        if k.withdrawn_at is not None and t >= as_utc(k.withdrawn_at):
            failures.append("CONSENT_WITHDRAWN")
        if k.expires_at is not None and t >= as_utc(k.expires_at):
            failures.append("CONSENT_EXPIRED")
        if t < as_utc(k.given_at):
            failures.append("CONSENT_NOT_YET_VALID")
        if self.special(category) and not k.explicit:
            failures.append("CONSENT_NOT_EXPLICIT")
        grantor = self._grantor_failure(k, category, t)
        if grantor is not None:
            failures.append(grantor)
        return failures

    # ------------------------------------------------------------- decisions

    def decide_leaf(self, c: str, flow: Flow) -> Verdict:
        assert flow.at is not None
        t = flow.at.astimezone(UTC)
        forbids = [
            r.id for r in self.policy.rules
            if r.effect == "forbid"
            and self.matches(r.sender, flow.sender) and self.matches(r.recipient, flow.recipient)
            and (r.purposes is None or any(overlap(p, flow.purpose) for p in r.purposes))
            and (r.subprocesses is None or flow.subprocess in r.subprocesses)
            and any(overlap(d, c) for d in r.data)
        ]
        if forbids:
            return Verdict("deny", "FORBIDDEN", forbids=tuple(sorted(forbids)))
        permits = [
            r for r in self.policy.rules
            if r.effect == "permit"
            and self.matches(r.sender, flow.sender) and self.matches(r.recipient, flow.recipient)
            and any(ancestor_or_self(d, c) for d in r.data)
            and (r.purposes is None
                 or any(ancestor_or_self(p, flow.purpose) for p in r.purposes))
            and (r.subprocesses is None or flow.subprocess in r.subprocesses)
        ]
        if not permits:
            return Verdict("deny", "NO_PERMIT_RULE")
        lawful = [r.id for r in permits if r.basis != "consent"]
        if lawful:
            return Verdict("permit", "PERMITTED", rule=min(lawful))
        in_scope = [
            k for k in self.consents
            if k.subject == flow.subject
            and any(self.matches(s, flow.recipient) for s in k.recipients)
            and any(ancestor_or_self(d, c) for d in k.data)
            and any(ancestor_or_self(p, flow.purpose) for p in k.purposes)
            and (k.subprocesses is None or flow.subprocess in k.subprocesses)
        ]
        if not in_scope:
            return Verdict("deny", "CONSENT_MISSING")
        failures = {k.id: self.consent_failures(k, c, t) for k in in_scope}
        valid = [kid for kid, reasons in failures.items() if not reasons]
        if valid:
            return Verdict("permit", "PERMITTED", rule=min(r.id for r in permits),
                           consent=min(valid))
        every = [reason for reasons in failures.values() for reason in reasons]
        primary = min(every, key=ORACLE_PRECEDENCE.index)
        return Verdict("deny", primary, consents=tuple(
            sorted(kid for kid, reasons in failures.items() if primary in reasons)))

    def decide(self, flow: Flow) -> dict[str, Verdict]:
        unknown = [c for c in flow.data if c not in self.categories]
        leaves = sorted({leaf for c in flow.data if c in self.categories
                         for leaf in self.leaves(c)})
        bad_request = (flow.sender not in self.policy.actors
                       or flow.recipient not in self.policy.actors
                       or flow.purpose not in self.purposes
                       or flow.subprocess not in self.policy.subprocesses)
        result = {c: Verdict("deny", "UNKNOWN_ENTITY") for c in unknown}
        for leaf in leaves:
            result[leaf] = (Verdict("deny", "UNKNOWN_ENTITY") if bad_request
                            else self.decide_leaf(leaf, flow))
        return result

    def flow_reason(self, verdicts: dict[str, Verdict]) -> str:
        denied = [v.code for v in verdicts.values() if v.decision == "deny"]
        return min(denied, key=ORACLE_PRECEDENCE.index) if denied else "PERMITTED"


# =========================================================================== 1. default deny


@SETTINGS
@given(worlds(effects=("forbid",)))
def test_without_permit_rules_everything_is_denied(world: World) -> None:
    engine = world.engine()
    for flow in world.flows:
        decision = engine.check(flow)
        assert decision.decision == "deny"
        assert decision.permitted == ()
        assert all(c.decision == "deny" for c in decision.categories)


@SETTINGS
@given(worlds(unknown=True))
def test_with_an_empty_registry_only_non_consent_permits_permit(world: World) -> None:
    empty = RegistryParts()
    engine = world.engine(registry=empty)
    consent_only = with_rules(world.policy, [r for r in world.policy.rules
                                             if r.effect == "forbid" or r.basis == "consent"])
    stripped = Engine(consent_only, InMemoryRegistry())
    rules_by_id = {r.id: r for r in world.policy.rules}
    for flow in world.flows:
        decision = engine.check(flow)
        for c in decision.categories:
            if c.decision == "permit":
                assert c.basis is not None and c.basis.consent is None
                assert c.basis.basis != "consent"
                assert rules_by_id[c.basis.rule].basis == c.basis.basis
        assert stripped.check(flow).decision == "deny"
        assert stripped.check(flow).permitted == ()


# =========================================================================== 2-3. forbids


def draw_matching_selector(draw: st.DrawFn, policy: Policy, actor_id: str) -> Selector | None:
    """A selector (or none) that matches `actor_id`."""
    actor = policy.actors[actor_id]
    org = policy.organizations[actor.organization]
    other = draw(pick(tuple(ACTORS)))
    return draw(st.sampled_from([
        None,
        Selector(),
        Selector(actor=tuple(dict.fromkeys((other, actor_id)))),
        Selector(organization=(actor.organization,)),
        Selector(kind=(org.kind,), role=(actor.role,)),
        Selector(sector=(org.sector,)),
    ]))


_WORLDS = worlds()
_WORLDS_WITH_UNKNOWNS = worlds(unknown=True)


@st.composite
def world_with_matching_forbid(draw: st.DrawFn) -> tuple[World, Flow, str, Rule]:
    world = draw(_WORLDS)
    flow = draw(st.sampled_from(world.flows))
    leaves = Oracle(world.policy, world.registry).leaves
    leaf = draw(st.sampled_from(sorted({x for c in flow.data for x in leaves(c)})))
    category = draw(st.sampled_from(prefixes(leaf)))  # a leaf's overlaps: its ancestors, itself
    extra_data = draw(subsets(CATEGORIES, min_size=0, max_size=1))
    purposes = draw(st.one_of(st.none(), st.sampled_from(
        [p for p in PURPOSES if overlap(p, flow.purpose)]).flatmap(
            lambda p: subsets(PURPOSES, min_size=0, max_size=1).map(lambda e: (p, *e)))))
    subprocesses = draw(st.one_of(st.none(), subsets(SUBPROCESSES, min_size=0, max_size=1).map(
        lambda e: (flow.subprocess, *e))))
    rule = Rule(id=draw(st.sampled_from(("0-forbid", "r-forbid", "zz-forbid"))),
                effect="forbid",
                sender=draw_matching_selector(draw, world.policy, flow.sender),
                recipient=draw_matching_selector(draw, world.policy, flow.recipient),
                data=tuple(dict.fromkeys((category, *extra_data))),
                purposes=None if purposes is None else tuple(dict.fromkeys(purposes)),
                subprocesses=None if subprocesses is None else tuple(dict.fromkeys(subprocesses)))
    return world, flow, leaf, rule


@SETTINGS
@given(world_with_matching_forbid(), st.data())
def test_a_matching_forbid_overrides_everything(
        case: tuple[World, Flow, str, Rule], data: st.DataObject) -> None:
    world, flow, leaf, forbid = case
    rules_ = list(world.policy.rules)
    rules_.insert(data.draw(st.integers(0, len(rules_))), forbid)
    decision = Engine(with_rules(world.policy, rules_), world.registry.build()).check(flow)
    [result] = [c for c in decision.categories if c.category == leaf]
    assert result.decision == "deny"
    assert result.reasons[0].code == "FORBIDDEN"
    assert forbid.id in {r.rule for r in result.reasons}
    assert result.basis is None
    assert decision.decision == "deny" and decision.reason == "FORBIDDEN"
    assert leaf not in decision.permitted


@st.composite
def world_and_any_forbid(draw: st.DrawFn) -> tuple[World, Policy]:
    world = draw(_WORLDS_WITH_UNKNOWNS)
    policy = world.policy
    special = frozenset(c for c in CATEGORIES if policy.is_special(c))
    forbid = draw_rule(draw, "new-forbid", special, effects=("forbid",))
    return world, with_rules(policy, draw_insert(draw, policy.rules, forbid))


@SETTINGS
@given(world_and_any_forbid())
def test_adding_a_forbid_never_turns_a_deny_into_a_permit(case: tuple[World, Policy]) -> None:
    world, stricter = case
    before, after = world.engine(), world.engine(policy=stricter)
    for flow in world.flows:
        assert_no_new_permits(before.check(flow), after.check(flow))


# =========================================================================== 4. order


_PERMUTATION_WORLDS = worlds(unknown=True, max_rules=7, max_guardianships=5)


def with_twins(draw: st.DrawFn, records: tuple[Any, ...], prefix: str,
               **other: tuple[str, ...]) -> tuple[Any, ...]:
    """`records` plus copies of up to two of them under new ids (and, per `other`, with
    another value of a field): order only matters between records that tie like twins."""
    result = list(records)
    for i in range(draw(st.integers(0, min(2, len(records))))):
        update = {"id": f"{prefix}{i}"}
        update.update({key: draw(pick(values)) for key, values in other.items()})
        twin = draw(pick(records)).model_copy(update=update)
        result = draw_insert(draw, tuple(result), twin)
    return tuple(result)


@st.composite
def world_and_permutation(draw: st.DrawFn) -> tuple[World, Policy, RegistryParts]:
    """A world (with some twin rules, consents and guardianships, so that several could be
    named as basis or grantor) and the same world with every list in another order."""
    world = draw(_PERMUTATION_WORLDS)
    registry = world.registry
    world = World(
        with_rules(world.policy, with_twins(draw, world.policy.rules, "r-twin")),
        RegistryParts(registry.subjects,
                      with_twins(draw, registry.guardianships, "g-twin", guardian=GUARDIANS),
                      with_twins(draw, registry.consents, "k-twin")),
        world.flows)
    policy = with_rules(world.policy, draw(st.permutations(world.policy.rules)))
    parts = RegistryParts(
        subjects=dict(reversed(list(world.registry.subjects.items()))),
        guardianships=tuple(draw(st.permutations(world.registry.guardianships))),
        consents=tuple(draw(st.permutations(world.registry.consents))))
    return world, policy, parts


@SETTINGS
@given(world_and_permutation())
def test_rule_consent_and_guardianship_order_never_changes_a_decision(
        case: tuple[World, Policy, RegistryParts]) -> None:
    world, policy, parts = case
    original, permuted = world.engine(), Engine(policy, parts.build())
    for flow in world.flows:
        a, b = dump(original.check(flow)), dump(permuted.check(flow))
        assert a == b, first_difference(a, b)


# =========================================================================== 5. narrowing

NARROWINGS = ("withdraw", "expire", "drop-recipient", "drop-data", "drop-purpose",
              "restrict-subprocess", "not-explicit", "remove")


@st.composite
def narrowed(draw: st.DrawFn) -> tuple[World, Flow, RegistryParts, str]:
    world = draw(_WORLDS)
    flow = draw(st.sampled_from(world.flows))
    assert flow.at is not None
    if not world.registry.consents:
        extra = draw_consent(draw, "k-extra", fit=flow)
        world = World(world.policy, world.registry.with_consents((extra,)), world.flows)
    consents = list(world.registry.consents)
    # mostly narrow a consent of the flow's subject: one that may have mattered
    mine = [i for i, k in enumerate(consents) if k.subject == flow.subject]
    i = draw(pick(tuple(mine))) if mine and draw(st.integers(0, 3)) else \
        draw(st.integers(0, len(consents) - 1))
    k = consents[i]
    how = draw(st.sampled_from(NARROWINGS))
    t = flow.at
    if how == "withdraw":
        bound = draw(st.sampled_from([b for b in BOUNDS if as_utc(b) <= t] or [t]))
        consents[i] = k.model_copy(update={"withdrawn_at": as_utc(bound)})
    elif how == "expire":
        bound = draw(st.sampled_from([b for b in BOUNDS if as_utc(b) <= t] or [t]))
        consents[i] = k.model_copy(update={"expires_at": as_utc(bound)})
    elif how == "drop-recipient" and len(k.recipients) > 1:
        j = draw(st.integers(0, len(k.recipients) - 1))
        consents[i] = k.model_copy(update={"recipients": k.recipients[:j] + k.recipients[j + 1:]})
    elif how == "drop-data" and len(k.data) > 1:
        j = draw(st.integers(0, len(k.data) - 1))
        consents[i] = k.model_copy(update={"data": k.data[:j] + k.data[j + 1:]})
    elif how == "drop-purpose" and len(k.purposes) > 1:
        j = draw(st.integers(0, len(k.purposes) - 1))
        consents[i] = k.model_copy(update={"purposes": k.purposes[:j] + k.purposes[j + 1:]})
    elif how == "restrict-subprocess":
        current = k.subprocesses or SUBPROCESSES
        narrower = draw(st.lists(st.sampled_from(current), min_size=1,
                                 max_size=max(1, len(current) - 1), unique=True))
        consents[i] = k.model_copy(update={"subprocesses": tuple(narrower)})
    elif how == "not-explicit":
        consents[i] = k.model_copy(update={"explicit": False})
    else:
        how = "remove"
        del consents[i]
    return world, flow, world.registry.with_consents(consents), how


@SETTINGS
@given(narrowed())
def test_withdrawing_expiring_or_narrowing_a_consent_never_permits_more(
        case: tuple[World, Flow, RegistryParts, str]) -> None:
    world, flow, parts, how = case
    event(how)
    before, after = world.engine(), world.engine(registry=parts)
    old, new = before.check(flow), after.check(flow)
    assert_no_new_permits(old, new)
    if set(new.permitted) < set(old.permitted):
        event("a permitted category was lost")
    if how not in ("withdraw", "expire"):  # scope narrowings hold at every time
        for other in world.flows:
            assert_no_new_permits(before.check(other), after.check(other))


# =========================================================================== 6. check_many


@SETTINGS
@given(worlds(unknown=True, max_flows=6))
def test_check_many_equals_check_one_by_one(world: World) -> None:
    many = [dump(d) for d in world.engine().check_many(list(world.flows))]
    single = world.engine()
    one_by_one = [dump(single.check(f)) for f in world.flows]
    assert many == one_by_one, first_difference(many, one_by_one)
    # and a warm engine (caches filled) answers the same as a cold one
    warm = [dump(d) for d in single.check_many(list(world.flows))]
    assert many == warm, first_difference(many, warm)


# =========================================================================== 7. shape


@SETTINGS
@given(worlds(unknown=True))
def test_decisions_are_internally_consistent(world: World) -> None:
    engine = world.engine()
    rules_by_id = {r.id: r for r in world.policy.rules}
    consent_ids = {k.id: k for k in world.registry.consents}
    for flow in world.flows:
        d = engine.check(flow)
        assert d.categories
        assert d.permitted == tuple(c.category for c in d.categories if c.decision == "permit")
        assert len({c.category for c in d.categories}) == len(d.categories)
        for c in d.categories:
            assert c.reasons
            if c.decision == "permit":
                assert c.reasons[0].code == "PERMITTED"
                assert c.basis is not None and c.remedy is None
                rule = rules_by_id[c.basis.rule]
                assert rule.effect == "permit" and rule.basis == c.basis.basis
                assert c.obligations == tuple(sorted(set(rule.obligations)))
                if c.basis.basis == "consent":
                    assert c.basis.consent is not None
                    assert consent_ids[c.basis.consent].subject == flow.subject
                else:
                    assert c.basis.consent is None and c.basis.law == rule.law
            else:
                assert c.basis is None
                assert all(r.code != "PERMITTED" for r in c.reasons)
        if d.decision == "permit":
            assert d.reason == "PERMITTED"
            assert all(c.decision == "permit" for c in d.categories)
            assert d.obligations == tuple(sorted({o for c in d.categories
                                                  for o in c.obligations}))
        else:
            denied = [c.reasons[0].code for c in d.categories if c.decision == "deny"]
            assert denied
            assert d.reason == min(denied, key=DENY_PRECEDENCE.index)
            assert d.obligations == ()


CONSENT_REASONS = {"CONSENT_WITHDRAWN", "CONSENT_EXPIRED", "CONSENT_NOT_YET_VALID",
                   "CONSENT_NOT_EXPLICIT", "GRANTOR_NOT_AUTHORIZED", "GRANTOR_AUTHORITY_ENDED",
                   "CONSENT_MISSING"}


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(unknown=True, max_rules=7, max_consents=6))
def test_the_remedy_consent_would_make_a_denied_category_lawful(world: World) -> None:
    """SPEC §5: a category denied for a consent reason names the consent needed; given at the
    time of the flow by any grantor it names, that consent permits the category."""
    engine = world.engine()
    oracle = Oracle(world.policy, world.registry)
    for flow in world.flows:
        assert flow.at is not None
        for c in engine.check(flow).categories:
            if c.decision == "permit" or c.reasons[0].code not in CONSENT_REASONS:
                continue
            assert c.remedy is not None and c.remedy.action == "obtain-consent"
            needed = c.remedy.consent
            assert needed is not None
            assert c.category in needed.categories
            assert (needed.purpose, needed.subprocess) == (flow.purpose, flow.subprocess)
            assert needed.explicit == oracle.special(c.category)
            assert oracle.matches(needed.recipient, flow.recipient)
            for grantor in needed.grantors:
                if grantor.role == "subject" and grantor.from_age is None:
                    given_by = flow.subject
                elif grantor.role == "guardian" and grantor.person is not None:
                    given_by = grantor.person
                else:
                    continue  # not someone on record who may consent now
                remedy = Consent(
                    id="remedy", subject=flow.subject, given_by=given_by, given_at=flow.at,
                    recipients=(needed.recipient,), data=needed.categories,
                    purposes=(needed.purpose,), subprocesses=(needed.subprocess,),
                    explicit=needed.explicit)
                parts = world.registry.with_consents((*world.registry.consents, remedy))
                after = world.engine(registry=parts).check(flow)
                [now] = [x for x in after.categories if x.category == c.category]
                assert now.decision == "permit", (grantor, dump(after))
                event(f"remedy by the {grantor.role} tried")


# =========================================================================== 8. the oracle


def assert_agrees(world: World, engine: Engine, flow: Flow) -> None:
    oracle = Oracle(world.policy, world.registry)
    expected = oracle.decide(flow)
    decision = engine.check(flow)
    got = {c.category: c for c in decision.categories}
    context = {"flow": flow.model_dump(), "expected": expected, "got": dump(decision)}
    assert sorted(got) == sorted(expected), context
    for category, verdict in expected.items():
        c = got[category]
        if currently_in_test_context():
            event(verdict.code)
        assert (c.decision, c.reasons[0].code) == (verdict.decision, verdict.code), \
            (category, context)
        if verdict.decision == "permit":
            assert c.basis is not None
            assert (c.basis.rule, c.basis.consent) == (verdict.rule, verdict.consent), \
                (category, context)
        if verdict.code == "FORBIDDEN":  # every forbid named applies; the first is smallest
            named = [r.rule for r in c.reasons]
            assert set(named) <= set(verdict.forbids), (category, context)
            assert named[0] == verdict.forbids[0], (category, context)
        if verdict.decision == "deny" and verdict.consents:
            assert c.reasons[0].consent in verdict.consents, (category, context)
    assert decision.decision == ("permit" if all(v.decision == "permit"
                                                 for v in expected.values()) else "deny")
    assert decision.reason == oracle.flow_reason(expected), context


@settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(unknown=True, max_rules=7, max_consents=6))
def test_engine_agrees_with_a_naive_reading_of_the_spec(world: World) -> None:
    engine = world.engine()
    for flow in world.flows:
        assert_agrees(world, engine, flow)


@settings(deadline=None, max_examples=250, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(min_rules=1, max_rules=3, effects=("permit",), max_consents=6, max_flows=3))
def test_engine_agrees_with_the_oracle_on_consent_heavy_worlds(world: World) -> None:
    """Only consent-relevant permits: most leaves reach the consent and grantor checks."""
    consent_rules = [r.model_copy(update={"basis": "consent", "law": None, "art9": None})
                     if r.effect == "permit" else r for r in world.policy.rules]
    world = World(with_rules(world.policy, consent_rules), world.registry, world.flows)
    engine = world.engine()
    for flow in world.flows:
        assert_agrees(world, engine, flow)


@settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(grantor_worlds())
def test_grantor_authority_and_ages_agree_with_the_oracle(world: World) -> None:
    """Every leaf reaches the grantor checks: ages around (leap-day) birthdays, consent ages,
    parental guardianships ending at majority, guardianship scopes and validity."""
    engine = world.engine()
    for flow in world.flows:
        assert_agrees(world, engine, flow)


def _age_cases() -> list[tuple[date, datetime]]:
    return [(birth, at) for birth in BIRTH_DATES if birth is not None
            for at in sorted({*INSTANTS, *around_birthdays(birth)})]


@pytest.mark.parametrize("age", [13, 15, 16, 18])
def test_ages_agree_with_the_oracle_exhaustively(age: int) -> None:
    """Every birth date x every instant near a birthday: the subject's own consent, given at
    the moment of the flow, counts exactly from the `age`th birthday, and a parental
    guardianship counts exactly until the `age`th (majority) birthday."""
    policy = Policy(
        jurisdictions={"DK": Jurisdiction(majority_age=age, consent_age=age)},
        default_jurisdiction="DK",
        organizations={"kommune": Organization(kind="municipality", sector="public")},
        actors={"case-worker": Actor(organization="kommune", role="case-worker")},
        data_categories={"identity.name": DataCategory()}, purposes={"care": Purpose()},
        subprocesses={"co-delivery": Subprocess()},
        rules=(Rule(id="r1", effect="permit", data=("identity",), basis="consent"),))
    for birth, at in _age_cases():
        for grantor in ("c1", "p1"):
            parts = RegistryParts(
                subjects={"c1": Subject(birth_date=birth)},
                guardianships=(Guardianship(id="g1", guardian="p1", subject="c1",
                                            kind="parental", valid_from=date(1970, 1, 1)),),
                consents=(Consent(id="k1", subject="c1", given_by=grantor, given_at=at,
                                  recipients=(Selector(),), data=("identity",),
                                  purposes=("care",)),))
            flow = Flow(sender="case-worker", recipient="case-worker", subject="c1",
                        data=("identity.name",), purpose="care", subprocess="co-delivery",
                        at=at)
            world = World(policy, parts, (flow,))
            assert_agrees(world, world.engine(), flow)
            minor = age_at(birth, at) < age
            expected = "deny" if (grantor == "c1") == minor else "permit"
            assert world.engine().check(flow).decision == expected, (birth, at, grantor)


# =========================================================================== 9. fail closed

ERROR_POLICY = Policy(
    jurisdictions={"DK": Jurisdiction(majority_age=18, consent_age=15)},
    default_jurisdiction="DK",
    organizations={org: Organization(kind=kind, sector="public")
                   for org, kind in ORG_KINDS.items()},
    actors={a: Actor(organization=org, role=role) for a, (org, role) in ACTORS.items()},
    data_categories={"identity.name": DataCategory(), "health": DataCategory(special=True),
                     "health.diagnosis": DataCategory()},
    purposes={"care": Purpose()},
    subprocesses={"co-delivery": Subprocess()},
    rules=(Rule(id="by-consent", effect="permit", data=("identity", "health"),
                basis="consent"),),
)
ERROR_FLOW = Flow(sender="case-worker", recipient="manager", subject="c1",
                  data=("identity.name", "health"), purpose="care", subprocess="co-delivery",
                  at=datetime(2026, 3, 1, tzinfo=UTC))
ERROR_REGISTRY = InMemoryRegistry(
    subjects={"c1": Subject(birth_date=date(1990, 1, 1))},
    consents=[Consent(id="k1", subject="c1", given_by="c1",
                      given_at=datetime(2026, 1, 1, tzinfo=UTC), recipients=(Selector(),),
                      data=("identity", "health"), purposes=("care",), explicit=True)])


ONE_LEAF_ERROR_FLOW = ERROR_FLOW.model_copy(update={"data": ("identity.name",)})
"""Decided on the engine's fast path (one leaf), where ERROR_FLOW takes the full one."""


@pytest.mark.parametrize(("flow", "method"), [
    *((ERROR_FLOW, m) for m in ("_expand", "_judge", "_leaf", "_subject_facts", "_category",
                                "_permitted", "_combine")),
    *((ONE_LEAF_ERROR_FLOW, m) for m in ("_expand", "_judge", "_subject_facts")),
    *((ONE_LEAF_ERROR_FLOW.model_dump(), m) for m in ("_quick", "_judge", "_subject_facts")),
])
def test_any_internal_error_denies(flow: Flow | dict[str, Any], method: str,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """SPEC §5.7: the engine never fails open, whatever part of the decision breaks."""
    assert Engine(ERROR_POLICY, ERROR_REGISTRY).check(flow).decision == "permit"
    assert hasattr(Engine, method), f"the engine has no `{method}` any more: update this test"

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    for batch in (False, True):
        engine = Engine(ERROR_POLICY, ERROR_REGISTRY)  # fresh: nothing cached yet
        monkeypatch.setattr(engine, method, broken)
        if method == "_quick":  # a broken shortcut only costs the full validation
            assert engine.check(flow).decision == "permit"
            continue
        decision = engine.check_many([flow])[0] if batch else engine.check(flow)
        assert decision.decision == "deny", method
        assert decision.reason == "EVALUATION_ERROR"
        assert decision.permitted == ()
        assert decision.categories
        assert all(c.decision == "deny" and c.reasons[0].code == "EVALUATION_ERROR"
                   for c in decision.categories)


LATE_FLOW = ONE_LEAF_ERROR_FLOW.model_copy(update={"at": datetime(2025, 1, 1, tzinfo=UTC)})
"""Before the consent was given: denied, CONSENT_NOT_YET_VALID."""


@pytest.mark.parametrize(("flow", "outcome", "method"), [
    (ONE_LEAF_ERROR_FLOW, "permit", "_permitted"),
    (LATE_FLOW, "deny", "_by_consent"),
])
def test_an_explanation_that_cannot_be_built_is_an_error_and_never_recorded(
        flow: Flow, outcome: str, method: str, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """The engine decides a one-leaf flow and explains it when the decision is read, from
    compiled rules and facts. Should the explanation break (a bug), the outcome stands,
    reading the rest raises `ExplanationError` (never an incomplete decision), and with an
    audit trail that flow alone is denied with EVALUATION_ERROR, since it cannot be
    recorded; the HTTP service does the same (tests/test_server.py)."""
    good = Engine(ERROR_POLICY, ERROR_REGISTRY).check(flow)
    assert good.decision == outcome and good.categories[0].decision == outcome

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    engine = Engine(ERROR_POLICY, ERROR_REGISTRY)
    monkeypatch.setattr(engine, method, broken)
    decision = engine.check(flow)
    assert decision.decision == outcome
    with pytest.raises(ExplanationError, match="could not be built"):
        _ = decision.categories
    with pytest.raises(ExplanationError):
        decision.model_dump()

    generate_pseudonym_key(tmp_path / "pseudonym.key")
    trail = open_audit(f"sqlite:///{tmp_path / 'audit.db'}",
                       pseudonym_key=tmp_path / "pseudonym.key")
    audited = Engine(ERROR_POLICY, ERROR_REGISTRY, audit=trail)
    monkeypatch.setattr(audited, method, broken)
    other = LATE_FLOW if outcome == "permit" else ONE_LEAF_ERROR_FLOW
    single = audited.check(flow)
    fine, failed = audited.check_many([other, flow])
    for d in (single, failed):
        assert d.decision == "deny" and d.reason == "EVALUATION_ERROR"
        assert d.categories[0].reasons[0].code == "EVALUATION_ERROR"
    assert fine.decision != outcome and fine.categories


# =========================================================================== 9. ways of asking


def _variants(flow: Flow) -> list[Flow | dict[str, Any] | tuple[Any, ...]]:
    """The same flow as a caller may pass it: the model, its mapping (`at` a datetime), its
    JSON mapping (`at` a string: full validation), its row, and `at` as epoch seconds."""
    variants: list[Flow | dict[str, Any] | tuple[Any, ...]] = [
        flow, flow.model_dump(), flow.model_dump(mode="json"),
        tuple(flow.model_dump().values())]
    if flow.at is not None and flow.at.microsecond == 0 and flow.at.timestamp() >= 0:
        variants.append({**flow.model_dump(), "at": int(flow.at.timestamp())})
    return variants


@SETTINGS
@given(_WORLDS_WITH_UNKNOWNS)
def test_every_way_of_asking_gets_the_same_decision(world: World) -> None:
    """A `Flow`, its mappings (decided on the engine's fast path), `check_many`, and an engine
    that compiled every subject up front (`preload`) answer alike, explanation included."""
    flows = [f for f in world.flows if f.at is not None]  # `at` absent means "now"
    lazy = world.engine()
    preloaded = Engine(world.policy, world.registry.build(), preload=True)
    expected = [dump(lazy.check(f)) for f in flows]
    for engine in (lazy, preloaded):
        for index, flow in enumerate(flows):
            for variant in _variants(flow):
                got = dump(engine.check(variant))
                assert got == expected[index], first_difference(got, expected[index])
        for variant_index in range(4):
            batch = [_variants(f)[variant_index] for f in flows]
            assert [dump(d) for d in engine.check_many(batch)] == expected


_ID_LIKE = st.sampled_from(["c1", "nurse", "x", "café", "a b", "", "a\n", "a" * 200,
                            "a" * 201, "ok.id:with@all+chars-/", ".leading-dot"])
_ANY = st.one_of(_ID_LIKE, st.integers(-2, 2), st.none(), st.booleans(),
                 st.lists(_ID_LIKE, max_size=2), st.floats(allow_nan=False))
_AT = st.one_of(
    st.none(), st.integers(-1, 3), st.sampled_from([20_000_000_000, 20_000_000_001, 2**40]),
    st.floats(0, 2e9), st.booleans(), st.sampled_from(["2026-03-01T00:00:00Z", "2026-03-01",
                                                       "yesterday", ""]),
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=2))])),
    st.datetimes())


@st.composite
def flow_mappings(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly valid flows, with every field now and then wrong in some way."""
    ok = {"sender": draw(pick(tuple(ACTORS))), "recipient": draw(pick(tuple(ACTORS))),
          "subject": draw(st.sampled_from([*SUBJECTS, UNKNOWN_SUBJECT])),
          "data": draw(st.one_of(pick(CATEGORIES), st.lists(pick(CATEGORIES), max_size=3),
                                 st.tuples(pick(CATEGORIES)))),
          "purpose": draw(pick(PURPOSES)), "subprocess": draw(pick(SUBPROCESSES)),
          "at": draw(_AT)}
    for field in list(ok):
        roll = draw(st.integers(0, 9))
        if roll == 0:
            del ok[field]
        elif roll == 1:
            ok[field] = draw(_ANY)
    if draw(st.integers(0, 9)) == 0:
        ok[draw(st.sampled_from(["extra", "Sender", "id"]))] = "x"
    return ok


@settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(_WORLDS, flow_mappings())
def test_the_fast_path_accepts_exactly_what_a_flow_accepts(world: World,
                                                           mapping: dict[str, Any]) -> None:
    """The engine's shortcut for mappings never accepts what `Flow` validation refuses, nor
    reads a field differently; what it passes over gets the full validation."""
    engine = world.engine()

    def quick(value: dict[str, Any] | tuple[Any, ...]) -> Any:
        try:
            return engine._quick(value)
        except Exception:  # as the engine uses it: an error means "validate fully"
            return None

    row = tuple(mapping.get(f) for f in FLOW_ROW_FIELDS)
    is_row = set(mapping) <= set(FLOW_ROW_FIELDS) and set(FLOW_ROW_FIELDS[:6]) <= set(mapping)
    try:
        flow = Flow.model_validate(mapping)
    except ValidationError:
        assert quick(mapping) is None
        with pytest.raises(FlowError):
            engine.check(mapping)
        if is_row:  # the same fields as a row
            assert quick(row) is None
            with pytest.raises(FlowError):
                engine.check(row)
        return
    if is_row:
        assert quick(row) == quick(mapping)
        if flow.at is not None:
            assert dump(engine.check(row)) == dump(engine.check(flow))
    prepared = quick(mapping)
    if prepared is not None:
        assert prepared[:6] == (flow.sender, flow.recipient, flow.subject, flow.data,
                                flow.purpose, flow.subprocess)
        assert prepared[6] == (None if flow.at is None else flow.at.timestamp())
        if flow.at is not None:
            assert engine._flow_of(prepared, datetime.now(UTC)) == flow
    if flow.at is not None:
        assert dump(engine.check(mapping)) == dump(engine.check(flow))


def _pending(engine: Engine, flow: Flow) -> Decision:
    return engine.check(flow.model_dump())  # a mapping: even the echoed flow is pending


@pytest.mark.parametrize("at", [datetime(2026, 3, 1, tzinfo=UTC),  # permitted
                                datetime(2025, 1, 1, tzinfo=UTC)])  # denied: not yet valid
def test_a_decision_read_any_way_is_complete(at: datetime) -> None:
    """Whatever reads a decision the engine left pending sees all of it: attributes,
    dumps, serialization inside another model, equality, hashing, copies, pickling, repr,
    iteration, and the set of fields."""
    engine = Engine(ERROR_POLICY, ERROR_REGISTRY)
    flow = ONE_LEAF_ERROR_FLOW.model_copy(update={"at": at})
    full = _pending(engine, flow)
    assert full.categories  # now complete
    reference = full.model_dump(exclude=VOLATILE)
    assert reference == Decision.model_validate(full.model_dump()).model_dump(exclude=VOLATILE)

    class Holder(BaseModel):
        decision: Decision

    readers: list[Any] = [
        lambda d: d.model_dump(),
        lambda d: Decision.model_validate_json(d.model_dump_json()),
        lambda d: Decision.model_validate(
            Holder.model_construct(decision=d).model_dump()["decision"]),
        copy.copy, copy.deepcopy, lambda d: pickle.loads(pickle.dumps(d)),
        lambda d: d.model_copy(), lambda d: Decision.model_validate(dict(d)),
    ]
    for read in readers:
        got = read(_pending(engine, flow))
        dumped = got if isinstance(got, dict) else got.model_dump()
        assert {k: v for k, v in dumped.items() if k not in VOLATILE} == reference
    d = _pending(engine, flow)
    assert d.model_fields_set == set(Decision.model_fields)
    d = _pending(engine, flow)
    assert "categories=" in repr(d) and flow.subject in repr(d)
    d = _pending(engine, flow)
    twin = Decision.model_validate({**reference, "decision_id": d.decision_id,
                                    "evaluated_at": d.evaluated_at})
    assert d == twin and hash(d) == hash(twin)
    # the completing serializer leaves the schema a decision is serialized with unchanged
    served = Decision.model_json_schema(mode="serialization")
    assert set(served["properties"]) == set(Decision.model_fields)
    assert served["properties"]["categories"]["items"] == {"$ref": "#/$defs/CategoryDecision"}
