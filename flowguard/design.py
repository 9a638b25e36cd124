"""Flow designs (SPEC §8): a service's intended flows, classified symbolically for any citizen.

A design file lists the flows a service intends, per sub-process:

```yaml
design: {service: aalborg-aktiv, name: "...", citizen_side: [advocate]}
holds:                       # optional: data an actor has from its own records
  case-worker: [identity, social, work]
flows:
  - {id: f1, subprocess: co-design, from: care-staff, to: case-worker,
     data: [work.capacity, health.diagnosis], purpose: job-matching}
  - {id: f2, subprocess: co-design, from: citizen, to: job-consultant,
     data: [work.preferences], purpose: job-matching}
```

`citizen` is a reserved endpoint: the citizen the data is about (or whoever speaks for them,
a parent or guardian). A flow from or to it is not a disclosure between partners, so no rule
decides it; it counts as the citizen's side for the co-production check, and data the citizen
gives counts as received. Policy actors listed in `design.citizen_side` (an advocate, a
citizen-portal role) also count as the citizen's side, and flows with them are decided by the
policy like any other.

Every flow and every leaf category is classified without a registry, over all possible consent
states, by `PolicyIndex`: the rule stage of SPEC §5 (steps 1-4), which is everything that does
not depend on the subject or the time. `lawful`: a non-consent permit applies (the engine
permits it for every citizen); `needs-consent`: only consent-based permits apply (the engine
permits it exactly when the registry holds a valid consent in scope); `forbidden`, `no-rule`
and `invalid` (an unknown id): the engine denies it whatever the registry says.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field

from flowguard._hierarchy import Hierarchy
from flowguard._loading import Collector, did_you_mean
from flowguard._source import Document, SourceError, load_documents
from flowguard.errors import Diagnostic, InputError
from flowguard.model import (
    MAX_CATEGORIES_PER_FLOW,
    SELECTOR_KEYS,
    Art9Condition,
    Id,
    IdList,
    LegalBasis,
    Model,
    Policy,
    Rule,
    Selector,
    Text,
)

CITIZEN = "citizen"
"""The reserved design endpoint standing for the citizen (or a parent or guardian for them)."""

DESIGN_KEYS = frozenset({"design", "holds", "flows"})
MAX_DESIGN_FLOWS = 10_000

Outcome = Literal["lawful", "needs-consent", "with-citizen", "no-rule", "forbidden", "invalid"]
OUTCOMES: tuple[Outcome, ...] = ("lawful", "needs-consent", "with-citizen", "no-rule",
                                 "forbidden", "invalid")
"""Every outcome, in the order reports list them."""
FAILING: frozenset[str] = frozenset({"forbidden", "no-rule", "invalid"})
"""Outcomes that make `flowguard design` exit 1."""
_WORST_FIRST: tuple[Outcome, ...] = ("invalid", "forbidden", "no-rule", "needs-consent",
                                     "with-citizen", "lawful")
OUTCOME_TEXT: dict[str, str] = {
    "lawful": "a law or a contract is the basis; no consent needed",
    "needs-consent": "lawful only with the consent of the citizen or a guardian",
    "with-citizen": "given by the citizen, or back to them, directly",
    "no-rule": "no rule permits it, whatever the consent",
    "forbidden": "a rule forbids it, whatever the consent",
    "invalid": "names something the policy does not declare",
}

StageOutcome = Literal["lawful", "needs-consent", "forbidden", "no-rule"]


class DesignError(InputError):
    """A design file could not be loaded."""


# --------------------------------------------------------------------------- the file format


class DesignHeader(Model):
    """The `design` section: which service, and who stands on the citizen's side."""

    service: Id | None = None
    name: Text | None = None
    description: Text | None = None
    citizen_side: IdList | None = None


