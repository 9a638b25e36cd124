"""Hypothesis strategies: small random but valid policies, registries and flows, built in code.

The vocabulary is deliberately tiny (4 organizations, 5 actors, 2 category groups with a
special one, 3 purposes with a child purpose, 3 sub-processes, 3 subjects, 2 guardians) and
all times come from a short list of instants placed around the subjects' birthdays, so that
random rules, consents and guardianships overlap often and validity bounds and ages matter.

Public strategies: `policies`, `registries`, `flows`, `worlds` (a policy, a registry and some
flows), `grantor_worlds` (worlds where every leaf reaches the grantor checks), `rules`,
`consents`, `selectors`. Each is a thin `@st.composite` wrapper around a `draw_*` function,
which other strategies call with their own `draw`: that builds no new strategy object per
example (hypothesis validates each new one, which would otherwise dominate the run time).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, timezone
from functools import cache
from typing import Any

from hypothesis import strategies as st

from flowguard import Engine, InMemoryRegistry
from flowguard.model import (
    Actor,
    Consent,
    DataCategory,
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

# --------------------------------------------------------------------------- vocabulary

ORG_KINDS = {"kommune": "municipality", "carehome": "care-home", "ngo": "ngo",
             "cafe": "employer"}
KINDS = sorted(set(ORG_KINDS.values()))
SECTORS = ("public", "private", "voluntary")
ACTORS = {
    "case-worker": ("kommune", "case-worker"),
    "consultant": ("kommune", "consultant"),
    "care-staff": ("carehome", "staff"),
    "volunteer": ("ngo", "staff"),
    "manager": ("cafe", "manager"),
}
ROLES = sorted({role for _, role in ACTORS.values()})
CATEGORY_GROUPS = {"identity": ("identity.name", "identity.address"),
                   "health": ("health.diagnosis", "health.medication")}
LEAVES = tuple(leaf for leaves in CATEGORY_GROUPS.values() for leaf in leaves)
CATEGORIES = (*CATEGORY_GROUPS, *LEAVES)  # every category id, parents included
PURPOSES = ("care", "care.follow-up", "job-matching")
SUBPROCESSES = ("co-design", "co-delivery", "co-evaluation")
SUBJECTS = ("c1", "c2", "c3")
UNKNOWN_SUBJECT = "c-unknown"
GUARDIANS = ("p1", "p2")
JURISDICTIONS = ("DK", "FI")

BIRTH_DATES = (None, date(2008, 2, 29), date(2010, 6, 15), date(2005, 3, 1),
               date(1980, 1, 1))
_PLUS2 = timezone(timedelta(hours=2))
INSTANTS = (
    datetime(2020, 1, 1, tzinfo=UTC),
    datetime(2021, 3, 1, tzinfo=UTC),             # 2008-02-29 turns 13; 2005-03-01 turns 16
    datetime(2023, 3, 1, 1, 0, tzinfo=_PLUS2),    # = 2023-02-28T23:00Z: a day before
    datetime(2023, 3, 1, tzinfo=UTC),             # 2008-02-29 turns 15; 2005-03-01 turns 18
    datetime(2023, 6, 15, tzinfo=UTC),            # 2010-06-15 turns 13
    datetime(2024, 3, 1, tzinfo=UTC),             # 2008-02-29 turns 16
    datetime(2025, 6, 14, 23, 59, 59, tzinfo=UTC),
    datetime(2025, 6, 15, tzinfo=UTC),            # 2010-06-15 turns 15
    datetime(2026, 3, 1, 1, 0, tzinfo=_PLUS2),    # = 2026-02-28T23:00Z
    datetime(2026, 3, 1, tzinfo=UTC),             # 2008-02-29 turns 18
    datetime(2026, 6, 15, tzinfo=UTC),            # 2010-06-15 turns 16
    datetime(2028, 6, 15, tzinfo=UTC),            # 2010-06-15 turns 18
)
# validity bounds may also be dates (00:00 UTC that day)
BOUNDS: tuple[datetime | date, ...] = (
    *INSTANTS, date(2021, 3, 1), date(2023, 3, 1), date(2025, 6, 15), date(2026, 3, 1),
)


def as_utc(value: datetime | date) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


# --------------------------------------------------------------------------- helpers
# Strategy objects are built once and cached, for the same reason.


@cache
def pick(values: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    return st.sampled_from(values)


@cache
def subsets(values: tuple[str, ...], min_size: int = 1,
            max_size: int = 2) -> st.SearchStrategy[tuple[str, ...]]:
    """`min_size` to `max_size` distinct values of `values`, as a tuple.

    Drawn as one choice from every such tuple (smaller ones first, for shrinking): one
    choice costs hypothesis far less than a list of choices."""
    pool = [combo for n in range(min_size, max_size + 1)
            for combo in itertools.combinations(values, n)]
    pool += [combo[::-1] for combo in pool if len(combo) > 1]  # order must not matter
    return st.sampled_from(pool)


@cache
def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`strategy` or None."""
    return st.one_of(st.none(), strategy)


