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
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from itertools import count
from typing import TYPE_CHECKING, Any, TypeVar

from flowguard._loading import Collector, closest, gc_paused
from flowguard._source import Document
from flowguard.errors import Diagnostic, ExplanationError, FlowError
from flowguard.model import (
    ID_PATTERN,
    MAX_CATEGORIES_PER_FLOW,
    MAX_ID_LENGTH,
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
    complete,
    construct,
    pending_decision,
)
from flowguard.registry import EMPTY_REGISTRY, InMemoryRegistry, Registry, SubjectRecords

if TYPE_CHECKING:
    from flowguard.audit.trail import AuditTrail
    from flowguard.consents import ConsentStatus

log = logging.getLogger("flowguard.engine")
_T = TypeVar("_T")

# enum members are looked up through a descriptor: hot code uses these
_CONSENT_EXPIRED = ReasonCode.CONSENT_EXPIRED
_CONSENT_MISSING = ReasonCode.CONSENT_MISSING
_CONSENT_NOT_EXPLICIT = ReasonCode.CONSENT_NOT_EXPLICIT
_CONSENT_NOT_YET_VALID = ReasonCode.CONSENT_NOT_YET_VALID
_CONSENT_WITHDRAWN = ReasonCode.CONSENT_WITHDRAWN
_EVALUATION_ERROR = ReasonCode.EVALUATION_ERROR
_FORBIDDEN = ReasonCode.FORBIDDEN
_GRANTOR_AUTHORITY_ENDED = ReasonCode.GRANTOR_AUTHORITY_ENDED
_GRANTOR_NOT_AUTHORIZED = ReasonCode.GRANTOR_NOT_AUTHORIZED
_NO_PERMIT_RULE = ReasonCode.NO_PERMIT_RULE
_PERMITTED = ReasonCode.PERMITTED
_UNKNOWN_ENTITY = ReasonCode.UNKNOWN_ENTITY
# ...and hash through a Python method: ranks by the members' (fixed) identities
_RANK = {id(code): rank for code, rank in PRECEDENCE_RANK.items()}
_INF = math.inf
_LEAF_CACHE_LIMIT = 4096
_CACHE_LIMIT = 100_000
_ID = re.compile(ID_PATTERN)
_NOT_A_CATEGORY: tuple[None, None] = (None, None)
_MAX_EPOCH_SECONDS = 20_000_000_000  # above it, validation reads an integer as milliseconds

_Prepared = tuple[str, str, str, tuple[str, ...], str, str, float | None,
                  datetime | int | None, Flow | None, str | None]
"""A validated flow's fields: sender, recipient, subject, data, purpose, sub-process, time
(seconds, None for now), the time as given (a datetime or epoch seconds), the `Flow` itself
when the caller gave one, and the flow's one leaf category when `_quick` found its ids known
and its data a single leaf (else None)."""


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
    obligations: tuple[str, ...]  # sorted, each once


@dataclass(slots=True, eq=False)
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
    # the subject's own consent, given with authority, counts from `valid_from` until
    # `valid_until` with no further question (otherwise `valid_from` is infinite)
    valid_from: float
    valid_until: float
    revision: int  # the registry revision its records were read at (as its facts')
    # the last permit this consent gave, as (leaf, rule, its decision): one slot suffices
    # for a consent used by one rule for one leaf, the common case
    last_permit: tuple[str, _CompiledRule, CategoryDecision] | None = None


@dataclass(frozen=True, slots=True)
class _CompiledGuardianship:
    id: str
    guardian: str
    kind: str
    scope: frozenset[str] | None
    valid_from: float
    valid_until: float


@dataclass(slots=True, eq=False)
class _SubjectFacts:
    consents: tuple[_CompiledConsent, ...]  # sorted by id
    # the consents covering each leaf, for a subject with many consents (else None: scan all)
    by_leaf: dict[str, tuple[_CompiledConsent, ...]] | None
    guardianships: tuple[_CompiledGuardianship, ...]
    consent_from: float  # the subject's own consent counts from this time
    adult_from: float  # a parental guardianship ends at this time
    consent_age: int | None
    revision: int = 0  # the registry revision the records were read at

    def candidates(self, leaf: str) -> tuple[_CompiledConsent, ...]:
        return self.consents if self.by_leaf is None else self.by_leaf.get(leaf, ())


_Stage = tuple[ReasonCode, Any, None]  # a Judgement that needs no subject
_CONSENT_NEEDED = _CONSENT_MISSING


