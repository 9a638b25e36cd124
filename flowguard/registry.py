"""The consent registry (SPEC §4): subjects, guardianships and consents.

`Registry` is the interface the engine reads through; `InMemoryRegistry` holds records
loaded from a YAML or JSON file (`load_registry`). Stores backed by databases implement
the same interface.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

from flowguard._loading import (
    Collector,
    PolicyVocabulary,
    check_selector,
    closest,
    did_you_mean,
    gc_paused,
)
from flowguard._source import MAX_FILE_BYTES, Document, SourceError, load_documents
from flowguard.errors import RegistryError
from flowguard.model import Consent, Guardianship, Policy, Subject

REGISTRY_SECTIONS = ("subjects", "guardianships", "consents")
MAX_JSON_REGISTRY_BYTES = 512 * 1024 * 1024
"""JSON registries may be large (they are parsed without building a YAML node tree);
YAML files keep the general limit of `flowguard._source.MAX_FILE_BYTES`."""


class SubjectRecords(NamedTuple):
    """Everything the registry holds about one subject, as one consistent read."""

    subject: Subject | None
    consents: Sequence[Consent]
    guardianships: Sequence[Guardianship]


NO_RECORDS = SubjectRecords(None, (), ())


@runtime_checkable
class Registry(Protocol):
    """Read access to the consent registry, one subject at a time."""

    @property
    def revision(self) -> int:
        """Grows whenever any record changes (never goes back); the engine drops cached
        facts on change. Reading it is cheap enough to do before every check."""
        ...

    def records_of(self, subject_id: str, revision: int | None = None) -> SubjectRecords:
        """The subject's records as they were at `revision` (a value `revision` returned
        earlier; None: the current records). The engine reads the revision, then the
        records up to it, so that the facts it decides on are those of one revision,
        whatever was committed meanwhile."""
        ...

    def changed_since(self, revision: int) -> Collection[str] | None:
        """The subjects whose records changed after `revision`, or None when the registry
        cannot tell (then every cached fact is dropped)."""
        ...


class InMemoryRegistry:
    """An immutable registry held in memory (from a file, or built in code)."""

    def __init__(self, subjects: dict[str, Subject] | None = None,
                 guardianships: Iterable[Guardianship] = (),
                 consents: Iterable[Consent] = ()) -> None:
        self._subjects: dict[str, Subject] = dict(subjects or {})
        self._guardianships: dict[str, list[Guardianship]] = defaultdict(list)
        self._consents: dict[str, list[Consent]] = defaultdict(list)
        for g in guardianships:
            self._guardianships[g.subject].append(g)
        share = _Sharing()
        for k in consents:
            share.compact(k)
            self._consents[k.subject].append(k)

    @property
    def revision(self) -> int:
        return 0

    def records_of(self, subject_id: str, revision: int | None = None) -> SubjectRecords:
        # one revision only (a subclass whose records change must honour `revision`)
        subject = self._subjects.get(subject_id)
        consents = self._consents.get(subject_id, ())
        guardianships = self._guardianships.get(subject_id, ())
        if subject is None and not consents and not guardianships:
            return NO_RECORDS
        return SubjectRecords(subject, consents, guardianships)

    def changed_since(self, revision: int) -> Collection[str] | None:
        return None  # its revision never changes; a subclass that changes it can't tell

    def subject(self, subject_id: str) -> Subject | None:
        return self._subjects.get(subject_id)

    def consents_of(self, subject_id: str) -> Sequence[Consent]:
        return self._consents.get(subject_id, ())

    def guardianships_of(self, subject_id: str) -> Sequence[Guardianship]:
        return self._guardianships.get(subject_id, ())

    def subject_ids(self) -> list[str]:
        """Every subject with a record: declared, or named by a consent or guardianship."""
        return list(dict.fromkeys([*self._subjects, *self._consents, *self._guardianships]))

    @property
    def subjects(self) -> dict[str, Subject]:
        return dict(self._subjects)

    def all_consents(self) -> list[Consent]:
        return [k for ks in self._consents.values() for k in ks]

    def all_guardianships(self) -> list[Guardianship]:
        return [g for gs in self._guardianships.values() for g in gs]


class _Sharing:
    """Makes records that are kept for long share their equal parts: consents name few
    distinct recipient, category and purpose lists, and pydantic gives every instance its own
    set of field names. Values do not change, only which equal object holds them; models are
    frozen, and pydantic copies the field-name set before any change (`model_copy`)."""

    def __init__(self) -> None:
        self._values: dict[object, object] = {}

    def compact(self, consent: Consent) -> None:
        values = consent.__dict__
        for name in _SHARED_FIELDS:
            value = values[name]
            if value is not None:
                values[name] = self._values.setdefault(value, value)
        names = consent.__pydantic_fields_set__
        shared = self._values.setdefault(frozenset(names), names)
        object.__setattr__(consent, "__pydantic_fields_set__", shared)


_SHARED_FIELDS = ("recipients", "data", "purposes", "subprocesses")


EMPTY_REGISTRY = InMemoryRegistry()


def load_registry(path: str | Path, policy: Policy | None = None) -> InMemoryRegistry:
    """Load a registry file; with `policy`, every category, purpose, sub-process,
    jurisdiction and recipient it names must exist there. Raises `RegistryError`."""
    out = Collector()
    file = Path(path)
    limit = MAX_JSON_REGISTRY_BYTES if file.suffix == ".json" else MAX_FILE_BYTES
    with gc_paused():
        try:
            documents = load_documents(file, max_bytes=limit)
        except SourceError as exc:
            raise RegistryError([exc.diagnostic]) from None
        loader = _RegistryLoader(out, policy)
        for doc in documents:
            loader.document(doc)
        loader.cross_check()
        if out.has_errors:
            raise RegistryError(out.diagnostics)
        return InMemoryRegistry(loader.subjects, loader.guardianships, loader.consents)


def validate_records(data: Mapping[str, Any], *, source: str, policy: Policy | None,
                     known_subject: Callable[[str], bool] | None = None,
                     ) -> tuple[dict[str, Subject], list[Guardianship], list[Consent]]:
    """Validate records given as data in the file format (`subjects`, `guardianships`,
    `consents`), exactly as `load_registry` would; `known_subject` accepts subjects already
    stored elsewhere. `source` names the input in diagnostics. Raises `RegistryError`."""
    out = Collector()
    loader = _RegistryLoader(out, policy, known_subject)
    loader.document(Document(source, dict(data)))
    loader.cross_check()
    if out.has_errors:
        raise RegistryError(out.diagnostics)
    return loader.subjects, loader.guardianships, loader.consents


class _RegistryLoader:
    def __init__(self, out: Collector, policy: Policy | None,
                 known_subject: Callable[[str], bool] | None = None) -> None:
        self.out = out
        self.policy = policy
        self.known_subject = known_subject
        self.subjects: dict[str, Subject] = {}
        # declared, but with an error of its own (reported once, not again per reference)
        self.invalid_subjects: set[str] = set()
        self.guardianships: list[Guardianship] = []
        self.consents: list[Consent] = []
        self.where: dict[tuple[str, str], tuple[Document, tuple[str | int, ...]]] = {}

    def document(self, doc: Document) -> None:
        if doc.data is None:
            return
        if not isinstance(doc.data, dict):
            self.out.add(doc, (), "a registry must be a mapping with subjects, guardianships "
                         "and consents", code="type")
            return
        for key, value in doc.data.items():
            if key not in REGISTRY_SECTIONS:
                self.out.add(doc, (key,), f"unknown top-level key `{key}`",
                             hint=did_you_mean(key, REGISTRY_SECTIONS), code="unknown-key",
                             at_key=True)
                # read a misspelled section as the one meant, so that one typo is one
                # error, not one more per reference into the section
                meant = closest(key, REGISTRY_SECTIONS)
                if meant is None or meant in doc.data:
                    continue
                doc.aliases[meant] = key
                key = meant
            if key == "subjects":
                self._subjects(doc, value)
            else:
                self._records(doc, key, value)

    def _subjects(self, doc: Document, value: Any) -> None:
        entries = self.out.expect_mapping(doc, ("subjects",), value, "subjects")
        if entries is None:
            return
        items = [(key, {} if body is None else body) for key, body in entries.items()]
        # a subject id is a citizen identifier: never echo it, name the entry by position
        subjects = self.out.validate_many(doc, ("subjects",), Subject, items,
                                          lambda i, _key, _body: f"subject #{i + 1}")
        for index, ((subject_id, _), subject) in enumerate(zip(items, subjects, strict=True)):
            path = ("subjects", subject_id)
            what = f"subject #{index + 1}"
            if not isinstance(subject_id, str) or not subject_id:
                self.out.add(doc, path, f"{what}: a subject id must be a string", code="type")
            elif subject_id in self.subjects:
                self.out.add(doc, path, f"{what} is declared twice", code="duplicate")
            elif subject is not None:
                self.subjects[subject_id] = subject
                self.where[("subjects", subject_id)] = (doc, path)
            else:
                self.invalid_subjects.add(subject_id)

    def _records(self, doc: Document, section: str, value: Any) -> None:
        items = self.out.expect_list(doc, (section,), value, section)
        if items is None:
            return
        model: type[Guardianship] | type[Consent] = (
            Guardianship if section == "guardianships" else Consent)
        noun = "guardianship" if section == "guardianships" else "consent"

        def what(index: int, _key: str | int, body: Any) -> str:
            record_id = body.get("id") if isinstance(body, dict) else None
            return f"{noun} `{record_id}`" if isinstance(record_id, str) else \
                f"{noun} #{index + 1}"

        records = self.out.validate_many(doc, (section,), model, list(enumerate(items)), what)
        for index, record in enumerate(records):
            if record is None:
                continue
            path: tuple[str | int, ...] = (section, index)
            if (section, record.id) in self.where:
                self.out.add(doc, (*path, "id"), f"{noun} id `{record.id}` is used twice",
                             code="duplicate")
                continue
            self.where[(section, record.id)] = (doc, path)
            if isinstance(record, Guardianship):
                self.guardianships.append(record)
            else:
                self.consents.append(record)

    def cross_check(self) -> None:
        vocab = PolicyVocabulary.of(self.policy) if self.policy is not None else None
        for g in self.guardianships:
            doc, path = self.where[("guardianships", g.id)]
            self._known_subject(doc, (*path, "subject"), g.subject, f"guardianship `{g.id}`")
            if g.valid_until is not None and g.valid_until <= g.valid_from:
                self.out.add(doc, (*path, "valid_until"),
                             f"guardianship `{g.id}`: valid_until is not after valid_from")
            if vocab is not None:
                for i, c in enumerate(g.scope or ()):
                    self.out.reference(doc, (*path, "scope", i), c, vocab.categories,
                                       "data category")
        for k in self.consents:
            doc, path = self.where[("consents", k.id)]
            what = f"consent `{k.id}`"
            self._known_subject(doc, (*path, "subject"), k.subject, what)
            if k.expires_at is not None and k.expires_at <= k.given_at:
                self.out.add(doc, (*path, "expires_at"),
                             f"{what}: expires_at is not after given_at")
            if vocab is None:
                continue
            for i, selector in enumerate(k.recipients):
                check_selector(self.out, doc, (*path, "recipients", i), selector, vocab)
            for key, known, noun in (("data", vocab.categories, "data category"),
                                     ("purposes", vocab.purposes, "purpose"),
                                     ("subprocesses", vocab.subprocesses, "sub-process")):
                for i, value in enumerate(getattr(k, key) or ()):
                    self.out.reference(doc, (*path, key, i), value, known, noun)
        if vocab is not None:
            for subject_id, subject in self.subjects.items():
                jurisdiction = subject.jurisdiction or (
                    self.policy.default_jurisdiction if self.policy else None)
                doc, path = self.where[("subjects", subject_id)]
                if jurisdiction is None:
                    self.out.add(doc, path, "a subject has no jurisdiction and the policy "
                                 "names no default_jurisdiction")
                else:
                    self.out.reference(doc, (*path, "jurisdiction"), jurisdiction,
                                       vocab.jurisdictions, "jurisdiction")

    def _known_subject(self, doc: Document, path: tuple[str | int, ...], subject_id: str,
                       what: str) -> None:
        if subject_id not in self.subjects and subject_id not in self.invalid_subjects and not (
                self.known_subject is not None and self.known_subject(subject_id)):
            self.out.diagnostics.append(
                doc.diagnostic(path, f"{what}: its subject is not declared under `subjects`"
                               if self.known_subject is None else
                               f"{what}: its subject is not recorded in the registry",
                               code="unknown-reference"))