class DesignFlow(Model):
    """One intended flow: `from` and `to` are actor ids or `citizen`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: Id
    subprocess: Id
    sender: Id = Field(alias="from")
    recipient: Id = Field(alias="to")
    data: IdList = Field(max_length=MAX_CATEGORIES_PER_FLOW)
    purpose: Id
    description: Text | None = None


class Design(Model):
    """A validated design (structure only: its references are checked against a policy when
    it is analysed, and an unresolved one makes its flow `invalid`)."""

    design: DesignHeader = DesignHeader()
    holds: dict[Id, IdList] = Field(default_factory=dict)
    flows: tuple[DesignFlow, ...] = ()


Position = tuple[int | None, int | None]


@dataclass
class LoadedDesign:
    """A design with its source document, for line and column of every part."""

    design: Design
    file: str | None = None
    document: Document | None = None

    def position(self, path: Sequence[str | int]) -> Position:
        if self.document is None:
            return None, None
        return self.document.position(path)


def load_design(path: str | Path, policy: Policy | None = None) -> LoadedDesign:
    """Load a design file; `DesignError` naming every structural problem with its position.
    With `policy`, the design's own references (`service`, `citizen_side`, `holds`) are
    checked too; references in flows are not errors here: they make a flow `invalid`."""
    file = str(path)
    collector = Collector()
    try:
        documents = load_documents(Path(path))
    except SourceError as exc:
        raise DesignError([exc.diagnostic]) from None
    designs = [d for d in documents if d.data is not None]
    if len(designs) != 1:
        raise DesignError([Diagnostic("a design file holds exactly one YAML document",
                                      file, code="invalid")])
    doc = designs[0]
    data = doc.data
    if not isinstance(data, dict) or "design" not in data:
        raise DesignError([doc.diagnostic((), "not a flow design: expected a top-level "
                                          "`design` section (SPEC §8)", code="invalid")])
    for key in data:
        if key not in DESIGN_KEYS:
            collector.add(doc, (key,), f"unknown top-level key `{key}`",
                          hint=did_you_mean(key, DESIGN_KEYS), code="unknown-key",
                             at_key=True)
    header = collector.validate(doc, ("design",), DesignHeader,
                                {} if data.get("design") is None else data["design"], "design")
    holds: dict[str, tuple[str, ...]] = {}
    raw_holds = data.get("holds")
    if raw_holds is not None:
        entries = collector.expect_mapping(doc, ("holds",), raw_holds, "holds")
        for actor_id, body in (entries or {}).items():
            if not collector.expect_id(doc, ("holds", actor_id), actor_id, "actor"):
                continue
            value = collector.validate(doc, ("holds", actor_id), _Holds, {"data": body},
                                       f"holds of `{actor_id}`")
            if value is not None:
                holds[actor_id] = value.data
    flows: list[DesignFlow] = []
    raw_flows = data.get("flows")
    items = collector.expect_list(doc, ("flows",), [] if raw_flows is None else raw_flows,
                                  "flows")
    if items is not None and len(items) > MAX_DESIGN_FLOWS:
        collector.add(doc, ("flows",), f"a design holds at most {MAX_DESIGN_FLOWS} flows",
                      code="too-large")
        items = None
    seen: dict[str, int] = {}
    for index, body in enumerate(items or ()):
        flow_id = body.get("id") if isinstance(body, dict) else None
        what = f"flow `{flow_id}`" if isinstance(flow_id, str) else f"flow #{index + 1}"
        flow = collector.validate(doc, ("flows", index), DesignFlow, body, what)
        if flow is None:
            continue
        if flow.id in seen:
            collector.add(doc, ("flows", index, "id"), f"flow id `{flow.id}` is used twice "
                          f"(first as flow #{seen[flow.id] + 1})", code="duplicate")
            continue
        if flow.sender == CITIZEN and flow.recipient == CITIZEN:
            collector.add(doc, ("flows", index), f"{what}: a flow from the citizen to the "
                          "citizen shares nothing", code="invalid")
            continue
        seen[flow.id] = index
        flows.append(flow)
    if items is not None and not items and not collector.has_errors:
        collector.add(doc, ("flows",) if raw_flows is not None else (),
                      "the design lists no flows", code="empty")
    loaded = LoadedDesign(Design(design=header or DesignHeader(), holds=holds,
                                 flows=tuple(flows)), file, doc)
    if policy is not None and header is not None:
        _check_references(collector, doc, loaded.design, policy)
    if collector.has_errors:
        raise DesignError(collector.diagnostics)
    return loaded


class _Holds(Model):
    data: IdList


def _check_references(collector: Collector, doc: Document, design: Design,
                      policy: Policy) -> None:
    header = design.design
    service = policy.service.id if policy.service is not None else None
    if header.service is not None and service is not None and header.service != service:
        collector.add(doc, ("design", "service"),
                      f"this design is for service `{header.service}`, the policy is for "
                      f"`{service}`", code="unknown-reference")
    actors = set(policy.actors)
    for i, actor in enumerate(header.citizen_side or ()):
        path: tuple[str | int, ...] = ("design", "citizen_side")
        if len(header.citizen_side or ()) > 1:
            path = (*path, i)
        collector.reference(doc, path, actor, actors, "actor")
    categories = policy.category_tree.ids
    for actor, held in design.holds.items():
        collector.reference(doc, ("holds", actor), actor, actors | {CITIZEN}, "actor")
        for i, category in enumerate(held):
            collector.reference(doc, ("holds", actor, i), category, categories,
                                "data category")


# --------------------------------------------------------------------------- the rule stage


@dataclass(frozen=True, slots=True)
class LeafStatus:
    """The subject- and time-independent answer for one leaf (SPEC §5 steps 2-4).

    `rules`: the forbid rules that apply (forbidden), the basis rule (lawful) or every
    applicable consent-based permit (needs-consent), sorted; `permits`: every applicable
    permit rule, whatever its basis."""

    outcome: StageOutcome
    rules: tuple[str, ...] = ()
    permits: tuple[str, ...] = ()
    basis: LegalBasis | None = None
    law: str | None = None
    art9: Art9Condition | None = None
    explicit: bool = False
    obligations: tuple[str, ...] = ()


NO_RULE = LeafStatus("no-rule")


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRule:
    """A rule with its selectors and purposes expanded (compared by identity)."""

    id: str
    forbid: bool
    consent_free: bool
    senders: frozenset[str] | None
    recipients: frozenset[str] | None
    purposes: frozenset[str] | None
    subprocesses: frozenset[str] | None
    rule: Rule

    def applies(self, sender: str, purpose: str, subprocess: str) -> bool:
        return ((self.senders is None or sender in self.senders)
                and (self.purposes is None or purpose in self.purposes)
                and (self.subprocesses is None or subprocess in self.subprocesses))


def stage_status(applicable: Sequence[CompiledRule], special: bool) -> LeafStatus:
    """SPEC §5 steps 2-4 over the rules that apply to one leaf (sorted by id), exactly as the
    engine reads them: a forbid overrides; no permit, no rule; a non-consent permit (the
    smallest id) is the basis; else every consent-based permit, the first naming the
    obligations."""
    forbids = tuple(r.id for r in applicable if r.forbid)
    if forbids:
        return LeafStatus("forbidden", forbids)
    permits = [r for r in applicable if not r.forbid]
    if not permits:
        return NO_RULE
    ids = tuple(r.id for r in permits)
    lawful = next((r for r in permits if r.consent_free), None)
    if lawful is not None:
        rule = lawful.rule
        return LeafStatus("lawful", (rule.id,), ids, rule.basis, rule.law, rule.art9,
                          obligations=tuple(sorted(set(rule.obligations))))
    return LeafStatus("needs-consent", ids, ids, "consent", explicit=special,
                      obligations=tuple(sorted(set(permits[0].rule.obligations))))


class PolicyIndex:
    """A policy compiled for symbolic questions: every rule indexed by (recipient, leaf
    category), selectors and purposes expanded to the sets they cover, as in the engine."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.category_tree: Hierarchy = policy.category_tree
        self.purpose_tree: Hierarchy = policy.purpose_tree
        self.actor_ids: frozenset[str] = frozenset(policy.actors)
        self.purpose_ids: frozenset[str] = self.purpose_tree.ids
        self.subprocess_ids: frozenset[str] = frozenset(policy.subprocesses)
        self.subprocess_order: dict[str, int] = {s: i for i, s in enumerate(policy.subprocesses)}
        self.leaves: tuple[str, ...] = self.category_tree.all_leaves()
        self.special: frozenset[str] = frozenset(
            c for c in self.category_tree.ids if policy.is_special(c))
        self._selectors: dict[Selector, frozenset[str]] = {}
        attributes: dict[str, dict[str, set[str]]] = {k: {} for k in SELECTOR_KEYS}
        for actor_id, actor in policy.actors.items():
            org = policy.organizations[actor.organization]
            for key, value in (("actor", actor_id), ("organization", actor.organization),
                               ("kind", org.kind), ("sector", org.sector),
                               ("role", actor.role)):
                attributes[key].setdefault(value, set()).add(actor_id)
        self._attributes = {k: {v: frozenset(a) for v, a in by_value.items()}
                            for k, by_value in attributes.items()}
        self.compiled: dict[str, CompiledRule] = {}
        by_leaf: dict[str, list[CompiledRule]] = {}
        for rule in sorted(policy.rules, key=lambda r: r.id):
            compiled = self.compiled[rule.id] = self._compile(rule)
            for leaf in self.leaves_of(rule.data):
                by_leaf.setdefault(leaf, []).append(compiled)
        self.by_leaf: dict[str, tuple[CompiledRule, ...]] = {
            leaf: tuple(rules) for leaf, rules in by_leaf.items()}
        # keys with the same rules share one tuple, so that analyses can memoise by it
        self._shared: dict[tuple[CompiledRule, ...], tuple[CompiledRule, ...]] = {(): ()}
        self._at: dict[tuple[str, str], tuple[CompiledRule, ...]] = {}
        self._leaves_done: set[str] = set()
        self._all: dict[tuple[str, str], tuple[CompiledRule, ...]] | None = None

    def rules_at(self, recipient: str, leaf: str) -> tuple[CompiledRule, ...]:
        """The rules (sorted by id) that can apply to `leaf` sent to `recipient`; keys with
        the same rules get the same tuple."""
        found = self._at.get((recipient, leaf))
        if found is None:
            if leaf in self._leaves_done or recipient not in self.actor_ids:
                return ()
            # every recipient of this leaf at once: one pass over its rules
            per: dict[str, list[CompiledRule]] = {}
            for rule in self.by_leaf.get(leaf, ()):
                for actor in (self.actor_ids if rule.recipients is None
                              else rule.recipients):
                    per.setdefault(actor, []).append(rule)
            shared = self._shared
            for actor, rules in per.items():
                as_tuple = tuple(rules)
                self._at[(actor, leaf)] = shared.setdefault(as_tuple, as_tuple)
            self._leaves_done.add(leaf)
            found = self._at.get((recipient, leaf), ())
        return found

    @property
    def rules(self) -> dict[tuple[str, str], tuple[CompiledRule, ...]]:
        """Every (recipient, leaf) that some rule can apply to, with its rules (built on first
        use: analyses of the whole domain need it, a design does not)."""
        if self._all is None:
            collected: dict[tuple[str, str], list[CompiledRule]] = {}
            for compiled in sorted(self.compiled.values(), key=lambda r: r.id):
                recipients = self.actor_ids if compiled.recipients is None \
                    else compiled.recipients
                for key in product(recipients, self.leaves_of(compiled.rule.data)):
                    found = collected.get(key)
                    if found is None:
                        collected[key] = [compiled]
                    else:
                        found.append(compiled)
            shared = self._shared
            self._all = {key: shared.setdefault(as_tuple, as_tuple)
                         for key, value in collected.items() if (as_tuple := tuple(value))}
            self._at.update(self._all)
            self._leaves_done.update(self.by_leaf)
        return self._all

    def _compile(self, rule: Rule) -> CompiledRule:
        tree = self.purpose_tree
        purposes: frozenset[str] | None = None
        if rule.purposes is not None:
            if rule.effect == "forbid":  # overlap: ancestors, self and descendants
                purposes = frozenset(p for q in rule.purposes if q in tree
                                     for p in tree.overlapping(q))
            else:  # ancestor-or-self of the flow's purpose
                purposes = frozenset(p for q in rule.purposes if q in tree
                                     for p in tree.descendants_or_self(q))
        return CompiledRule(
            id=rule.id, forbid=rule.effect == "forbid",
            consent_free=rule.effect == "permit" and rule.basis != "consent",
            senders=self.matching(rule.sender), recipients=self.matching(rule.recipient),
            purposes=purposes,
            subprocesses=None if rule.subprocesses is None else frozenset(rule.subprocesses),
            rule=rule)

    def matching(self, selector: Selector | None) -> frozenset[str] | None:
        """The actors a selector matches (None: every actor): its keys ANDed, the values of
        one key ORed, as in the engine."""
        if selector is None:
            return None
        cached = self._selectors.get(selector)
        if cached is None:
            found = self.actor_ids
            for key, by_value in self._attributes.items():
                values = getattr(selector, key)
                if values is not None:
                    found = found & frozenset().union(*(by_value.get(v, ()) for v in values))
            cached = self._selectors[selector] = found
        return cached

    def leaves_of(self, categories: Iterable[str]) -> frozenset[str]:
        tree = self.category_tree
        return frozenset(leaf for c in categories if c in tree for leaf in tree.leaves(c))

    def status(self, sender: str, recipient: str, leaf: str, purpose: str,
               subprocess: str) -> LeafStatus:
        """The rule stage for one leaf of a flow whose ids are all declared."""
        applicable = [r for r in self.rules_at(recipient, leaf)
                      if r.applies(sender, purpose, subprocess)]
        return stage_status(applicable, leaf in self.special)

    def purposes_of(self, rule_id: str) -> frozenset[str] | None:
        """The flow purposes a permit rule covers (None: every purpose)."""
        return self.compiled[rule_id].purposes


