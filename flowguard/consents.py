"""A consent's lawful status (SPEC §5), for people: `active` only when the engine would
count it for something now; otherwise the first reason it does not count, in words.

There is one reading of SPEC §5: the status is derived from the engine's own compiled
facts and its own per-leaf check (`flowguard.engine._consent_failure`), so a consent shown
`active` is one `check` can use, and one shown `grantor-not-authorized` is one it refuses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from flowguard.errors import Diagnostic, RegistryError
from flowguard.model import Consent, ReasonCode
from flowguard.registry import NO_RECORDS, SubjectRecords

if TYPE_CHECKING:
    from flowguard.engine import Engine

StatusName = Literal["active", "not-yet-valid", "expired", "withdrawn",
                     "grantor-not-authorized", "grantor-authority-ended", "not-explicit"]
STATUSES: tuple[StatusName, ...] = (
    "active", "withdrawn", "expired", "not-yet-valid", "not-explicit",
    "grantor-not-authorized", "grantor-authority-ended")
"""Every status; after `active`, in SPEC §5's order of precedence."""

CONSENT_PROBLEM_CODES: dict[ReasonCode, StatusName] = {
    ReasonCode.CONSENT_WITHDRAWN: "withdrawn",
    ReasonCode.CONSENT_EXPIRED: "expired",
    ReasonCode.CONSENT_NOT_YET_VALID: "not-yet-valid",
    ReasonCode.CONSENT_NOT_EXPLICIT: "not-explicit",
    ReasonCode.GRANTOR_NOT_AUTHORIZED: "grantor-not-authorized",
    ReasonCode.GRANTOR_AUTHORITY_ENDED: "grantor-authority-ended",
}
"""The reason code of a check denied on each status (the same reading, SPEC §5)."""
_TIME = ("withdrawn", "expired", "not-yet-valid")
WRITE_PROBLEMS: frozenset[StatusName] = frozenset({"not-explicit", "grantor-not-authorized"})
"""The problems a consent has when it is given: `grant`/`import` warn of them (and refuse
them with --strict)."""


@dataclass(frozen=True, slots=True)
class ConsentProblem:
    status: StatusName
    reason: str
    categories: tuple[str, ...] = ()  # the leaf categories it concerns (none: all)


@dataclass(frozen=True, slots=True)
class ConsentStatus:
    """A consent's status at `at`: `status` and `reason` are the first of `problems` (in
    SPEC §5's precedence), or `active` with why it counts."""

    consent: str
    at: datetime
    status: StatusName
    reason: str
    problems: tuple[ConsentProblem, ...] = ()

    @property
    def active(self) -> bool:
        return self.status == "active"

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason,
                "problems": [{"status": p.status, "reason": p.reason,
                              **({"categories": list(p.categories)} if p.categories else {})}
                             for p in self.problems]}


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat().replace("+00:00", "Z")


def _names(categories: list[str]) -> str:
    return ", ".join(f"`{c}`" for c in categories)


def consent_status(engine: Engine, consent: Consent | str, at: datetime | None = None, *,
                   records: SubjectRecords | None = None) -> ConsentStatus:
    """The status of `consent` (a record, or the id of one in the engine's registry) at
    `at` (default now). `records`: the subject's records to judge it with (default the
    registry's); the consent replaces any record with its id there."""
    from flowguard.engine import _consent_failure

    if isinstance(consent, str):
        consent = _find(engine, consent)
    when = (at or datetime.now(UTC)).astimezone(UTC)
    if records is None:
        records = engine.registry.records_of(consent.subject)
        if records is NO_RECORDS:
            records = SubjectRecords(None, (), ())
    consents = [k for k in records.consents if k.id != consent.id]
    consents.append(consent)
    facts = engine._compile_records(consent.subject, records.subject, consents,
                                    records.guardianships, engine.registry.revision)
    k = next(c for c in facts.consents if c.id == consent.id)
    t = when.timestamp()
    problems: list[ConsentProblem] = []
    leaves = sorted(k.leaves)
    special = [c for c in leaves if c in engine._special]
    # 1. time: the same for every leaf
    code = _consent_failure(k, leaves[0] if leaves else "", False, t, facts)
    status = CONSENT_PROBLEM_CODES.get(code) if code is not None else None
    if status in _TIME:
        problems.append(ConsentProblem(status, _time_reason(status, consent)))
    # 2. and 3., at a time it is valid: explicit, then the grantor's authority
    lifted = replace(k, withdrawn=_far(), expires=_far())
    t_valid = max(t, k.given)
    not_explicit = [c for c in special
                    if _consent_failure(lifted, c, True, t_valid, facts)
                    is ReasonCode.CONSENT_NOT_EXPLICIT]
    if not_explicit:
        problems.append(ConsentProblem(
            "not-explicit", f"it covers special-category data (GDPR Art. 9) "
            f"{_names(not_explicit)} and is not explicit", tuple(not_explicit)))
    grantor: dict[ReasonCode, list[str]] = {}
    for leaf in leaves:
        failure = _consent_failure(lifted, leaf, False, t_valid, facts)
        if failure is not None:
            grantor.setdefault(failure, []).append(leaf)
    unknown = not k.by_subject and not k.guardianships
    for failure in (ReasonCode.GRANTOR_NOT_AUTHORIZED, ReasonCode.GRANTOR_AUTHORITY_ENDED):
        affected = grantor.get(failure)
        if not affected:
            continue
        rest = [c for c in leaves if c not in affected]
        only = f" (it counts for {_names(rest)} only)" if rest else ""
        if failure is ReasonCode.GRANTOR_NOT_AUTHORIZED:
            if unknown:
                reason = ("its grantor (given_by) is neither the subject nor a guardian of "
                          "the subject on record")
            elif k.by_subject:
                reason = ("the subject was under the consent age, or has no jurisdiction, "
                          "when it was given")
            else:
                reason = (f"the guardian had no guardianship covering {_names(affected)} "
                          f"when it was given{only}")
        else:
            who = "the subject" if k.by_subject else "the guardian"
            reason = f"{who}'s authority over {_names(affected)} has ended since{only}"
        problems.append(ConsentProblem(CONSENT_PROBLEM_CODES[failure], reason,
                                       () if not rest else tuple(affected)))
    if problems:
        first = problems[0]
        return ConsentStatus(consent.id, when, first.status, first.reason, tuple(problems))
    who = "the subject" if k.by_subject else "a guardian with authority"
    until = min(k.expires, k.withdrawn)
    return ConsentStatus(consent.id, when, "active",
                         f"given by {who} at {_iso(consent.given_at)}"
                         + (f", counts until {_iso(consent.withdrawn_at or consent.expires_at)}"
                            if until != _far() else ""))


