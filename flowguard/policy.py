"""Loading a policy (SPEC §3) from a directory or a file into a validated `Policy`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from flowguard._hierarchy import Hierarchy
from flowguard._loading import (
    Collector,
    PolicyVocabulary,
    check_selector,
    closest,
    did_you_mean,
)
from flowguard._source import Document, SourceError, load_documents
from flowguard.errors import Diagnostic, PolicyError
from flowguard.model import (
    Actor,
    DataCategory,
    Jurisdiction,
    Organization,
    Policy,
    Purpose,
    Rule,
    Service,
    Subprocess,
)

_MAP_SECTIONS: dict[str, tuple[type[BaseModel], str]] = {
    "jurisdictions": (Jurisdiction, "jurisdiction"),
    "organizations": (Organization, "organization"),
    "actors": (Actor, "actor"),
    "data_categories": (DataCategory, "data category"),
    "purposes": (Purpose, "purpose"),
    "subprocesses": (Subprocess, "sub-process"),
}
POLICY_KEYS = frozenset({"version", "service", "default_jurisdiction", "rules", *_MAP_SECTIONS})
REGISTRY_KEYS = frozenset({"subjects", "guardianships", "consents"})


@dataclass(frozen=True)
class Location:
    file: str
    line: int | None
    column: int | None


@dataclass
class LoadedPolicy:
    """A policy with where each of its entities was written, for diagnostics."""

    policy: Policy | None
    diagnostics: list[Diagnostic]
    locations: dict[tuple[str, str], Location] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def locate(self, section: str, entity_id: str) -> Location | None:
        return self.locations.get((section, entity_id))


def policy_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir()
                      if p.suffix in (".yaml", ".yml") and p.is_file())
    return [path]


def is_other_document(data: Any) -> bool:
    """Registries, test suites and designs may sit beside policy files in a directory."""
    if not isinstance(data, dict) or not data:
        return False
    keys = set(data)
    return "cases" in keys or "design" in keys or (keys <= REGISTRY_KEYS)


def load_policy(path: str | Path) -> Policy:
    """Load and validate a policy; raise `PolicyError` naming every problem."""
    loaded = load_policy_with_sources(path)
    if loaded.policy is None:
        raise PolicyError(loaded.diagnostics)
    return loaded.policy


def load_policy_with_sources(path: str | Path) -> LoadedPolicy:
    return _PolicyLoader(Path(path)).load()


class _PolicyLoader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.out = Collector()
        self.sections: dict[str, dict[str, Any]] = {name: {} for name in _MAP_SECTIONS}
        self.origin: dict[tuple[str, str], tuple[Document, tuple[str | int, ...]]] = {}
        self.rules: list[tuple[Rule, Document, tuple[str | int, ...]]] = []
        self.scalars: dict[str, tuple[Any, Document]] = {}
        self.files: list[str] = []

    def load(self) -> LoadedPolicy:
        if not self.path.exists():
            diag = Diagnostic(f"no such file or directory: {self.path}", str(self.path),
                              code="io")
            return LoadedPolicy(None, [diag])
        files = policy_files(self.path)
        documents = 0
        for file in files:
            try:
                docs = load_documents(file)
            except SourceError as exc:
                self.out.diagnostics.append(exc.diagnostic)
                continue
            for doc in docs:
                if self.path.is_dir() and is_other_document(doc.data):
                    continue
                documents += 1
                if str(file) not in self.files:
                    self.files.append(str(file))
                self._document(doc)
        if documents == 0 and not self.out.diagnostics:
            self.out.diagnostics.append(
                Diagnostic("no policy document found (expected keys such as `rules`)",
                           str(self.path), code="empty"))
        policy = self._resolve()
        locations = {key: Location(doc.file, *doc.position(path))
                     for key, (doc, path) in self.origin.items()}
        return LoadedPolicy(None if self.out.has_errors else policy, self.out.diagnostics,
                            locations, self.files)

    # ----------------------------------------------------------------- structure

    def _document(self, doc: Document) -> None:
        data = doc.data
        if data is None:
            return
        if not isinstance(data, dict):
            self.out.add(doc, (), "a policy document must be a mapping of sections",
                         code="type")
            return
        for key, value in data.items():
            if key not in POLICY_KEYS:
                self.out.add(doc, (key,), f"unknown top-level key `{key}`",
                             hint=did_you_mean(key, POLICY_KEYS), code="unknown-key",
                             at_key=True)
                # read a misspelled section as the one meant, so that one typo is one
                # error, not one more per reference into the section
                meant = closest(key, POLICY_KEYS)
                if meant is None or meant in data:
                    continue
                doc.aliases[meant] = key
                key = meant
            if key in _MAP_SECTIONS:
                self._map_section(doc, key, value)
            elif key == "rules":
                self._rules(doc, value)
            else:
                self._scalar(doc, key, value)

    def _scalar(self, doc: Document, key: str, value: Any) -> None:
        if key in self.scalars and self.scalars[key][0] != value:
            self.out.add(doc, (key,), f"`{key}` is set differently in "
                         f"{self.scalars[key][1].file}", code="duplicate")
            return
        if key == "version":
            if value != 1 or isinstance(value, bool):
                self.out.add(doc, (key,), f"unsupported policy version {value!r}; "
                             "this flowguard reads version 1", code="version")
                return
        elif key == "service":
            value = self.out.validate(doc, (key,), Service, value, "service")
            if value is None:
                return
        elif key == "default_jurisdiction" and not isinstance(value, str):
            self.out.add(doc, (key,), "default_jurisdiction must be a jurisdiction id",
                         code="type")
            return
        self.scalars[key] = (value, doc)

    def _map_section(self, doc: Document, section: str, value: Any) -> None:
        model, what = _MAP_SECTIONS[section]
        entries = self.out.expect_mapping(doc, (section,), value, section)
        if entries is None:
            return
        for entity_id, body in entries.items():
            path = (section, entity_id)
            if not self.out.expect_id(doc, path, entity_id, what):
                continue
            if (section, entity_id) in self.origin:
                first = self.origin[(section, entity_id)][0]
                self.out.add(doc, path, f"{what} `{entity_id}` is declared twice "
                             f"(also in {first.file})", code="duplicate")
                continue
            entry = self.out.validate(doc, path, model, {} if body is None else body,
                                      f"{what} `{entity_id}`")
            self.origin[(section, entity_id)] = (doc, path)
            if entry is not None:
                self.sections[section][entity_id] = entry

    def _rules(self, doc: Document, value: Any) -> None:
        items = self.out.expect_list(doc, ("rules",), value, "rules")
        if items is None:
            return
        for index, body in enumerate(items):
            path: tuple[str | int, ...] = ("rules", index)
            rule_id = body.get("id") if isinstance(body, dict) else None
            what = f"rule `{rule_id}`" if isinstance(rule_id, str) else f"rule #{index + 1}"
            rule = self.out.validate(doc, path, Rule, body, what)
            if rule is None:
                continue
            if ("rules", rule.id) in self.origin:
                first = self.origin[("rules", rule.id)][0]
                self.out.add(doc, (*path, "id"), f"rule id `{rule.id}` is used twice "
                             f"(also in {first.file})", code="duplicate")
                continue
            self.origin[("rules", rule.id)] = (doc, path)
            self.rules.append((rule, doc, path))

    # ----------------------------------------------------------------- references

    def _declared(self, section: str) -> dict[str, Any]:
        """Every id declared in a section, valid or not: an entry with its own errors must
        not also make each reference to it an error."""
        valid = self.sections[section]
        return {eid: valid.get(eid) for (sec, eid) in self.origin if sec == section}

    def _resolve(self) -> Policy | None:
        """Check every reference (also when other errors were found, so that all problems
        are reported at once); build the policy only when nothing is wrong."""
        s = self.sections
        categories = Hierarchy(self._declared("data_categories"))
        purposes = Hierarchy(self._declared("purposes"))
        vocab = PolicyVocabulary(
            organizations=self._declared("organizations"), actors=self._declared("actors"),
            categories=categories.ids, purposes=purposes.ids,
            subprocesses=set(self._declared("subprocesses")),
            jurisdictions=set(self._declared("jurisdictions")))

        for actor_id, actor in s["actors"].items():
            doc, path = self.origin[("actors", actor_id)]
            self.out.reference(doc, (*path, "organization"), actor.organization,
                               vocab.organizations, "organization")
        service = self.scalars.get("service")
        if service is not None and service[0].controller is not None:
            self.out.reference(service[1], ("service", "controller"), service[0].controller,
                               vocab.organizations, "organization")
        default = self.scalars.get("default_jurisdiction")
        if default is not None:
            self.out.reference(default[1], ("default_jurisdiction",), default[0],
                               vocab.jurisdictions, "jurisdiction")
        for jid, jurisdiction in s["jurisdictions"].items():
            if jurisdiction.effective_consent_age > jurisdiction.majority_age:
                doc, path = self.origin[("jurisdictions", jid)]
                self.out.add(doc, (*path, "consent_age"),
                             f"jurisdiction `{jid}`: consent_age is above majority_age")

        special = {c for c in categories.ids
                   if any(getattr(s["data_categories"].get(a), "special", False)
                          for a in categories.ancestors_or_self(c))}
        for rule, doc, path in self.rules:
            self._check_rule(rule, doc, path, vocab, categories, special)
        if self.out.has_errors:
            return None

        ordered = sorted(s["subprocesses"].items(),
                         key=lambda kv: (kv[1].order is None, kv[1].order or 0, kv[0]))
        return Policy(
            version=1,
            service=self.scalars["service"][0] if "service" in self.scalars else None,
            jurisdictions=s["jurisdictions"],
            default_jurisdiction=default[0] if default else None,
            organizations=s["organizations"],
            actors=s["actors"],
            data_categories=s["data_categories"],
            purposes=s["purposes"],
            subprocesses=dict(ordered),
            rules=tuple(rule for rule, _, _ in self.rules),
        )

    def _check_rule(self, rule: Rule, doc: Document, path: tuple[str | int, ...],
                    vocab: PolicyVocabulary, categories: Hierarchy, special: set[str]) -> None:
        for side in ("sender", "recipient"):
            selector = getattr(rule, side)
            if selector is not None:
                check_selector(self.out, doc, (*path, side), selector, vocab)
        for key, known, what in (("data", vocab.categories, "data category"),
                                 ("purposes", vocab.purposes, "purpose"),
                                 ("subprocesses", vocab.subprocesses, "sub-process")):
            values = getattr(rule, key) or ()
            for i, value in enumerate(values):
                self.out.reference(doc, (*path, key, i), value, known, what)
        if rule.effect == "permit" and rule.basis != "consent" and rule.art9 is None:
            touched = sorted(
                c for c in rule.data if c in categories
                and (c in special or any(leaf in special for leaf in categories.leaves(c))))
            if touched:
                self.out.add(
                    doc, (*path, "basis"),
                    f"rule `{rule.id}` permits special-category data ({', '.join(touched)}) "
                    f"on basis `{rule.basis}` without an `art9` condition",
                    hint="name the GDPR Art. 9(2) condition, e.g. art9: social-protection",
                    code="art9-missing")
