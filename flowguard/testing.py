"""Table-driven policy tests (SPEC §7): cases of flows with the decision they must get."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from flowguard._loading import Collector, did_you_mean
from flowguard._source import Document, SourceError, load_documents
from flowguard.engine import Engine, explain
from flowguard.errors import Diagnostic, InputError, TestSuiteError
from flowguard.model import Decision, Flow, Model, Outcome, Policy, ReasonCode
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
    number: int = 0  # from 1, in file order
    line: int | None = None  # where the case starts in its file

    @property
    def explanation(self) -> list[str]:
        """The decision explained in words (`flowguard.engine.explain`)."""
        return explain(self.decision)

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
    lines: tuple[int | None, ...] = ()  # each case's line

    def run(self) -> SuiteResult:
        decisions = self.engine.check_many([case.flow for case in self.cases])
        lines = self.lines or (None,) * len(self.cases)
        return SuiteResult(self.file, [
            CaseResult(c, d, number, line) for number, (c, d, line) in enumerate(
                zip(self.cases, decisions, lines, strict=True), start=1)])


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
    unknown = _unknown_ids(doc, suite.cases, policy)
    if unknown:
        raise TestSuiteError(unknown)
    consents: Registry | None = None
    if registry is not None:
        consents = open_registry(registry, policy)
    elif suite.consents is not None:
        consents = load_registry(base / suite.consents, policy)
    lines = tuple(doc.position(("cases", index))[0] for index in range(len(suite.cases)))
    return Suite(str(file), suite.cases, Engine(policy, consents), lines)


def _unknown_ids(doc: Document, cases: tuple[Case, ...], policy: Policy) -> list[Diagnostic]:
    """Every id of a case that the policy does not declare, at its place in the file with
    the closest declared id: a typo would otherwise pass as a denial (UNKNOWN_ENTITY). Only
    a case that expects `reason: UNKNOWN_ENTITY` may name an unknown id."""
    out = Collector()
    actors = set(policy.actors)
    fields: tuple[tuple[str, Collection[str], str], ...] = (
        ("sender", actors, "actor"), ("recipient", actors, "actor"),
        ("purpose", policy.purpose_tree.ids, "purpose"),
        ("subprocess", set(policy.subprocesses), "sub-process"))
    categories = policy.category_tree.ids
    for index, case in enumerate(cases):
        if case.reason is ReasonCode.UNKNOWN_ENTITY:
            continue
        what = f"case {index + 1} (`{case.name}`)"
        flow = case.flow
        for name, known, noun in fields:
            value = getattr(flow, name)
            if value not in known:
                out.add(doc, ("cases", index, "flow", name), f"{what}: unknown {noun} "
                        f"`{value}`", hint=_hint(value, known), code="unknown-reference")
        raw = doc.data["cases"][index]["flow"].get("data") \
            if isinstance(doc.data, dict) else None
        for position, category in enumerate(flow.data):
            if category in categories:
                continue
            path: tuple[str | int, ...] = ("cases", index, "flow", "data")
            if isinstance(raw, list):
                path = (*path, position)
            out.add(doc, path, f"{what}: unknown data category `{category}`",
                    hint=_hint(category, categories), code="unknown-reference")
    return out.diagnostics


def _hint(value: str, known: Collection[str]) -> str:
    suggestion = did_you_mean(value, known)
    tail = "or expect `reason: UNKNOWN_ENTITY` if the case is about an unknown id"
    return f"{suggestion} {tail}" if suggestion else tail


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

