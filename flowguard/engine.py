"""The decision engine (SPEC §5): a policy compiled into indexes, consents read through a
registry, one decision per flow with reasons, basis and remedy.

Compilation turns every selector into the set of actor ids it matches and every category
and purpose into the sets it covers, so that a check is a handful of dict and set look-ups:
rules are indexed by (recipient, leaf category) and consents by subject.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import count
from typing import TYPE_CHECKING, Any, TypeVar

from flowguard._loading import Collector, closest, gc_paused
from flowguard._source import Document
from flowguard.errors import Diagnostic, FlowError
from flowguard.model import (
    PRECEDENCE_RANK,
    Basis,
    CategoryDecision,
    Consent,
    ConsentNeeded,
    Decision,
    Flow,
    Grantor,
    Guardianship,
    Policy,
    Reason,
    ReasonCode,
    Remedy,
    Rule,
    Selector,
    Subject,
    construct,
)
from flowguard.registry import EMPTY_REGISTRY, Registry

if TYPE_CHECKING:
    from flowguard.audit.trail import AuditTrail

log = logging.getLogger("flowguard.engine")
_T = TypeVar("_T")

_INF = math.inf
_LEAF_CACHE_LIMIT = 4096
_CACHE_LIMIT = 100_000


def _ts(value: datetime | None, default: float) -> float:
    return default if value is None else value.timestamp()


def birthday_timestamp(birth: date, years: int) -> float:
    """00:00 UTC on the day a person born on `birth` turns `years` (29 Feb → 1 Mar)."""
    year = birth.year + years
    try:
        day = date(year, birth.month, birth.day)
    except ValueError:
        day = date(year, 3, 1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    id: str
    rule: Rule
    senders: frozenset[str] | None
    purposes: frozenset[str] | None
    subprocesses: frozenset[str] | None
    consent_free: bool  # a permit on a non-consent basis


@dataclass(frozen=True, slots=True)
class _CompiledConsent:
    id: str
    consent: Consent
    by_subject: bool
    given: float
    expires: float
    withdrawn: float
    actors: frozenset[str]
    leaves: frozenset[str]
    purposes: frozenset[str]
    subprocesses: frozenset[str] | None
    explicit: bool
    guardianships: tuple[_CompiledGuardianship, ...]


@dataclass(frozen=True, slots=True)
class _CompiledGuardianship:
    id: str
    guardian: str
    kind: str
    scope: frozenset[str] | None
    valid_from: float
    valid_until: float


@dataclass(frozen=True, slots=True)
class _SubjectFacts:
    consents: tuple[_CompiledConsent, ...]
    by_leaf: dict[str, tuple[_CompiledConsent, ...]]  # the consents covering each leaf
    guardianships: tuple[_CompiledGuardianship, ...]
    consent_from: float  # the subject's own consent counts from this time
    adult_from: float  # a parental guardianship ends at this time
    consent_age: int | None




class Engine:
    """Decides flows against one policy and one registry. Thread-compatible, not thread-safe
    for concurrent registry revisions (each check reads the revision once)."""

    def __init__(self, policy: Policy, registry: Registry | None = None, *,
                 audit: AuditTrail | None = None) -> None:
        self.policy = policy
        self.registry: Registry = registry if registry is not None else EMPTY_REGISTRY
        self.audit = audit
        self.policy_digest = policy.digest
        self._ids = count()
        self._id_prefix = os.urandom(6).hex() + "-"
        self._actors = policy.actors
        self._categories = policy.category_tree
        self._purposes = policy.purpose_tree
        self._special = frozenset(c for c in self._categories.ids if policy.is_special(c))
        self._selector_cache: dict[Selector, frozenset[str]] = {}
        self._leaves_cache: dict[tuple[str, ...], tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._facts: dict[str, _SubjectFacts] = {}
        # consents name few distinct recipient, data and purpose lists: share their sets
        self._shared_sets: dict[object, frozenset[str]] = {}
        self._facts_revision = self.registry.revision
        self._in_batch = False
        # a subject the registry does not know has no consents and counts as an adult
        self._unknown_subject = _SubjectFacts((), {}, (), *self._ages(None))
        self._permits: dict[tuple[str, str], tuple[_CompiledRule, ...]] = {}
        self._forbids: dict[tuple[str, str], tuple[_CompiledRule, ...]] = {}
        self._purpose_ids = self._purposes.ids
        self._subprocess_ids = frozenset(policy.subprocesses)
        self._memo: dict[tuple[object, ...], Any] = {}
        self._stages: dict[tuple[str, str, str, str, str],
                           CategoryDecision | tuple[_CompiledRule, ...]] = {}
        self._compile_rules()
        if audit is not None:
            audit.record_policy(policy)  # the activation, with the policy text kept

    # ------------------------------------------------------------------ compile

    def actors_matching(self, selector: Selector | None) -> frozenset[str] | None:
        if selector is None:
            return None
        cached = self._selector_cache.get(selector)
        if cached is not None:
            return cached
        orgs = self.policy.organizations
        matched = []
        for actor_id, actor in self._actors.items():
            org = orgs[actor.organization]
            if ((selector.actor is None or actor_id in selector.actor)
                    and (selector.organization is None
                         or actor.organization in selector.organization)
                    and (selector.kind is None or org.kind in selector.kind)
                    and (selector.sector is None or org.sector in selector.sector)
                    and (selector.role is None or actor.role in selector.role)):
                matched.append(actor_id)
        result = frozenset(matched)
        self._selector_cache[selector] = result
        return result

    def _leaves_of(self, categories: Iterable[str]) -> frozenset[str]:
        tree = self._categories
        return frozenset(leaf for c in categories if c in tree for leaf in tree.leaves(c))

    def _purposes_under(self, purposes: Iterable[str]) -> frozenset[str]:
        tree = self._purposes
        return frozenset(p for q in purposes if q in tree for p in tree.descendants_or_self(q))

    def _compile_rules(self) -> None:
        permits: dict[tuple[str, str], list[_CompiledRule]] = {}
        forbids: dict[tuple[str, str], list[_CompiledRule]] = {}
        all_actors = frozenset(self._actors)
        for rule in sorted(self.policy.rules, key=lambda r: r.id):
            if rule.effect == "forbid":
                purposes = None if rule.purposes is None else frozenset(
                    p for q in rule.purposes if q in self._purposes
                    for p in self._purposes.overlapping(q))
                target = forbids
            else:
                purposes = None if rule.purposes is None else self._purposes_under(rule.purposes)
                target = permits
            compiled = _CompiledRule(
                id=rule.id, rule=rule, senders=self.actors_matching(rule.sender),
                purposes=purposes,
                subprocesses=None if rule.subprocesses is None else frozenset(rule.subprocesses),
                consent_free=rule.effect == "permit" and rule.basis != "consent")
            recipients = self.actors_matching(rule.recipient)
            for recipient in sorted(all_actors if recipients is None else recipients):
                for leaf in self._leaves_of(rule.data):
                    target.setdefault((recipient, leaf), []).append(compiled)
        self._permits = {k: tuple(v) for k, v in permits.items()}
        self._forbids = {k: tuple(v) for k, v in forbids.items()}
        # the rule stage depends on the sender only where some rule selects senders
        self._sender_aware = frozenset(
            recipient for index in (self._permits, self._forbids)
            for (recipient, _), rules in index.items()
            if any(r.senders is not None for r in rules))

    def _subject_facts(self, subject_id: str) -> _SubjectFacts:
        if not self._in_batch:
            self._sync_registry()
        facts = self._facts.get(subject_id)
        if facts is None:
            facts = self._compile_subject(subject_id)
            if facts is not self._unknown_subject:  # unknown ids must not grow the cache
                self._facts[subject_id] = facts
        return facts

    def _sync_registry(self) -> None:
        """Read the registry's revision (one cheap query on a database) and drop the facts
        of subjects changed since: a change committed anywhere is seen by the next check."""
        revision = self.registry.revision
        if revision != self._facts_revision:
            self._forget_changes()
            self._facts_revision = revision

    def _forget_changes(self) -> None:
        """Drop the compiled facts of subjects whose records changed since they were read.
        (The memo holds only values determined by their keys, so it stays valid.)"""
        changed = self.registry.changed_since(self._facts_revision)
        if changed is None or len(changed) * 4 > len(self._facts):
            self._facts.clear()
            return
        for subject_id in changed:
            self._facts.pop(subject_id, None)

    def _compile_subject(self, subject_id: str) -> _SubjectFacts:
        subject, consents, guardianship_records = self.registry.records_of(subject_id)
        if subject is None and not consents:
            return self._unknown_subject
        consent_from, adult_from, consent_age = self._ages(subject)
        guardianships = tuple(self._compile_guardianship(g) for g in sorted(
            guardianship_records, key=lambda g: g.id))
        compiled = []
        shared = self._shared_sets
        for k in consents:
            actors = shared.get(k.recipients)
            if actors is None:
                actors = shared[k.recipients] = frozenset().union(
                    *(self.actors_matching(selector) or () for selector in k.recipients))
            leaves = shared.get(("data", k.data))
            if leaves is None:
                leaves = shared[("data", k.data)] = self._leaves_of(k.data)
            purposes = shared.get(("purposes", k.purposes))
            if purposes is None:
                purposes = shared[("purposes", k.purposes)] = self._purposes_under(k.purposes)
            subprocesses = None
            if k.subprocesses is not None:
                subprocesses = shared.get(("subprocesses", k.subprocesses))
                if subprocesses is None:
                    subprocesses = shared[("subprocesses", k.subprocesses)] = frozenset(
                        k.subprocesses)
            compiled.append(_CompiledConsent(
                id=k.id, consent=k, by_subject=k.given_by == subject_id,
                given=k.given_at.timestamp(), expires=_ts(k.expires_at, _INF),
                withdrawn=_ts(k.withdrawn_at, _INF), actors=actors, leaves=leaves,
                purposes=purposes, subprocesses=subprocesses, explicit=k.explicit,
                guardianships=tuple(g for g in guardianships if g.guardian == k.given_by)))
        compiled.sort(key=lambda c: c.id)
        by_leaf: dict[str, list[_CompiledConsent]] = {}
        for c in compiled:
            for leaf in c.leaves:
                by_leaf.setdefault(leaf, []).append(c)
        return _SubjectFacts(tuple(compiled), {k: tuple(v) for k, v in by_leaf.items()},
                             guardianships, consent_from, adult_from, consent_age)

    def _ages(self, subject: Subject | None) -> tuple[float, float, int | None]:
        """(own consent counts from, parental guardianship ends at, consent age)."""
        jurisdiction_id = (subject.jurisdiction if subject is not None else None) \
            or self.policy.default_jurisdiction
        jurisdiction = self.policy.jurisdictions.get(jurisdiction_id or "")
        if jurisdiction is None:
            return _INF, -_INF, None  # fail closed: nobody's own consent counts
        consent_age = jurisdiction.effective_consent_age
        if subject is None or subject.birth_date is None:
            return -_INF, -_INF, consent_age  # no birth date: an adult
        return (birthday_timestamp(subject.birth_date, consent_age),
                birthday_timestamp(subject.birth_date, jurisdiction.majority_age), consent_age)

    def _compile_guardianship(self, g: Guardianship) -> _CompiledGuardianship:
        return _CompiledGuardianship(
            id=g.id, guardian=g.guardian, kind=g.kind,
            scope=None if g.scope is None else self._leaves_of(g.scope),
            valid_from=g.valid_from.timestamp(), valid_until=_ts(g.valid_until, _INF))

    # ------------------------------------------------------------------ public API

    @property
    def registry_revision(self) -> int:
        """The registry revision the engine's cached facts were last checked against."""
        return self._facts_revision

    def check(self, flow: Flow | Mapping[str, Any]) -> Decision:
        """Decide one flow (a `Flow`, or a mapping validated into one: `FlowError` if it is
        malformed). Never raises on evaluation: any internal error denies."""
        if type(flow) is not Flow:
            flow = as_flow(flow)
        now = datetime.now(UTC)
        decision = self._decide(flow, now, now.timestamp())
        if self.audit is not None:
            return self._audited([decision], now)[0]
        return decision

    def check_many(self, flows: Sequence[Flow | Mapping[str, Any]]) -> list[Decision]:
        """Decide several flows, evaluated at one instant; equal to `check` one by one.
        Malformed flows raise `FlowError` before any flow is decided."""
        ready = [f if type(f) is Flow else as_flow(f) for f in flows]
        now = datetime.now(UTC)
        now_ts = now.timestamp()
        decide = self._decide
        # the batch is decided at one instant, so against one revision of the registry
        try:
            self._sync_registry()
        except Exception as exc:  # an unreachable registry: fail closed
            log.error("registry unavailable (%s); the flows are denied", type(exc).__name__)
            decisions = [self.error_decision(flow, now) for flow in ready]
        else:
            self._in_batch = True
            # Decisions hold no reference cycles: collecting during a batch finds nothing,
            # and each collection it triggers moves the heap closer to a full one.
            try:
                with gc_paused():
                    decisions = [decide(flow, now, now_ts) for flow in ready]
            finally:
                self._in_batch = False
        if self.audit is not None:
            return self._audited(decisions, now)
        return decisions

    def _audited(self, decisions: list[Decision], now: datetime) -> list[Decision]:
        """Append the decisions to the audit log in one transaction. A decision that cannot
        be recorded must not be acted on: if the append fails, every flow is denied."""
        assert self.audit is not None
        try:
            self.audit.record_decisions(decisions, self.policy, self._facts_revision)
        except Exception as exc:
            log.error("audit append failed (%s); the flows are denied", type(exc).__name__)
            return [self.error_decision(d.flow, now, AUDIT_FAILED) for d in decisions]
        return decisions

    # ------------------------------------------------------------------ evaluation

    def _decide(self, flow: Flow, now: datetime, now_ts: float) -> Decision:
        try:
            return self._evaluate(flow, now, now_ts)
        except Exception as exc:  # fail closed, and name no citizen in the log
            log.error("evaluation error (%s); the flow is denied", type(exc).__name__)
            return self.error_decision(flow, now)

    def _next_id(self) -> str:
        return self._id_prefix + str(next(self._ids))

    def _expand(self, data: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        cached = self._leaves_cache.get(data)
        if cached is None:
            tree = self._categories
            leaves = sorted({leaf for c in data if c in tree for leaf in tree.leaves(c)})
            unknown = sorted({c for c in data if c not in tree})
            cached = (tuple(leaves), tuple(unknown))
            if len(self._leaves_cache) >= _LEAF_CACHE_LIMIT:
                self._leaves_cache.clear()
            self._leaves_cache[data] = cached
        return cached

    def _evaluate(self, flow: Flow, now: datetime, now_ts: float) -> Decision:
        at = flow.at
        if at is None:
            t = now_ts
            flow = construct(Flow, {**flow.__dict__, "at": now})
        else:
            t = at.timestamp()
        expanded = self._expand(flow.data)
        leaves = expanded[0]
        sender, recipient = flow.sender, flow.recipient
        purpose, subprocess = flow.purpose, flow.subprocess
        if (expanded[1] or sender not in self._actors or recipient not in self._actors
                or purpose not in self._purpose_ids or subprocess not in self._subprocess_ids):
            return self._unknown_decision(flow, leaves, expanded[1], now)
        if len(leaves) != 1:
            return self._combine(flow, tuple(self._decide_leaf(c, flow, t) for c in leaves),
                                 now)
        result = self._decide_leaf(leaves[0], flow, t)
        if result.decision == "permit":
            return construct(Decision, {
                "decision": "permit", "reason": ReasonCode.PERMITTED, "flow": flow,
                "categories": (result,), "permitted": leaves,
                "obligations": result.obligations, "policy_digest": self.policy_digest,
                "decision_id": self._next_id(), "evaluated_at": now})
        return construct(Decision, {
            "decision": "deny", "reason": result.reasons[0].code, "flow": flow,
            "categories": (result,), "permitted": (), "obligations": (),
            "policy_digest": self.policy_digest, "decision_id": self._next_id(),
            "evaluated_at": now})

    def _combine(self, flow: Flow, results: tuple[CategoryDecision, ...],
                 now: datetime) -> Decision:
        """A flow is permitted only when every category is; leaves come sorted."""
        permitted = tuple(r.category for r in results if r.decision == "permit")
        if len(permitted) == len(results):
            return construct(Decision, {
                "decision": "permit", "reason": ReasonCode.PERMITTED, "flow": flow,
                "categories": results, "permitted": permitted,
                "obligations": tuple(sorted({o for r in results for o in r.obligations})),
                "policy_digest": self.policy_digest, "decision_id": self._next_id(),
                "evaluated_at": now})
        primary = min((r.reasons[0].code for r in results if r.decision == "deny"),
                      key=PRECEDENCE_RANK.__getitem__)
        return construct(Decision, {
            "decision": "deny", "reason": primary, "flow": flow, "categories": results,
            "permitted": permitted, "obligations": (), "policy_digest": self.policy_digest,
            "decision_id": self._next_id(), "evaluated_at": now})

    def _decide_leaf(self, c: str, flow: Flow, t: float) -> CategoryDecision:
        recipient = flow.recipient
        key = (c, flow.sender if recipient in self._sender_aware else "", recipient,
               flow.purpose, flow.subprocess)
        stage = self._stages.get(key)
        if stage is None:
            stage = self._rule_stage(c, flow.sender, recipient, flow.purpose, flow.subprocess)
            if len(self._stages) >= _CACHE_LIMIT:
                self._stages.clear()
            self._stages[key] = stage
        if type(stage) is CategoryDecision:
            return stage
        facts = self._subject_facts(flow.subject)
        return self._by_consent(c, stage, facts, flow, t)  # type: ignore[arg-type]

    def _rule_stage(self, c: str, sender: str, recipient: str, purpose: str,
                    subprocess: str) -> CategoryDecision | tuple[_CompiledRule, ...]:
        """Steps 2-4 of SPEC §5 for one leaf, which do not depend on the subject or the time:
        the final answer (forbidden, no rule, a non-consent permit) or the applicable
        consent-based permits, sorted by id. `_decide_leaf` memoises it per (leaf, sender,
        recipient, purpose, sub-process), leaving the sender out where no rule for the
        recipient selects one."""
        key = (recipient, c)
        stage: CategoryDecision | tuple[_CompiledRule, ...]
        forbids = [f for f in self._forbids.get(key, ())
                   if (f.senders is None or sender in f.senders)
                   and (f.purposes is None or purpose in f.purposes)
                   and (f.subprocesses is None or subprocess in f.subprocesses)]
        permits = tuple(p for p in self._permits.get(key, ())
                        if (p.senders is None or sender in p.senders)
                        and (p.purposes is None or purpose in p.purposes)
                        and (p.subprocesses is None or subprocess in p.subprocesses))
        lawful = next((p for p in permits if p.consent_free), None)
        if forbids:
            stage = self._forbidden(c, forbids)
        elif not permits:
            stage = self._no_rule(c, recipient, purpose, subprocess)
        elif lawful is not None:
            stage = self._permitted(c, lawful, None)
        else:
            stage = permits
        return stage

    def _unknown_decision(self, flow: Flow, leaves: tuple[str, ...],
                          unknown_categories: tuple[str, ...], now: datetime) -> Decision:
        problems = self._unknown_entities(flow)
        results: list[CategoryDecision]
        if problems:
            reason = _unknown_reason("; ".join(problems))
            results = [_denied(c, (reason,), _FIX_REQUEST) for c in leaves]
        else:
            t = now.timestamp() if flow.at is None else flow.at.timestamp()
            results = [self._decide_leaf(c, flow, t) for c in leaves]
        for c in unknown_categories:
            message = f"unknown data category `{c}`"
            hint = closest(c, self._categories.ids)
            if hint:
                message += f" (did you mean `{hint}`?)"
            results.append(_denied(c, (_unknown_reason("; ".join([*problems, message])),),
                                   _FIX_REQUEST))
        results.sort(key=lambda r: r.category)
        return self._combine(flow, tuple(results), now)

    def _unknown_entities(self, flow: Flow) -> list[str]:
        problems = []
        for what, value, known in (("sender", flow.sender, self._actors),
                                   ("recipient", flow.recipient, self._actors),
                                   ("purpose", flow.purpose, self._purposes.ids),
                                   ("sub-process", flow.subprocess, self.policy.subprocesses)):
            if value not in known:
                hint = closest(value, known)
                problems.append(f"unknown {what} `{value}`"
                                + (f" (did you mean `{hint}`?)" if hint else ""))
        return problems

    def _permitted(self, category: str, rule: _CompiledRule,
                   consent: _CompiledConsent | None) -> CategoryDecision:
        key = ("permit", category, rule.id, None if consent is None else consent.id)
        cached: CategoryDecision | None = self._memo.get(key)
        if cached is not None:
            return cached
        r = rule.rule
        assert r.basis is not None
        consent_id = None if consent is None else consent.id
        if consent is None:
            law = f" ({r.law})" if r.law else ""
            message = f"permitted by rule `{r.id}` on basis {r.basis}{law}"
        else:
            message = f"permitted by rule `{r.id}` with consent `{consent_id}`"
        result = CategoryDecision.trusted(
            category=category, decision="permit",
            reasons=(Reason.trusted(code=ReasonCode.PERMITTED, message=message, rule=r.id,
                                    consent=consent_id),),
            basis=Basis.trusted(rule=r.id, basis=r.basis, consent=consent_id, law=r.law,
                                art9=r.art9),
            remedy=None, obligations=tuple(sorted(set(r.obligations))))
        return self._remember(key, result)

    def _forbidden(self, category: str, forbids: list[_CompiledRule]) -> CategoryDecision:
        reasons = tuple(
            Reason.trusted(code=ReasonCode.FORBIDDEN, rule=f.id, consent=None,
                           message=f"forbidden by rule `{f.id}`"
                           + (f": {f.rule.description}" if f.rule.description else ""))
            for f in forbids)
        remedy = Remedy.trusted(
            action="none", consent=None,
            message=f"rule `{forbids[0].id}` forbids this outright: no consent or other "
                    "basis can make it lawful under this policy")
        return _denied(category, reasons, remedy)

    def _no_rule(self, category: str, recipient: str, purpose: str,
                 subprocess: str) -> CategoryDecision:
        key = ("no-rule", category, recipient, purpose, subprocess)
        cached: CategoryDecision | None = self._memo.get(key)
        if cached is not None:
            return cached
        reason = Reason.trusted(
            code=ReasonCode.NO_PERMIT_RULE, rule=None, consent=None,
            message=f"no permit rule lets `{recipient}` receive `{category}` for `{purpose}` "
                    f"at `{subprocess}`")
        return self._remember(key, _denied(category, (reason,), _CHANGE_POLICY))

    def _by_consent(self, category: str, permits: tuple[_CompiledRule, ...],
                    facts: _SubjectFacts,
                    flow: Flow, t: float) -> CategoryDecision:
        recipient, purpose, subprocess = flow.recipient, flow.purpose, flow.subprocess
        special = category in self._special
        failures: list[tuple[int, str, ReasonCode, _CompiledConsent]] = []
        for k in facts.by_leaf.get(category, ()):
            if (recipient not in k.actors or purpose not in k.purposes
                    or (k.subprocesses is not None and subprocess not in k.subprocesses)):
                continue
            failure = _consent_failure(k, category, special, t, facts)
            if failure is None:
                # consents are sorted by id: the first valid one is the smallest id
                return self._permitted(category, permits[0], k)
            failures.append((PRECEDENCE_RANK[failure], k.id, failure, k))
        rule_id = permits[0].id
        grantors = _grantor_keys(category, facts, t)
        if not failures:
            reasons: tuple[Reason, ...] = (Reason.trusted(
                code=ReasonCode.CONSENT_MISSING, rule=rule_id, consent=None,
                message=f"rule `{rule_id}` needs consent for `{recipient}` to receive "
                        f"`{category}` for `{purpose}` at `{subprocess}`; none is on record"),)
        else:
            failures.sort(key=_by_rank)
            reasons = tuple(
                Reason.trusted(code=code, rule=rule_id, consent=k.id,
                               message=_consent_message(code, k, category))
                for _, _, code, k in failures)
        remedy = self._consent_remedy(category, permits, grantors, flow, special)
        return _denied(category, reasons, remedy)

    def _remember(self, key: tuple[object, ...], value: _T) -> _T:
        """Keep an immutable part of decisions for reuse, keyed by everything it depends on;
        bounded."""
        if len(self._memo) >= _CACHE_LIMIT:
            self._memo.clear()
        self._memo[key] = value
        return value

    def _consent_remedy(self, category: str, permits: tuple[_CompiledRule, ...],
                        grantor_keys: tuple[_GrantorKey, ...], flow: Flow,
                        special: bool) -> Remedy:
        organization = self._actors[flow.recipient].organization
        rules = tuple(p.id for p in permits)
        key = ("remedy", category, organization, flow.purpose, flow.subprocess, rules,
               grantor_keys)
        cached: Remedy | None = self._memo.get(key)
        if cached is not None:
            return cached
        grantors = tuple(
            Grantor.trusted(role=role, person=person, guardianship=guardianship, kind=kind,
                            from_age=from_age)
            for role, person, guardianship, kind, from_age in grantor_keys)
        needed = ConsentNeeded.trusted(
            grantors=grantors, recipient=Selector(organization=(organization,)),
            categories=(category,), purpose=flow.purpose, subprocess=flow.subprocess,
            explicit=special, rules=rules)
        who = " or ".join(_grantor_text(g) for g in grantors) or "nobody on record"
        message = (f"obtain {'explicit ' if special else ''}consent from {who} for "
                   f"`{organization}` to receive `{category}` for `{flow.purpose}` "
                   f"at `{flow.subprocess}`")
        return self._remember(key, Remedy.trusted(action="obtain-consent", message=message,
                                                  consent=needed))

    def error_decision(self, flow: Flow, now: datetime,
                       message: str = "internal evaluation error; denied (fail closed)"
                       ) -> Decision:
        """The fail-closed answer: every category denied with `EVALUATION_ERROR`."""
        reason = Reason(code=ReasonCode.EVALUATION_ERROR, message=message)
        categories = tuple(_denied(c, (reason,), None) for c in sorted(set(flow.data)))
        if not categories:  # pragma: no cover - a Flow always names a category
            raise FlowError([Diagnostic("a flow names no data category", "<flow>")])
        return Decision(decision="deny", reason=ReasonCode.EVALUATION_ERROR, flow=flow,
                        categories=categories, permitted=(), obligations=(),
                        policy_digest=self.policy_digest, decision_id=self._next_id(),
                        evaluated_at=now)


AUDIT_FAILED = "the decision could not be recorded in the audit log; denied (fail closed)"


def as_flow(value: object, source: str = "<flow>") -> Flow:
    """A `Flow` from a flow or a mapping; `FlowError` naming each problem otherwise."""
    if isinstance(value, Flow):
        return value
    collector = Collector()
    flow = collector.validate(Document(source, value), (), Flow, value, "flow")
    if flow is None:
        raise FlowError(collector.diagnostics)
    return flow


_CHANGE_POLICY = Remedy(
    action="change-policy",
    message="the policy must gain a permit rule with a legal basis for this flow; "
            "no consent alone can make it lawful")
_FIX_REQUEST = Remedy(action="fix-request",
                      message="correct the request: every id must be declared in the policy")


def _denied(category: str, reasons: tuple[Reason, ...], remedy: Remedy | None
            ) -> CategoryDecision:
    return construct(CategoryDecision, {
        "category": category, "decision": "deny", "reasons": reasons, "basis": None,
        "remedy": remedy, "obligations": ()})


def _unknown_reason(message: str) -> Reason:
    return Reason.trusted(code=ReasonCode.UNKNOWN_ENTITY, message=message, rule=None,
                          consent=None)


_GrantorKey = tuple[str, str | None, str | None, str | None, int | None]


def _by_rank(failure: tuple[int, str, ReasonCode, _CompiledConsent]) -> tuple[int, str]:
    return failure[0], failure[1]


def _grantor_keys(category: str, facts: _SubjectFacts, t: float) -> tuple[_GrantorKey, ...]:
    """Who could give the consent for `category` at `t`: (role, person, guardianship, kind,
    from_age) each."""
    keys: list[_GrantorKey] = []
    if t >= facts.consent_from:
        keys.append(("subject", None, None, None, None))
    elif facts.consent_age is not None:
        keys.append(("subject", None, None, None, facts.consent_age))
    for g in facts.guardianships:
        if (g.scope is None or category in g.scope) and _guardian_valid(g, t, facts):
            keys.append(("guardian", g.guardian, g.id, g.kind, None))
    if t < facts.adult_from and not any(k[0] == "guardian" for k in keys):
        keys.append(("guardian", None, None, "parental", None))
    return tuple(keys)


def _guardian_valid(g: _CompiledGuardianship, at: float, facts: _SubjectFacts) -> bool:
    return (g.valid_from <= at < g.valid_until
            and (g.kind != "parental" or at < facts.adult_from))


def _consent_failure(k: _CompiledConsent, category: str, special: bool, t: float,
                     facts: _SubjectFacts) -> ReasonCode | None:
    """The highest-precedence reason this in-scope consent does not count, or None."""
    if t >= k.withdrawn:
        return ReasonCode.CONSENT_WITHDRAWN
    if t >= k.expires:
        return ReasonCode.CONSENT_EXPIRED
    if t < k.given:
        return ReasonCode.CONSENT_NOT_YET_VALID
    if special and not k.explicit:
        return ReasonCode.CONSENT_NOT_EXPLICIT
    if k.by_subject:
        if k.given < facts.consent_from:
            return ReasonCode.GRANTOR_NOT_AUTHORIZED
        return None if t >= facts.consent_from else ReasonCode.GRANTOR_AUTHORITY_ENDED
    had_authority = False
    for g in k.guardianships:
        if g.scope is not None and category not in g.scope:
            continue
        if _guardian_valid(g, k.given, facts):
            if _guardian_valid(g, t, facts):
                return None
            had_authority = True
    return (ReasonCode.GRANTOR_AUTHORITY_ENDED if had_authority
            else ReasonCode.GRANTOR_NOT_AUTHORIZED)


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat().replace("+00:00", "Z")


def _consent_message(code: ReasonCode, k: _CompiledConsent, category: str) -> str:
    c = k.consent
    if code is ReasonCode.CONSENT_WITHDRAWN:
        return f"consent `{k.id}` was withdrawn at {_iso(c.withdrawn_at)}"
    if code is ReasonCode.CONSENT_EXPIRED:
        return f"consent `{k.id}` expired at {_iso(c.expires_at)}"
    if code is ReasonCode.CONSENT_NOT_YET_VALID:
        return f"consent `{k.id}` counts only from {_iso(c.given_at)}"
    if code is ReasonCode.CONSENT_NOT_EXPLICIT:
        return (f"`{category}` is special-category data (GDPR Art. 9) and consent `{k.id}` "
                "is not explicit")
    grantor = "the subject" if k.by_subject else "the grantor"
    if code is ReasonCode.GRANTOR_NOT_AUTHORIZED:
        return (f"consent `{k.id}`: {grantor} had no authority to consent to `{category}` "
                "when it was given")
    return f"consent `{k.id}`: {grantor}'s authority over `{category}` has ended since"


def _grantor_text(g: Grantor) -> str:
    if g.role == "subject":
        return "the subject" + (f" (from age {g.from_age})" if g.from_age is not None else "")
    if g.person is None:
        return "a holder of parental responsibility"
    return f"guardian `{g.person}` ({g.kind} guardianship `{g.guardianship}`)"


def explain(decision: Decision) -> list[str]:
    """Plain-language lines explaining a decision, for terminals and reports."""
    lines = []
    for c in decision.categories:
        mark = "permit" if c.decision == "permit" else "deny  "
        lines.append(f"{mark} {c.category}: {c.reasons[0].message}")
        for extra in c.reasons[1:]:
            lines.append(f"         also: {extra.message}")
        if c.remedy is not None and c.decision == "deny":
            lines.append(f"         to make it lawful: {c.remedy.message}")
    return lines

