"""Exporting flowguard consents as FHIR Consent resources (R5 5.0.0, or R4 4.0.1).

Both shapes say exactly what a flowguard consent says and nothing wider: nothing is shared
by default (R5 `decision: deny`; R4 an untyped root provision under an opt-in policy rule)
and one permit provision lists the recipients, the action `disclose`, the purposes and the
data. See the README section "FHIR Consent" for the element-by-element mapping."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from flowguard.errors import Diagnostic, RegistryError
from flowguard.fhir._common import (
    ACT_CODE,
    CONSENT_ACTION,
    CONSENT_SCOPE,
    EXT_EVIDENCE,
    EXT_EXPLICIT,
    EXT_SUBPROCESSES,
    EXT_WITHDRAWN,
    FHIR_ID_CHARS,
    FHIR_VERSIONS,
    FLOWGUARD_CATEGORY,
    FLOWGUARD_CONSENT,
    FLOWGUARD_PERSON,
    FLOWGUARD_PURPOSE,
    FLOWGUARD_SELECTOR,
    FLOWGUARD_SUBJECT,
    ID_PREFIX,
    LOINC,
    PARTICIPATION,
    FhirVersion,
    is_identifier_key,
)
from flowguard.fhir._provisions import encode_selector
from flowguard.fhir.mapping import FhirMapping
from flowguard.model import Consent


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _fhir_id(consent_id: str) -> str:
    text = FHIR_ID_CHARS.sub("-", consent_id.removeprefix(ID_PREFIX))[:64]
    return text or "consent"


def _reference(key: str) -> dict[str, Any]:
    if is_identifier_key(key):
        system, _, value = key.partition("|")
        return {"identifier": {"system": system, "value": value}}
    return {"reference": key}


def _party(m: FhirMapping, section: str, party: str, system: str) -> dict[str, Any]:
    key = m.export_key(section, party)
    if key is not None:
        return _reference(key)
    return {"identifier": {"system": system, "value": party}}


def _coding(m: FhirMapping, section: str, value: str, system: str) -> dict[str, str]:
    codes = m.model_copy(update={section: {k: v for k, v in getattr(m, section).items()
                                           if is_identifier_key(k)}})
    key = codes.export_key(section, value)
    if key is not None:
        sys_, _, code = key.partition("|")
        return {"system": sys_, "code": code}
    return {"system": system, "code": value}


def _extensions(consent: Consent, m: FhirMapping) -> list[dict[str, Any]]:
    evidence: dict[str, Any] = {"url": EXT_EVIDENCE}
    parts = consent.evidence.model_dump(exclude_none=True) if consent.evidence else {}
    parts = {k: v for k, v in parts.items() if v}      # FHIR has no empty strings
    if parts:
        evidence["extension"] = [{"url": k, "valueString": v} for k, v in parts.items()]
    else:
        evidence["valueString"] = "none recorded"
    out: list[dict[str, Any]] = [evidence,
                                 {"url": EXT_EXPLICIT, "valueBoolean": consent.explicit}]
    if consent.subprocesses != m.subprocesses:
        out.append({"url": EXT_SUBPROCESSES, "valueString":
                    " ".join(consent.subprocesses) if consent.subprocesses else "*"})
    if consent.withdrawn_at is not None:
        out.append({"url": EXT_WITHDRAWN, "valueDateTime": _instant(consent.withdrawn_at)})
    return out


def _permit_provision(consent: Consent, m: FhirMapping) -> dict[str, Any]:
    actors = []
    for selector in consent.recipients:
        key = m.export_key("recipients", selector)
        ref = _reference(key) if key is not None else {
            "identifier": {"system": FLOWGUARD_SELECTOR, "value": encode_selector(selector)}}
        actors.append({"role": {"coding": [{"system": PARTICIPATION, "code": "PRCP"}]},
                       "reference": ref})
    return {
        "actor": actors,
        "action": [{"coding": [{"system": CONSENT_ACTION, "code": "disclose"}]}],
        "purpose": [_coding(m, "purposes", p, FLOWGUARD_PURPOSE) for p in consent.purposes],
        "code": [{"coding": [_coding(m, "data", c, FLOWGUARD_CATEGORY)]}
                 for c in consent.data],
    }


def consent_to_fhir(consent: Consent, mapping: FhirMapping | None = None,
                    version: FhirVersion = "5.0.0") -> dict[str, Any]:
    """A FHIR Consent resource (JSON-ready dict) for a flowguard consent: R5 by default,
    R4 with `version="4.0.1"`. Raises `RegistryError` when the map is ambiguous."""
    if version not in FHIR_VERSIONS:
        raise RegistryError([Diagnostic(f"FHIR version `{version}` is not supported: write "
                                        "5.0.0 or 4.0.1", "<options>", code="invalid")])
    m = mapping if mapping is not None else FhirMapping()
    subject = _party(m, "subjects", consent.subject, FLOWGUARD_SUBJECT)
    grantor = (subject if consent.given_by == consent.subject
               else _party(m, "persons", consent.given_by, FLOWGUARD_PERSON))
    period: dict[str, str] = {"start": _instant(consent.given_at)}
    if consent.expires_at is not None:
        period["end"] = _instant(consent.expires_at)
    head: dict[str, Any] = {
        "resourceType": "Consent",
        "id": _fhir_id(consent.id),
        "extension": _extensions(consent, m),
        "identifier": [{"system": FLOWGUARD_CONSENT, "value": consent.id}],
        "status": "inactive" if consent.withdrawn_at is not None else "active",
    }
    category = [{"coding": [{"system": LOINC, "code": "59284-0"}]}]
    if version == "4.0.1":
        return {**head,
                "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy"}]},
                "category": category, "patient": subject,
                "dateTime": _instant(consent.given_at), "performer": [grantor],
                "policyRule": {"coding": [{"system": ACT_CODE, "code": "OPTIN"}]},
                "provision": {"period": period, "provision": [
                    {"type": "permit", **_permit_provision(consent, m)}]}}
    return {**head, "category": category, "subject": subject,
            "date": consent.given_at.astimezone(UTC).date().isoformat(),
            "period": period, "grantor": [grantor], "decision": "deny",
            "provision": [_permit_provision(consent, m)]}


def consents_to_fhir_bundle(consents: Iterable[Consent], mapping: FhirMapping | None = None,
                            version: FhirVersion = "5.0.0") -> dict[str, Any]:
    """A FHIR Bundle (type `collection`) of the consents' resources, in the order given;
    each entry's `fullUrl` is a name-based UUID of its consent id (stable across exports)."""
    entries = [{"fullUrl": uuid.uuid5(uuid.NAMESPACE_URL, f"{FLOWGUARD_CONSENT}:{consent.id}").urn,
                "resource": consent_to_fhir(consent, mapping, version)}
               for consent in consents]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}