# --------------------------------------------------------------------------- who may consent


@dataclass(frozen=True, slots=True)
class GrantorOption:
    """Who may give a consent, for any citizen: the citizen from an age, a holder of parental
    responsibility until an age, or an adult guardian whose scope covers the categories."""

    who: Literal["citizen", "parent", "guardian"]
    jurisdiction: str | None = None
    from_age: int | None = None
    until_age: int | None = None

    def text(self) -> str:
        where = f" ({self.jurisdiction})" if self.jurisdiction else ""
        if self.who == "citizen":
            if not self.from_age:
                return f"the citizen, at any age{where}"
            return f"the citizen from age {self.from_age}{where}"
        if self.who == "parent":
            return f"a holder of parental responsibility until the citizen is {self.until_age}" \
                   f"{where}"
        return "a guardian whose guardianship covers these categories"


def grantor_options(policy: Policy) -> tuple[GrantorOption, ...]:
    """Who may give a needed consent (SPEC §5 step 5), per jurisdiction of the policy, default
    jurisdiction first."""
    options: list[GrantorOption] = []
    default = policy.default_jurisdiction
    order = sorted(policy.jurisdictions, key=lambda j: (j != default, j))
    several = len(order) > 1
    for jid in order:
        j = policy.jurisdictions[jid]
        options.append(GrantorOption("citizen", jid if several else None,
                                     from_age=j.effective_consent_age))
    for jid in order:
        j = policy.jurisdictions[jid]
        if j.majority_age > 0:
            options.append(GrantorOption("parent", jid if several else None,
                                         until_age=j.majority_age))
    options.append(GrantorOption("guardian"))
    return tuple(options)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class ConsentRequirement:
    """The consent that makes one needs-consent leaf of a flow lawful, for any citizen."""

    organization: str
    category: str
    purpose: str
    subprocess: str
    explicit: bool
    rules: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CategoryResult:
    category: str  # a leaf, or an undeclared category as written
    requested: str  # the data item of the flow it comes from
    data_index: int
    outcome: Outcome
    message: str
    status: LeafStatus | None = None
    consent: ConsentRequirement | None = None


