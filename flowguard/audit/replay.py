"""Re-evaluating logged decisions (`flowguard audit replay`).

Each decision entry is decided again with the policy it recorded (rebuilt from the canonical
text the log keeps under its digest, which must still hash to that digest) and the registry
as it was at the recorded revision (`RegistryStore.at_revision`), for the flow's recorded
time. The subject, logged only as a pseudonym, is recovered by pseudonymising the registry's
subject ids with the pseudonym key; a subject the registry never knew had no consents, as
at the time. Any decision whose outcome, reasons or per-category results differ now is
reported: the engine, the policy text or the registry history is not what produced it.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from flowguard.audit.entries import Pseudonymizer, decision_entry
from flowguard.audit.log import AuditLog
from flowguard.canonical import sha256_digest
from flowguard.engine import Engine
from flowguard.model import Flow, Policy
from flowguard.store.registry_store import RegistryStore

__all__ = ["COMPARED", "ReplayDifference", "ReplayProblem", "ReplayReport", "replay_log"]

COMPARED = ("outcome", "reason", "categories", "rules", "consents")
"""The fields of a decision entry that a replay must reproduce."""

_ENGINE_CACHE = 64


@dataclass(frozen=True)
class ReplayDifference:
    """A decision that comes out differently now."""

    index: int
    decision_id: str
    fields: tuple[str, ...]
    recorded: dict[str, Any]
    replayed: dict[str, Any]

    @property
    def summary(self) -> str:
        was, now = self.recorded, self.replayed
        text = (f"entry {self.index} (decision {self.decision_id}): recorded "
                f"{was.get('outcome')} ({was.get('reason')}), now {now.get('outcome')} "
                f"({now.get('reason')})")
        changed = [f for f in self.fields if f not in ("outcome", "reason")]
        if changed:
            text += "; also differs: " + ", ".join(changed)
        return text


@dataclass(frozen=True)
class ReplayProblem:
    """A decision (or a policy) that cannot be replayed."""

    index: int | None
    message: str


@dataclass
class ReplayReport:
    decisions: int = 0
    replayed: int = 0
    differences: list[ReplayDifference] = field(default_factory=list)
    problems: list[ReplayProblem] = field(default_factory=list)
    unknown_subjects: int = 0
    """Decisions whose subject the registry never knew (replayed as having no records)."""

    @property
    def ok(self) -> bool:
        return not self.differences and not self.problems


class _Policies:
    """Policies by digest: the log's kept texts, else the ones given."""

    def __init__(self, log: AuditLog, given: Mapping[str, Policy]) -> None:
        self._log = log
        self._given = dict(given)
        self._cache: dict[str, Policy | str] = {}

    def get(self, digest: str) -> Policy | str:
        """The policy, or why there is none."""
        found = self._cache.get(digest)
        if found is None:
            found = self._cache[digest] = self._load(digest)
        return found

    def _load(self, digest: str) -> Policy | str:
        text = self._log.policy_text(digest)
        if text is None:
            policy = self._given.get(digest)
            if policy is not None:
                return policy
            return (f"the log keeps no policy text for {digest}, and no policy given with "
                    "--policy-dir has that digest")
        if sha256_digest(text) != digest:
            return (f"the policy text kept under {digest} does not hash to it: it was altered "
                    "after the decisions were logged")
        try:
            policy = Policy.model_validate(json.loads(text))
        except (ValueError, ValidationError):
            return f"the policy text kept under {digest} is not a valid policy"
        if policy.digest != digest:
            return f"the policy text kept under {digest} rebuilds a policy with another digest"
        return policy


def _subjects(store: RegistryStore, pseudonym: Pseudonymizer) -> dict[str, str]:
    rows = store.db.read("SELECT DISTINCT subject FROM registry_events")
    return {pseudonym(str(row[0])): str(row[0]) for row in rows}


def _unknown_id(known: Iterable[str]) -> str:
    taken = set(known)
    candidate = "unknown-subject"
    while candidate in taken:
        candidate += "-x"
    return candidate


def replay_log(log: AuditLog, store: RegistryStore, pseudonym: Pseudonymizer, *,
               policies: Mapping[str, Policy] | None = None, start: int = 0,
               end: int | None = None,
               progress: Callable[[int, int], None] | None = None) -> ReplayReport:
    """Re-evaluate every decision entry in ``[start, end)``; see the module documentation.
    ``policies`` (by digest) stand in for texts the log does not keep."""
    report = ReplayReport()
    texts = _Policies(log, policies or {})
    subjects = _subjects(store, pseudonym)
    unknown = _unknown_id(subjects.values())
    engines: OrderedDict[tuple[str, int], Engine] = OrderedDict()
    failed_digests: set[str] = set()
    size = log.size if end is None else min(end, log.size)
    for index, data in log.entries(start, size):
        if progress is not None and index % 1000 == 0:
            progress(index, size)
        try:
            entry = json.loads(data)
        except ValueError:
            report.problems.append(ReplayProblem(index, f"entry {index} is not JSON"))
            continue
        if not isinstance(entry, dict) or entry.get("kind") != "decision":
            continue
        report.decisions += 1
        digest = entry.get("policy_digest")
        revision = entry.get("registry_revision")
        if not isinstance(digest, str) or not isinstance(revision, int) or revision < 0:
            report.problems.append(ReplayProblem(
                index, f"entry {index} records no policy digest or registry revision"))
            continue
        policy = texts.get(digest)
        if isinstance(policy, str):
            if digest not in failed_digests:
                failed_digests.add(digest)
                report.problems.append(ReplayProblem(None, policy))
            report.problems.append(ReplayProblem(
                index, f"entry {index} (decision {entry.get('decision_id')}) cannot be "
                       f"replayed: its policy {digest} is not available intact"))
            continue
        subject = subjects.get(str(entry.get("subject")))
        if subject is None:
            report.unknown_subjects += 1
            subject = unknown
        try:
            flow = Flow.model_validate({
                "sender": entry.get("sender"), "recipient": entry.get("recipient"),
                "subject": subject, "data": entry.get("data"), "purpose": entry.get("purpose"),
                "subprocess": entry.get("subprocess"), "at": entry.get("at") or entry.get("time")})
        except ValidationError:
            report.problems.append(ReplayProblem(
                index, f"entry {index} does not record a valid flow"))
            continue
        key = (digest, revision)
        engine = engines.get(key)
        if engine is None:
            engine = Engine(policy, store.at_revision(revision))
            engines[key] = engine
            if len(engines) > _ENGINE_CACHE:
                engines.popitem(last=False)
        else:
            engines.move_to_end(key)
        decision = engine.check(flow)
        organization = entry.get("organization")
        again = decision_entry(decision, pseudonym,
                               organization=organization if isinstance(organization, str) else "",
                               registry_revision=revision)
        report.replayed += 1
        differing = tuple(name for name in COMPARED if entry.get(name) != again.get(name))
        if differing:
            report.differences.append(ReplayDifference(
                index, str(entry.get("decision_id")), differing,
                {name: entry.get(name) for name in COMPARED},
                {name: again.get(name) for name in COMPARED}))
    if progress is not None:
        progress(size, size)
    return report
