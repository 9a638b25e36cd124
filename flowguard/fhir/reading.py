"""Importing a FHIR Consent (R4 or R5 JSON) as flowguard consents, failing closed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from flowguard._source import Document
from flowguard.errors import Diagnostic, RegistryError
from flowguard.fhir._common import (
    CONSENT_SCOPE,
    EXT_EVIDENCE,
    EXT_EXPLICIT,
    EXT_SUBPROCESSES,
    EXT_WITHDRAWN,
    FLOWGUARD_CONSENT,
    FLOWGUARD_PERSON,
    FLOWGUARD_SUBJECT,
    ID,
    ID_PREFIX,
    PATIENT_CONSENT,
    PRIVACY_SCOPE,
    Path_,
    one_document,
)
from flowguard.fhir._json import DATE, DATETIME
from flowguard.fhir._provisions import REFUSED, ProvisionReader
from flowguard.fhir._scope import Box, TooComplex, normalize
from flowguard.fhir.mapping import FhirMapping
from flowguard.model import Consent, Evidence, IdList, Policy

_COMMON = frozenset({"resourceType", "id", "meta", "implicitRules", "language", "text",
                     "contained", "extension", "modifierExtension", "identifier", "status",
                     "category", "sourceAttachment", "sourceReference", "verification",
                     "provision"})
_R4_ONLY = frozenset({"scope", "patient", "dateTime", "performer", "organization", "policy",
                      "policyRule"})
_R5_ONLY = frozenset({"subject", "date", "period", "grantor", "grantee", "manager",
                      "controller", "regulatoryBasis", "policyBasis", "policyText",
                      "decision"})
# elements of an STU3 (3.0) Consent that R4 and R5 no longer have
_STU3_ONLY = frozenset({"consentingParty", "actor", "action", "securityLabel", "purpose",
                        "dataPeriod", "data", "except", "sourceIdentifier"})
MAX_CONSENTS = 100       # flowguard consents one FHIR Consent may become
_INFORMATIONAL = frozenset({"meta", "language", "text", "contained", "category",
                            "sourceAttachment", "sourceReference", "verification",
                            "organization", "policy", "manager", "controller",
                            "regulatoryBasis", "policyBasis", "policyText"})


@dataclass(frozen=True)
class FhirImport:
    """What one FHIR Consent became: flowguard consents, and the warnings about what in the
    resource could not be represented."""

    consents: tuple[Consent, ...]
    unmapped: tuple[Diagnostic, ...] = ()


def consent_from_fhir(resource: Mapping[str, Any], mapping: FhirMapping,
                      policy: Policy | None = None, *, source: str = "<fhir>") -> FhirImport:
    """Import one FHIR Consent (R4 or R5 JSON, parsed). Raises `RegistryError`."""
    return _Importer(mapping, policy, source, None).run(resource)


def consent_from_fhir_file(path: str | Path, mapping: FhirMapping,
                           policy: Policy | None = None) -> FhirImport:
    """Import a FHIR Consent from a JSON file; diagnostics carry its lines and columns."""
    file = Path(path)
    doc = one_document(file, "a FHIR Consent file holds exactly one resource")
    return _Importer(mapping, policy, str(file), doc).run(doc.data)


class _Importer(ProvisionReader):
    def __init__(self, mapping: FhirMapping, policy: Policy | None, source: str,
                 doc: Document | None, root: str = "Consent") -> None:
        super().__init__(mapping, policy, source, doc, root)
        self.subject_keys: set[str] = set()
        self.subject_id = ""

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
        self._elements(res)
        resource_id = self.string_at(res.get("id"), ("id",)) if "id" in res else None
        if "id" not in res:
            self.error(("id",), "the resource has no id", "missing")
        base_id = self._consent_id(res, resource_id)
        self._subject(res)
        given_by = self._given_by(res)
        given_at = self._date(res)
        ext = self._extensions(res, resource_id)
        withdrawn = self._withdrawal(res, ext["withdrawn_at"])
        boxes = self.scopes(res)
        if self.errors or given_at is None or base_id is None:
            return []
        final = self._from_given(boxes, given_at, "dateTime" if self.version == "R4"
                                 else "date")
        if not final:
            return []
        common = {"subject": self.subject_id, "given_by": given_by,
                  "subprocesses": ext["subprocesses"], "explicit": ext["explicit"],
                  "withdrawn_at": withdrawn, "evidence": ext["evidence"]}
        consents: list[Consent] = []
        for n, box in enumerate(final, 1):
            values = {**common, "id": base_id if len(final) == 1 else f"{base_id}-{n}",
                      "given_at": box.start, "recipients": box.recipients, "data": box.data,
                      "purposes": box.purposes, "expires_at": box.end}
            try:
                consents.append(Consent.model_validate(values))
            except ValidationError as exc:
                for err in exc.errors(include_url=False, include_input=False):
                    where = ".".join(str(p) for p in err["loc"])
                    self.error((), f"cannot build consent #{n}: {where}: {err['msg']}")
        return consents

    def _from_given(self, boxes: list[Box], given_at: datetime, key: str) -> list[Box]:
        """The regions from the moment the consent was given, at most `MAX_CONSENTS`; an
        error (saying which element left nothing, and why) when none is left."""
        final: list[Box] = []
        ended: list[datetime] = []
        for box in boxes:
            start = given_at if box.start is None else max(given_at, box.start)
            if box.end is not None and start >= box.end:
                ended.append(box.end)
                continue
            final.append(replace(box, start=start))
        if ended and not final:
            self.drop((key,), f"the consent was given at {given_at.isoformat()}, and "
                      f"everything it permits had ended by then (at the latest "
                      f"{max(ended).isoformat()})")
        try:
            final = normalize(final, MAX_CONSENTS)
        except TooComplex as exc:
            self.error(("provision",), f"this resource would become {exc.args[0]} flowguard "
                       f"consents, more than the {MAX_CONSENTS} one resource may become; it "
                       f"is {REFUSED}. Split it into several Consent resources",
                       "too-many-consents")
            return []
        if not final:
            for path, why in self.dropped or [((), "it permits no mapped recipient, "
                                                   "data and purpose")]:
                self.error(path, f"nothing in this consent can be imported: {why}", "empty")
        return final

    def _elements(self, res: dict[str, Any]) -> None:
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
            elif key == "category" and self._is_patient_consent(res[key]):
                continue
            elif key in _INFORMATIONAL:
                self.warn((key,), "informational; not imported", "informational")

    def _is_patient_consent(self, value: Any) -> bool:
        if not isinstance(value, list) or not value:
            return False
        keys = [k for i, c in enumerate(value) for k in self.codings(c, ("category", i), True)]
        return set(keys) == {PATIENT_CONSENT}

    def _scope(self, value: Any) -> None:
        keys = set(self.codings(value, ("scope",), True))
        if {f"{CONSENT_SCOPE}|adr", f"{CONSENT_SCOPE}|treatment"} & keys:
            self.error(("scope",), "an advance directive or treatment consent is not a "
                       "consent to share information", "scope")
        elif keys != {PRIVACY_SCOPE}:
            self.warn(("scope",), "informational; not imported", "informational")

    def _detect_version(self, res: dict[str, Any]) -> Literal["R4", "R5"]:
        stu3 = sorted(k for k in res if k in _STU3_ONLY)
        if "patient" in res and "period" in res:
            stu3.append("period")
        if stu3:
            self.error((), f"looks like an STU3 (FHIR 3.0) Consent: {', '.join(stu3)} "
                       "belong(s) to STU3, not to R4 or R5. flowguard reads R4 (4.0.1) and "
                       "R5 (5.0.0); convert the resource first", "stu3")
            return "R4"
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
            for i, ident in enumerate(self.array_at(res["identifier"], ("identifier",))):
                io = self.object_at(ident, ("identifier", i))
                if io is None:
                    continue
                if io.get("system") != FLOWGUARD_CONSENT:
                    self.warn(("identifier", i), "informational; not imported", "informational")
                    continue
                try:
                    found = ID.validate_python(io.get("value"))
                except ValidationError:
                    self.error(("identifier", i, "value"), "is not a valid flowguard id")
        if found is not None:
            return found
        if resource_id is None:
            return None
        try:
            return ID.validate_python(ID_PREFIX + resource_id)
        except ValidationError:
            self.error(("id",), "cannot be made a flowguard id (letters, digits, `-` and `.` "
                       "only)")
            return None

    def _withdrawal(self, res: dict[str, Any], recorded: datetime | None) -> datetime | None:
        status = res.get("status")
        if status == "active":
            if recorded is not None:
                self.error(("status",), f"is active, but the `{EXT_WITHDRAWN}` extension says "
                           "the consent was withdrawn", "contradiction")
            return None
        if status == "inactive":
            if recorded is None:
                self.error(("status",), "an inactive consent must say when it was withdrawn "
                           f"(extension `{EXT_WITHDRAWN}`); `meta.lastUpdated` is when a "
                           "server last changed the resource, not when consent was withdrawn",
                           "no-withdrawal-time")
            return recorded
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
        keys = self.reference_keys(res[key], (key,))
        self.subject_keys = set(keys)
        for k in keys:
            if k in self.map.subjects:
                self.subject_id = self.map.subjects[k]
                return
        own = self.flowguard_id(keys, FLOWGUARD_SUBJECT, (key,))
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
        for i, ref in enumerate(self.array_at(res[key], (key,))):
            path: Path_ = (key, i)
            keys = self.reference_keys(ref, path)
            if set(keys) & self.subject_keys or any(
                    self.map.subjects.get(k) == self.subject_id for k in keys):
                found.append(self.subject_id)
                continue
            person = next((self.map.persons[k] for k in keys if k in self.map.persons), None)
            if person is None:
                person = self.flowguard_id(keys, FLOWGUARD_PERSON, path)
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
        """When the consent was given. A bare R5 `date` counts from the end of that day,
        unless `period.start` is an instant on that same day: then from that instant."""
        key = "dateTime" if self.version == "R4" else "date"
        if key not in res:
            self.error((key,), "the consent has no date: flowguard needs when it was given",
                       "missing")
            return None
        value = res[key]
        period = res.get("period") if self.version == "R5" else None
        start = period.get("start") if isinstance(period, dict) else None
        if (isinstance(value, str) and DATE.match(value) and isinstance(start, str)
                and start[:10] == value and DATETIME.match(start)):
            return self.moment(start, ("period", "start"), "lower")
        return self.moment(value, (key,), "lower")

    def _extensions(self, res: dict[str, Any], resource_id: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "evidence": Evidence(method="FHIR Consent",
                                 reference=f"Consent/{resource_id}" if resource_id else None),
            "subprocesses": self.map.subprocesses, "explicit": self._explicit_basis(res),
            "withdrawn_at": None}
        for i, ext in enumerate(self.array_at(res.get("extension", []), ("extension",))):
            path: Path_ = ("extension", i)
            eo = self.object_at(ext, path)
            if eo is None:
                continue
            url = eo.get("url")
            if url == EXT_EVIDENCE:
                out["evidence"] = self._evidence(eo, path)
            elif url == EXT_SUBPROCESSES:
                self._subprocesses(eo, path, out)
            elif url == EXT_EXPLICIT:
                value = eo.get("valueBoolean")
                if not isinstance(value, bool):
                    self.error(path, "needs a valueBoolean", "type")
                else:
                    out["explicit"] = value
            elif url == EXT_WITHDRAWN:
                out["withdrawn_at"] = self.moment(eo.get("valueDateTime"),
                                                  (*path, "valueDateTime"), "lower",
                                                  instant=True)
            else:
                self.warn(path, "extension not understood; not imported", "extension")
        if self.policy is not None and out["subprocesses"] is not None:
            for sp in out["subprocesses"]:
                if sp not in self.policy.subprocesses:
                    self.error(("extension",) if "extension" in res else (),
                               f"unknown sub-process `{sp}` (from the map or an extension)",
                               "unknown-reference")
        return out

    def _explicit_basis(self, res: dict[str, Any]) -> bool:
        """Explicit when the map says every consent from it is, or the resource's
        regulatory basis (R5) / policy rule (R4) is one of the map's `explicit_bases`."""
        if self.map.explicit:
            return True
        if not self.map.explicit_bases:
            return False
        codes: list[str] = []
        if self.version == "R5" and isinstance(res.get("regulatoryBasis"), list):
            for i, concept in enumerate(res["regulatoryBasis"]):
                codes += self.codings(concept, ("regulatoryBasis", i), True)
        elif self.version == "R4" and "policyRule" in res:
            codes = self.codings(res["policyRule"], ("policyRule",), True)
        return bool(set(codes) & set(self.map.explicit_bases))

    def _subprocesses(self, ext: dict[str, Any], path: Path_, out: dict[str, Any]) -> None:
        value = ext.get("valueString")
        if not isinstance(value, str):
            self.error(path, "needs a valueString", "type")
        elif value == "*":
            out["subprocesses"] = None
        else:
            try:
                out["subprocesses"] = TypeAdapter(IdList).validate_python(value.split(" "))
            except ValidationError:
                self.error(path, "is not a list of sub-process ids", "invalid")

    def _evidence(self, ext: dict[str, Any], path: Path_) -> Evidence | None:
        parts: dict[str, str] = {}
        for j, sub in enumerate(self.array_at(ext.get("extension", []), (*path, "extension"))):
            so = self.object_at(sub, (*path, "extension", j))
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