@dataclass(slots=True, eq=False)
class _RuleSet:
    """The rules for one (recipient, leaf category), each kind sorted by id, and what they
    decide in each (purpose, sub-process), filled in on first use: at most one entry for
    each pair of declared ids. Where a rule selects senders, the outcome depends on the
    sender too and is not kept."""

    permits: tuple[_CompiledRule, ...]
    forbids: tuple[_CompiledRule, ...]
    by_sender: bool = False
    outcomes: dict[str, dict[str, _Stage]] = field(default_factory=dict)  # purpose, sub-process

    def __post_init__(self) -> None:
        self.by_sender = any(r.senders is not None for r in (*self.permits, *self.forbids))

    def stage(self, sender: str, purpose: str, subprocess: str) -> _Stage:
        """Steps 2-4 of SPEC §5, as the judgement they give when no consent is needed:
        (FORBIDDEN, the forbids that apply, None), (NO_PERMIT_RULE, None, None), (PERMITTED,
        the smallest-id permit on a basis other than consent, None); or
        (`_CONSENT_NEEDED`, the consent-based permits that apply, None)."""
        hit = tuple(f for f in self.forbids
                    if (f.senders is None or sender in f.senders)
                    and (f.purposes is None or purpose in f.purposes)
                    and (f.subprocesses is None or subprocess in f.subprocesses))
        if hit:
            return _FORBIDDEN, hit, None
        permits = tuple(p for p in self.permits
                        if (p.senders is None or sender in p.senders)
                        and (p.purposes is None or purpose in p.purposes)
                        and (p.subprocesses is None or subprocess in p.subprocesses))
        if not permits:
            return _NO_PERMIT_RULE, None, None
        for p in permits:
            if p.consent_free:
                return _PERMITTED, p, None
        return _CONSENT_NEEDED, permits, None


_NO_RULES: dict[str, _RuleSet] = {}
_NO_RULE: _Stage = (_NO_PERMIT_RULE, None, None)

_INDEX_FROM = 16  # consents of one subject from which they are indexed by leaf

Judgement = tuple[ReasonCode, Any, Any]
"""One leaf's outcome before any explanation is built: (code, a, b) with
PERMITTED: (the permit rule, the consent or None); FORBIDDEN: (the forbids, None);
NO_PERMIT_RULE: (None, None); a consent code: (the applicable permits, the subject's facts)."""


