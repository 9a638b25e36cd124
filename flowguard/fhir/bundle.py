"""FHIR input as a FHIR server would read it: one Consent, a Bundle of Consents, or a folder
of such JSON files, imported all or nothing.

A Bundle is imported only when it carries resources to record: `collection`, `batch` or
`transaction`, and in the last two only entries whose `request.method` is POST or PUT. A
DELETE entry is never read as a grant, and a search result, history, document or message
is refused rather than taken apart. An entry repeated unchanged is imported once, with a
note; two different resources that become one consent id are refused."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowguard._source import Document, SourceError, load_documents
from flowguard.errors import Diagnostic, RegistryError
from flowguard.fhir._common import Path_, render
from flowguard.fhir.mapping import FhirMapping
from flowguard.fhir.reading import FhirImport, _Importer
from flowguard.model import Consent, Policy

BUNDLE_TYPES = ("collection", "batch", "transaction")
METHODS = ("POST", "PUT")
_WHY_NOT_TYPE = {
    "searchset": "a search result may be one page of several and may hold resources that "
                 "only came along with an `_include`",
    "history": "a history holds earlier versions and deletions, not the current consents",
    "document": "the resources of a document are part of it, not records of their own",
    "message": "the resources of a message are part of it, not records of their own",
    "transaction-response": "it is a server's reply, not the resources themselves",
    "batch-response": "it is a server's reply, not the resources themselves",
    "subscription-notification": "it notifies of changes, not the resources themselves",
}
_WHY_NOT_METHOD = {
    "DELETE": "deletes a resource: a deletion is never imported as a consent, and the "
              "registry's history is append-only. Leave the entry out; to withdraw a "
              "consent, import it with status `inactive` and its withdrawal time (extension "
              "`urn:flowguard:withdrawn-at`), or run `flowguard consent withdraw`",
    "GET": "reads a resource and carries none to import; leave the entry out",
    "HEAD": "reads a resource and carries none to import; leave the entry out",
    "PATCH": "changes part of a resource that is not in the Bundle; send the whole Consent "
             "with PUT",
}


@dataclass(frozen=True)
class FhirEntry:
    """One resource to import: its file, its positions there, and how messages name it
    (`Consent` for a file of its own, `Bundle.entry[3].resource` in a Bundle)."""

    resource: Any
    source: str
    doc: Document | None
    root: str = "Consent"


@dataclass
class _Within(Document):
    """The positions of a value inside a larger document (an entry's resource)."""

    outer: Document | None = None
    prefix: Path_ = ()

    def position(self, path: Sequence[str | int], *, at_key: bool = False
                 ) -> tuple[int | None, int | None]:
        if self.outer is None:
            return None, None
        return self.outer.position((*self.prefix, *path), at_key=at_key)


def consents_from_fhir_path(path: str | Path, mapping: FhirMapping,
                            policy: Policy | None = None) -> FhirImport:
    """Import every Consent of a FHIR JSON file (a Consent or a Bundle of them) or of every
    `*.json` file of a folder. All or nothing: raises `RegistryError` with every problem
    found; the notes (what was not imported, entries skipped as repeated) come back with
    the consents."""
    errors: list[Diagnostic] = []
    notes: list[Diagnostic] = []
    consents: dict[str, tuple[Consent, FhirEntry]] = {}
    seen: dict[str, FhirEntry] = {}
    for entry in fhir_entries(path, errors):
        text = json.dumps(entry.resource, sort_keys=True, ensure_ascii=False, default=repr)
        first = seen.get(text)
        if first is not None:
            notes.append(_at(entry, f"the same resource as {_where(first, entry)}; imported once",
                             "duplicate-entry", "warning"))
            continue
        seen[text] = entry
        try:
            result = _Importer(mapping, policy, entry.source, entry.doc,
                               entry.root).run(entry.resource)
        except RegistryError as exc:
            errors += exc.diagnostics
            continue
        notes += result.unmapped
        for consent in result.consents:
            known = consents.get(consent.id)
            if known is None:
                consents[consent.id] = (consent, entry)
                continue
            other = _where(known[1], entry)
            if known[0] == consent:
                notes.append(_at(entry, f"becomes consent `{consent.id}` exactly as {other} "
                                 "does; imported once", "duplicate-entry", "warning"))
            else:
                errors.append(_at(entry, f"becomes consent `{consent.id}`, and so does "
                                  f"{other}, with different content: a consent id names one "
                                  "consent. Keep one of the two resources (or give them "
                                  "different `id`s)", "duplicate-id"))
    if errors:
        raise RegistryError(errors)
    return FhirImport(tuple(k for k, _ in consents.values()), tuple(notes))


def fhir_entries(path: str | Path, errors: list[Diagnostic]) -> Iterator[FhirEntry]:
    """The resources to import from a JSON file or from every `*.json` file of a folder,
    Bundles opened; problems with the files and Bundles are added to `errors`."""
    where = Path(path)
    files = sorted(where.glob("*.json")) if where.is_dir() else [where]
    if where.is_dir() and not files:
        errors.append(Diagnostic("the folder holds no `*.json` file to import", str(where),
                                 code="missing"))
    for file in files:
        try:
            docs = load_documents(file)
        except SourceError as exc:
            errors.append(exc.diagnostic)
            continue
        for doc in docs:
            data = doc.data
            if isinstance(data, Mapping) and data.get("resourceType") == "Bundle":
                yield from _bundle_entries(doc, data, errors)
            else:
                yield FhirEntry(data, str(file), doc)


def _bundle_entries(doc: Document, bundle: Mapping[str, Any],
                    errors: list[Diagnostic]) -> Iterator[FhirEntry]:
    def error(path: Path_, message: str, code: str) -> None:
        line, column = doc.position(path)
        errors.append(Diagnostic(f"{render(path, 'Bundle')}: {message}", doc.file, line,
                                 column, code=code))

    kind = bundle.get("type")
    if not isinstance(kind, str):
        error(("type",), "a Bundle needs a `type`; flowguard imports `collection`, `batch` "
              "and `transaction` Bundles", "bundle-type")
        return
    if kind not in BUNDLE_TYPES:
        why = _WHY_NOT_TYPE.get(kind, "it is not a Bundle type flowguard knows")
        error(("type",), f"a `{kind[:40]}` Bundle is not imported: {why}. flowguard imports "
              "`collection`, `batch` and `transaction` Bundles: save the Consent resources "
              "as a `collection` Bundle (or one file each) and import that", "bundle-type")
        return
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        error(("entry",), "must be a JSON array", "type")
        return
    for i, entry in enumerate(entries):
        path: Path_ = ("entry", i)
        if not isinstance(entry, Mapping):
            error(path, "must be a JSON object", "type")
            continue
        if not _request_ok(entry, kind, path, error):
            continue
        resource = entry.get("resource")
        if not isinstance(resource, Mapping):
            error(path, "has no `resource` to import", "missing")
            continue
        rtype = resource.get("resourceType")
        if rtype != "Consent":
            what = f"a `{rtype[:40]}`" if isinstance(rtype, str) else "a resource"
            error((*path, "resource", "resourceType"), f"{what}, not a Consent: flowguard "
                  "imports Consent resources only; leave the entry out of the Bundle",
                  "not-consent")
            continue
        yield FhirEntry(resource, doc.file, _Within(doc.file, resource, outer=doc,
                                                    prefix=(*path, "resource")),
                        render((*path, "resource"), "Bundle"))


def _request_ok(entry: Mapping[str, Any], kind: str, path: Path_, error: Any) -> bool:
    """Whether the entry's `request` lets it be imported (errors reported otherwise)."""
    request = entry.get("request")
    if kind == "collection":
        if request is not None:
            error((*path, "request"), "a `collection` Bundle's entries have no `request` "
                  "(only `batch` and `transaction` entries do); remove it, or make the "
                  "Bundle a `transaction`", "bundle-request")
            return False
        return True
    if not isinstance(request, Mapping):
        error((*path, "request"), f"every entry of a `{kind}` Bundle needs a `request` with "
              "`method` POST or PUT", "bundle-request")
        return False
    method = request.get("method")
    if method in METHODS:
        return True
    if isinstance(method, str) and method in _WHY_NOT_METHOD:
        error((*path, "request", "method"), f"`{method}` {_WHY_NOT_METHOD[method]}. Only "
              "POST and PUT entries are imported", "bundle-method")
    else:
        error((*path, "request", "method"), "must be POST or PUT (the entries that carry a "
              "Consent to record)", "bundle-method")
    return False


def _at(entry: FhirEntry, message: str, code: str,
        severity: str = "error") -> Diagnostic:
    line, column = entry.doc.position(()) if entry.doc is not None else (None, None)
    return Diagnostic(f"{entry.root}: {message}", entry.source, line, column,
                      severity="warning" if severity == "warning" else "error", code=code)


def _where(entry: FhirEntry, seen_from: FhirEntry) -> str:
    """`entry` as named in a message about `seen_from`: its file if another, its line."""
    line = entry.doc.position(())[0] if entry.doc is not None else None
    place = [entry.source] if entry.source != seen_from.source else []
    place += [f"line {line}"] if line else []
    return entry.root + (f" ({', '.join(place)})" if place else "")