@dataclass(frozen=True, slots=True)
class FlowResult:
    flow: DesignFlow
    index: int  # position in the design's flows
    outcome: Outcome
    categories: tuple[CategoryResult, ...]
    problems: tuple[tuple[str, str], ...]  # (field, message) of unresolved references
    position: Position = (None, None)
    positions: tuple[tuple[str, Position], ...] = ()  # field -> position

    def where(self, key: str) -> Position:
        for name, pos in self.positions:
            if name == key:
                return pos
        return self.position

    @property
    def obligations(self) -> tuple[str, ...]:
        return tuple(sorted({o for c in self.categories if c.status is not None
                             and c.outcome in ("lawful", "needs-consent")
                             for o in c.status.obligations}))


@dataclass(frozen=True, slots=True)
class ConsentPlanItem:
    """One consent to ask every citizen for: merged per recipient organization and purpose."""

    id: str
    organization: str
    purpose: str
    categories: tuple[str, ...]  # leaves, sorted
    subprocesses: tuple[str, ...]  # in policy order
    explicit: bool
    special: tuple[str, ...]  # the special-category leaves among `categories`
    flows: tuple[str, ...]  # design order
    rules: tuple[str, ...]
    steps: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]
    """(sub-process, leaves, flow ids) in policy order."""
    obligations: tuple[str, ...]

    def record(self) -> dict[str, Any]:
        """The consent record (SPEC §4) that, given by someone with authority, makes these
        flows lawful."""
        return {"recipients": [{"organization": self.organization}],
                "data": list(self.categories), "purposes": [self.purpose],
                "subprocesses": list(self.subprocesses), "explicit": self.explicit}


Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Finding:
    """A design check beyond single flows."""

    check: str
    message: str
    flow: str | None
    position: Position
    severity: Severity = "warning"
    related: tuple[str, ...] = ()