class Engine:
    """Decides flows against one policy and one registry. Thread-safe: `check` and
    `check_many` may run in many threads at once, on one engine.

    Each check (a batch: once) reads the registry's revision R; a subject's records are
    read up to a revision, and its compiled facts are kept with the revision they were read
    at. Facts enter the cache only when they were read at the revision the cache is synced
    to (compare-and-set under a lock taken only to sync or store, never per decision), so
    older facts never replace newer ones. Every decision reports in `registry_revision` a
    revision at or after R at which the records it used are exactly the registry's."""

    def __init__(self, policy: Policy, registry: Registry | None = None, *,
                 audit: AuditTrail | None = None, preload: bool = False) -> None:
        """`preload`: compile every subject of an in-memory registry now rather than at its
        first check (a service's steady latency, for load time and memory); other
        registries are always read subject by subject, as checks need them."""
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
        # held only to move `_facts_revision` on or to store facts in `_facts`: every
        # cached fact is the registry's at `_facts_revision` (read without the lock)
        self._facts_lock = threading.Lock()
        # consents name few distinct recipient, data and purpose lists: share their sets
        self._actor_sets: dict[tuple[Selector, ...], frozenset[str]] = {}
        self._actor_sets_by_identity: dict[int, tuple[tuple[Selector, ...],
                                                      frozenset[str]]] = {}
        self._leaf_sets: dict[tuple[str, ...], frozenset[str]] = {}
        self._purpose_sets: dict[tuple[str, ...], frozenset[str]] = {}
        self._subprocess_sets: dict[tuple[str, ...], frozenset[str]] = {}
        self._facts_revision = self.registry.revision
        # a subject the registry does not know has no consents and counts as an adult
        self._unknown_subject = _SubjectFacts((), None, (), *self._ages(None))
        self._rules: dict[str, dict[str, _RuleSet]] = {}  # by recipient, by leaf
        self._fixed_registry = type(self.registry) is InMemoryRegistry  # revision always 0
        self._purpose_ids = self._purposes.ids
        self._category_ids = self._categories.ids
        # a category named alone: (its 1-tuple, itself when it is a leaf)
        self._singletons: dict[str, tuple[tuple[str, ...], str | None]] = {
            c: ((c,), c if self._categories.is_leaf(c) else None)
            for c in self._category_ids}
        self._subprocess_ids = frozenset(policy.subprocesses)
        self._memo: dict[tuple[object, ...], Any] = {}
        self._rest_of = self._rest  # bound once: every pending decision refers to it
        self._compile_rules()
        if preload and isinstance(self.registry, InMemoryRegistry):
            with gc_paused():
                for subject_id in self.registry.subject_ids():
                    self._subject_facts(subject_id, 0)
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
                consent_free=rule.effect == "permit" and rule.basis != "consent",
                obligations=tuple(sorted(set(rule.obligations))))
            recipients = self.actors_matching(rule.recipient)
            for recipient in sorted(all_actors if recipients is None else recipients):
                for leaf in self._leaves_of(rule.data):
                    target.setdefault((recipient, leaf), []).append(compiled)
        self._rules = {}
        for recipient, leaf in sorted(permits.keys() | forbids.keys()):
            self._rules.setdefault(recipient, {})[leaf] = _RuleSet(
                tuple(permits.get((recipient, leaf), ())),
                tuple(forbids.get((recipient, leaf), ())))

    def _subject_facts(self, subject_id: str, revision: int | None = None) -> _SubjectFacts:
        """The subject's compiled facts for a check that read the registry's `revision`
        (and synced the cache to it; None: read it now): the cached ones, else its records
        read up to `revision`. Those are cached only if the cache is still at `revision`
        (else another thread has moved it on, and the subject may have changed since)."""
        if revision is None:
            revision = self._sync_registry()
        facts = self._facts.get(subject_id)
        if facts is not None:
            return facts
        facts = self._compile_subject(subject_id, revision)
        if facts is not self._unknown_subject:  # unknown ids must not grow the cache
            with self._facts_lock:
                if revision == self._facts_revision and subject_id not in self._facts:
                    self._facts[subject_id] = facts
        return facts

    def _sync_registry(self) -> int:
        """Read the registry's revision (one cheap query on a database), drop the facts of
        subjects changed since the cache's revision and move the cache on to it: a change
        committed anywhere is seen by the next check. Returns the revision read."""
        revision: int = self.registry.revision
        if revision > self._facts_revision:
            with self._facts_lock:
                if revision > self._facts_revision:  # no other thread got there first
                    self._forget_changes()
                    self._facts_revision = revision
        return revision

    def _forget_changes(self) -> None:
        """Drop the compiled facts of subjects whose records changed since the cache's
        revision (with `_facts_lock` held). The memo holds only values determined by their
        keys, so it stays valid."""
        changed = self.registry.changed_since(self._facts_revision)
        if changed is None or len(changed) * 4 > len(self._facts):
            self._facts.clear()
            return
        for subject_id in changed:
            self._facts.pop(subject_id, None)

    def _compile_subject(self, subject_id: str, revision: int) -> _SubjectFacts:
        """The subject's facts from its records as of `revision`."""
        subject, consents, guardianship_records = self.registry.records_of(subject_id,
                                                                           revision)
        return self._compile_records(subject_id, subject, consents, guardianship_records,
                                     revision)

    def _compile_records(self, subject_id: str, subject: Subject | None,
                         consents: Sequence[Consent],
                         guardianship_records: Sequence[Guardianship],
                         revision: int) -> _SubjectFacts:
        """A subject's facts from these records (the registry's, or a write's to be)."""
        if subject is None and not consents:
            return self._unknown_subject
        consent_from, adult_from, consent_age = self._ages(subject)
        guardianships = tuple(self._compile_guardianship(g) for g in sorted(
            guardianship_records, key=_by_id)) if guardianship_records else ()
        actor_sets, leaf_sets = self._actor_sets, self._leaf_sets
        purpose_sets, subprocess_sets = self._purpose_sets, self._subprocess_sets
        compiled = []
        by_identity = self._actor_sets_by_identity
        for k in consents:
            # the record's fields, read from its dict: pydantic models answer attribute
            # reads through a hook that costs more than the read
            f = k.__dict__
            recipients = f["recipients"]
            known = by_identity.get(id(recipients))
            if known is not None and known[0] is recipients:
                actors = known[1]
            else:
                actors = actor_sets.get(recipients)  # type: ignore[assignment]
                if actors is None:
                    actors = actor_sets[recipients] = frozenset().union(
                        *(self.actors_matching(selector) or () for selector in recipients))
                if len(by_identity) >= _LEAF_CACHE_LIMIT:
                    by_identity.clear()
                # the entry holds `recipients`, so its id cannot be reused while it is there
                by_identity[id(recipients)] = (recipients, actors)
            data = f["data"]
            leaves = leaf_sets.get(data)
            if leaves is None:
                leaves = leaf_sets[data] = self._leaves_of(data)
            purpose_ids = f["purposes"]
            purposes = purpose_sets.get(purpose_ids)
            if purposes is None:
                purposes = purpose_sets[purpose_ids] = self._purposes_under(purpose_ids)
            subprocesses = subprocess_ids = f["subprocesses"]
            if subprocess_ids is not None:
                subprocesses = subprocess_sets.get(subprocess_ids)
                if subprocesses is None:
                    subprocesses = subprocess_sets[subprocess_ids] = frozenset(subprocess_ids)
            given = f["given_at"].timestamp()
            expires_at, withdrawn_at = f["expires_at"], f["withdrawn_at"]
            expires = _INF if expires_at is None else expires_at.timestamp()
            withdrawn = _INF if withdrawn_at is None else withdrawn_at.timestamp()
            given_by = f["given_by"]
            by_subject = given_by == subject_id
            if by_subject and given >= consent_from:
                valid_from, valid_until = given, min(expires, withdrawn)
            else:
                valid_from = valid_until = _INF
            compiled.append(_CompiledConsent(
                f["id"], k, by_subject, given, expires, withdrawn, actors, leaves, purposes,
                subprocesses, f["explicit"],
                tuple(g for g in guardianships if g.guardian == given_by)
                if guardianships else (),
                valid_from, valid_until, revision))
        if len(compiled) > 1:
            compiled.sort(key=_by_id)
        by_leaf: dict[str, tuple[_CompiledConsent, ...]] | None = None
        if len(compiled) >= _INDEX_FROM:
            index: dict[str, list[_CompiledConsent]] = {}
            for c in compiled:
                for leaf in c.leaves:
                    index.setdefault(leaf, []).append(c)
            by_leaf = {leaf: tuple(v) for leaf, v in index.items()}
        return _SubjectFacts(tuple(compiled), by_leaf, guardianships, consent_from, adult_from,
                             consent_age, revision)

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

    def consent_status(self, consent: Consent | str, at: datetime | None = None, *,
                       records: SubjectRecords | None = None) -> ConsentStatus:
        """A consent's lawful status at `at` (default now) under SPEC §5, with the reason
        in words: `flowguard.consents.consent_status` (the decision's own checks).
        `consent`: a record, or the id of one in the registry; `records`: the subject's
        records to judge it with (default: the registry's)."""
        from flowguard.consents import consent_status

        return consent_status(self, consent, at, records=records)

    @property
    def registry_revision(self) -> int:
        """The registry revision the engine's cached facts were last checked against."""
        return self._facts_revision

    def guardianships_in_force(self, subject_id: str, at: datetime) -> frozenset[str]:
        """The ids of the subject's guardianships in term at `at` (a parental one ends at
        majority too), as a check reads them."""
        facts = self._subject_facts(subject_id)
        t = at.timestamp()
        return frozenset(g.id for g in facts.guardianships if _guardian_valid(g, t, facts))

    def check(self, flow: FlowInput) -> Decision:
        """Decide one flow: a `Flow`, a mapping of its fields, or a row of them in field
        order (sender, recipient, subject, data, purpose, subprocess[, at]); a mapping or a
        row is validated as a `Flow` would be (`FlowError` if it is malformed). Never raises
        on evaluation: any internal error denies."""
        prepared = self._prepare(flow)
        if self.audit is None:  # the evaluation time becomes a datetime when it is read
            # whole microseconds: the datetime made from it when read is this very instant
            return self._decide(prepared, None, (time.time_ns() // 1000) / 1_000_000, None)
        now = datetime.now(UTC)
        return self._audited([self._decide(prepared, now, now.timestamp(), None)], [prepared],
                             now)[0]

    def check_many(self, flows: Iterable[FlowInput]) -> list[Decision]:
        """Decide several flows, evaluated at one instant; equal to `check` one by one.
        A malformed flow raises `FlowError`, and then no decision is returned (or audited).
        `flows` is read once, in order: a generator lets each flow be built just before it
        is decided, while it is still in the processor's cache (the cyclic garbage collector
        stays paused meanwhile, as for the whole batch)."""
        # Flows and decisions hold no reference cycles: collecting during a batch finds
        # nothing, and each collection it triggers moves the heap closer to a full one.
        with gc_paused():
            now = datetime.now(UTC)
            now_ts = now.timestamp()
            # the batch is decided at one instant, so against one revision of the registry
            try:
                revision = self._sync_registry()
            except Exception as exc:  # an unreachable registry: fail closed
                log.error("registry unavailable (%s); the flows are denied",
                          type(exc).__name__)
                ready = [self._prepare(f) for f in flows]
                decisions = [self.error_decision(self._flow_of(p, now), now) for p in ready]
            else:
                quick, validated, decide = self._quick, self._validated, self._decide
                ready, decisions = [], []
                keep = ready.append if self.audit is not None else None
                add = decisions.append
                # A malformed flow raises FlowError and no decision is returned: deciding the
                # flows before it only filled caches.
                for f in flows:
                    p = None
                    if type(f) is dict or type(f) is tuple:
                        try:
                            p = quick(f)
                        except Exception:  # the full validation below says what is wrong
                            p = None
                    if p is None:
                        p = validated(f)
                    if keep is not None:
                        keep(p)
                    add(decide(p, now, now_ts, revision))
        if self.audit is not None:
            return self._audited(decisions, ready, now)
        return decisions

    # ------------------------------------------------------------------ input

    def _prepare(self, value: FlowInput) -> _Prepared:
        """The fields of a flow, validated. A plain dict or a row of known ids goes through
        `_quick`, which accepts only what validation into a `Flow` accepts unchanged; any
        other value, or any doubt, takes the full validation (and its error messages)."""
        kind = type(value)
        if kind is dict or kind is tuple:
            try:
                quick = self._quick(value)  # type: ignore[arg-type]
            except Exception:  # a shortcut that fails costs only the full validation
                quick = None
            if quick is not None:
                return quick
        return self._validated(value)

    @staticmethod
    def _validated(value: FlowInput) -> _Prepared:
        """The fields of a flow after pydantic's validation (`FlowError` if malformed)."""
        flow = value if isinstance(value, Flow) else as_flow(value)
        at = flow.at
        return (flow.sender, flow.recipient, flow.subject, flow.data, flow.purpose,
                flow.subprocess, None if at is None else at.timestamp(), at, flow, None)

    def _quick(self, m: dict[str, Any] | tuple[Any, ...]) -> _Prepared | None:
        if isinstance(m, tuple):
            size = len(m)
            if size == 7:
                sender, recipient, subject, data, purpose, subprocess, at = m
            elif size == 6:
                sender, recipient, subject, data, purpose, subprocess = m
                at = None
            else:
                return None
        else:
            try:
                sender, recipient, subject = m["sender"], m["recipient"], m["subject"]
                data, purpose, subprocess = m["data"], m["purpose"], m["subprocess"]
            except KeyError:
                return None
            # the six fields found, and `at` or nothing else (no unknown key)
            size = len(m)
            if size == 6:
                at = None
            elif size == 7 and "at" in m:
                at = m["at"]
            else:
                return None
        actors = self._actors
        # exactly `str`: validation makes a subclass a plain string, and a subclass's own
        # equality must not decide whether an id is known
        if not (type(sender) is str and sender in actors
                and type(recipient) is str and recipient in actors
                and type(purpose) is str and purpose in self._purpose_ids
                and type(subprocess) is str and subprocess in self._subprocess_ids
                and type(subject) is str
                and (subject in self._facts
                     or (len(subject) <= MAX_ID_LENGTH and _ID.fullmatch(subject)))):
            return None
        categories = self._category_ids
        leaf = None
        if type(data) is str:
            data, leaf = self._singletons.get(data, _NOT_A_CATEGORY)
            if data is None:
                return None
        elif type(data) is tuple or type(data) is list:
            if not 0 < len(data) <= MAX_CATEGORIES_PER_FLOW:
                return None
            for c in data:
                if type(c) is not str or c not in categories:
                    return None
            data = tuple(data)
        else:
            return None
        t: float | None
        if at is None:
            t = None
        elif type(at) is int and 0 <= at <= _MAX_EPOCH_SECONDS:
            t = float(at)
        elif type(at) is datetime and at.tzinfo is UTC:
            t = at.timestamp()
        else:
            return None
        return (sender, recipient, subject, data, purpose, subprocess, t, at, None, leaf)

    @staticmethod
    def _flow_of(p: _Prepared, now: datetime) -> Flow:
        """The flow a decision echoes: the one given, with the evaluation time if it had
        none."""
        flow, at = p[8], p[7]
        if flow is not None and at is not None:
            return flow
        if at is None:
            at = now
        elif type(at) is int:
            at = datetime.fromtimestamp(at, UTC)
        return construct(Flow, {"sender": p[0], "recipient": p[1], "subject": p[2],
                                "data": p[3], "purpose": p[4], "subprocess": p[5], "at": at})

    def _audited(self, decisions: list[Decision], prepared: list[_Prepared],
                 now: datetime) -> list[Decision]:
        """Append the decisions to the audit log in one transaction. A decision that cannot
        be recorded must not be acted on: if the append fails, every flow is denied."""
        assert self.audit is not None
        for index, decision in enumerate(decisions):
            try:  # an explanation that cannot be built denies that flow alone
                complete(decision)
            except ExplanationError:
                at = decision.__dict__.get("evaluated_at") or now
                decisions[index] = self.error_decision(self._flow_of(prepared[index], at), at)
        try:
            self.audit.record_decisions(decisions, self.policy, self._facts_revision)
        except Exception as exc:
            log.error("audit append failed (%s); the flows are denied", type(exc).__name__)
            return [self.error_decision(self._flow_of(p, now), now, AUDIT_FAILED)
                    for p in prepared]
        return decisions

    # ------------------------------------------------------------------ evaluation

    def _decide(self, p: _Prepared, now: datetime | None, now_ts: float,
                revision: int | None) -> Decision:
        """Decide prepared fields at `now` (None: `now_ts`, made a datetime when read);
        `revision`: the registry's revision read (and the cache synced to it) for this
        batch, or None to read it now.

        The common case, one leaf category and known ids, is decided here on the fields
        (any error denies); its explanation and echoed flow are left to be built, from the
        very rules and facts decided on, when it is read. Anything else goes to
        `_evaluate_flow`."""
        try:
            if revision is None:
                revision = 0 if self._fixed_registry else self._sync_registry()
            t, c = p[6], p[9]
            if t is None:
                t = now_ts
            if c is None:
                sender, recipient, _, data, purpose, subprocess = p[:6]
                leaves, unknown = self._leaves_cache.get(data) or self._expand(data)
                if (unknown or len(leaves) != 1 or sender not in self._actors
                        or recipient not in self._actors or purpose not in self._purpose_ids
                        or subprocess not in self._subprocess_ids):
                    at = _instant(now, now_ts)
                    return self._evaluate_flow(self._flow_of(p, at), at, t, revision)
                c = leaves[0]
            code, a, b = self._judge(c, p, t, revision)
            # The decision is taken; the rest of it (its id's number reserved now) is built
            # when read, from compiled rules and facts whose invariants make it total.
            return pending_decision(
                {"decision": "permit" if code is _PERMITTED else "deny"},
                (self._rest_of, now, now_ts, c, t, next(self._ids), code, a, b, p, revision))
        except Exception as exc:  # fail closed, and name no citizen in the log
            log.error("evaluation error (%s); the flow is denied", type(exc).__name__)
            at = _instant(now, now_ts)
            return self.error_decision(self._flow_of(p, at), at)

    def _rest(self, now: datetime | None, now_ts: float, c: str, t: float, number: int,
              code: ReasonCode, a: Any, b: Any, p: _Prepared, revision: int) -> dict[str, Any]:
        """The fields `_decide` left out of a decision: its reason, the echoed flow, the
        category's explanation, from the very rules and facts it was decided on, and the
        registry revision of those facts (`b`, a consent or the subject's facts, when
        consent was looked at) if a newer check cached them after `revision` was read."""
        decision_id = self._id_prefix + str(number)
        judgement = (code, a, b)
        rule = a
        permitted = code is _PERMITTED
        at = _instant(now, now_ts)
        try:
            flow = self._flow_of(p, at)
            category = self._category(c, judgement, flow, t)
        except Exception as exc:
            log.error("explaining a decision failed (%s)", type(exc).__name__)
            raise ExplanationError(
                f"decision {decision_id}: its explanation could not be built "
                f"({type(exc).__name__}); the outcome "
                f"`{'permit' if permitted else 'deny'}` stands") from None
        return {"reason": code, "flow": flow, "categories": (category,),
                "permitted": (c,) if permitted else (),
                "obligations": rule.obligations if permitted else (),
                "policy_digest": self.policy_digest, "decision_id": decision_id,
                "evaluated_at": at,
                "registry_revision": revision if b is None or b.revision <= revision
                else b.revision}

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

    def _judge(self, c: str, p: _Prepared, t: float, revision: int,
               pinned: list[_SubjectFacts] | None = None) -> Judgement:
        """Steps 2-6 of SPEC §5 for one leaf of a flow of known ids, without explanation:
        a forbid overrides; then a permit rule must apply; one on a basis other than
        consent suffices; otherwise the smallest-id valid consent of the subject, or the
        highest-precedence reason none counts. `revision`: the registry revision read for
        this check; `pinned` holds the subject's facts once read, so that every leaf of a
        flow is decided on the same facts."""
        recipient, purpose, subprocess = p[1], p[4], p[5]
        rules = self._rules.get(recipient, _NO_RULES).get(c)
        if rules is None:
            return _NO_RULE
        if rules.by_sender:
            stage = rules.stage(p[0], purpose, subprocess)
        else:
            by_subprocess = rules.outcomes.get(purpose)
            if by_subprocess is None:
                by_subprocess = rules.outcomes[purpose] = {}
            known = by_subprocess.get(subprocess)
            if known is None:
                known = by_subprocess[subprocess] = rules.stage(p[0], purpose, subprocess)
            stage = known
        if stage[0] is not _CONSENT_NEEDED:
            return stage
        permits: tuple[_CompiledRule, ...] = stage[1]
        # the registry's revision has been read once per check (a batch: once), unless it
        # is one that never changes
        if pinned:
            facts = pinned[0]
        else:
            subject = p[2]
            facts = self._facts.get(subject) or self._subject_facts(subject, revision)
            if pinned is not None:
                pinned.append(facts)
        special = c in self._special
        first_failure = _CONSENT_MISSING  # ranks below every failure
        for k in facts.consents if facts.by_leaf is None else facts.by_leaf.get(c, ()):
            if (c not in k.leaves or recipient not in k.actors or purpose not in k.purposes
                    or (k.subprocesses is not None and subprocess not in k.subprocesses)):
                continue
            # consents are sorted by id: the first valid one is the smallest id
            if k.valid_from <= t < k.valid_until and (k.explicit or not special):
                return _PERMITTED, permits[0], k
            failure = _consent_failure(k, c, special, t, facts)
            if failure is None:
                return _PERMITTED, permits[0], k
            if _RANK[id(failure)] < _RANK[id(first_failure)]:
                first_failure = failure
        return first_failure, permits, facts

    def _category(self, c: str, judgement: Judgement, flow: Flow, t: float
                  ) -> CategoryDecision:
        """A leaf's decision with its reasons, basis and remedy."""
        code, a, b = judgement
        if code is _PERMITTED:
            return self._permitted(c, a, b)
        if code is _FORBIDDEN:
            return self._forbidden(c, a)
        if code is _NO_PERMIT_RULE:
            return self._no_rule(c, flow.recipient, flow.purpose, flow.subprocess)
        return self._by_consent(c, a, b, flow, t)

    def _leaf(self, c: str, flow: Flow, t: float, revision: int,
              pinned: list[_SubjectFacts]) -> CategoryDecision:
        fields = (flow.sender, flow.recipient, flow.subject, flow.data, flow.purpose,
                  flow.subprocess, t, flow.at, flow, c)
        return self._category(c, self._judge(c, fields, t, revision, pinned), flow, t)

    @staticmethod
    def _revision_used(revision: int, pinned: list[_SubjectFacts]) -> int:
        """The revision a flow decided at `revision` on the `pinned` facts reports."""
        return max(revision, pinned[0].revision) if pinned else revision

    def _evaluate_flow(self, flow: Flow, now: datetime, t: float, revision: int) -> Decision:
        """Any flow, every category decided and explained at once."""
        if flow.at is None:
            flow = construct(Flow, {**flow.__dict__, "at": now})
        expanded = self._expand(flow.data)
        leaves = expanded[0]
        sender, recipient = flow.sender, flow.recipient
        purpose, subprocess = flow.purpose, flow.subprocess
        if (expanded[1] or sender not in self._actors or recipient not in self._actors
                or purpose not in self._purpose_ids or subprocess not in self._subprocess_ids):
            return self._unknown_decision(flow, leaves, expanded[1], now, revision)
        pinned: list[_SubjectFacts] = []
        results = tuple([self._leaf(c, flow, t, revision, pinned) for c in leaves])
        return self._combine(flow, results, now, self._revision_used(revision, pinned))

    def _combine(self, flow: Flow, results: tuple[CategoryDecision, ...],
                 now: datetime, revision: int) -> Decision:
        """A flow is permitted only when every category is; leaves come sorted."""
        permitted = tuple(r.category for r in results if r.decision == "permit")
        if len(permitted) == len(results):
            return construct(Decision, {
                "decision": "permit", "reason": _PERMITTED, "flow": flow,
                "categories": results, "permitted": permitted,
                "obligations": tuple(sorted({o for r in results for o in r.obligations})),
                "policy_digest": self.policy_digest, "decision_id": self._next_id(),
                "evaluated_at": now, "registry_revision": revision})
        primary = min((r.reasons[0].code for r in results if r.decision == "deny"),
                      key=PRECEDENCE_RANK.__getitem__)
        return construct(Decision, {
            "decision": "deny", "reason": primary, "flow": flow, "categories": results,
            "permitted": permitted, "obligations": (), "policy_digest": self.policy_digest,
            "decision_id": self._next_id(), "evaluated_at": now, "registry_revision": revision})

    def _unknown_decision(self, flow: Flow, leaves: tuple[str, ...],
                          unknown_categories: tuple[str, ...], now: datetime,
                          revision: int) -> Decision:
        problems = self._unknown_entities(flow)
        results: list[CategoryDecision]
        pinned: list[_SubjectFacts] = []
        if problems:
            reason = _unknown_reason("; ".join(problems))
            results = [_denied(c, (reason,), _FIX_REQUEST) for c in leaves]
        else:
            t = now.timestamp() if flow.at is None else flow.at.timestamp()
            results = [self._leaf(c, flow, t, revision, pinned) for c in leaves]
        for c in unknown_categories:
            message = f"unknown data category `{c}`"
            hint = closest(c, self._categories.ids)
            if hint:
                message += f" (did you mean `{hint}`?)"
            results.append(_denied(c, (_unknown_reason("; ".join([*problems, message])),),
                                   _FIX_REQUEST))
        results.sort(key=lambda r: r.category)
        return self._combine(flow, tuple(results), now, self._revision_used(revision, pinned))

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
        """A permitted leaf, kept for reuse with its consent, or else in the memo."""
        if consent is not None:
            last = consent.last_permit
            if last is not None and last[1] is rule and last[0] == category:
                return last[2]
        consent_id = None if consent is None else consent.id
        key = ("permit", category, rule.id, consent_id)
        cached: CategoryDecision | None = self._memo.get(key)
        if cached is not None:
            return cached
        r = rule.rule
        assert r.basis is not None
        if consent is None:
            law = f" ({r.law})" if r.law else ""
            message = f"permitted by rule `{r.id}` on basis {r.basis}{law}"
        else:
            message = f"permitted by rule `{r.id}` with consent `{consent_id}`"
        result = CategoryDecision.trusted(
            category=category, decision="permit",
            reasons=(Reason.trusted(code=_PERMITTED, message=message, rule=r.id,
                                    consent=consent_id),),
            basis=Basis.trusted(rule=r.id, basis=r.basis, consent=consent_id, law=r.law,
                                art9=r.art9),
            remedy=None, obligations=rule.obligations)
        if consent is not None:
            consent.last_permit = (category, rule, result)
        return self._remember(key, result)

    def _forbidden(self, category: str, forbids: tuple[_CompiledRule, ...]
                   ) -> CategoryDecision:
        reasons = tuple(
            Reason.trusted(code=_FORBIDDEN, rule=f.id, consent=None,
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
            code=_NO_PERMIT_RULE, rule=None, consent=None,
            message=f"no permit rule lets `{recipient}` receive `{category}` for `{purpose}` "
                    f"at `{subprocess}`")
        return self._remember(key, _denied(category, (reason,), _CHANGE_POLICY))

    def _by_consent(self, category: str, permits: tuple[_CompiledRule, ...],
                    facts: _SubjectFacts,
                    flow: Flow, t: float) -> CategoryDecision:
        recipient, purpose, subprocess = flow.recipient, flow.purpose, flow.subprocess
        special = category in self._special
        failures: list[tuple[int, str, ReasonCode, _CompiledConsent]] = []
        for k in facts.candidates(category):
            if (category not in k.leaves or recipient not in k.actors
                    or purpose not in k.purposes
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
                code=_CONSENT_MISSING, rule=rule_id, consent=None,
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
        reason = Reason(code=_EVALUATION_ERROR, message=message)
        categories = tuple(_denied(c, (reason,), None) for c in sorted(set(flow.data)))
        if not categories:  # pragma: no cover - a Flow always names a category
            raise FlowError([Diagnostic("a flow names no data category", "<flow>")])
        return Decision(decision="deny", reason=_EVALUATION_ERROR, flow=flow,
                        categories=categories, permitted=(), obligations=(),
                        policy_digest=self.policy_digest, decision_id=self._next_id(),
                        evaluated_at=now, registry_revision=None)


AUDIT_FAILED = "the decision could not be recorded in the audit log; denied (fail closed)"


FlowInput = Flow | Mapping[str, Any] | tuple[Any, ...]
"""A flow as `check` takes it: a `Flow`, a mapping of its fields, or a row of them."""

FLOW_ROW_FIELDS = ("sender", "recipient", "subject", "data", "purpose", "subprocess", "at")
"""The fields of a flow given as a row (a tuple), in order; `at` may be left out."""


def as_flow(value: object, source: str = "<flow>") -> Flow:
    """A `Flow` from a flow, a mapping or a row; `FlowError` naming each problem otherwise."""
    if isinstance(value, Flow):
        return value
    if type(value) is tuple:
        if len(value) not in (6, 7):
            raise FlowError([Diagnostic(
                f"a flow row has 6 or 7 fields ({', '.join(FLOW_ROW_FIELDS)}), not "
                f"{len(value)}", source)])
        value = dict(zip(FLOW_ROW_FIELDS, value, strict=False))
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


def _by_id(record: Guardianship | _CompiledConsent) -> str:
    return record.id


def _instant(now: datetime | None, now_ts: float) -> datetime:
    return datetime.fromtimestamp(now_ts, UTC) if now is None else now


def _denied(category: str, reasons: tuple[Reason, ...], remedy: Remedy | None
            ) -> CategoryDecision:
    return construct(CategoryDecision, {
        "category": category, "decision": "deny", "reasons": reasons, "basis": None,
        "remedy": remedy, "obligations": ()})


def _unknown_reason(message: str) -> Reason:
    return Reason.trusted(code=_UNKNOWN_ENTITY, message=message, rule=None,
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
        return _CONSENT_WITHDRAWN
    if t >= k.expires:
        return _CONSENT_EXPIRED
    if t < k.given:
        return _CONSENT_NOT_YET_VALID
    if special and not k.explicit:
        return _CONSENT_NOT_EXPLICIT
    if k.by_subject:
        if k.given < facts.consent_from:
            return _GRANTOR_NOT_AUTHORIZED
        return None if t >= facts.consent_from else _GRANTOR_AUTHORITY_ENDED
    had_authority = False
    for g in k.guardianships:
        if g.scope is not None and category not in g.scope:
            continue
        if _guardian_valid(g, k.given, facts):
            if _guardian_valid(g, t, facts):
                return None
            had_authority = True
    return (_GRANTOR_AUTHORITY_ENDED if had_authority
            else _GRANTOR_NOT_AUTHORIZED)


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat().replace("+00:00", "Z")


def _consent_message(code: ReasonCode, k: _CompiledConsent, category: str) -> str:
    c = k.consent
    if code is _CONSENT_WITHDRAWN:
        return f"consent `{k.id}` was withdrawn at {_iso(c.withdrawn_at)}"
    if code is _CONSENT_EXPIRED:
        return f"consent `{k.id}` expired at {_iso(c.expires_at)}"
    if code is _CONSENT_NOT_YET_VALID:
        return f"consent `{k.id}` counts only from {_iso(c.given_at)}"
    if code is _CONSENT_NOT_EXPLICIT:
        return (f"`{category}` is special-category data (GDPR Art. 9) and consent `{k.id}` "
                "is not explicit")
    grantor = "the subject" if k.by_subject else "the grantor"
    if code is _GRANTOR_NOT_AUTHORIZED:
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
        # the Art. 9(2) condition a special category relied on, as --json has it (issue 16)
        art9 = f", GDPR Art. 9(2) {c.basis.art9}" if c.basis is not None and c.basis.art9 \
            else ""
        lines.append(f"{mark} {c.category}: {c.reasons[0].message}{art9}")
        for extra in c.reasons[1:]:
            lines.append(f"         also: {extra.message}")
        if c.remedy is not None and c.decision == "deny":
            lines.append(f"         to make it lawful: {c.remedy.message}")
    return lines

