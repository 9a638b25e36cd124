"""`flowguard lint`: every load error of a policy (and registry), plus warnings about rules
that are shadowed or can never apply and declared entities that no rule uses."""

from __future__ import annotations

from pathlib import Path

from flowguard.engine import Engine
from flowguard.errors import Diagnostic, InputError
from flowguard.model import Policy, Rule
from flowguard.policy import LoadedPolicy, load_policy_with_sources
from flowguard.registry import Registry, load_registry
from flowguard.store import RegistryStore, is_database_url, open_store, redact_url


def lint(policy_path: str | Path, registry_path: str | Path | None = None) -> list[Diagnostic]:
    """All diagnostics, errors first in file order; an empty list means a clean policy."""
    loaded = load_policy_with_sources(policy_path)
    diagnostics = list(loaded.diagnostics)
    if loaded.policy is not None:
        diagnostics += _Analysis(loaded, loaded.policy).warnings()
        if registry_path is not None:
            diagnostics += _registry(loaded.policy, registry_path)
    return sorted(diagnostics, key=lambda d: (d.severity != "error", *d.sort_key()))


def _registry(policy: Policy, location: str | Path) -> list[Diagnostic]:
    """A registry file's load errors, or a database's open errors; then the consents that
    would not count when given, and those no rule can use (`flowguard.consents`)."""
    from flowguard.consents import registry_diagnostics

    registry: Registry
    try:
        if isinstance(location, str) and is_database_url(location):
            registry = open_store(location, policy)
        else:
            registry = load_registry(location, policy)
    except InputError as exc:
        return list(exc.diagnostics)
    try:
        source = redact_url(str(location)) if isinstance(registry, RegistryStore) else str(location)
        return registry_diagnostics(Engine(policy, registry), source)
    finally:
        if isinstance(registry, RegistryStore):
            registry.close()


class _Analysis:
    def __init__(self, loaded: LoadedPolicy, policy: Policy) -> None:
        self.loaded = loaded
        self.policy = policy
        self.engine = Engine(policy)
        self.all_actors = frozenset(policy.actors)
        self.out: list[Diagnostic] = []

    def warn(self, section: str, entity_id: str, message: str, code: str) -> None:
        where = self.loaded.locate(section, entity_id)
        self.out.append(Diagnostic(message, where.file if where else None,
                                   where.line if where else None,
                                   where.column if where else None,
                                   severity="warning", code=code))

    def actors(self, rule: Rule, side: str) -> frozenset[str]:
        matched = self.engine.actors_matching(getattr(rule, side))
        return self.all_actors if matched is None else matched

    def leaves(self, rule: Rule) -> frozenset[str]:
        tree = self.policy.category_tree
        return frozenset(leaf for c in rule.data for leaf in tree.leaves(c))

    def purposes(self, rule: Rule) -> frozenset[str]:
        tree = self.policy.purpose_tree
        if rule.purposes is None:
            return tree.ids
        if rule.effect == "forbid":
            return frozenset(p for q in rule.purposes for p in tree.overlapping(q))
        return frozenset(p for q in rule.purposes for p in tree.descendants_or_self(q))

    def subprocesses(self, rule: Rule) -> frozenset[str]:
        return frozenset(rule.subprocesses or self.policy.subprocesses)

    def warnings(self) -> list[Diagnostic]:
        self._never_apply()
        self._shadowed()
        self._unused()
        return self.out

    def _never_apply(self) -> None:
        for rule in self.policy.rules:
            for side in ("sender", "recipient"):
                if getattr(rule, side) is not None and not self.actors(rule, side):
                    self.warn("rules", rule.id, f"rule `{rule.id}` can never apply: its {side} "
                              "selector matches no actor", "never-applies")
            if rule.effect == "permit" and rule.basis == "consent" and rule.art9 is not None:
                self.warn("rules", rule.id, f"rule `{rule.id}` names `art9` on a consent basis: "
                          "the explicit consent itself is the Art. 9(2)(a) condition",
                          "art9-unneeded")

    def _shadowed(self) -> None:
        forbids = [(f, self.actors(f, "recipient"), self.leaves(f), self.actors(f, "sender"),
                    self.purposes(f), self.subprocesses(f))
                   for f in self.policy.rules if f.effect == "forbid"]
        for rule in self.policy.rules:
            if rule.effect != "permit" or not forbids:
                continue
            senders, purposes = self.actors(rule, "sender"), self.purposes(rule)
            subprocesses = self.subprocesses(rule)
            covering = [f for f in forbids
                        if senders <= f[3] and purposes <= f[4] and subprocesses <= f[5]]
            recipients = self.actors(rule, "recipient")
            leaves = self.leaves(rule)
            if recipients and all(any(r in f[1] and leaf in f[2] for f in covering)
                                  for r in recipients for leaf in leaves):
                names = ", ".join(sorted(f[0].id for f in covering))
                noun = "rule" if len(covering) == 1 else "rules"
                self.warn("rules", rule.id, f"permit `{rule.id}` is entirely shadowed by forbid "
                          f"{noun} {names}: it can never permit anything", "shadowed")

    def _unused(self) -> None:
        rules = self.policy.rules
        used_actors: set[str] = set()
        used_leaves: set[str] = set()
        used_purposes: set[str] = set()
        used_subprocesses: set[str] = set()
        for rule in rules:
            used_actors |= self.actors(rule, "sender") | self.actors(rule, "recipient")
            used_leaves |= self.leaves(rule)
            used_purposes |= self.purposes(rule)
            used_subprocesses |= self.subprocesses(rule)
        with_actors = {a.organization for a in self.policy.actors.values()}
        for org in sorted(set(self.policy.organizations) - with_actors):
            self.warn("organizations", org, f"organization `{org}` has no actors", "unused")
        for actor in sorted(self.all_actors - used_actors):
            self.warn("actors", actor, f"actor `{actor}` is neither sender nor recipient of any "
                      "rule", "unused")
        tree = self.policy.category_tree
        for category in sorted(self.policy.data_categories):
            if not set(tree.leaves(category)) & used_leaves:
                self.warn("data_categories", category,
                          f"data category `{category}` is used by no rule", "unused")
        purpose_tree = self.policy.purpose_tree
        for purpose in sorted(self.policy.purposes):
            if purpose_tree.overlapping(purpose) & used_purposes:
                continue
            self.warn("purposes", purpose, f"purpose `{purpose}` is used by no rule", "unused")
        for subprocess in sorted(set(self.policy.subprocesses) - used_subprocesses):
            self.warn("subprocesses", subprocess,
                      f"sub-process `{subprocess}` is used by no rule", "unused")