CHECKS: dict[str, str] = {
    "forwards-unreceived": "an actor passes on data it never receives in the design",
    "special-outside-public": "special-category data reaches the private or voluntary sector",
    "co-produced-without-citizen": "a co-produced sub-process has no flow to or from the "
                                   "citizen's side",
    "purpose-creep": "data received for one purpose is passed on for another that neither "
                     "the purpose of collection nor the rules it was received under cover, "
                     "and that no consent or law covers either",
}


@dataclass(frozen=True)
class DesignReport:
    """Everything `flowguard design` found: per flow and category, the consent plan and the
    design checks. Renderers in `flowguard.reports` turn it into text, JSON, SARIF, HTML."""

    policy: Policy
    design: Design
    file: str | None
    flows: tuple[FlowResult, ...]
    plan: tuple[ConsentPlanItem, ...]
    findings: tuple[Finding, ...]
    grantors: tuple[GrantorOption, ...]
    citizen_side: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return any(f.outcome in FAILING for f in self.flows)

    def flow_result(self, flow_id: str) -> FlowResult:
        return next(f for f in self.flows if f.flow.id == flow_id)


# --------------------------------------------------------------------------- analysis


def analyse_design(policy: Policy, design: Design | LoadedDesign,
                   index: PolicyIndex | None = None) -> DesignReport:
    """Classify every flow and category of a design, plan the consents, run the checks."""
    loaded = design if isinstance(design, LoadedDesign) else LoadedDesign(design)
    return _Analysis(policy, loaded, index or PolicyIndex(policy)).run()


def worst(outcomes: Iterable[Outcome]) -> Outcome:
    found = set(outcomes)
    return next((o for o in _WORST_FIRST if o in found), "lawful")