@cache
def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(low, high)


_SELECTOR_CHOICES = {"actor": tuple(ACTORS), "organization": tuple(ORG_KINDS),
                     "kind": tuple(KINDS), "sector": SECTORS, "role": tuple(ROLES)}
# one-key selector parts; a selector joins zero to two parts with different keys
_SELECTOR_PARTS = st.sampled_from([
    (key, combo) for key, values in _SELECTOR_CHOICES.items()
    for n in (1, 2) for combo in itertools.combinations(values, n)])


def draw_selector(draw: st.DrawFn) -> Selector:
    """A selector with zero to two keys (zero keys: matches every actor)."""
    values: dict[str, tuple[str, ...]] = {}
    for _ in range(draw(_integers(0, 2))):
        key, combo = draw(_SELECTOR_PARTS)
        values.setdefault(key, combo)
    return Selector(**values)


@st.composite
def selectors(draw: st.DrawFn) -> Selector:
    return draw_selector(draw)


def draw_optional_selector(draw: st.DrawFn) -> Selector | None:
    return draw_selector(draw) if draw(_integers(0, 2)) else None


def draw_ids(draw: st.DrawFn, prefix: str, n: int) -> list[str]:
    """`n` distinct ids in random order, so that id order and list order differ."""
    ids = [f"{prefix}{i}" for i in range(n)]
    return [ids.pop(draw(_integers(0, len(ids) - 1))) for _ in range(n)]


def draw_later(draw: st.DrawFn, after: datetime | date) -> datetime | date | None:
    """None, or one of `BOUNDS` strictly after `after`."""
    later = tuple(b for b in BOUNDS if as_utc(b) > as_utc(after))
    return draw(maybe(pick(later))) if later else None


def draw_insert(draw: st.DrawFn, items: tuple[Any, ...], item: Any) -> list[Any]:
    """`items` with `item` inserted at a random position."""
    result = list(items)
    result.insert(draw(_integers(0, len(result))), item)
    return result


# --------------------------------------------------------------------------- policy

_EFFECTS = ("permit", "permit", "permit", "forbid")
_BASES = ("consent", "consent", "consent", "consent", "public-task", "legal-obligation", "contract",
          "vital-interests")
_OBLIGATIONS = ("delete after use", "do not pass on")


def draw_rule(draw: st.DrawFn, rule_id: str, special: frozenset[str],
              effects: tuple[str, ...] = _EFFECTS) -> Rule:
    effect = draw(pick(effects))
    data = draw(subsets(CATEGORIES))
    common: dict[str, Any] = {
        "id": rule_id,
        "effect": effect,
        "sender": draw_optional_selector(draw),
        "recipient": draw_optional_selector(draw),
        "data": data,
        "purposes": draw(maybe(subsets(PURPOSES))),
        "subprocesses": draw(maybe(subsets(SUBPROCESSES))),
    }
    if effect == "forbid":
        return Rule(**common)
    basis = draw(pick(_BASES))
    law = "Serviceloven § 12" if basis in ("public-task", "legal-obligation") else None
    touches_special = any(
        c in special or any(leaf.startswith(c + ".") and leaf in special for leaf in LEAVES)
        for c in data)
    art9 = "social-protection" if basis != "consent" and touches_special else None
    obligations = draw(subsets(_OBLIGATIONS, min_size=0))
    return Rule(**common, basis=basis, law=law, art9=art9, obligations=obligations)


