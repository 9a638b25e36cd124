"""FHIR Consent import (R4 and R5 JSON) and export (R5 JSON).

FHIR names people, recipients, data and purposes by references and codes; flowguard names
them by the ids of a policy (SPEC §§2-4). A *FHIR map* (YAML, `load_fhir_mapping`) says how
one becomes the other:

```yaml
subjects:                       # Consent.subject (R5) / Consent.patient (R4) -> subject id
  "Patient/f001": citizen-0042        # a reference "Type/id" ...
  "urn:oid:1.2.208.176.1.2|0000000042": citizen-0042   # ... or an identifier "system|value"
persons:                        # a grantor (R5) / performer (R4) who is not the subject
  "RelatedPerson/peter": person-anne  # -> the guardian's person id (SPEC §4 given_by)
recipients:                     # provision actors and R5 grantees -> a flowguard selector
  "Organization/f001": {organization: cafe-solsikke}
  "Practitioner/f204": {actor: care-staff}
data:                           # codes (class, resourceType, documentType, code,
  "http://loinc.org|11506-3": health.diagnosis      #   securityLabel) -> data category
  "class:MedicationRequest": health.medication      # = "http://hl7.org/fhir/resource-types|..."
  "Task/f201": social.case-notes                    # a provision.data reference
purposes:                       # provision.purpose codes -> purpose id
  "http://terminology.hl7.org/CodeSystem/v3-ActReason|TREAT": follow-up
subprocesses: [co-delivery]     # optional: set on every imported consent (omitted = any)
explicit: true                  # a documented FHIR Consent is explicit consent (default true)
default_data: [work]            # optional: what a provision that names no data covers
default_purposes: [job-matching]  # optional: what a provision that names no purpose covers
default_grantor: subject        # optional: a consent that names no grantor was given by
                                #   its subject (without it such a consent is refused)
```

Every value in the map is one flowguard id (a selector for `recipients`). A key that is not
in the map is *unmapped*.

`consent_from_fhir` reads one Consent resource and returns a `FhirImport`: the flowguard
consents it amounts to and, as warnings, everything in it that was not represented (each
naming its JSON path, e.g. `Consent.provision.provision[1].securityLabel[0]`). It raises
`RegistryError` for a resource it cannot import faithfully. The import **fails closed**: it
never yields a consent broader than the resource.

Reading a Consent
-----------------
* Version: R5 when `provision` is a list or R5-only elements (`subject`, `date`, `grantor`,
  `grantee`, `decision`, ...) are present; R4 when `provision` is an object or R4-only
  elements (`patient`, `dateTime`, `performer`, `policyRule`, ...) are present. A resource
  that mixes both is refused.
* Status: `active` imports as a current consent; `inactive` imports with `withdrawn_at` set
  to `meta.lastUpdated` (refused when that is missing: the withdrawal time must be known).
  Every other status (`draft`, `proposed`, `rejected`, `entered-in-error`, `not-done`,
  `unknown`) is refused: such a resource is not (or no longer) an agreement.
* Base decision: R5 `decision` (required); R4 the root provision's `type`, else `policyRule`
  (`OPTIN`/`OPTINR` permit, `OPTOUT`/`OPTOUTE` deny). A base **deny** is refused: flowguard
  records consents to share, and a refusal is recorded by having no consent.
* Provisions (R5): the base decision applies within the top-level provisions (several
  top-level provisions are alternatives); each nested provision is an exception to its
  parent, so it has the opposite decision. This is how R4's root provision and its `type`
  convert to R5 (`decision` + `provision[0]`). R5 root `grantee` and `period` restrict
  every provision.
* Provisions (R4): the root provision carries the base decision; nested provisions carry
  their own `type`. A nested *permit* inside a permit is read as narrowing its parent (the
  narrowest reading; the others are broader). A deny nested in a deny is refused.
* Conditions of one provision are ANDed, the entries of one element ORed:
  `actor` (recipient roles only: PRCP, IRCP, or no role) and R5 `grantee` -> recipients;
  `class`/`resourceType`/`documentType`/`code`/`securityLabel`/`data` -> data categories
  (two elements intersect along the category hierarchy); `purpose` -> purposes; `period`
  -> validity (its start raises `given_at`, its end is `expires_at`); `action` -> a permit
  grants receiving only through `access`, `collect` or `disclose`, a deny blocks it through
  those and `use` (other actions are reported and, in a deny, ignored).
* A permit that names no recipient is refused (flowguard consents name their recipients);
  one that names no data or purpose covers `default_data`/`default_purposes`, refused
  without them. In a permit, an unmapped code, actor or purpose is reported and left out
  (the consent gets narrower); in a deny it makes the resource refused.
* A deny is subtracted exactly or the resource is refused: a denied category is removed
  from a permitted ancestor by listing what remains below it (needs the `policy`); a denied
  recipient is removed from a permitted selector by listing the policy's remaining actors
  (needs the `policy`, unless the two are disjoint or the deny covers the permit); a denied
  period splits the validity; a denied purpose *below* a permitted one cannot be
  represented (a flowguard purpose always covers its sub-purposes) and is refused.
* Refused too, because ignoring them would widen the consent: actors in other roles
  (custodian `CST`, author `AUT`, ...), `dataPeriod`, `expression`, `data` with meaning
  `authoredby`, `modifierExtension`, `implicitRules`, unknown elements, times without a
  zone, dates coarser than a day. Informational elements (`text`, `meta`, `identifier`,
  `category`, `scope`, `sourceAttachment`, `verification`, `controller`, `policy`, ...) are
  reported as warnings.
* Times: a date without a time never widens a consent: as a lower bound (`date`,
  `dateTime`, `period.start`) it counts from 00:00 UTC of the next day, as an upper bound
  (`period.end`) it ends at 00:00 UTC that day. `given_at` is the later of the consent's
  date and the provision's period start; a consent without a date is refused.
* Grantor: a grantor/performer that is the subject gives `given_by` = the subject id; one in
  `persons` (a RelatedPerson: a parent or guardian) gives that person id. The engine then
  checks the authority of that person through the registry's guardianships (SPEC §5).
  Several different grantors, or an unmapped one, are refused; none at all is refused
  unless the map says `default_grantor: subject`.
* Ids: `identifier` with system `urn:flowguard:consent` gives the consent id (written by
  `consent_to_fhir`); otherwise `fhir-` + `Consent.id`. A resource that becomes several
  flowguard consents (a deny split it) numbers them `-1`, `-2`, ...
* With a `policy`, every category, purpose, sub-process and selector value produced must
  exist in it. Messages never contain a subject's, grantor's or recipient's reference.

Writing a Consent
-----------------
`consent_to_fhir` writes an R5 Consent: `decision: permit` and one provision with the
recipients (role PRCP), the action `disclose`, the purposes and the data codes; `date` and
`period` carry `given_at`/`expires_at`; a withdrawn consent is `inactive` with
`meta.lastUpdated` = `withdrawn_at`. References and codes come from the map in reverse;
what the map lacks uses flowguard's own systems (`urn:flowguard:subject`, `...:person`,
`...:selector`, `...:category`, `...:purpose`). Evidence, and sub-processes or `explicit`
where they differ from the map, travel in `urn:flowguard:*` extensions, so reading the
resource back with the same map gives an equal consent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, StrictBool, TypeAdapter, ValidationError, field_validator

from flowguard._loading import Collector, PolicyVocabulary, did_you_mean
from flowguard._source import Document, SourceError, load_documents
from flowguard.errors import Diagnostic, RegistryError
from flowguard.model import (
    SELECTOR_KEYS,
    Consent,
    Evidence,
    Id,
    IdList,
    Model,
    Policy,
    Selector,
)

__all__ = [
    "FhirImport",
    "FhirMapping",
    "consent_from_fhir",
    "consent_from_fhir_file",
    "consent_to_fhir",
    "load_fhir_mapping",
]

# --------------------------------------------------------------------------- constants

RESOURCE_TYPES = "http://hl7.org/fhir/resource-types"
CONSENT_ACTION = "http://terminology.hl7.org/CodeSystem/consentaction"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"

FLOWGUARD_CONSENT = "urn:flowguard:consent"
FLOWGUARD_SUBJECT = "urn:flowguard:subject"
FLOWGUARD_PERSON = "urn:flowguard:person"
FLOWGUARD_SELECTOR = "urn:flowguard:selector"
FLOWGUARD_CATEGORY = "urn:flowguard:category"
FLOWGUARD_PURPOSE = "urn:flowguard:purpose"
EXT_EVIDENCE = "urn:flowguard:evidence"
EXT_SUBPROCESSES = "urn:flowguard:subprocesses"
EXT_EXPLICIT = "urn:flowguard:explicit"

ID_PREFIX = "fhir-"
RECIPIENT_ROLES = frozenset({f"{PARTICIPATION}|PRCP", f"{PARTICIPATION}|IRCP"})
KNOWN_ACTIONS = frozenset(f"{CONSENT_ACTION}|{c}"
                          for c in ("access", "collect", "correct", "disclose", "use"))
PERMIT_ACTIONS = frozenset(f"{CONSENT_ACTION}|{c}" for c in ("access", "collect", "disclose"))
DENY_ACTIONS = PERMIT_ACTIONS | {f"{CONSENT_ACTION}|use"}
POLICY_RULES = {f"{ACT_CODE}|OPTIN": True, f"{ACT_CODE}|OPTINR": True,
                f"{ACT_CODE}|OPTOUT": False, f"{ACT_CODE}|OPTOUTE": False}

_COMMON = frozenset({"resourceType", "id", "meta", "implicitRules", "language", "text",
                     "contained", "extension", "modifierExtension", "identifier", "status",
                     "category", "sourceAttachment", "sourceReference", "verification",
                     "provision"})
_R4_ONLY = frozenset({"scope", "patient", "dateTime", "performer", "organization", "policy",
                      "policyRule"})
_R5_ONLY = frozenset({"subject", "date", "period", "grantor", "grantee", "manager",
                      "controller", "regulatoryBasis", "policyBasis", "policyText",
                      "decision"})
_INFORMATIONAL = frozenset({"meta", "language", "text", "contained", "category",
                            "sourceAttachment", "sourceReference", "verification",
                            "organization", "policy", "manager", "controller",
                            "regulatoryBasis", "policyBasis", "policyText"})
_PROVISION_KEYS = {
    "R4": frozenset({"id", "extension", "modifierExtension", "type", "period", "actor",
                     "action", "securityLabel", "purpose", "class", "code", "dataPeriod",
                     "data", "provision"}),
    "R5": frozenset({"id", "extension", "modifierExtension", "period", "actor", "action",
                     "securityLabel", "purpose", "documentType", "resourceType", "code",
                     "dataPeriod", "data", "expression", "provision"}),
}
_DATA_ELEMENTS = ("class", "resourceType", "documentType", "code", "securityLabel", "data")

_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_PARTIAL_DATE = re.compile(r"^\d{4}(-\d{2})?$")
_DATETIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?)(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")
_FHIR_ID = re.compile(r"[^A-Za-z0-9\-.]")
_ID: TypeAdapter[str] = TypeAdapter(Id)

Path_ = tuple[str | int, ...]


# --------------------------------------------------------------------------- the map


def _is_identifier_key(key: str) -> bool:
    system, sep, value = key.partition("|")
    return bool(sep and system and value)


def _is_reference_key(key: str) -> bool:
    return "|" not in key and "/" in key.strip("/")


def _normal_code_key(key: str) -> str:
    if key.startswith("class:") and len(key) > len("class:"):
        return f"{RESOURCE_TYPES}|{key[len('class:'):]}"
    return key


class FhirMapping(Model):
    """How FHIR references and codes map to flowguard ids (see the module docstring)."""

    subjects: dict[str, Id] = Field(default_factory=dict)
    persons: dict[str, Id] = Field(default_factory=dict)
    recipients: dict[str, Selector] = Field(default_factory=dict)
    data: dict[str, Id] = Field(default_factory=dict)
    purposes: dict[str, Id] = Field(default_factory=dict)
    subprocesses: IdList | None = None
    explicit: StrictBool = True
    default_data: IdList | None = None
    default_purposes: IdList | None = None
    default_grantor: Literal["subject"] | None = None

    @field_validator("subjects", "persons", "recipients", mode="after")
    @classmethod
    def _party_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        # keys may be citizen identifiers: say what is wrong, never which key
        for key in value:
            if not (_is_identifier_key(key) or _is_reference_key(key)):
                raise ValueError("every key must be a reference `Type/id` or an identifier "
                                 "`system|value`")
        return value

    @field_validator("data", mode="before")
    @classmethod
    def _data_keys(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        normal: dict[Any, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError("every key must be a string")
            norm = _normal_code_key(key)
            if not (_is_identifier_key(norm) or _is_reference_key(norm)):
                raise ValueError(f"key `{key}` is not `system|code`, `class:Type` or a "
                                 "reference `Type/id`")
            if norm in normal:
                raise ValueError(f"key `{key}` is given twice")
            normal[norm] = item
        return normal

    @field_validator("purposes", mode="after")
    @classmethod
    def _purpose_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _is_identifier_key(key):
                raise ValueError(f"key `{key}` is not `system|code`")
        return value


_MAP_KEYS = tuple(FhirMapping.model_fields)
_PRIVATE_SECTIONS = ("subjects", "persons", "recipients")


def load_fhir_mapping(path: str | Path) -> FhirMapping:
    """Load a FHIR map (one YAML document). Raises `RegistryError` naming file and line."""
    out = Collector()
    file = Path(path)
    try:
        documents = [d for d in load_documents(file) if d.data is not None]
    except SourceError as exc:
        raise RegistryError([exc.diagnostic]) from None
    if len(documents) != 1:
        raise RegistryError([Diagnostic("a FHIR map is exactly one YAML document", str(file),
                                        code="invalid")])
    doc = documents[0]
    if not isinstance(doc.data, dict):
        raise RegistryError([doc.diagnostic((), "a FHIR map must be a mapping", code="type")])
    for key in doc.data:
        if key not in _MAP_KEYS:
            out.add(doc, (key,), f"unknown top-level key `{key}`",
                    hint=did_you_mean(key, _MAP_KEYS), code="unknown-key")
    for section in _PRIVATE_SECTIONS:
        if section in doc.data:
            _check_party_section(out, doc, section, doc.data[section])
    if out.has_errors:
        raise RegistryError(out.diagnostics)
    mapping = out.validate(doc, (), FhirMapping, doc.data, "FHIR map")
    if mapping is None or out.has_errors:
        raise RegistryError(out.diagnostics)
    return mapping


def _check_party_section(out: Collector, doc: Document, section: str, value: Any) -> None:
    """Check `subjects`/`persons`/`recipients` entry by entry, naming entries by position
    only: their keys are references or identifiers of people."""
    entries = out.expect_mapping(doc, (section,), value, section)
    if entries is None:
        return
    for index, (key, item) in enumerate(entries.items()):
        what = f"{section} entry #{index + 1}"
        path: Path_ = (section, key) if isinstance(key, str) else (section,)
        if not isinstance(key, str) or not (_is_identifier_key(key) or _is_reference_key(key)):
            out.add(doc, path, f"{what}: the key must be a reference `Type/id` or an "
                    "identifier `system|value`", code="invalid")
            continue
        if section == "recipients":
            out.validate(doc, path, Selector, item, what)
            continue
        try:
            _ID.validate_python(item)
        except ValidationError:
            out.add(doc, path, f"{what}: the value must be a flowguard id", code="type")


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class FhirImport:
    """What one FHIR Consent became: flowguard consents, and the warnings about what in the
    resource could not be represented."""

    consents: tuple[Consent, ...]
    unmapped: tuple[Diagnostic, ...] = ()


@dataclass(frozen=True)
class _Box:
    """A region of (recipient, category, purpose, time); None on a dimension = unrestricted.

    recipients: a flow's recipient must match one selector; data/purposes: ancestor-or-self
    of the flow's; time: [start, end)."""

    recipients: tuple[Selector, ...] | None = None
    data: tuple[str, ...] | None = None
    purposes: tuple[str, ...] | None = None
    start: datetime | None = None
    end: datetime | None = None

    def empty(self) -> bool:
        return (self.recipients == () or self.data == () or self.purposes == ()
                or (self.start is not None and self.end is not None
                    and self.start >= self.end))


