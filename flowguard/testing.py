"""Table-driven policy tests (SPEC §7): cases of flows with the decision they must get."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from flowguard._loading import Collector
from flowguard._source import SourceError, load_documents
from flowguard.engine import Engine
from flowguard.errors import InputError, TestSuiteError
from flowguard.model import Decision, Flow, Model, Outcome, ReasonCode
from flowguard.policy import load_policy
from flowguard.registry import Registry, load_registry
from flowguard.store import open_registry


class Case(Model):
    name: str = Field(min_length=1, max_length=500)
    flow: Flow
    expect: Outcome
    reason: ReasonCode | None = None
    permitted: tuple[str, ...] | None = None


class SuiteFile(Model):
    policy: str
    consents: str | None = None
    cases: tuple[Case, ...] = Field(min_length=1)


@dataclass(frozen=True)
class CaseResult:
    case: Case
    decision: Decision

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def problems(self) -> list[str]:
        found = []
        d = self.decision
        if d.decision != self.case.expect:
            found.append(f"expected {self.case.expect}, got {d.decision} ({d.reason})")
        elif self.case.reason is not None and d.reason != self.case.reason:
            found.append(f"expected reason {self.case.reason}, got {d.reason}")
        if self.case.permitted is not None and set(d.permitted) != set(self.case.permitted):
            found.append(f"expected permitted {sorted(self.case.permitted)}, "
                         f"got {sorted(d.permitted)}")
        return found


@dataclass(frozen=True)
class SuiteResult:
    file: str
    results: list[CaseResult]

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed


@dataclass(frozen=True)
class Suite:
    file: str
    cases: tuple[Case, ...]
    engine: Engine

    def run(self) -> SuiteResult:
        decisions = self.engine.check_many([case.flow for case in self.cases])
        return SuiteResult(self.file, [CaseResult(c, d) for c, d in zip(self.cases, decisions,
                                                                          strict=True)])


def load_suite(path: str | Path, registry: str | None = None) -> Suite:
    """Read a test file and load the policy and registry it names (relative to it), or
    the `registry` given (a database URL or file) instead of the file's `consents`.
    Raises `InputError` (a `TestSuiteError`, `PolicyError`, `RegistryError` or
    `StoreError`)."""
    file = Path(path)
    out = Collector()
    try:
        documents = load_documents(file)
    except SourceError as exc:
        raise TestSuiteError([exc.diagnostic]) from None
    if len(documents) != 1:
        raise TestSuiteError([documents[1].diagnostic((), "a test file holds one document")])
    doc = documents[0]
    suite = out.validate(doc, (), SuiteFile, doc.data, "test file")
    if suite is None:
        raise TestSuiteError(out.diagnostics)
    base = file.parent
    policy = load_policy(base / suite.policy)
    consents: Registry | None = None
    if registry is not None:
        consents = open_registry(registry, policy)
    elif suite.consents is not None:
        consents = load_registry(base / suite.consents, policy)
    return Suite(str(file), suite.cases, Engine(policy, consents))


def run_suites(paths: list[str], registry: str | None = None
               ) -> tuple[list[SuiteResult], list[InputError]]:
    results: list[SuiteResult] = []
    errors: list[InputError] = []
    for path in paths:
        try:
            results.append(load_suite(path, registry).run())
        except InputError as exc:
            errors.append(exc)
    return results, errors