@st.composite
def rules(draw: st.DrawFn, rule_id: str, special: frozenset[str],
          effects: tuple[str, ...] = _EFFECTS) -> Rule:
    """A rule over the vocabulary (`special`: the special categories, to name `art9`)."""
    return draw_rule(draw, rule_id, special, effects)


@st.composite
def policies(draw: st.DrawFn, min_rules: int = 0, max_rules: int = 6,
             effects: tuple[str, ...] = _EFFECTS) -> Policy:
    return draw_policy(draw, min_rules, max_rules, effects)


def draw_policy(draw: st.DrawFn, min_rules: int = 0, max_rules: int = 6,
                effects: tuple[str, ...] = _EFFECTS) -> Policy:
    majority = draw(pick((16, 18)))
    consent_age = draw(pick((None, 13, 15, majority)))
    jurisdictions = {
        "DK": Jurisdiction(majority_age=majority, consent_age=consent_age),
        "FI": Jurisdiction(majority_age=18, consent_age=draw(pick((None, 15)))),
    }
    organizations = {org: Organization(kind=kind, sector=draw(pick(SECTORS)))
                     for org, kind in ORG_KINDS.items()}
    actors = {a: Actor(organization=org, role=role) for a, (org, role) in ACTORS.items()}
    # parents are declared explicitly only sometimes (then they may carry `special`)
    categories: dict[str, DataCategory] = {}
    for group, leaves in CATEGORY_GROUPS.items():
        if draw(st.booleans()):
            categories[group] = DataCategory(special=group == "health" or draw(st.booleans()))
        for leaf in leaves:
            categories[leaf] = DataCategory(special=draw(st.booleans()) and draw(st.booleans()))
    special = frozenset(c for c in CATEGORIES
                        if any(categories.get(a, DataCategory()).special
                               for a in _ancestors_or_self(c)))
    purposes = {"care.follow-up": Purpose(), "job-matching": Purpose()}
    if draw(st.booleans()):
        purposes["care"] = Purpose()
    subprocesses = {s: Subprocess(order=i, co_produced=i > 0)
                    for i, s in enumerate(SUBPROCESSES)}
    n = draw(_integers(min_rules, max_rules))
    rule_list = tuple(draw_rule(draw, rule_id, special, effects)
                      for rule_id in draw_ids(draw, "r", n))
    return Policy(jurisdictions=jurisdictions, default_jurisdiction="DK",
                  organizations=organizations, actors=actors, data_categories=categories,
                  purposes=purposes, subprocesses=subprocesses, rules=rule_list)