@dataclass
class _Node:
    path: Path_
    permit: bool
    cond: _Box
    inert: bool = False  # grants (permit) or blocks (deny) nothing flowguard represents
    children: list[_Node] = field(default_factory=list)


class _Inexact(Exception):
    pass


# --------------------------------------------------------------------------- import


def consent_from_fhir(resource: Mapping[str, Any], mapping: FhirMapping,
                      policy: Policy | None = None, *, source: str = "<fhir>") -> FhirImport:
    """Import one FHIR Consent (R4 or R5 JSON, parsed). Raises `RegistryError`."""
    return _Importer(mapping, policy, source, None).run(resource)


def consent_from_fhir_file(path: str | Path, mapping: FhirMapping,
                           policy: Policy | None = None) -> FhirImport:
    """Import a FHIR Consent from a JSON file; diagnostics carry its lines and columns."""
    file = Path(path)
    try:
        documents = [d for d in load_documents(file) if d.data is not None]
    except SourceError as exc:
        raise RegistryError([exc.diagnostic]) from None
    if len(documents) != 1:
        raise RegistryError([Diagnostic("a FHIR Consent file holds exactly one resource",
                                        str(file), code="invalid")])
    return _Importer(mapping, policy, str(file), documents[0]).run(documents[0].data)


def _render(path: Path_) -> str:
    text = "Consent"
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else f".{step}"
    return text


