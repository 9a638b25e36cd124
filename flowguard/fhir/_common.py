"""Constants and small helpers shared by the FHIR map, reader and writer."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import TypeAdapter

from flowguard._source import Document, SourceError, load_documents
from flowguard.errors import Diagnostic, RegistryError
from flowguard.model import Id

RESOURCE_TYPES = "http://hl7.org/fhir/resource-types"
CONSENT_ACTION = "http://terminology.hl7.org/CodeSystem/consentaction"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
LOINC = "http://loinc.org"
PATIENT_CONSENT = f"{LOINC}|59284-0"          # category "Patient Consent"
PRIVACY_SCOPE = f"{CONSENT_SCOPE}|patient-privacy"

FLOWGUARD_CONSENT = "urn:flowguard:consent"
FLOWGUARD_SUBJECT = "urn:flowguard:subject"
FLOWGUARD_PERSON = "urn:flowguard:person"
FLOWGUARD_SELECTOR = "urn:flowguard:selector"
FLOWGUARD_CATEGORY = "urn:flowguard:category"
FLOWGUARD_PURPOSE = "urn:flowguard:purpose"
EXT_EVIDENCE = "urn:flowguard:evidence"
EXT_SUBPROCESSES = "urn:flowguard:subprocesses"
EXT_EXPLICIT = "urn:flowguard:explicit"
EXT_WITHDRAWN = "urn:flowguard:withdrawn-at"

ID_PREFIX = "fhir-"

FhirVersion = Literal["5.0.0", "4.0.1"]
FHIR_VERSIONS: tuple[FhirVersion, ...] = ("5.0.0", "4.0.1")

Path_ = tuple[str | int, ...]

ID: TypeAdapter[str] = TypeAdapter(Id)
FHIR_ID_CHARS = re.compile(r"[^A-Za-z0-9\-.]")


def render(path: Path_, root: str = "Consent") -> str:
    """A JSON path as `Consent.provision[0].actor[1]` (`root` names where it starts, e.g.
    `Bundle.entry[3].resource`)."""
    text = root
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else f".{step}"
    return text


def is_identifier_key(key: str) -> bool:
    system, sep, value = key.partition("|")
    return bool(sep and system and value)


def is_reference_key(key: str) -> bool:
    return "|" not in key and "/" in key.strip("/")


def normal_code_key(key: str) -> str:
    if key.startswith("class:") and len(key) > len("class:"):
        return f"{RESOURCE_TYPES}|{key[len('class:'):]}"
    return key


def one_document(file: Path, wrong_count: str) -> Document:
    """The one non-empty document of a YAML/JSON file; `RegistryError` otherwise."""
    try:
        documents = [d for d in load_documents(file) if d.data is not None]
    except SourceError as exc:
        raise RegistryError([exc.diagnostic]) from None
    if len(documents) != 1:
        raise RegistryError([Diagnostic(wrong_count, str(file), code="invalid")])
    return documents[0]