class _Analysis:
    def __init__(self, policy: Policy, loaded: LoadedDesign, index: PolicyIndex) -> None:
        self.policy = policy
        self.loaded = loaded
        self.design = loaded.design
        self.index = index
        # a policy actor called `citizen` is that actor, decided by the policy
        self.citizen_is_actor = CITIZEN in policy.actors
        side = set(self.design.design.citizen_side or ())
        if self.citizen_is_actor:
            side.add(CITIZEN)
        self.citizen_side = tuple(sorted(a for a in side if a in policy.actors))
        self.grantors = grantor_options(policy)

    def is_citizen(self, endpoint: str) -> bool:
        return endpoint == CITIZEN and not self.citizen_is_actor

    def run(self) -> DesignReport:
        results = tuple(self._flow(i, f) for i, f in enumerate(self.design.flows))
        plan = self._plan(results)
        findings = self._checks(results)
        counts: dict[str, int] = {o: sum(r.outcome == o for r in results) for o in OUTCOMES}
        return DesignReport(self.policy, self.design, self.loaded.file, results, plan,
                            findings, self.grantors, self.citizen_side, counts)

    # ------------------------------------------------------------------ one flow

    def _flow(self, index: int, flow: DesignFlow) -> FlowResult:
        base = ("flows", index)
        positions = tuple((key, self.loaded.position((*base, key)))
                          for key in ("id", "from", "to", "purpose", "subprocess", "data"))
        data_positions = tuple(
            (f"data.{j}", self.loaded.position((*base, "data", j) if len(flow.data) > 1
                                               else (*base, "data")))
            for j in range(len(flow.data)))
        policy = self.policy
        problems: list[tuple[str, str]] = []
        for key, value, known, what in (
                ("from", flow.sender, policy.actors, "actor"),
                ("to", flow.recipient, policy.actors, "actor"),
                ("purpose", flow.purpose, self.index.purpose_ids, "purpose"),
                ("subprocess", flow.subprocess, policy.subprocesses, "sub-process")):
            if key in ("from", "to") and self.is_citizen(value):
                continue
            if value not in known:
                hint = did_you_mean(value, known)
                problems.append((key, f"unknown {what} `{value}`"
                                 + (f" ({hint})" if hint else "")))
        tree = self.index.category_tree
        leaves: dict[str, tuple[str, int]] = {}
        unknown: list[tuple[str, int]] = []
        for j, category in enumerate(flow.data):
            if category not in tree:
                hint = did_you_mean(category, tree.ids)
                problems.append((f"data.{j}", f"unknown data category `{category}`"
                                 + (f" ({hint})" if hint else "")))
                unknown.append((category, j))
                continue
            for leaf in tree.leaves(category):
                leaves.setdefault(leaf, (category, j))
        categories: list[CategoryResult] = []
        whole_flow_problem = "; ".join(m for k, m in problems if not k.startswith("data."))
        citizen_flow = self.is_citizen(flow.sender) or self.is_citizen(flow.recipient)
        for leaf in sorted(leaves):
            requested, j = leaves[leaf]
            if whole_flow_problem:
                categories.append(CategoryResult(leaf, requested, j, "invalid",
                                                 whole_flow_problem))
            elif citizen_flow:
                message = (f"given by the citizen to `{flow.recipient}`"
                           if self.is_citizen(flow.sender)
                           else f"given back to the citizen by `{flow.sender}`")
                categories.append(CategoryResult(leaf, requested, j, "with-citizen", message))
            else:
                categories.append(self._leaf(flow, leaf, requested, j))
        for category, j in unknown:
            message = "; ".join(m for k, m in problems
                                if k == f"data.{j}" or not k.startswith("data."))
            categories.append(CategoryResult(category, category, j, "invalid", message))
        categories.sort(key=lambda c: c.category)
        outcome = worst(c.outcome for c in categories)
        return FlowResult(flow, index, outcome, tuple(categories), tuple(problems),
                          self.loaded.position(base), positions + data_positions)

    def _leaf(self, flow: DesignFlow, leaf: str, requested: str, j: int) -> CategoryResult:
        status = self.index.status(flow.sender, flow.recipient, leaf, flow.purpose,
                                   flow.subprocess)
        where = f"`{flow.recipient}` receive `{leaf}` for `{flow.purpose}` at " \
                f"`{flow.subprocess}`"
        if status.outcome == "forbidden":
            text = ", ".join(f"`{r.id}`" + (f" ({' '.join(r.description.split())})"
                                            if r.description else "")
                             for r in self.policy_rules(status.rules))
            return CategoryResult(leaf, requested, j, "forbidden",
                                  f"forbidden by rule {text}", status)
        if status.outcome == "no-rule":
            return CategoryResult(leaf, requested, j, "no-rule",
                                  f"no permit rule lets {where}", status)
        if status.outcome == "lawful":
            law = f", {status.law}" if status.law else ""
            art9 = f", Art. 9(2) {status.art9}" if status.art9 else ""
            return CategoryResult(leaf, requested, j, "lawful",
                                  f"lawful by rule `{status.rules[0]}`: {status.basis}{law}"
                                  f"{art9}", status)
        organization = self.policy.actors[flow.recipient].organization
        consent = ConsentRequirement(organization, leaf, flow.purpose, flow.subprocess,
                                     status.explicit, status.rules)
        explicit = "explicit " if status.explicit else ""
        rules = ", ".join(f"`{r}`" for r in status.rules)
        return CategoryResult(leaf, requested, j, "needs-consent",
                              f"needs {explicit}consent for `{organization}` to receive "
                              f"`{leaf}` for `{flow.purpose}` at `{flow.subprocess}` "
                              f"(rule {rules}), given by {self.grantors_text(leaf)}",
                              status, consent)

    def grantors_text(self, leaf: str) -> str:
        parts = []
        for option in self.grantors:
            where = f" in {option.jurisdiction}" if option.jurisdiction else ""
            if option.who == "citizen":
                parts.append(f"the citizen (from age {option.from_age}{where})"
                             if option.from_age else f"the citizen{where}")
            elif option.who == "parent":
                parts.append(f"a parent (until the citizen is {option.until_age}{where})")
            else:
                parts.append(f"a guardian whose guardianship covers `{leaf}`")
        return ", ".join(parts[:-1]) + " or " + parts[-1] if len(parts) > 1 else parts[0]

    def policy_rules(self, ids: Iterable[str]) -> list[Rule]:
        return [self.index.compiled[i].rule for i in ids]

    # ------------------------------------------------------------------ consent plan

    def _plan(self, results: Sequence[FlowResult]) -> tuple[ConsentPlanItem, ...]:
        groups: dict[tuple[str, str], list[tuple[FlowResult, CategoryResult]]] = {}
        for result in results:
            for c in result.categories:
                if c.consent is not None:
                    groups.setdefault((c.consent.organization, c.consent.purpose),
                                      []).append((result, c))
        order = self.index.subprocess_order

        def first_use(key: tuple[str, str]) -> tuple[int, int, str, str]:
            entries = groups[key]
            return (min(order[r.flow.subprocess] for r, _ in entries),
                    min(r.index for r, _ in entries), *key)

        items = []
        for n, (organization, purpose) in enumerate(sorted(groups, key=first_use), start=1):
            entries = groups[(organization, purpose)]
            leaves = tuple(sorted({c.category for _, c in entries}))
            subprocesses = tuple(sorted({r.flow.subprocess for r, _ in entries},
                                        key=order.__getitem__))
            flows: list[str] = []
            for r, _ in sorted(entries, key=lambda e: e[0].index):
                if r.flow.id not in flows:
                    flows.append(r.flow.id)
            steps = tuple(
                (sp, tuple(sorted({c.category for r, c in entries if r.flow.subprocess == sp})),
                 tuple(dict.fromkeys(r.flow.id for r, _ in sorted(entries, key=lambda e:
                                                                 e[0].index)
                                     if r.flow.subprocess == sp)))
                for sp in subprocesses)
            special = tuple(c for c in leaves if c in self.index.special)
            rules = tuple(sorted({rule for _, c in entries if c.consent is not None
                                  for rule in c.consent.rules}))
            obligations = tuple(sorted({o for _, c in entries if c.status is not None
                                        for o in c.status.obligations}))
            items.append(ConsentPlanItem(
                id=f"consent-{n}", organization=organization, purpose=purpose,
                categories=leaves, subprocesses=subprocesses, explicit=bool(special),
                special=special, flows=tuple(flows), rules=rules, steps=steps,
                obligations=obligations))
        return tuple(items)

    # ------------------------------------------------------------------ design checks

    def _checks(self, results: Sequence[FlowResult]) -> tuple[Finding, ...]:
        findings: list[Finding] = []
        valid = [r for r in results if r.outcome != "invalid"]
        findings += self._forwarding(valid)
        findings += self._special_outside_public(valid)
        findings += self._co_produced(valid)
        order = {r.flow.id: r.index for r in results}
        findings.sort(key=lambda x: (order.get(x.flow or "", len(order)),
                                     list(CHECKS).index(x.check)))
        return tuple(findings)

    def _order(self, result: FlowResult) -> int:
        return self.index.subprocess_order[result.flow.subprocess]

    def _held(self, actor: str) -> frozenset[str]:
        return self.index.leaves_of(self.design.holds.get(actor, ()))

    def _forwarding(self, valid: Sequence[FlowResult]) -> list[Finding]:
        """Forwarding data never received, and purpose creep: both look at what an actor
        received before (or at the same sub-process as) it passes data on."""
        received: dict[tuple[str, str], list[tuple[FlowResult, CategoryResult]]] = {}
        for r in valid:
            for c in r.categories:
                if c.outcome != "invalid":
                    received.setdefault((r.flow.recipient, c.category), []).append((r, c))
        findings: list[Finding] = []
        for r in valid:
            sender = r.flow.sender
            if self.is_citizen(sender):
                continue
            held = self._held(sender)
            never: list[str] = []
            creep: dict[str, list[tuple[FlowResult, CategoryResult]]] = {}
            for c in r.categories:
                if c.category in held:
                    continue
                earlier = [(f, fc) for f, fc in received.get((sender, c.category), ())
                           if self._order(f) <= self._order(r) and f is not r]
                if not earlier:
                    never.append(c.category)
                elif (not _new_purpose_has_basis(c)
                      and not any(self._covers(f, fc, r.flow.purpose) for f, fc in earlier)):
                    creep[c.category] = earlier
            if never:
                findings.append(Finding(
                    "forwards-unreceived",
                    f"flow `{r.flow.id}`: `{sender}` passes on {_ids(never)} at "
                    f"`{r.flow.subprocess}`, but no flow of the design gives it that data at "
                    f"or before this step, and the design does not list it under `holds`",
                    r.flow.id, r.where("from")))
            if creep:
                sources = sorted({f.flow.id for pairs in creep.values() for f, _ in pairs},
                                 key=lambda i: next(x.index for x in valid if x.flow.id == i))
                got = sorted({f"`{f.flow.purpose}`" for pairs in creep.values()
                              for f, _ in pairs})
                findings.append(Finding(
                    "purpose-creep",
                    f"flow `{r.flow.id}`: `{sender}` received {_ids(sorted(creep))} for "
                    f"{', '.join(got)} (flow {', '.join(f'`{s}`' for s in sources)}) and "
                    f"passes it on for `{r.flow.purpose}`, a purpose that neither the "
                    "purpose of collection nor the rules it was received under cover "
                    "(GDPR Art. 5(1)(b), 6(4))",
                    r.flow.id, r.where("purpose"), related=tuple(sources)))
        return findings

    def _covers(self, incoming: FlowResult, category: CategoryResult, purpose: str) -> bool:
        tree = self.index.purpose_tree
        collected_for = incoming.flow.purpose
        if collected_for in tree and purpose in tree.descendants_or_self(collected_for):
            return True
        status = category.status
        if status is None:
            return False
        for rule_id in status.permits:
            covered = self.index.purposes_of(rule_id)
            if covered is None or purpose in covered:
                return True
        return False

    def _special_outside_public(self, valid: Sequence[FlowResult]) -> list[Finding]:
        findings: list[Finding] = []
        for r in valid:
            if self.is_citizen(r.flow.recipient):
                continue
            actor = self.policy.actors[r.flow.recipient]
            org = self.policy.organizations[actor.organization]
            if org.sector == "public":
                continue
            special = [c for c in r.categories if c.category in self.index.special]
            if not special:
                continue
            outcomes = sorted({c.outcome for c in special}, key=OUTCOMES.index)
            verdict = {"forbidden": "the policy forbids it",
                       "no-rule": "no rule permits it",
                       "lawful": "the policy permits it without consent",
                       "needs-consent": "the policy permits it with explicit consent, which "
                                        "is rarely freely given in a dependent relationship",
                       }
            said = "; ".join(verdict.get(o, o) for o in outcomes)
            findings.append(Finding(
                "special-outside-public",
                f"flow `{r.flow.id}`: special-category data (GDPR Art. 9) "
                f"{_ids([c.category for c in special])} is meant to reach `{r.flow.recipient}` "
                f"of `{actor.organization}` ({org.sector} sector): {said}",
                r.flow.id, r.where("to")))
        return findings

    def _co_produced(self, valid: Sequence[FlowResult]) -> list[Finding]:
        side = set(self.citizen_side)
        by_step: dict[str, list[FlowResult]] = {}
        for r in valid:
            by_step.setdefault(r.flow.subprocess, []).append(r)
        findings: list[Finding] = []
        for step, subprocess in self.policy.subprocesses.items():
            flows = by_step.get(step)
            if not subprocess.co_produced or not flows:
                continue
            with_citizen = [
                r for r in flows
                if any(self.is_citizen(e) or e in side
                       for e in (r.flow.sender, r.flow.recipient))]
            if with_citizen:
                continue
            first = flows[0]
            findings.append(Finding(
                "co-produced-without-citizen",
                f"sub-process `{step}` is co-produced (done with the citizen), but none of its "
                f"{len(flows)} {'flow' if len(flows) == 1 else 'flows'} goes to or comes from "
                "the citizen's side: add the "
                f"touchpoint (`from: citizen` or `to: citizen`), or mark the step "
                "`co_produced: false` in the policy",
                first.flow.id, first.where("subprocess"),
                related=tuple(r.flow.id for r in flows)))
        return findings


def _new_purpose_has_basis(c: CategoryResult) -> bool:
    """A further use needs no compatibility test when it rests on the citizen's consent or
    on a law (GDPR Art. 6(4)): a consent-based permit, or a permit citing a `law`; giving
    data back to the citizen is no further use."""
    if c.outcome in ("needs-consent", "with-citizen"):
        return True
    return c.outcome == "lawful" and c.status is not None and c.status.law is not None


def _ids(values: Iterable[str]) -> str:
    return ", ".join(f"`{v}`" for v in values)