def _ancestor_or_self(a: str, b: str) -> bool:
    """`a` is `b` or an ancestor of `b` in a dotted hierarchy."""
    return b == a or b.startswith(a + ".")


def _strict_ancestor(a: str, b: str) -> bool:
    return b != a and b.startswith(a + ".")


def _unique(items: Sequence[Any]) -> tuple[Any, ...]:
    seen: list[Any] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return tuple(seen)


def _hier_intersect(xs: tuple[str, ...] | None,
                    ys: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """What both sets of subtrees cover, as subtrees (exact)."""
    if xs is None:
        return ys
    if ys is None:
        return xs
    kept = [x for x in xs if any(_ancestor_or_self(y, x) for y in ys)]
    kept += [y for y in ys if any(_strict_ancestor(x, y) for x in xs)]
    return _unique(kept)


def _selector_and(a: Selector, b: Selector) -> Selector | None:
    values: dict[str, Any] = {}
    for key in SELECTOR_KEYS:
        av, bv = getattr(a, key), getattr(b, key)
        if av is None and bv is None:
            continue
        if av is None or bv is None:
            values[key] = av if bv is None else bv
            continue
        both = tuple(v for v in av if v in bv)
        if not both:
            return None
        values[key] = both
    return Selector.model_validate(values)


def _selectors_intersect(xs: tuple[Selector, ...] | None,
                         ys: tuple[Selector, ...] | None) -> tuple[Selector, ...] | None:
    if xs is None:
        return ys
    if ys is None:
        return xs
    both = [s for x in xs for y in ys if (s := _selector_and(x, y)) is not None]
    return _unique(both)


def _intersect(a: _Box, b: _Box) -> _Box:
    start = a.start if b.start is None else b.start if a.start is None else max(a.start, b.start)
    end = a.end if b.end is None else b.end if a.end is None else min(a.end, b.end)
    return _Box(_selectors_intersect(a.recipients, b.recipients),
                _hier_intersect(a.data, b.data), _hier_intersect(a.purposes, b.purposes),
                start, end)


def _covers(wide: Selector, narrow: Selector) -> bool:
    """Every actor `narrow` matches, `wide` matches too (decidable without a policy)."""
    for key in SELECTOR_KEYS:
        wv, nv = getattr(wide, key), getattr(narrow, key)
        if wv is None:
            continue
        if nv is None or any(v not in wv for v in nv):
            return False
    return True


def _disjoint(a: Selector, b: Selector) -> bool:
    """No actor matches both (each actor has one id, organization, kind, sector, role)."""
    for key in SELECTOR_KEYS:
        av, bv = getattr(a, key), getattr(b, key)
        if av is not None and bv is not None and not set(av) & set(bv):
            return True
    return False


class _Importer:
    def __init__(self, mapping: FhirMapping, policy: Policy | None, source: str,
                 doc: Document | None) -> None:
        self.map = mapping
        self.policy = policy
        self.vocab = PolicyVocabulary.of(policy) if policy is not None else None
        self.source = source
        self.doc = doc
        self.errors: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []
        self.version: Literal["R4", "R5"] = "R5"
        self.subject_keys: set[str] = set()
        self.subject_id = ""

    # ----------------------------------------------------------------- reporting

    def _diag(self, path: Path_, message: str, code: str,
              severity: Literal["error", "warning"]) -> Diagnostic:
        text = f"{_render(path)}: {message}"
        line = column = None
        if self.doc is not None:
            line, column = self.doc.position(path)
        return Diagnostic(text, self.source, line, column, severity=severity, code=code)

    def error(self, path: Path_, message: str, code: str = "invalid") -> None:
        self.errors.append(self._diag(path, message, code, "error"))

    def warn(self, path: Path_, message: str, code: str = "unmapped") -> None:
        diag = self._diag(path, message, code, "warning")
        if diag not in self.warnings:
            self.warnings.append(diag)

    # ----------------------------------------------------------------- JSON shapes

    def _object(self, value: Any, path: Path_) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        self.error(path, "must be a JSON object", "type")
        return None

    def _array(self, value: Any, path: Path_) -> list[Any]:
        if isinstance(value, list):
            return value
        self.error(path, "must be a JSON array", "type")
        return []

    def _string(self, value: Any, path: Path_) -> str | None:
        if isinstance(value, str) and value:
            return value
        self.error(path, "must be a non-empty string", "type")
        return None

    def _codings(self, value: Any, path: Path_, concept: bool) -> list[str]:
        """The `system|code` keys of a Coding (or of a CodeableConcept's codings)."""
        obj = self._object(value, path)
        if obj is None:
            return []
        if concept:
            keys: list[str] = []
            for i, coding in enumerate(self._array(obj.get("coding", []), (*path, "coding"))):
                keys += self._codings(coding, (*path, "coding", i), False)
            return keys
        system, code = obj.get("system", ""), obj.get("code")
        if not isinstance(system, str) or not isinstance(code, str) or not code:
            self.error(path, "a Coding needs a string `code` (and a string `system`)", "type")
            return []
        return [f"{system}|{code}"]

    def _reference_keys(self, value: Any, path: Path_) -> list[str]:
        obj = self._object(value, path)
        if obj is None:
            return []
        keys: list[str] = []
        ref = obj.get("reference")
        if ref is not None and self._string(ref, (*path, "reference")) is not None:
            keys.append(ref)
        ident = obj.get("identifier")
        if ident is not None:
            io = self._object(ident, (*path, "identifier"))
            if io is not None:
                system, val = io.get("system"), io.get("value")
                if isinstance(system, str) and isinstance(val, str) and system and val:
                    keys.append(f"{system}|{val}")
        return keys

    def _flowguard_id(self, keys: list[str], system: str, path: Path_) -> str | None:
        for key in keys:
            sys_, _, value = key.partition("|")
            if sys_ == system:
                try:
                    return _ID.validate_python(value)
                except ValidationError:
                    self.error(path, f"the `{system}` identifier is not a valid flowguard id",
                               "invalid")
        return None

    def _moment(self, value: Any, path: Path_, bound: Literal["lower", "upper"],
                instant: bool = False) -> datetime | None:
        """A FHIR date/dateTime/instant as a UTC time; a date alone never widens."""
        if not isinstance(value, str):
            self.error(path, "must be a date or time string", "type")
            return None
        if (m := _DATE.match(value)) and not instant:
            try:
                day = date(int(m[1]), int(m[2]), int(m[3]))
            except ValueError:
                self.error(path, "is not a valid date", "invalid")
                return None
            if bound == "lower":
                day += timedelta(days=1)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        if _PARTIAL_DATE.match(value) and not instant:
            self.error(path, "a year or month alone is too imprecise for a consent's "
                       "validity", "imprecise-time")
            return None
        m = _DATETIME.match(value)
        if m is None:
            self.error(path, "is not a FHIR " + ("instant" if instant else "dateTime"),
                       "invalid")
            return None
        if m[3] is None:
            self.error(path, "time has no zone: write it as RFC 3339 with Z or an offset",
                       "no-zone")
            return None
        fraction = (m[2] or "")[:7]
        zone = "+00:00" if m[3] == "Z" else m[3]
        try:
            moment = datetime.fromisoformat(m[1] + fraction + zone)
        except ValueError:
            self.error(path, "is not a valid time", "invalid")
            return None
        return moment.astimezone(UTC)

    # ----------------------------------------------------------------- policy checks

    def _category(self, category: str, path: Path_) -> bool:
        if self.policy is not None and category not in self.policy.category_tree:
            self.error(path, f"maps to unknown data category `{category}`",
                       "unknown-reference")
            return False
        return True

    def _purpose(self, purpose: str, path: Path_) -> bool:
        if self.policy is not None and purpose not in self.policy.purpose_tree:
            self.error(path, f"maps to unknown purpose `{purpose}`", "unknown-reference")
            return False
        return True

    def _selector_ok(self, selector: Selector, path: Path_) -> bool:
        if self.vocab is None:
            return True
        ok = True
        for key in SELECTOR_KEYS:
            values = getattr(selector, key)
            if values is None or key == "sector":
                continue
            known, what = self.vocab.selector_domain(key)
            for v in values:
                if v not in known:
                    self.error(path, f"maps to a selector with unknown {what} `{v}`",
                               "unknown-reference")
                    ok = False
        return ok

    # ----------------------------------------------------------------- the resource

    def run(self, resource: Any) -> FhirImport:
        consents = self._resource(resource)
        if self.errors:
            raise RegistryError(self.errors)
        return FhirImport(tuple(consents), tuple(self.warnings))

    def _resource(self, resource: Any) -> list[Consent]:
        if not isinstance(resource, Mapping):
            self.error((), "a FHIR Consent must be a JSON object", "type")
            return []
        res = dict(resource)
        if res.get("resourceType") != "Consent":
            self.error(("resourceType",), "is not `Consent`", "not-consent")
            return []
        self.version = self._detect_version(res)
        if self.errors:
            return []
        known = _COMMON | (_R4_ONLY if self.version == "R4" else _R5_ONLY)
        for key in res:
            if key.startswith("_") and key[1:] in known:
                self.warn((key,), "extension of a primitive element; not imported", "extension")
            elif key == "meta":
                meta = res[key]
                for sub in sorted(meta) if isinstance(meta, dict) else ():
                    if sub not in ("lastUpdated", "versionId"):
                        self.warn((key, sub), "informational; not imported", "informational")
            elif key == "scope":
                self._scope(res[key])
            elif key not in known:
                self.error((key,), f"`{key}` is not an element of an {self.version} Consent",
                           "unknown-element")
            elif key in ("implicitRules", "modifierExtension"):
                self.error((key,), "changes the meaning of the resource in a way flowguard "
                           "cannot read", "unsupported")
            elif key in _INFORMATIONAL:
                self.warn((key,), "informational; not imported", "informational")
        resource_id = self._string(res.get("id"), ("id",)) if "id" in res else None
        if "id" not in res:
            self.error(("id",), "the resource has no id", "missing")
        base_id = self._consent_id(res, resource_id)
        withdrawn = self._status(res)
        self._subject(res)
        given_by = self._given_by(res)
        given_at = self._date(res)
        ext = self._extensions(res, resource_id)
        root = self._tree(res)
        if self.errors or root is None or given_at is None or base_id is None:
            return []
        boxes = self._permitted(root, _Box())
        if self.errors:
            return []
        consents: list[Consent] = []
        final: list[_Box] = []
        for box in boxes:
            start = given_at if box.start is None else max(given_at, box.start)
            if box.end is not None and start >= box.end:
                continue
            final.append(replace(box, start=start))
        if not final:
            self.error((), "nothing in this consent can be represented as a flowguard consent "
                       "(it permits no mapped recipient, data and purpose at any time after "
                       "it was given)", "empty")
            return []
        for n, box in enumerate(final, 1):
            consent_id = base_id if len(final) == 1 else f"{base_id}-{n}"
            values: dict[str, Any] = {
                "id": consent_id, "subject": self.subject_id, "given_by": given_by,
                "given_at": box.start, "recipients": box.recipients, "data": box.data,
                "purposes": box.purposes, "subprocesses": ext["subprocesses"],
                "explicit": ext["explicit"], "expires_at": box.end,
                "withdrawn_at": withdrawn, "evidence": ext["evidence"]}
            try:
                consents.append(Consent.model_validate(values))
            except ValidationError as exc:
                for err in exc.errors(include_url=False, include_input=False):
                    where = ".".join(str(p) for p in err["loc"])
                    self.error((), f"cannot build consent #{n}: {where}: {err['msg']}")
        return consents

    def _scope(self, value: Any) -> None:
        keys = self._codings(value, ("scope",), True)
        if {f"{CONSENT_SCOPE}|adr", f"{CONSENT_SCOPE}|treatment"} & set(keys):
            self.error(("scope",), "an advance directive or treatment consent is not a "
                       "consent to share information", "scope")
        else:
            self.warn(("scope",), "informational; not imported", "informational")

    def _detect_version(self, res: dict[str, Any]) -> Literal["R4", "R5"]:
        r4 = sorted(k for k in res if k in _R4_ONLY)
        r5 = sorted(k for k in res if k in _R5_ONLY)
        prov = res.get("provision")
        if isinstance(prov, dict):
            r4.append("provision")
        elif isinstance(prov, list):
            r5.append("provision")
        if r4 and r5:
            self.error((), f"mixes R4 elements ({', '.join(r4)}) and R5 elements "
                       f"({', '.join(r5)})", "mixed-version")
        return "R4" if r4 and not r5 else "R5"

    def _consent_id(self, res: dict[str, Any], resource_id: str | None) -> str | None:
        found: str | None = None
        if "identifier" in res:
            for i, ident in enumerate(self._array(res["identifier"], ("identifier",))):
                io = self._object(ident, ("identifier", i))
                if io is None:
                    continue
                if io.get("system") != FLOWGUARD_CONSENT:
                    self.warn(("identifier", i), "informational; not imported", "informational")
                    continue
                try:
                    found = _ID.validate_python(io.get("value"))
                except ValidationError:
                    self.error(("identifier", i, "value"), "is not a valid flowguard id")
        if found is not None:
            return found
        if resource_id is None:
            return None
        try:
            return _ID.validate_python(ID_PREFIX + resource_id)
        except ValidationError:
            self.error(("id",), "cannot be made a flowguard id (letters, digits, `-` and `.` "
                       "only)")
            return None

    def _status(self, res: dict[str, Any]) -> datetime | None:
        status = res.get("status")
        if status == "active":
            return None
        if status == "inactive":
            meta = res.get("meta")
            updated = meta.get("lastUpdated") if isinstance(meta, dict) else None
            if updated is None:
                self.error(("status",), "an inactive consent needs `meta.lastUpdated`: "
                           "flowguard must know when it was withdrawn", "no-withdrawal-time")
                return None
            return self._moment(updated, ("meta", "lastUpdated"), "lower", instant=True)
        if not isinstance(status, str):
            self.error(("status",), "is missing or not a string", "missing")
        else:
            self.error(("status",), f"`{status[:40]}`: only active and inactive consents are "
                       "imported", "status")
        return None

    def _subject(self, res: dict[str, Any]) -> None:
        key = "patient" if self.version == "R4" else "subject"
        if key not in res:
            self.error((key,), "the consent names no subject", "missing")
            return
        keys = self._reference_keys(res[key], (key,))
        self.subject_keys = set(keys)
        for k in keys:
            if k in self.map.subjects:
                self.subject_id = self.map.subjects[k]
                return
        own = self._flowguard_id(keys, FLOWGUARD_SUBJECT, (key,))
        if own is not None:
            self.subject_id = own
            return
        if keys:
            self.error((key,), "the subject reference is not in the mapping (`subjects`)",
                       "unmapped-subject")
        else:
            self.error((key,), "the subject has neither a reference nor an identifier",
                       "missing")

    def _given_by(self, res: dict[str, Any]) -> str:
        key = "performer" if self.version == "R4" else "grantor"
        if key not in res:
            if self.map.default_grantor == "subject":
                self.warn((), f"no `{key}`: taken as given by the subject (the map's "
                          "default_grantor)", "default-grantor")
                return self.subject_id
            self.error((key,), "the consent names no grantor, and the map has no "
                       "`default_grantor`", "no-grantor")
            return ""
        found: list[str] = []
        for i, ref in enumerate(self._array(res[key], (key,))):
            path: Path_ = (key, i)
            keys = self._reference_keys(ref, path)
            if set(keys) & self.subject_keys or any(
                    self.map.subjects.get(k) == self.subject_id for k in keys):
                found.append(self.subject_id)
                continue
            person = next((self.map.persons[k] for k in keys if k in self.map.persons), None)
            if person is None:
                person = self._flowguard_id(keys, FLOWGUARD_PERSON, path)
            if person is None:
                self.error(path, "the grantor reference is not in the mapping (`persons`)",
                           "unmapped-grantor")
            else:
                found.append(person)
        if len(set(found)) > 1:
            self.error((key,), "names several grantors; a flowguard consent has one",
                       "several-grantors")
        return found[0] if found else ""

    def _date(self, res: dict[str, Any]) -> datetime | None:
        key = "dateTime" if self.version == "R4" else "date"
        if key not in res:
            self.error((key,), "the consent has no date: flowguard needs when it was given",
                       "missing")
            return None
        return self._moment(res[key], (key,), "lower")

    def _extensions(self, res: dict[str, Any], resource_id: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "evidence": Evidence(method="FHIR Consent",
                                 reference=f"Consent/{resource_id}" if resource_id else None),
            "subprocesses": self.map.subprocesses, "explicit": self.map.explicit}
        for i, ext in enumerate(self._array(res.get("extension", []), ("extension",))):
            path: Path_ = ("extension", i)
            eo = self._object(ext, path)
            if eo is None:
                continue
            url = eo.get("url")
            if url == EXT_EVIDENCE:
                out["evidence"] = self._evidence(eo, path)
            elif url == EXT_SUBPROCESSES:
                value = eo.get("valueString")
                if not isinstance(value, str):
                    self.error(path, "needs a valueString", "type")
                    continue
                if value == "*":
                    out["subprocesses"] = None
                    continue
                try:
                    out["subprocesses"] = TypeAdapter(IdList).validate_python(value.split(" "))
                except ValidationError:
                    self.error(path, "is not a list of sub-process ids", "invalid")
            elif url == EXT_EXPLICIT:
                value = eo.get("valueBoolean")
                if not isinstance(value, bool):
                    self.error(path, "needs a valueBoolean", "type")
                else:
                    out["explicit"] = value
            else:
                self.warn(path, "extension not understood; not imported", "extension")
        if self.policy is not None and out["subprocesses"] is not None:
            for sp in out["subprocesses"]:
                if sp not in self.policy.subprocesses:
                    self.error(("extension",) if "extension" in res else (),
                               f"unknown sub-process `{sp}` (from the map or an extension)",
                               "unknown-reference")
        return out

    def _evidence(self, ext: dict[str, Any], path: Path_) -> Evidence | None:
        parts: dict[str, str] = {}
        for j, sub in enumerate(self._array(ext.get("extension", []), (*path, "extension"))):
            so = self._object(sub, (*path, "extension", j))
            if so is None:
                continue
            url, value = so.get("url"), so.get("valueString")
            if url in ("method", "reference", "note") and isinstance(value, str):
                parts[url] = value
            else:
                self.error((*path, "extension", j), "is not a method/reference/note string",
                           "invalid")
        if not parts:
            return None
        try:
            return Evidence.model_validate(parts)
        except ValidationError:
            self.error(path, "is not a valid flowguard evidence", "invalid")
            return None

    # ----------------------------------------------------------------- provisions

    def _tree(self, res: dict[str, Any]) -> _Node | None:
        if self.version == "R5":
            decision = res.get("decision")
            if decision is None:
                self.error(("decision",), "missing: cannot tell whether the consent permits or "
                           "denies", "no-decision")
                return None
            if decision not in ("permit", "deny"):
                self.error(("decision",), "must be `permit` or `deny`", "invalid")
                return None
            if decision == "deny":
                self.error(("decision",), "the base decision is deny: this records a refusal, "
                           "not a consent to share", "base-deny")
                return None
            cond = _Box()
            if "grantee" in res:
                cond = replace(cond, recipients=self._recipient_refs(
                    self._array(res["grantee"], ("grantee",)), ("grantee",), permit=True))
            if "period" in res:
                cond = self._period(res["period"], ("period",), cond)
            root = _Node((), True, cond)
            if "provision" in res:
                for i, prov in enumerate(self._array(res["provision"], ("provision",))):
                    node = self._provision(prov, ("provision", i), True)
                    if node is not None:
                        root.children.append(node)
            return root
        prov = res.get("provision")
        base = self._r4_base(res)
        if base is None:
            return None
        if not base:
            self.error(("policyRule",), "the base decision is deny (opt-out): this records a "
                       "refusal, not a consent to share", "base-deny")
            return None
        if prov is None:
            return _Node(("provision",), True, _Box())
        return self._provision(prov, ("provision",), True)

    def _r4_base(self, res: dict[str, Any]) -> bool | None:
        from_type: bool | None = None
        prov = res.get("provision")
        if isinstance(prov, dict) and "type" in prov:
            if prov["type"] not in ("permit", "deny"):
                self.error(("provision", "type"), "must be `permit` or `deny`", "invalid")
                return None
            from_type = prov["type"] == "permit"
        from_rule: bool | None = None
        if "policyRule" in res:
            for key in self._codings(res["policyRule"], ("policyRule",), True):
                if key in POLICY_RULES:
                    from_rule = POLICY_RULES[key]
                    break
        if from_type is not None and from_rule is not None and from_type != from_rule:
            self.error(("provision", "type"), "contradicts `policyRule`", "contradiction")
            return None
        base = from_type if from_type is not None else from_rule
        if base is None:
            self.error(("policyRule",), "cannot tell whether the consent permits or denies: "
                       "no root `provision.type` and no OPTIN/OPTOUT `policyRule`",
                       "no-decision")
        return base

    def _provision(self, value: Any, path: Path_, permit: bool) -> _Node | None:
        obj = self._object(value, path)
        if obj is None:
            return None
        keys = _PROVISION_KEYS[self.version]
        for key in obj:
            if key.startswith("_") and key[1:] in keys:
                self.warn((*path, key), "extension of a primitive element; not imported",
                          "extension")
            elif key not in keys:
                self.error((*path, key), f"`{key}` is not an element of an {self.version} "
                           "provision", "unknown-element")
            elif key == "modifierExtension":
                self.error((*path, key), "changes the meaning of the provision in a way "
                           "flowguard cannot read", "unsupported")
            elif key in ("dataPeriod", "expression"):
                self.error((*path, key), "restricts the data in a way flowguard cannot "
                           "represent", "unsupported")
            elif key == "extension":
                self.warn((*path, key), "extension not understood; not imported", "extension")
        node = _Node(path, permit, _Box())
        if "period" in obj:
            node.cond = self._period(obj["period"], (*path, "period"), node.cond)
        if "actor" in obj:
            node.cond = replace(node.cond, recipients=self._actors(obj["actor"], path, permit))
        if "action" in obj:
            node.inert = self._actions(obj["action"], path, permit)
        node.cond = replace(node.cond, data=self._data(obj, path, permit))
        if "purpose" in obj:
            node.cond = replace(node.cond, purposes=self._purposes(obj["purpose"], path, permit))
        for i, child in enumerate(self._array(obj.get("provision", []), (*path, "provision"))):
            cpath: Path_ = (*path, "provision", i)
            if self.version == "R5":
                child_permit = not permit
            else:
                co = self._object(child, cpath)
                ctype = co.get("type") if co is not None else None
                if ctype not in ("permit", "deny"):
                    self.error((*cpath, "type"), "a nested R4 provision needs `type` permit or "
                               "deny", "missing")
                    continue
                child_permit = ctype == "permit"
                if child_permit and permit:
                    self.warn(cpath, "a permit nested in a permit is read as narrowing its "
                              "parent", "narrowed")
                if not child_permit and not permit:
                    self.error(cpath, "a deny nested in a deny cannot be represented",
                               "unsupported")
                    continue
            sub = self._provision(child, cpath, child_permit)
            if sub is not None:
                node.children.append(sub)
        return node

    def _period(self, value: Any, path: Path_, box: _Box) -> _Box:
        obj = self._object(value, path)
        if obj is None:
            return box
        start = end = None
        if "start" in obj:
            start = self._moment(obj["start"], (*path, "start"), "lower")
        if "end" in obj:
            end = self._moment(obj["end"], (*path, "end"), "upper")
        return _intersect(box, _Box(start=start, end=end))

    def _actors(self, value: Any, path: Path_, permit: bool) -> tuple[Selector, ...]:
        refs: list[tuple[Any, Path_]] = []
        for i, actor in enumerate(self._array(value, (*path, "actor"))):
            apath: Path_ = (*path, "actor", i)
            ao = self._object(actor, apath)
            if ao is None:
                continue
            if "role" in ao:
                roles = self._codings(ao["role"], (*apath, "role"), True)
                if not set(roles) & RECIPIENT_ROLES:
                    self.error((*apath, "role"), "only recipients (PRCP, IRCP) can be "
                               "represented; a provision about custodians, authors or other "
                               "roles restricts the data in a way flowguard cannot",
                               "unsupported-actor-role")
                    continue
            if "reference" not in ao:
                self.error(apath, "an actor needs a reference", "missing")
                continue
            refs.append((ao["reference"], (*apath, "reference")))
        return self._recipients(refs, permit)

    def _recipient_refs(self, refs: list[Any], path: Path_,
                        permit: bool) -> tuple[Selector, ...]:
        return self._recipients([(r, (*path, i)) for i, r in enumerate(refs)], permit)

    def _recipients(self, refs: list[tuple[Any, Path_]], permit: bool) -> tuple[Selector, ...]:
        out: list[Selector] = []
        for ref, rpath in refs:
            keys = self._reference_keys(ref, rpath)
            selector = next((self.map.recipients[k] for k in keys if k in self.map.recipients),
                            None)
            if selector is None:
                selector = self._decode_selector(keys, rpath)
            if selector is None:
                if permit:
                    self.warn(rpath, "the recipient is not in the mapping (`recipients`); left "
                              "out of the consent")
                else:
                    self.error(rpath, "a denied recipient is not in the mapping "
                               "(`recipients`); the deny cannot be represented", "unmapped-deny")
                continue
            if self._selector_ok(selector, rpath):
                out.append(selector)
        return _unique(out)

    def _decode_selector(self, keys: list[str], path: Path_) -> Selector | None:
        for key in keys:
            system, _, value = key.partition("|")
            if system != FLOWGUARD_SELECTOR:
                continue
            try:
                return _decode_selector(value)
            except (ValueError, ValidationError):
                self.error(path, "the `urn:flowguard:selector` identifier is malformed",
                           "invalid")
        return None

    def _actions(self, value: Any, path: Path_, permit: bool) -> bool:
        """Whether the provision is inert for flowguard (see the module docstring)."""
        relevant = False
        for i, concept in enumerate(self._array(value, (*path, "action"))):
            apath: Path_ = (*path, "action", i)
            keys = self._codings(concept, apath, True)
            wanted = PERMIT_ACTIONS if permit else DENY_ACTIONS
            if set(keys) & wanted:
                relevant = True
            elif not permit and not set(keys) & KNOWN_ACTIONS:
                self.error(apath, "an unknown action in a deny may block disclosure; the deny "
                           "cannot be represented", "unsupported")
            elif permit:
                self.warn(apath, "this action is not represented: a flowguard consent "
                          "permits receiving data only", "action")
        if not relevant:
            self.warn((*path, "action"), "names no action that " + (
                "grants receiving data (access, collect, disclose): the provision grants "
                "nothing here" if permit else "blocks receiving data: the deny changes "
                "nothing here"), "action")
        return not relevant

    def _data(self, obj: dict[str, Any], path: Path_, permit: bool) -> tuple[str, ...] | None:
        result: tuple[str, ...] | None = None
        for element in _DATA_ELEMENTS:
            if element not in obj:
                continue
            if element not in _PROVISION_KEYS[self.version]:
                continue
            found: list[str] = []
            for i, entry in enumerate(self._array(obj[element], (*path, element))):
                epath: Path_ = (*path, element, i)
                mapped = self._data_entry(element, entry, epath)
                if mapped is None:
                    if permit:
                        self.warn(epath, "not in the mapping (`data`); left out of the consent")
                    else:
                        self.error(epath, "denied data not in the mapping (`data`); the deny "
                                   "cannot be represented", "unmapped-deny")
                elif mapped and self._category(mapped, epath):
                    found.append(mapped)
            result = _hier_intersect(result, _unique(found))
        return result

    def _data_entry(self, element: str, entry: Any, path: Path_) -> str | None:
        """The category of one entry ("" after an error), None when unmapped."""
        if element == "data":
            eo = self._object(entry, path)
            if eo is None:
                return ""
            if eo.get("meaning") == "authoredby":
                self.error((*path, "meaning"), "data by its author cannot be represented",
                           "unsupported")
                return ""
            keys = self._reference_keys(eo.get("reference"), (*path, "reference"))
        else:
            keys = self._codings(entry, path, element == "code")
            if not keys:
                return ""
        return self._code_lookup(keys, self.map.data, FLOWGUARD_CATEGORY, path)

    def _code_lookup(self, keys: list[str], table: dict[str, str], own: str,
                     path: Path_) -> str | None:
        hits = _unique([table[k] for k in keys if k in table])
        if not hits:
            hits = _unique([k.partition("|")[2] for k in keys if k.partition("|")[0] == own])
            for hit in hits:
                try:
                    _ID.validate_python(hit)
                except ValidationError:
                    self.error(path, f"the `{own}` code is not a valid flowguard id")
                    return ""
        if len(hits) > 1:
            self.error(path, "its codings map to different flowguard ids", "ambiguous")
            return ""
        return hits[0] if hits else None

    def _purposes(self, value: Any, path: Path_, permit: bool) -> tuple[str, ...]:
        found: list[str] = []
        for i, coding in enumerate(self._array(value, (*path, "purpose"))):
            ppath: Path_ = (*path, "purpose", i)
            keys = self._codings(coding, ppath, False)
            if not keys:
                continue
            mapped = self._code_lookup(keys, self.map.purposes, FLOWGUARD_PURPOSE, ppath)
            if mapped is None:
                if permit:
                    self.warn(ppath, f"purpose `{keys[0][:120]}` is not in the mapping "
                              "(`purposes`); left out of the consent")
                else:
                    self.error(ppath, f"denied purpose `{keys[0][:120]}` is not in the mapping "
                               "(`purposes`); the deny cannot be represented", "unmapped-deny")
            elif mapped and self._purpose(mapped, ppath):
                found.append(mapped)
        return _unique(found)

    # ----------------------------------------------------------------- evaluation

    def _complete(self, box: _Box, path: Path_) -> _Box:
        """A permitted region as a consent scope: defaults for unnamed data and purposes."""
        if box.recipients is None:
            self.error(path, "the permit names no recipient (no actor or grantee); flowguard "
                       "consents name their recipients", "no-recipient")
            return replace(box, recipients=())
        if box.data is None:
            if self.map.default_data is None:
                self.error(path, "the permit names no data, and the map has no "
                           "`default_data`", "no-data")
                box = replace(box, data=())
            else:
                box = replace(box, data=tuple(c for c in self.map.default_data
                                              if self._category(c, path)))
        if box.purposes is None:
            if self.map.default_purposes is None:
                self.error(path, "the permit names no purpose, and the map has no "
                           "`default_purposes`", "no-purpose")
                box = replace(box, purposes=())
            else:
                box = replace(box, purposes=tuple(p for p in self.map.default_purposes
                                                  if self._purpose(p, path)))
        return box

    def _permitted(self, node: _Node, ctx: _Box) -> list[_Box]:
        region = _intersect(ctx, node.cond)
        if node.inert or region.empty():
            return []
        same = [c for c in node.children if c.permit]
        denies = [(d, _intersect(region, d.cond)) for d in node.children
                  if not d.permit and not d.inert]
        denies = [(d, r) for d, r in denies if not r.empty()]
        if same:
            out = [b for c in same for b in self._permitted(c, region)]
        else:
            out = [self._complete(region, node.path)]
        for d, cut in denies:
            out = self._subtract_all(out, cut, d.path)
        for i, (d, cut) in enumerate(denies):
            for g in d.children:
                again = self._permitted(g, cut)
                for j, (d2, cut2) in enumerate(denies):
                    if j != i:
                        again = self._subtract_all(again, cut2, d2.path)
                out += again
        return [b for b in out if not b.empty()]

    def _subtract_all(self, boxes: list[_Box], cut: _Box, path: Path_) -> list[_Box]:
        out: list[_Box] = []
        for box in boxes:
            try:
                out += self._subtract(box, cut)
            except _Inexact as exc:
                self.error(path, f"this deny cannot be represented exactly: {exc}",
                           "inexact-deny")
        return out

    def _subtract(self, a: _Box, b: _Box) -> list[_Box]:
        """`a` minus `b`, exactly; `a` is complete (no unrestricted dimension but time)."""
        if _intersect(a, b).empty():
            return [a]
        pieces: list[_Box] = []
        cur = a
        if b.start is not None and (cur.start is None or cur.start < b.start):
            pieces.append(replace(cur, end=b.start if cur.end is None else min(cur.end, b.start)))
            cur = replace(cur, start=b.start)
        if b.end is not None and (cur.end is None or cur.end > b.end):
            pieces.append(replace(cur, start=b.end if cur.start is None
                                  else max(cur.start, b.end)))
            cur = replace(cur, end=b.end)
        recipients, data, purposes = cur.recipients, cur.data, cur.purposes
        assert recipients is not None and data is not None and purposes is not None
        if b.recipients is not None:
            pieces.append(replace(cur, recipients=self._recipients_minus(recipients,
                                                                         b.recipients)))
            cur = replace(cur, recipients=_selectors_intersect(recipients, b.recipients))
        if b.data is not None:
            pieces.append(replace(cur, data=self._categories_minus(data, b.data)))
            cur = replace(cur, data=_hier_intersect(data, b.data))
        if b.purposes is not None:
            pieces.append(replace(cur, purposes=self._purposes_minus(purposes, b.purposes)))
        return [p for p in pieces if not p.empty()]

    def _categories_minus(self, xs: tuple[str, ...], ys: tuple[str, ...]) -> tuple[str, ...]:
        out: list[str] = []
        for x in xs:
            if any(_ancestor_or_self(y, x) for y in ys):
                continue
            if not any(_strict_ancestor(x, y) for y in ys):
                out.append(x)
                continue
            if self.policy is None or x not in self.policy.category_tree:
                raise _Inexact(f"removing a sub-category from `{x}` needs the policy's "
                               "category hierarchy (pass the policy)")
            out += self._cover(x, ys)
        return _unique(out)

    def _cover(self, node: str, ys: tuple[str, ...]) -> list[str]:
        """The largest subtrees below `node` that no denied category overlaps."""
        assert self.policy is not None
        if any(_ancestor_or_self(y, node) for y in ys):
            return []
        if not any(_strict_ancestor(node, y) for y in ys):
            return [node]
        return [m for child in self.policy.category_tree.children(node)
                for m in self._cover(child, ys)]

    def _purposes_minus(self, xs: tuple[str, ...], ys: tuple[str, ...]) -> tuple[str, ...]:
        out: list[str] = []
        for x in xs:
            if any(_ancestor_or_self(y, x) for y in ys):
                continue
            if any(_strict_ancestor(x, y) for y in ys):
                raise _Inexact(f"a purpose below `{x}` cannot be taken out of it: a flowguard "
                               "consent for a purpose covers all its sub-purposes")
            out.append(x)
        return tuple(out)

    def _recipients_minus(self, xs: tuple[Selector, ...],
                          ys: tuple[Selector, ...]) -> tuple[Selector, ...]:
        out: list[Selector] = []
        for x in xs:
            if any(_covers(y, x) for y in ys):
                continue
            if all(_disjoint(x, y) for y in ys):
                out.append(x)
                continue
            if self.policy is None:
                raise _Inexact("taking a recipient out of a wider recipient selector needs "
                               "the policy's actors (pass the policy)")
            mine = self._actors_matching(x)
            denied = set().union(*(self._actors_matching(y) for y in ys))
            rest = [a for a in mine if a not in denied]
            if rest == mine:
                out.append(x)
            elif rest:
                out.append(Selector(actor=tuple(rest)))
        return _unique(out)

    def _actors_matching(self, selector: Selector) -> list[str]:
        assert self.policy is not None
        found: list[str] = []
        for actor_id, actor in sorted(self.policy.actors.items()):
            org = self.policy.organizations.get(actor.organization)
            facts = {"actor": actor_id, "organization": actor.organization, "role": actor.role,
                     "kind": org.kind if org else None, "sector": org.sector if org else None}
            if all(getattr(selector, k) is None or facts[k] in getattr(selector, k)
                   for k in SELECTOR_KEYS):
                found.append(actor_id)
        return found


# --------------------------------------------------------------------------- export


def _encode_selector(selector: Selector) -> str:
    parts = [f"{key}={','.join(values)}" for key in SELECTOR_KEYS
             if (values := getattr(selector, key)) is not None]
    return "&".join(parts) or "*"


def _decode_selector(text: str) -> Selector:
    if text == "*":
        return Selector()
    values: dict[str, list[str]] = {}
    for part in text.split("&"):
        key, sep, rest = part.partition("=")
        if not sep or key not in SELECTOR_KEYS or key in values or not rest:
            raise ValueError("malformed selector")
        values[key] = rest.split(",")
    return Selector.model_validate(values)


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _fhir_id(consent_id: str) -> str:
    text = _FHIR_ID.sub("-", consent_id.removeprefix(ID_PREFIX))[:64]
    return text or "consent"


def _reverse(table: Mapping[str, Any], value: Any) -> list[str]:
    return sorted(k for k, v in table.items() if v == value)


def _reference(key: str) -> dict[str, Any]:
    if _is_identifier_key(key):
        system, _, value = key.partition("|")
        return {"identifier": {"system": system, "value": value}}
    return {"reference": key}


def _party(table: Mapping[str, str], party: str, system: str) -> dict[str, Any]:
    keys = _reverse(table, party)
    if keys:
        return _reference(keys[0])
    return {"identifier": {"system": system, "value": party}}


def _coding(table: Mapping[str, str], value: str, system: str) -> dict[str, str]:
    keys = [k for k in _reverse(table, value) if _is_identifier_key(k)]
    if keys:
        sys_, _, code = keys[0].partition("|")
        return {"system": sys_, "code": code}
    return {"system": system, "code": value}


def consent_to_fhir(consent: Consent, mapping: FhirMapping | None = None) -> dict[str, Any]:
    """A FHIR R5 Consent resource (JSON-ready dict) for a flowguard consent."""
    m = mapping if mapping is not None else FhirMapping()
    evidence: dict[str, Any] = {"url": EXT_EVIDENCE}
    if consent.evidence is not None:
        parts = consent.evidence.model_dump(exclude_none=True)
        evidence["extension"] = [{"url": k, "valueString": v} for k, v in parts.items()]
    else:
        evidence["valueString"] = "none recorded"
    extensions: list[dict[str, Any]] = [evidence]
    if consent.subprocesses != m.subprocesses:
        extensions.append({"url": EXT_SUBPROCESSES, "valueString":
                           " ".join(consent.subprocesses) if consent.subprocesses else "*"})
    if consent.explicit != m.explicit:
        extensions.append({"url": EXT_EXPLICIT, "valueBoolean": consent.explicit})
    subject = _party(m.subjects, consent.subject, FLOWGUARD_SUBJECT)
    grantor = (subject if consent.given_by == consent.subject
               else _party(m.persons, consent.given_by, FLOWGUARD_PERSON))
    actors = []
    for selector in consent.recipients:
        keys = _reverse(m.recipients, selector)
        ref = _reference(keys[0]) if keys else {
            "identifier": {"system": FLOWGUARD_SELECTOR, "value": _encode_selector(selector)}}
        actors.append({"role": {"coding": [{"system": PARTICIPATION, "code": "PRCP"}]},
                       "reference": ref})
    period: dict[str, str] = {"start": _instant(consent.given_at)}
    if consent.expires_at is not None:
        period["end"] = _instant(consent.expires_at)
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "id": _fhir_id(consent.id),
        "extension": extensions,
        "identifier": [{"system": FLOWGUARD_CONSENT, "value": consent.id}],
        "status": "inactive" if consent.withdrawn_at is not None else "active",
        "subject": subject,
        "date": _instant(consent.given_at),
        "period": period,
        "grantor": [grantor],
        "decision": "permit",
        "provision": [{
            "actor": actors,
            "action": [{"coding": [{"system": CONSENT_ACTION, "code": "disclose"}]}],
            "purpose": [_coding(m.purposes, p, FLOWGUARD_PURPOSE) for p in consent.purposes],
            "code": [{"coding": [_coding(m.data, c, FLOWGUARD_CATEGORY)]}
                     for c in consent.data],
        }],
    }
    if consent.withdrawn_at is not None:
        resource["meta"] = {"lastUpdated": _instant(consent.withdrawn_at)}
    return resource

