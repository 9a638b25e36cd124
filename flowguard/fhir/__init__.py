"""FHIR Consent import (R4 4.0.1 and R5 5.0.0 JSON) and export (R5, or R4).

FHIR names people, recipients, data and purposes by references and codes; flowguard names
them by the ids of a policy (SPEC §§2-4). A *FHIR map* (`load_fhir_mapping`) says how one
becomes the other, and which code to write back when several map to one id.

`consent_from_fhir` reads one Consent and returns a `FhirImport`: the flowguard consents it
amounts to and, as warnings, what in it was not represented. It raises `RegistryError` for
a resource it cannot import exactly: an import is never broader than its source. R5
`decision` is the base and each provision level an exception to its parent; R4 reads
`provision.type` as written under its opt-in/opt-out `policyRule`. `consent_to_fhir` writes
R5 (or R4) that reads back equal. `consents_from_fhir_path` imports a file, a Bundle
(`collection`, or the POST/PUT entries of a `batch`/`transaction`) or a folder of them,
all or nothing. The README section "FHIR Consent" documents the map file,
the reading rules and the element-by-element mapping.
"""

from flowguard.fhir.bundle import consents_from_fhir_path
from flowguard.fhir.mapping import FhirMapping, load_fhir_mapping
from flowguard.fhir.reading import FhirImport, consent_from_fhir, consent_from_fhir_file
from flowguard.fhir.writing import consent_to_fhir, consents_to_fhir_bundle

__all__ = [
    "FhirImport",
    "FhirMapping",
    "consent_from_fhir",
    "consent_from_fhir_file",
    "consent_to_fhir",
    "consents_from_fhir_path",
    "consents_to_fhir_bundle",
    "load_fhir_mapping",
]