def _far() -> float:
    return float("inf")


def _time_reason(status: StatusName, consent: Consent) -> str:
    if status == "withdrawn":
        return f"it was withdrawn at {_iso(consent.withdrawn_at)}"
    if status == "expired":
        return f"it expired at {_iso(consent.expires_at)}"
    return f"it counts only from {_iso(consent.given_at)}"


def _find(engine: Engine, consent_id: str) -> Consent:
    registry: Any = engine.registry
    found: Consent | None = None
    if hasattr(registry, "consent"):  # a RegistryStore
        hit = registry.consent(consent_id)
        found = None if hit is None else hit[0]
    elif hasattr(registry, "all_consents"):
        found = next((k for k in registry.all_consents() if k.id == consent_id), None)
    if found is None:
        raise RegistryError([Diagnostic(f"no consent `{consent_id}` in the registry",
                                        "<options>", code="unknown-reference")])
    return found


def write_problems(status: ConsentStatus) -> list[ConsentProblem]:
    """The problems a consent being written has when it is given (status at `given_at`)."""
    return [p for p in status.problems if p.status in WRITE_PROBLEMS]


def usable(engine: Engine, consent: Consent) -> bool:
    """Whether some consent-based permit rule of the policy could ever use `consent`: one
    of its recipients, leaves, purposes and sub-processes meets such a rule's."""
    facts = engine._compile_records(consent.subject, None, [consent], (), 0)
    if not facts.consents:
        return False
    k = facts.consents[0]
    rules = engine._rules
    for actor in k.actors:
        by_leaf = rules.get(actor)
        if not by_leaf:
            continue
        for leaf in k.leaves:
            rule_set = by_leaf.get(leaf)
            if rule_set is None:
                continue
            for permit in rule_set.permits:
                if permit.consent_free:
                    continue
                if permit.purposes is not None and not permit.purposes & k.purposes:
                    continue
                if (permit.subprocesses is not None and k.subprocesses is not None
                        and not permit.subprocesses & k.subprocesses):
                    continue
                return True
    return False


def registry_diagnostics(engine: Engine, source: str) -> list[Diagnostic]:
    """`flowguard lint -r`: for every consent of the engine's registry (a file's, or a
    database's current state), warnings of what `grant` would have warned (code: the status
    it would have) and `unused-consent` when no consent-based permit rule can use it."""
    from flowguard.registry import InMemoryRegistry

    registry: Any = engine.registry
    snapshot: InMemoryRegistry = registry if isinstance(registry, InMemoryRegistry) \
        else registry.snapshot()
    out: list[Diagnostic] = []
    for k in sorted(snapshot.all_consents(), key=lambda c: c.id):
        records = SubjectRecords(snapshot.subject(k.subject), (),
                                 snapshot.guardianships_of(k.subject))
        for problem in write_problems(consent_status(engine, k, k.given_at, records=records)):
            out.append(Diagnostic(f"consent `{k.id}` is {problem.status}: {problem.reason}",
                                  source, severity="warning", code=problem.status))
        if not usable(engine, k):
            out.append(Diagnostic(
                f"consent `{k.id}` can never be used: no consent-based permit rule of the "
                "policy covers any of its recipients, data, purposes and sub-processes",
                source, severity="warning", code="unused-consent"))
    return out