def _ancestors_or_self(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def with_rules(policy: Policy, rules_: tuple[Rule, ...] | list[Rule]) -> Policy:
    """A fresh policy with other rules (not `model_copy`: that would keep a stale digest)."""
    return Policy(**{**dict(policy), "rules": tuple(rules_)})


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class RegistryParts:
    """The records of an `InMemoryRegistry`, kept so that tests can edit and rebuild them."""

    subjects: dict[str, Subject] = field(default_factory=dict)
    guardianships: tuple[Guardianship, ...] = ()
    consents: tuple[Consent, ...] = ()

    def build(self) -> InMemoryRegistry:
        return InMemoryRegistry(self.subjects, self.guardianships, self.consents)

    def with_consents(self, consents: tuple[Consent, ...] | list[Consent]) -> RegistryParts:
        return replace(self, consents=tuple(consents))


_KINDS_OF_GUARDIANSHIP = ("parental", "adult")
_OPTIONAL_WITHDRAWAL = st.one_of(st.none(), st.none(), st.sampled_from(BOUNDS))
_SUBPROCESS_OPTIONS = {s: (None, (s,)) for s in SUBPROCESSES}


def draw_guardianship(draw: st.DrawFn, gid: str) -> Guardianship:
    valid_from = draw(pick(BOUNDS))
    return Guardianship(
        id=gid, guardian=draw(pick(GUARDIANS)), subject=draw(pick(SUBJECTS)),
        kind=draw(pick(_KINDS_OF_GUARDIANSHIP)), scope=draw(maybe(subsets(CATEGORIES))),
        valid_from=valid_from, valid_until=draw_later(draw, valid_from))


def draw_consent(draw: st.DrawFn, kid: str, fit: Flow | None = None) -> Consent:
    """A random consent; with `fit`, one whose scope covers that flow's known parts."""
    if fit is None:
        subject = draw(pick(SUBJECTS))
        scope: dict[str, Any] = {
            "recipients": tuple(draw_selector(draw)
                                for _ in range(draw(_integers(1, 2)))),
            "data": draw(subsets(CATEGORIES)),
            "purposes": draw(subsets(PURPOSES)),
            "subprocesses": draw(maybe(subsets(SUBPROCESSES))),
        }
    else:
        subject = fit.subject if fit.subject in SUBJECTS else SUBJECTS[0]
        scope = {
            "recipients": (Selector(actor=(fit.recipient,)) if fit.recipient in ACTORS
                           else Selector(),),
            "data": tuple(c for c in fit.data if c in CATEGORIES) or ("identity", "health"),
            "purposes": (fit.purpose,) if fit.purpose in PURPOSES else PURPOSES,
            "subprocesses": draw(pick(_SUBPROCESS_OPTIONS[fit.subprocess]))
            if fit.subprocess in SUBPROCESSES else None,
        }
    given_at = draw(pick(INSTANTS))
    if fit is not None and fit.at is not None and draw(_integers(0, 3)):
        given_at = draw(pick(tuple(i for i in INSTANTS if i <= fit.at)))  # mostly in force
    return Consent(
        id=kid, subject=subject,
        given_by=draw(pick((subject, *GUARDIANS) if fit else (subject, subject, *GUARDIANS))),
        given_at=given_at, explicit=draw(st.booleans()),
        expires_at=draw_later(draw, given_at), withdrawn_at=draw(_OPTIONAL_WITHDRAWAL),
        **scope)


@st.composite
def consents(draw: st.DrawFn, kid: str) -> Consent:
    return draw_consent(draw, kid)


def draw_registry(draw: st.DrawFn, max_guardianships: int = 3,
                  max_consents: int = 5) -> RegistryParts:
    subjects = {
        s: Subject(birth_date=draw(pick(BIRTH_DATES)),
                   jurisdiction=draw(pick((None, *JURISDICTIONS))))
        for s in SUBJECTS
    }
    g_ids = draw_ids(draw, "g", draw(_integers(0, max_guardianships)))
    k_ids = draw_ids(draw, "k", draw(_integers(0, max_consents)))
    return RegistryParts(subjects=subjects,
                         guardianships=tuple(draw_guardianship(draw, g) for g in g_ids),
                         consents=tuple(draw_consent(draw, k) for k in k_ids))


@st.composite
def registries(draw: st.DrawFn, max_guardianships: int = 3,
               max_consents: int = 5) -> RegistryParts:
    return draw_registry(draw, max_guardianships, max_consents)


# --------------------------------------------------------------------------- flows

_UNKNOWN_CHOICES = {
    "actors": (*ACTORS, "ghost"),
    "categories": (*CATEGORIES, "health.genome", "identity.name.first"),
    "purposes": (*PURPOSES, "care.follow-up.extra"),
    "subprocesses": (*SUBPROCESSES, "co-ordination"),
}
_KNOWN_CHOICES = {"actors": tuple(ACTORS), "categories": CATEGORIES, "purposes": PURPOSES,
                  "subprocesses": SUBPROCESSES}


def draw_flow(draw: st.DrawFn, unknown: bool = False) -> Flow:
    """A flow over the vocabulary; with `unknown`, sometimes (1 in 5) naming undeclared ids."""
    choices = (_UNKNOWN_CHOICES if unknown and draw(_integers(0, 4)) == 0
               else _KNOWN_CHOICES)
    return Flow(
        sender=draw(pick(choices["actors"])), recipient=draw(pick(choices["actors"])),
        subject=draw(pick((*SUBJECTS, *SUBJECTS, UNKNOWN_SUBJECT))),
        data=draw(subsets(choices["categories"], max_size=3)),
        purpose=draw(pick(choices["purposes"])),
        subprocess=draw(pick(choices["subprocesses"])),
        at=draw(pick(INSTANTS)))


@st.composite
def flows(draw: st.DrawFn, unknown: bool = False) -> Flow:
    return draw_flow(draw, unknown)


@dataclass(frozen=True)
class World:
    """A policy, a registry and some flows to check against them."""

    policy: Policy
    registry: RegistryParts
    flows: tuple[Flow, ...]

    def engine(self, policy: Policy | None = None,
               registry: RegistryParts | None = None) -> Engine:
        return Engine(policy or self.policy, (registry or self.registry).build())


def draw_fitted_rule(draw: st.DrawFn, rule_id: str, flow: Flow) -> Rule:
    """A consent-based permit that applies to `flow` (for its known parts)."""
    return Rule(
        id=rule_id, effect="permit",
        recipient=Selector(actor=(flow.recipient,)) if flow.recipient in ACTORS else None,
        data=tuple(c for c in flow.data if c in CATEGORIES) or ("identity",),
        purposes=(flow.purpose,) if flow.purpose in PURPOSES else None,
        subprocesses=draw(pick(_SUBPROCESS_OPTIONS[flow.subprocess]))
        if flow.subprocess in SUBPROCESSES else None,
        basis="consent")


def draw_fitted_guardianship(draw: st.DrawFn, gid: str, consent: Consent,
                             flow: Flow) -> Guardianship:
    """A guardianship of the consent's subject held by its grantor, mostly in force when the
    consent was given, and often ending before the flow."""
    valid_from = draw(pick(BOUNDS))
    if draw(_integers(0, 3)):
        valid_from = draw(pick(tuple(b for b in BOUNDS if as_utc(b) <= consent.given_at)
                               or BOUNDS))
    valid_until = draw_later(draw, valid_from)
    assert flow.at is not None
    ending = tuple(b for b in BOUNDS if as_utc(valid_from) < as_utc(b) <= flow.at)
    if ending and draw(st.booleans()):
        valid_until = draw(pick(ending))
    return Guardianship(
        id=gid, guardian=consent.given_by, subject=consent.subject,
        kind=draw(pick(_KINDS_OF_GUARDIANSHIP)),
        scope=draw(maybe(pick((*consent.data, *CATEGORIES)).map(lambda c: (c,)))),
        valid_from=valid_from, valid_until=valid_until)


_FIT_PREFIXES = ("a-fit", "k-fit", "z-fit")


@st.composite
def worlds(draw: st.DrawFn, min_rules: int = 0, max_rules: int = 6,
           effects: tuple[str, ...] = _EFFECTS, max_consents: int = 5,
           max_guardianships: int = 3, min_flows: int = 1, max_flows: int = 4,
           unknown: bool = False) -> World:
    """A random world. Random records rarely fit a flow exactly, so up to three times a
    flow is picked and gets, each with some chance, a consent-based permit rule, a consent
    cut to fit it (validity, grantor and explicitness random) and a guardianship held by that
    consent's grantor; their ids sort before, between or after the random ones."""
    policy = draw_policy(draw, min_rules, max_rules, effects)
    registry = draw_registry(draw, max_guardianships, max_consents)
    flow_list = tuple(draw_flow(draw, unknown)
                      for _ in range(draw(_integers(min_flows, max_flows))))
    for i in range(draw(_integers(0, 3))):
        focus = draw(pick(flow_list))
        if "permit" in effects and draw(_integers(0, 3)):
            rule = draw_fitted_rule(draw, f"{draw(pick(_FIT_PREFIXES))}{i}", focus)
            policy = with_rules(policy, draw_insert(draw, policy.rules, rule))
        if max_consents and draw(_integers(0, 3)):
            consent = draw_consent(draw, f"{draw(pick(_FIT_PREFIXES))}{i}", fit=focus)
            consents = draw_insert(draw, registry.consents, consent)
            guardianships = registry.guardianships
            if consent.given_by in GUARDIANS and draw(_integers(0, 3)):
                guardianship = draw_fitted_guardianship(draw, f"g-fit{i}", consent, focus)
                guardianships = tuple(draw_insert(draw, guardianships, guardianship))
            registry = replace(registry, consents=tuple(consents),
                               guardianships=guardianships)
    return World(policy, registry, flow_list)


@cache
def around_birthdays(birth: date) -> tuple[datetime, ...]:
    """Instants just before and at the days a person born on `birth` may turn 13, 15, 16 or
    18 (for 29 February: 28 February and 1 March), some written with a +02:00 offset."""
    found = set()
    for age in (13, 15, 16, 18):
        year = birth.year + age
        days = [date(year, 2, 28), date(year, 3, 1)] if (birth.month, birth.day) == (2, 29) \
            else [date(year, birth.month, birth.day)]
        for day in days:
            midnight = as_utc(day)
            found.update({midnight, (midnight - timedelta(hours=1)).astimezone(_PLUS2),
                          midnight - timedelta(seconds=1)})
    return tuple(sorted(found))


@st.composite
def grantor_worlds(draw: st.DrawFn, max_flows: int = 4) -> World:
    """Worlds where every leaf reaches the grantor checks: one consent-based permit for
    everything, consents for everyone and everything, whose validity is mostly open, given by
    the subject or a guardian; random birth dates, ages of consent and majority, and
    guardianships of the one subject `c1`, around birthdays."""
    policy = with_rules(draw_policy(draw, 0, 0),
                        [Rule(id="r-all", effect="permit", data=tuple(CATEGORY_GROUPS),
                              basis="consent")])
    subjects = {"c1": Subject(birth_date=draw(pick(BIRTH_DATES)),
                              jurisdiction=draw(pick((None, *JURISDICTIONS))))}
    birth = subjects["c1"].birth_date
    # flows at the usual instants, or just around the subject's birthdays
    when = pick(around_birthdays(birth)) if birth and draw(st.booleans()) else pick(INSTANTS)
    flow_list = tuple(
        draw_flow(draw).model_copy(update={"subject": "c1", "at": draw(when)})
        for _ in range(draw(_integers(1, max_flows))))
    moments = tuple(sorted({f.at for f in flow_list if f.at is not None}))
    consents = []
    for kid in draw_ids(draw, "k", draw(_integers(1, 3))):
        # half of the consents are given at the moment of a flow: the boundary that matters
        given_at = draw(pick(moments if draw(st.booleans()) else INSTANTS))
        consents.append(Consent(
            id=kid, subject="c1", given_by=draw(pick(("c1", *GUARDIANS))), given_at=given_at,
            recipients=(Selector(),), data=draw(pick((tuple(CATEGORY_GROUPS), *CATEGORIES))),
            purposes=PURPOSES, explicit=draw(_integers(0, 3)) > 0,
            expires_at=draw_later(draw, given_at) if not draw(_integers(0, 3)) else None))
    guardianships = [draw_guardianship(draw, gid).model_copy(update={"subject": "c1"})
                     for gid in draw_ids(draw, "g", draw(_integers(0, 3)))]
    return World(policy, RegistryParts(subjects, tuple(guardianships), tuple(consents)),
                 flow_list)
