"""FHIR Consent import (R4/R5) and export (R5/R4): the official HL7 examples, what each
version's provisions mean, guardians, deny narrowing (exact or refused), malformed input,
exports validated with `fhir.resources`, and export -> import round trips."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.bundle import Bundle as R5Bundle
from fhir.resources.consent import Consent as R5Consent
from fhir.resources.R4B.bundle import Bundle as R4Bundle
from fhir.resources.R4B.consent import Consent as R4Consent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowguard
from flowguard import Engine, InMemoryRegistry, RegistryError
from flowguard.fhir import (
    FhirImport,
    FhirMapping,
    consent_from_fhir,
    consent_from_fhir_file,
    consent_to_fhir,
    consents_to_fhir_bundle,
    load_fhir_mapping,
)
from flowguard.model import Consent, Evidence, Policy, Selector

from .conftest import EXAMPLES

DATA = Path(__file__).resolve().parent / "data" / "fhir"
MAP = DATA / "map.yaml"
AALBORG = EXAMPLES / "aalborg-aktiv"
VERSIONS = ("5.0.0", "4.0.1")

Write = Callable[[str, str], Path]


@pytest.fixture(scope="module")
def mapping() -> FhirMapping:
    return load_fhir_mapping(MAP)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return flowguard.load_policy(AALBORG / "policy.yaml")


def _official(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text(encoding="utf-8"))
    return data


ACCESS = {"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}
DISCLOSE = {"system": "http://terminology.hl7.org/CodeSystem/consentaction",
            "code": "disclose"}


def _disclosing(value: Any) -> Any:
    """`value` with every `access` action made `disclose` (flowguard imports a permit only
    for disclosure: a permit to access alone is narrower and refused)."""
    if isinstance(value, dict):
        return DISCLOSE if value == ACCESS else {k: _disclosing(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_disclosing(v) for v in value]
    return value


def _refused(resource: Any, mapping: FhirMapping, policy: Policy | None = None
             ) -> RegistryError:
    with pytest.raises(RegistryError) as info:
        consent_from_fhir(resource, mapping, policy, source="test.json")
    return info.value


def _codes(error: RegistryError) -> set[str]:
    return {d.code for d in error.diagnostics}


def _messages(error: RegistryError | FhirImport) -> list[str]:
    diags = error.diagnostics if isinstance(error, RegistryError) else error.unmapped
    return [d.message for d in diags]


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _valid(resource: dict[str, Any], version: str) -> None:
    """The resource is valid FHIR of that version (R4 checked with the R4B model)."""
    if resource["resourceType"] == "Bundle":
        (R5Bundle if version == "5.0.0" else R4Bundle).model_validate(resource)
    else:
        (R5Consent if version == "5.0.0" else R4Consent).model_validate(resource)


# --------------------------------------------------------------------------- official data

# Every official example, with tests/data/fhir/map.yaml and the Aalborg Aktiv policy: none
# can be imported exactly, and each is refused for the reason below (error code, JSON path).
# What the narrative says, and why the refusal is right:
OFFICIAL = {
    # R4: policyRule OPTIN/OPTOUT is the base; provision.type as written; R4 gives the root
    # provision no type, so an untyped root only frames its nested provisions.
    "r4/Consent-consent-example-basic.json":       # "authorize normal access for treatment"
        ("untyped-root", "Consent.provision"),     # opt-in, untyped root with a period only
    "r4/Consent-consent-example-Emergency.json":   # "deny, except ETREAT at the hospital"
        ("base-deny", "Consent.provision"),        # as written: opt-out and only a deny
    "r4/Consent-consent-example-grantor.json":     # "read-only access for XXX"
        ("base-deny", "Consent.provision"),        # as written: opt-out, untyped root
    "r4/Consent-consent-example-notAuthor.json":   # withhold records by an author (CST)
        ("untyped-root", "Consent.provision"),
    "r4/Consent-consent-example-notOrg.json":      # withhold from an organization
        ("permit-except", "Consent.provision"),    # opt-in with a deny at the root
    "r4/Consent-consent-example-notThem.json":     # withhold from a nurse
        ("untyped-root", "Consent.provision"),     # untyped: permit or withhold? refused
    "r4/Consent-consent-example-notThis.json":     # withhold one record
        ("untyped-root", "Consent.provision"),
    "r4/Consent-consent-example-notTime.json":     # withhold a time frame
        ("untyped-root", "Consent.provision"),
    "r4/Consent-consent-example-Out.json":         # withhold everything at the hospital
        ("base-deny", "Consent.provision"),
    "r4/Consent-consent-example-pkb.json":         # a screen of per-label choices
        ("missing", "Consent.provision.provision[0].type"),   # nested provisions untyped
    "r4/Consent-consent-example-signature.json":   # CDA documents by one author
        ("unsupported-actor-role", "Consent.provision.provision[0].actor[0].role"),
    "r4/Consent-consent-example-smartonfhir.json":  # an app token to read (`access`) data
        ("action-not-disclose", "Consent.provision.provision[0].action"),
    # R5: decision is the base, each provision level an exception to its parent.
    "r5/Consent-consent-example-basic.json":       # deny base, permit for a period: to whom?
        ("no-recipient", "Consent.provision[0]"),
    "r5/Consent-consent-example-CDA.json":         # permit except ... by an author (AUT)
        ("unsupported-actor-role", "Consent.provision[0].provision[0].actor[0].role"),
    "r5/Consent-consent-example-Emergency.json":   # deny, except at a custodian (CST)
        ("unsupported-actor-role", "Consent.provision[0].actor[0].role"),
    "r5/Consent-consent-example-grantor.json":     # deny, except read access at a custodian
        ("unsupported-actor-role", "Consent.provision[0].actor[0].role"),
    "r5/Consent-consent-example-notAuthor.json":   # permit everyone except a custodian's data
        ("permit-except", "Consent.provision[0]"),
    "r5/Consent-consent-example-notOrg.json":      # permit everyone except an organization
        ("permit-except", "Consent.provision[0]"),
    "r5/Consent-consent-example-notThem.json":     # permit everyone except a nurse
        ("permit-except", "Consent.provision[0]"),
    "r5/Consent-consent-example-notThis.json":     # permit everything except one record
        ("permit-except", "Consent.provision[0]"),
    "r5/Consent-consent-example-notTime.json":     # permit everything except a time frame
        ("permit-except", "Consent.provision[0]"),
    "r5/Consent-consent-example-Out.json":         # permit everyone except a custodian
        ("permit-except", "Consent.provision[0]"),
    "r5/Consent-consent-example-pkb.json":         # deny, except per-label choices
        ("unmapped-deny", "Consent.provision[0].provision[1].securityLabel[0]"),
    "r5/Consent-consent-example-smartonfhir.json":  # permit everyone except during a window
        ("permit-except", "Consent.provision[0]"),
    # STU3: neither R4 nor R5
    "stu3/Consent-consent-example-basic.json": ("stu3", "Consent"),
}


def test_every_official_example_is_classified() -> None:
    found = {str(p.relative_to(DATA)) for p in DATA.glob("*/*.json")}
    assert found == set(OFFICIAL)
    assert sum(name.startswith("r4/") for name in found) == 12
    assert sum(name.startswith("r5/") for name in found) == 12


def test_official_examples_are_byte_exact_as_recorded_in_source_md() -> None:
    source = (DATA / "SOURCE.md").read_text(encoding="utf-8")
    recorded = dict(re.findall(r"^\| `(\w+/[^`]+\.json)` \|.*\| [0-9a-f]{40} \| "
                               r"`([0-9a-f]{64})` \|$", source, re.M))
    assert set(recorded) == set(OFFICIAL)
    for name, digest in recorded.items():
        assert hashlib.sha256((DATA / name).read_bytes()).hexdigest() == digest, name
    assert "CC0" in source


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_example_is_refused_with_its_reason(name: str, mapping: FhirMapping,
                                                    policy: Policy) -> None:
    code, path = OFFICIAL[name]
    with pytest.raises(RegistryError) as info:
        consent_from_fhir_file(DATA / name, mapping, policy)
    error = info.value
    assert code in _codes(error), error
    hit = next(d for d in error.diagnostics if d.code == code)
    assert hit.message.startswith(path + ": "), hit.message
    assert hit.file == str(DATA / name) and hit.line is not None
    # the JSON text at the reported line is the element the message names
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    if name.startswith("r4/") and code != "missing":   # (r5/ is one-line compact JSON)
        element = path.rsplit(".", 1)[-1].split("[")[0]
        assert element in lines[hit.line - 1] + lines[hit.line - 2]
    assert all(d.severity == "error" for d in error.diagnostics)
    _assert_no_identifiers(error, _official(name))


def _generous_map(resources: list[dict[str, Any]]) -> FhirMapping:
    """A map that knows every reference and code the resources use (nothing is left out
    as unmapped, so nothing is refused, or narrowed, for want of a mapping)."""
    refs: set[str] = set()
    codes: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("reference"), str):
                refs.add(value["reference"])
            if isinstance(value.get("system"), str) and isinstance(value.get("code"), str):
                codes.add(f"{value['system']}|{value['code']}")
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for resource in resources:
        walk({k: v for k, v in resource.items() if k != "text"})

    def ident(key: str) -> str:
        return "x" + hashlib.sha256(key.encode()).hexdigest()[:12]

    return FhirMapping(
        subjects={r: ident(r) for r in refs if r.startswith("Patient/")},
        persons={r: ident(r) for r in refs if r.startswith(("Patient/", "RelatedPerson/"))},
        recipients={r: Selector(actor=(ident(r),)) for r in refs},
        data={**{c: ident(c) for c in codes if "v3-ActReason" not in c},
              **{r: ident(r) for r in refs if r.startswith(("Task/", "MedicationRequest/"))}},
        purposes={c: ident(c) for c in codes if "v3-ActReason" in c},
        default_data=("all",), default_purposes=("any",), default_grantor="subject")


def test_no_official_example_imports_even_when_the_map_knows_everything_in_it() -> None:
    """The bar "no official example imported wider than its narrative", with a map that
    knows every reference and code: still none can be written exactly as a consent."""
    names = [n for n in sorted(OFFICIAL) if not n.startswith("stu3/")]
    resources = [_official(n) for n in names]
    generous = _generous_map(resources)
    for name, resource in zip(names, resources, strict=True):
        error = _refused(resource, generous)
        assert not _codes(error) & {"unmapped-subject", "unmapped-grantor", "unmapped-deny"}, (
            name, error)


def _assert_no_identifiers(error: RegistryError, resource: dict[str, Any]) -> None:
    text = str(error)
    for key in ("patient", "subject"):
        ref = resource.get(key, {}).get("reference")
        if ref:
            assert ref not in text
    for provision in _provisions(resource.get("provision")):
        for actor in provision.get("actor", []):
            assert actor["reference"].get("reference", "\0") not in text
    assert "Traceback" not in text


def _provisions(value: Any) -> list[dict[str, Any]]:
    items = value if isinstance(value, list) else [value] if value else []
    return [p for item in items for p in (item, *_provisions(item.get("provision")))]


# --------------------------------------------------------------------------- issue 14


@pytest.mark.parametrize("name,withheld", [
    ("r5/Consent-consent-example-notOrg.json", "organization bosted-lindholm"),
    ("r5/Consent-consent-example-notThem.json", "actor care-staff"),
])
def test_r5_exceptions_to_a_permit_are_not_permits_for_whom_they_withhold_from(
        name: str, withheld: str, mapping: FhirMapping, policy: Policy) -> None:
    """Issue 14: R5 notOrg/notThem (decision permit, one provision naming whom to withhold
    from) were imported as permits *for* that party. Now refused, saying why."""
    error = _refused(_official(name), mapping, policy)
    assert _codes(error) == {"permit-except"}
    (diag,) = error.diagnostics
    assert diag.message.startswith("Consent.provision[0]: the base decision (`permit`) "
                                   "shares with every recipient")
    assert f"only withholds recipients {withheld}" in diag.message
    assert "'everyone except these' cannot be written exactly" in diag.message
    assert "refused rather than imported wider" in diag.message


def test_r5_grantor_is_a_deny_base_with_a_permit_exception(mapping: FhirMapping,
                                                           policy: Policy) -> None:
    """Issue 14: R5 grantor was refused as 'base decision is deny: a refusal'; its narrative
    is a grant. It is read as one: without the custodian restriction flowguard cannot
    write, it imports as read access for Dr. Heps (Practitioner/f007) and nobody else."""
    resource = _official("r5/Consent-consent-example-grantor.json")
    error = _refused(resource, mapping, policy)
    assert "base-deny" not in _codes(error)
    assert "records a refusal" not in str(error)
    del resource["provision"][0]["actor"][0]                 # the custodian (CST)
    # "read-only access" allows Dr. Heps to look at the data, not to have it disclosed
    assert _codes(_refused(resource, mapping, policy)) == {"action-not-disclose"}
    result = consent_from_fhir(_disclosing(resource), mapping, policy)
    (consent,) = result.consents
    assert consent.recipients == (Selector(actor=("job-consultant",)),)
    assert (consent.subject, consent.given_by) == ("citizen-0318", "person-bente")
    assert consent.given_at == _utc("2018-12-25T00:00:00+00:00")  # a bare date: day's end
    assert consent.explicit is False


def test_r5_basic_is_refused_for_naming_no_recipient_not_as_a_refusal(
        mapping: FhirMapping) -> None:
    error = _refused(_official("r5/Consent-consent-example-basic.json"), mapping)
    assert "no-recipient" in _codes(error) and "base-deny" not in _codes(error)


def test_r4_not_org_is_opt_in_with_a_deny_at_the_root(mapping: FhirMapping,
                                                      policy: Policy) -> None:
    error = _refused(_official("r4/Consent-consent-example-notOrg.json"), mapping, policy)
    assert _codes(error) == {"permit-except"}
    assert "contradicts" not in str(error)
    assert "the opt-in `policyRule` shares with every recipient, and this provision only " \
        "withholds recipients organization bosted-lindholm" in str(error)


def test_stu3_basic_is_named_stu3(mapping: FhirMapping) -> None:
    error = _refused(_official("stu3/Consent-consent-example-basic.json"), mapping)
    assert _codes(error) == {"stu3"}
    assert "mixes R4" not in str(error)
    assert "looks like an STU3 (FHIR 3.0) Consent: period" in str(error)


def test_r4_untyped_root_is_refused_not_guessed(mapping: FhirMapping, policy: Policy) -> None:
    """R4 notThem (opt-in, untyped root naming a nurse, narrative: withhold) used to import
    as a permit for the nurse; an explicit `type` decides."""
    resource = _official("r4/Consent-consent-example-notThem.json")
    # (its action is `access` only, which is refused too: see test_permit_to_access...)
    assert _codes(_refused(resource, mapping, policy)) == {"untyped-root",
                                                           "action-not-disclose"}
    resource = _disclosing(resource)
    assert _codes(_refused(resource, mapping, policy)) == {"untyped-root"}
    resource["provision"]["type"] = "deny"
    assert _codes(_refused(resource, mapping, policy)) == {"permit-except"}
    resource["provision"]["type"] = "permit"
    (consent,) = consent_from_fhir(resource, mapping, policy).consents
    assert consent.recipients == (Selector(actor=("care-staff",)),)
    resource["policyRule"]["coding"][0]["code"] = "OPTOUT"    # deny base, permit exception
    assert consent_from_fhir(resource, mapping, policy).consents == (consent,)


def test_explicit_is_never_a_default(mapping: FhirMapping, write: Write) -> None:
    """Issue 14: `explicit` defaulted to true. Now only the map (`explicit: true` or a
    matching `explicit_bases` code) or the resource (the flowguard extension) says so."""
    resource = _r5_grant()
    assert FhirMapping().explicit is False
    (plain,) = consent_from_fhir(resource, mapping).consents
    assert plain.explicit is False
    (by_map,) = consent_from_fhir(resource, mapping.model_copy(
        update={"explicit": True})).consents
    assert by_map.explicit is True
    basis = "http://example.org/fhir/basis|gdpr-9-2-a"
    resource["regulatoryBasis"] = [{"coding": [{"system": "http://example.org/fhir/basis",
                                                "code": "gdpr-9-2-a"}]}]
    text = MAP.read_text() + f'explicit_bases: ["{basis}"]\n'
    strict = load_fhir_mapping(write("map.yaml", text))
    (by_basis,) = consent_from_fhir(resource, strict).consents
    assert by_basis.explicit is True
    resource["extension"] = [{"url": "urn:flowguard:explicit", "valueBoolean": False}]
    (said_no,) = consent_from_fhir(resource, strict).consents
    assert said_no.explicit is False


def _r5_grant(**extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Consent", "id": "g1", "status": "active",
        "subject": {"reference": "Patient/72"}, "date": "2026-02-01",
        "grantor": [{"reference": "RelatedPerson/peter"}], "decision": "deny",
        "provision": [{"actor": [{"reference": {"reference": "Practitioner/13"}}],
                       "purpose": [{"system": "http://example.org/fhir/purpose",
                                    "code": "job-matching"}],
                       "code": [{"coding": [{"system": "http://example.org/fhir/data",
                                             "code": "work"}]}]}]}
    resource.update(extra)
    return resource


def test_bare_date_counts_from_the_instant_in_period_start(mapping: FhirMapping) -> None:
    """R5 `date` is a date. A bare date alone counts from the end of that day (never
    earlier than given); with `period.start` an instant on that day, from that instant."""
    (alone,) = consent_from_fhir(_r5_grant(), mapping).consents
    assert alone.given_at == _utc("2026-02-02T00:00:00+00:00")
    timed = _r5_grant(period={"start": "2026-02-01T09:30:15+01:00"})
    (with_start,) = consent_from_fhir(timed, mapping).consents
    assert with_start.given_at == _utc("2026-02-01T08:30:15+00:00")
    other_day = _r5_grant(period={"start": "2026-01-20T09:30:15Z"})
    (earlier,) = consent_from_fhir(other_day, mapping).consents
    assert earlier.given_at == _utc("2026-02-02T00:00:00+00:00")


def test_several_codes_for_one_id_need_an_export_choice(write: Write) -> None:
    """Issue 14: with ETREAT and TREAT both mapped to follow-up, export wrote ETREAT
    (emergency treatment). Now the map names the code to write, or export refuses."""
    base = ('purposes:\n'
            '  "http://terminology.hl7.org/CodeSystem/v3-ActReason|ETREAT": follow-up\n'
            '  "http://terminology.hl7.org/CodeSystem/v3-ActReason|TREAT": follow-up\n')
    consent = _shipped("k-0042-centre")
    ambiguous = load_fhir_mapping(write("map.yaml", base))
    with pytest.raises(RegistryError) as info:
        consent_to_fhir(consent, ambiguous)
    assert "2 `purposes` keys for purpose `follow-up`: list the one to export under " \
        "`export`" in str(info.value)
    chosen = load_fhir_mapping(write("map.yaml", base + 'export: ["http://terminology.hl7.org'
                                     '/CodeSystem/v3-ActReason|TREAT"]\n'))
    for version in VERSIONS:
        resource = consent_to_fhir(consent, chosen, version)
        assert json.dumps(resource).count('"code": "TREAT"') == 1
        assert "ETREAT" not in json.dumps(resource)
        assert consent_from_fhir(resource, chosen).consents == (consent,)


@pytest.mark.parametrize("text,message", [
    ('export: ["http://example.org|nowhere"]\n', "is not a key of"),
    ('data: {"http://a|1": work, "http://a|2": work}\nexport: ["http://a|1", "http://a|2"]\n',
     "choose two data keys for one id"),
])
def test_export_choices_are_checked_when_the_map_loads(text: str, message: str,
                                                       write: Write) -> None:
    with pytest.raises(RegistryError) as info:
        load_fhir_mapping(write("map.yaml", text))
    assert message in str(info.value)


def test_ambiguous_subject_export_does_not_name_the_citizen(write: Write) -> None:
    consent = _shipped("k-0107-health-jobcenter")
    text = 'subjects: {"Patient/a": citizen-0107, "Patient/b": citizen-0107}\n'
    with pytest.raises(RegistryError) as info:
        consent_to_fhir(consent, load_fhir_mapping(write("map.yaml", text)))
    assert "this consent's subject" in str(info.value)
    assert "citizen-0107" not in str(info.value)


def _shipped(consent_id: str) -> Consent:
    policy = flowguard.load_policy(AALBORG / "policy.yaml")
    registry = flowguard.load_registry(AALBORG / "consents.yaml", policy)
    return next(k for k in registry.all_consents() if k.id == consent_id)


# --------------------------------------------------------------------------- guardians


def _smart_r4_with_recipient() -> dict[str, Any]:
    """The official R4 SMART on FHIR example with what it lacks: a recipient, and
    disclosure (it permits `access` only)."""
    resource = _disclosing(_official("r4/Consent-consent-example-smartonfhir.json"))
    resource["provision"]["actor"] = [{
        "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                             "v3-ParticipationType", "code": "PRCP"}]},
        "reference": {"reference": "Practitioner/13"}}]
    return resource


def test_related_person_grantor_becomes_the_guardian(mapping: FhirMapping,
                                                     policy: Policy) -> None:
    result = consent_from_fhir(_smart_r4_with_recipient(), mapping, policy)
    (consent,) = result.consents
    assert consent.subject == "citizen-0233"
    assert consent.given_by == "person-anne"          # RelatedPerson/peter, via `persons`
    assert consent.recipients == (Selector(actor=("job-consultant",)),)
    assert consent.data == ("health.medication",)       # class MedicationRequest
    assert consent.given_at == _utc("2016-06-23T17:02:33+10:00")
    assert consent.expires_at == _utc("2016-06-23T17:32:33+10:00")   # the 30-minute token
    assert consent.explicit is False                    # neither the map nor the resource


def test_patient_grantor_is_the_subject(mapping: FhirMapping) -> None:
    resource = _smart_r4_with_recipient()
    resource["performer"] = [{"reference": "Patient/xcda"}]
    (consent,) = consent_from_fhir(resource, mapping).consents
    assert consent.given_by == consent.subject == "citizen-0233"


def test_unmapped_grantor_is_refused_without_naming_it(mapping: FhirMapping) -> None:
    resource = _smart_r4_with_recipient()
    resource["performer"] = [{"reference": "RelatedPerson/unknown-aunt-77"}]
    error = _refused(resource, mapping)
    assert "unmapped-grantor" in _codes(error)
    assert "unknown-aunt-77" not in str(error)
    assert "Consent.performer[0]" in str(error)


def test_two_different_grantors_are_refused(mapping: FhirMapping) -> None:
    resource = _smart_r4_with_recipient()
    resource["performer"].append({"reference": "Patient/xcda"})
    assert "several-grantors" in _codes(_refused(resource, mapping))


def _r5(provision: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Consent", "id": "k1", "status": "active",
        "subject": {"reference": "Patient/72"}, "date": "2026-02-01T10:00:00Z",
        "grantor": [{"reference": "RelatedPerson/peter"}], "decision": "deny",
        "provision": provision}
    resource.update(extra)
    return resource


def _code(code: str) -> dict[str, Any]:
    return {"coding": [{"system": "http://example.org/fhir/data", "code": code}]}


def _actor(ref: str) -> dict[str, Any]:
    return {"reference": {"reference": ref}}


PURPOSE_JOB = {"system": "http://example.org/fhir/purpose", "code": "job-matching"}
PURPOSE_EMPLOYER = {"system": "http://example.org/fhir/purpose", "code": "employer-contact"}


def test_guardian_consent_from_fhir_is_honoured_by_the_engine(mapping: FhirMapping,
                                                              policy: Policy) -> None:
    """A guardian's consent imported from R5 FHIR decides flows like one written in YAML:
    permitted while the guardianship (health, until 2026-07-01) lasts, not after; health
    data only when the resource says the consent is explicit."""
    resource = _r5([{"actor": [_actor("Practitioner/13")], "code": [_code("health")],
                     "purpose": [PURPOSE_JOB]}],
                   extension=[{"url": "urn:flowguard:explicit", "valueBoolean": True}])
    (consent,) = consent_from_fhir(resource, mapping, policy).consents
    assert consent.given_by == "person-anne" and consent.subject == "citizen-0107"
    base = flowguard.load_registry(AALBORG / "consents.yaml", policy)
    registry = InMemoryRegistry(base.subjects, base.all_guardianships(),
                                [*base.all_consents(), consent])
    engine = Engine(policy, registry)
    flow = {"sender": "care-staff", "recipient": "job-consultant", "subject": "citizen-0107",
            "data": ["health.medication"], "purpose": "job-matching",
            "subprocess": "co-design", "at": "2026-03-01T10:00:00Z"}
    decision = engine.check(flow)
    assert decision.permit, decision
    assert decision.categories[0].basis is not None
    assert decision.categories[0].basis.consent == "fhir-k1"
    later = engine.check({**flow, "at": "2026-08-01T10:00:00Z"})
    assert not later.permit and later.reason == "GRANTOR_AUTHORITY_ENDED"
    del resource["extension"]                          # says nothing: not explicit
    (implicit,) = consent_from_fhir(resource, mapping, policy).consents
    registry = InMemoryRegistry(base.subjects, base.all_guardianships(),
                                [*base.all_consents(), implicit])
    denied = Engine(policy, registry).check(flow)
    assert not denied.permit and denied.reason == "CONSENT_NOT_EXPLICIT"


# --------------------------------------------------------------------------- deny narrowing


def test_denied_sub_category_leaves_its_siblings(mapping: FhirMapping, policy: Policy) -> None:
    resource = _r5([{"actor": [_actor("Practitioner/13")], "code": [_code("health")],
                     "purpose": [PURPOSE_JOB],
                     "provision": [{"securityLabel": [{
                         "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                         "code": "PSY"}]}]}])
    (consent,) = consent_from_fhir(resource, mapping, policy).consents
    assert consent.data == ("health.diagnosis", "health.medication")   # health minus mental
    assert consent.recipients == (Selector(actor=("job-consultant",)),)


def test_denied_sub_category_without_the_policy_is_refused(mapping: FhirMapping) -> None:
    resource = _r5([{"actor": [_actor("Practitioner/13")], "code": [_code("health")],
                     "purpose": [PURPOSE_JOB],
                     "provision": [{"securityLabel": [{
                         "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                         "code": "PSY"}]}]}])
    error = _refused(resource, mapping)
    assert "inexact-deny" in _codes(error)
    assert "Consent.provision[0].provision[0]: this deny cannot be represented" in str(error)


def test_deny_covering_the_permit_leaves_nothing_and_is_refused(mapping: FhirMapping) -> None:
    resource = _r5([{"actor": [_actor("Practitioner/13")], "code": [_code("work-capacity")],
                     "purpose": [PURPOSE_JOB], "provision": [{"code": [_code("work")]}]}])
    assert "empty" in _codes(_refused(resource, mapping))


def test_disjoint_deny_changes_nothing(mapping: FhirMapping) -> None:
    resource = _r5([{"actor": [_actor("Practitioner/13")], "code": [_code("work")],
                     "purpose": [PURPOSE_JOB], "provision": [{"code": [_code("health")]}]}])
    (consent,) = consent_from_fhir(resource, mapping).consents
    assert consent.data == ("work",)


def test_denied_actor_is_taken_out_of_an_organization(mapping: FhirMapping,
                                                      policy: Policy) -> None:
    resource = _r5([{"actor": [_actor("Organization/jobcenter")], "code": [_code("work")],
                     "purpose": [PURPOSE_JOB],
                     "provision": [{"actor": [_actor("Practitioner/f001")]}]}])
    (consent,) = consent_from_fhir(resource, mapping, policy).consents
    # aalborg-kommune has the case worker and the job consultant; the case worker is denied
    assert consent.recipients == (Selector(actor=("job-consultant",)),)
    error = _refused(resource, mapping)                      # no policy: no actor list
    assert "inexact-deny" in _codes(error)


def test_denied_period_splits_the_consent(mapping: FhirMapping) -> None:
    resource = _r5([{"actor": [_actor("Practitioner/13")], "code": [_code("work")],
                     "purpose": [PURPOSE_JOB],
                     "period": {"start": "2026-03-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"},
                     "provision": [{"period": {"start": "2026-06-01T00:00:00Z",
                                               "end": "2026-07-01T00:00:00Z"}}]}])
    first, second = consent_from_fhir(resource, mapping).consents
    assert (first.id, second.id) == ("fhir-k1-1", "fhir-k1-2")
    assert (first.given_at, first.expires_at) == (_utc("2026-03-01T00:00:00+00:00"),
                                                  _utc("2026-06-01T00:00:00+00:00"))
    assert (second.given_at, second.expires_at) == (_utc("2026-07-01T00:00:00+00:00"),
                                                    _utc("2027-01-01T00:00:00+00:00"))


def test_denied_sub_purpose_cannot_be_represented(mapping: FhirMapping, policy: Policy) -> None:
    resource = _r5([{"actor": [_actor("Practitioner/13")], "code": [_code("work")],
                     "purpose": [PURPOSE_JOB], "provision": [{"purpose": [PURPOSE_EMPLOYER]}]}])
    error = _refused(resource, mapping, policy)
    assert "inexact-deny" in _codes(error)
    assert "covers all its sub-purposes" in str(error)


def test_denied_purpose_out_of_two(mapping: FhirMapping) -> None:
    treat = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}
    resource = _r5([{"actor": [_actor("Practitioner/13")], "code": [_code("work")],
                     "purpose": [PURPOSE_JOB, treat], "provision": [{"purpose": [treat]}]}])
    (consent,) = consent_from_fhir(resource, mapping).consents
    assert consent.purposes == ("job-matching",)


def test_unmapped_code_in_a_deny_is_refused_naming_its_path(mapping: FhirMapping) -> None:
    resource = _r5([{"actor": [_actor("Practitioner/13")], "code": [_code("work")],
                     "purpose": [PURPOSE_JOB],
                     "provision": [{"securityLabel": [
                         {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                          "code": "PSY"},
                         {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                          "code": "ETH"}]}]}])
    error = _refused(resource, mapping)
    (diag,) = [d for d in error.diagnostics if d.code == "unmapped-deny"]
    assert diag.message.startswith("Consent.provision[0].provision[0].securityLabel[1]: ")


def test_unmapped_code_in_a_permit_narrows_and_is_reported(mapping: FhirMapping) -> None:
    resource = _r5([{"actor": [_actor("Practitioner/13"), _actor("Practitioner/nobody")],
                     "code": [_code("work"), _code("unknown-thing")],
                     "purpose": [PURPOSE_JOB]}])
    result = consent_from_fhir(resource, mapping)
    (consent,) = result.consents
    assert consent.data == ("work",) and len(consent.recipients) == 1
    paths = {m.split(":")[0] for m in _messages(result)}
    assert {"Consent.provision[0].code[1]", "Consent.provision[0].actor[1].reference"} <= paths
    assert not any("Practitioner/nobody" in m for m in _messages(result))


def test_deny_that_only_restricts_other_actions_changes_nothing(mapping: FhirMapping) -> None:
    correct = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction",
                           "code": "correct"}]}
    resource = _r5([{"actor": [_actor("Practitioner/13")], "code": [_code("work")],
                     "purpose": [PURPOSE_JOB],
                     "provision": [{"action": [correct], "code": [_code("work")]}]}])
    result = consent_from_fhir(resource, mapping)
    assert result.consents[0].data == ("work",)
    assert any("changes nothing" in m for m in _messages(result))


def test_permit_nested_in_deny_is_permitted_again(mapping: FhirMapping, policy: Policy) -> None:
    psy = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}
    resource = _r5([{"actor": [_actor("Organization/jobcenter")], "code": [_code("health")],
                     "purpose": [PURPOSE_JOB],
                     "provision": [{"securityLabel": [psy],
                                    "provision": [{"actor": [_actor("Practitioner/13")]}]}]}])
    consents = consent_from_fhir(resource, mapping, policy).consents
    assert [(c.recipients, c.data) for c in consents] == [
        ((Selector(organization=("aalborg-kommune",)),),
         ("health.diagnosis", "health.medication")),
        ((Selector(organization=("aalborg-kommune",), actor=("job-consultant",)),),
         ("health.mental",)),
    ]


def test_r4_nested_deny_narrows(mapping: FhirMapping, policy: Policy) -> None:
    resource = _disclosing(_official("r4/Consent-consent-example-notThem.json"))
    resource["provision"]["type"] = "permit"
    resource["provision"]["code"] = [_code("health")]
    resource["provision"]["provision"] = [{"type": "deny", "class": [
        {"system": "http://hl7.org/fhir/resource-types", "code": "MedicationRequest"}]}]
    (consent,) = consent_from_fhir(resource, mapping, policy).consents
    assert consent.data == ("health.diagnosis", "health.mental")


def test_r4_deny_in_deny_and_untyped_nested_provisions_are_refused(
        mapping: FhirMapping) -> None:
    resource = _official("r4/Consent-consent-example-notThem.json")
    resource["provision"]["provision"] = [{"type": "deny", "provision": [{"type": "deny"}]},
                                          {"code": [_code("work")]}]
    error = _refused(resource, mapping)
    assert {"unsupported", "missing"} <= _codes(error)


@pytest.mark.parametrize("element,value", [
    ("dataPeriod", {"start": "2020-01-01"}),
    ("expression", {"language": "text/fhirpath", "expression": "true"}),
    ("modifierExtension", [{"url": "http://example.org/x", "valueBoolean": True}]),
    ("data", [{"meaning": "authoredby", "reference": {"reference": "Practitioner/13"}}]),
])
def test_restrictions_flowguard_cannot_represent_are_refused(element: str, value: Any,
                                                             mapping: FhirMapping) -> None:
    provision = {"actor": [_actor("Practitioner/13")], "code": [_code("work")],
                 "purpose": [PURPOSE_JOB], element: value}
    assert "unsupported" in _codes(_refused(_r5([provision]), mapping))


LEAVES = ("health.diagnosis", "health.medication", "health.mental", "work.capacity",
          "work.preferences", "work.schedule")
NODES = ("health", "work", *LEAVES)
CODE_OF = {"health": "health", "work": "work", "work.capacity": "work-capacity",
           "health.medication": None, "health.mental": None}


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(permitted=st.lists(st.sampled_from(NODES), min_size=1, max_size=3, unique=True),
       denied=st.lists(st.sampled_from(NODES), min_size=1, max_size=3, unique=True))
def test_deny_narrowing_is_exact_on_every_leaf(permitted: list[str], denied: list[str]) -> None:
    """Whatever is permitted and denied, a leaf is covered by the import exactly when the
    permit covers it and no deny does (the import never widens, and never loses more)."""
    policy = flowguard.load_policy(AALBORG / "policy.yaml")
    data = {f"http://example.org/c|{c}": c for c in NODES}
    mapping = FhirMapping(recipients={"Practitioner/13": Selector(actor=("job-consultant",))},
                          data=data, default_purposes=("job-matching",),
                          default_grantor="subject", subjects={"Patient/1": "s-1"})

    def codes(cats: list[str]) -> list[dict[str, Any]]:
        return [{"coding": [{"system": "http://example.org/c", "code": c}]} for c in cats]

    resource = {"resourceType": "Consent", "id": "p", "status": "active",
                "subject": {"reference": "Patient/1"}, "date": "2026-01-01T00:00:00Z",
                "decision": "deny",
                "provision": [{"actor": [_actor("Practitioner/13")], "code": codes(permitted),
                               "provision": [{"code": codes(denied)}]}]}

    def under(cats: Any, leaf: str) -> bool:
        return any(leaf == c or leaf.startswith(c + ".") for c in cats)

    expected = {leaf for leaf in LEAVES if under(permitted, leaf) and not under(denied, leaf)}
    try:
        consents = consent_from_fhir(resource, mapping, policy).consents
    except RegistryError as exc:
        assert not expected and "empty" in _codes(exc)
        return
    assert {leaf for leaf in LEAVES if any(under(c.data, leaf) for c in consents)} == expected


# --------------------------------------------------------------------------- malformed


@pytest.mark.parametrize("resource", [[], "Consent", None, 42, [{"resourceType": "Consent"}]])
def test_a_resource_must_be_a_json_object(resource: Any, mapping: FhirMapping) -> None:
    error = _refused(resource, mapping)
    assert _codes(error) == {"type"}
    assert "must be a JSON object" in str(error)


def test_wrong_resource_type(mapping: FhirMapping) -> None:
    resource = _official("r4/Consent-consent-example-notThem.json")
    resource["resourceType"] = "Patient"
    error = _refused(resource, mapping)
    assert _codes(error) == {"not-consent"}
    assert str(error).startswith("test.json: error: Consent.resourceType: ")


def test_missing_subject(mapping: FhirMapping) -> None:
    resource = _official("r4/Consent-consent-example-notThem.json")
    del resource["patient"]
    error = _refused(resource, mapping)
    assert "missing" in _codes(error) and "Consent.patient: the consent names no subject" in \
        str(error)


@pytest.mark.parametrize("value,code", [
    ("2026-02-01T10:00:00", "no-zone"), ("2026-02", "imprecise-time"),
    ("yesterday", "invalid"), (20260201, "type")])
def test_bad_consent_times_are_refused(value: Any, code: str, mapping: FhirMapping) -> None:
    resource = _r5([{"actor": [_actor("Practitioner/13")], "code": [_code("work")],
                     "purpose": [PURPOSE_JOB]}], date=value)
    error = _refused(resource, mapping)
    assert code in _codes(error)
    assert "Consent.date: " in str(error)


def test_naive_period_is_refused_too(mapping: FhirMapping) -> None:
    resource = _r5([{"actor": [_actor("Practitioner/13")], "code": [_code("work")],
                     "purpose": [PURPOSE_JOB], "period": {"end": "2026-12-31T23:59:59"}}])
    error = _refused(resource, mapping)
    assert "Consent.provision[0].period.end: time has no zone" in str(error)


@pytest.mark.parametrize("subject", [
    {"reference": "Patient/0101901234"},
    {"identifier": {"system": "urn:oid:1.2.208.176.1.2", "value": "0101901234"}},
])
def test_unmapped_subject_is_refused_without_leaking_the_identifier(
        subject: dict[str, Any], mapping: FhirMapping, write: Write) -> None:
    resource = _r5([{"actor": [_actor("Practitioner/13")], "code": [_code("work")],
                     "purpose": [PURPOSE_JOB]}], subject=subject)
    error = _refused(resource, mapping)
    assert "unmapped-subject" in _codes(error)
    assert "0101901234" not in str(error)
    assert "Consent.subject: the subject reference is not in the mapping" in str(error)
    path = write("consent.json", json.dumps(resource, indent=2))
    with pytest.raises(RegistryError) as info:
        consent_from_fhir_file(path, mapping)
    (diag,) = [d for d in info.value.diagnostics if d.code == "unmapped-subject"]
    assert diag.line is not None and "subject" in path.read_text().splitlines()[diag.line - 1]
    assert "0101901234" not in str(info.value)


def test_malformed_json_file_is_a_registry_error(write: Write, mapping: FhirMapping) -> None:
    path = write("consent.json", '{"resourceType": "Consent", "id": }')
    with pytest.raises(RegistryError) as info:
        consent_from_fhir_file(path, mapping)
    (diag,) = info.value.diagnostics
    assert diag.code == "json" and diag.line == 1


@pytest.mark.parametrize("status", ["draft", "proposed", "rejected", "entered-in-error",
                                    "not-done", "unknown"])
def test_only_active_and_inactive_consents_import(status: str, mapping: FhirMapping) -> None:
    resource = _r5([{"actor": [_actor("Practitioner/13")], "code": [_code("work")],
                     "purpose": [PURPOSE_JOB]}], status=status)
    assert _codes(_refused(resource, mapping)) == {"status"}


def test_inactive_consent_is_withdrawn_at_the_time_its_extension_records(
        mapping: FhirMapping) -> None:
    provision = [{"actor": [_actor("Practitioner/13")], "code": [_code("work")],
                  "purpose": [PURPOSE_JOB]}]
    withdrawn = [{"url": "urn:flowguard:withdrawn-at",
                  "valueDateTime": "2026-04-01T08:00:00+02:00"}]
    resource = _r5(provision, status="inactive", extension=withdrawn)
    (consent,) = consent_from_fhir(resource, mapping).consents
    assert consent.withdrawn_at == _utc("2026-04-01T06:00:00+00:00")
    # meta.lastUpdated is when a server last changed the resource: never the withdrawal
    error = _refused(_r5(provision, status="inactive",
                         meta={"lastUpdated": "2026-04-01T08:00:00+02:00"}), mapping)
    assert _codes(error) == {"no-withdrawal-time"}
    assert "not when consent was withdrawn" in str(error)
    assert _codes(_refused(_r5(provision, extension=withdrawn), mapping)) == {"contradiction"}


def test_deny_base_without_exceptions_records_a_refusal(mapping: FhirMapping) -> None:
    error = _refused(_r5([]), mapping)
    assert _codes(error) == {"base-deny"}
    assert "no provision makes an exception" in str(error)


def test_permit_base_with_a_grantee_subtracts_its_exceptions_exactly(
        mapping: FhirMapping, policy: Policy) -> None:
    """decision permit + grantee: the grantee may have everything (the map's defaults)
    except what the exception withholds; with the policy that is exact."""
    resource = _r5([{"code": [_code("work-capacity")]}], decision="permit",
                   grantee=[{"reference": "Practitioner/13"}])
    (consent,) = consent_from_fhir(resource, mapping, policy).consents
    assert consent.recipients == (Selector(actor=("job-consultant",)),)
    assert consent.data == ("work.preferences", "work.schedule")     # work minus capacity
    assert consent.purposes == ("follow-up",)


def test_r5_needs_a_decision(mapping: FhirMapping) -> None:
    resource = _r5([{"actor": [_actor("Practitioner/13")], "code": [_code("work")],
                     "purpose": [PURPOSE_JOB]}])
    del resource["decision"]
    assert _codes(_refused(resource, mapping)) == {"no-decision"}


def test_r5_grantee_restricts_every_provision(mapping: FhirMapping, policy: Policy) -> None:
    resource = _r5([{"actor": [_actor("Practitioner/13")], "code": [_code("work")],
                     "purpose": [PURPOSE_JOB]}],
                   grantee=[{"reference": "Organization/jobcenter"}])
    (consent,) = consent_from_fhir(resource, mapping, policy).consents
    assert consent.recipients == (Selector(actor=("job-consultant",),
                                           organization=("aalborg-kommune",)),)
    resource["grantee"] = [{"reference": "Organization/unknown"}]      # unmapped: nothing left
    error = _refused(resource, mapping)
    assert _codes(error) == {"empty"}


def test_mixed_versions_and_unknown_elements_are_refused(mapping: FhirMapping) -> None:
    resource = _r5([], patient={"reference": "Patient/72"})
    assert "mixed-version" in _codes(_refused(resource, mapping))
    resource = _r5([{"actor": [_actor("Practitioner/13")], "code": [_code("work")],
                     "purpose": [PURPOSE_JOB], "colour": "blue"}], flavour="vanilla")
    error = _refused(resource, mapping)
    assert {d.message.split(":")[0] for d in error.diagnostics} == {
        "Consent.flavour", "Consent.provision[0].colour"}


def test_policy_rejects_what_it_does_not_know(mapping: FhirMapping, policy: Policy) -> None:
    odd = mapping.model_copy(update={
        "data": {**mapping.data, "http://example.org/fhir/data|x": "health.dental"},
        "recipients": {**mapping.recipients, "Organization/x": Selector(role=("chef",))}})
    resource = _r5([{"actor": [_actor("Organization/x")], "code": [
        {"coding": [{"system": "http://example.org/fhir/data", "code": "x"}]}],
        "purpose": [PURPOSE_JOB]}])
    error = _refused(resource, odd, policy)
    messages = " | ".join(_messages(error))
    assert "unknown data category `health.dental`" in messages
    assert "unknown role `chef`" in messages
    assert consent_from_fhir(resource, odd).consents       # without a policy: no check


def test_no_data_or_purpose_without_defaults_is_refused(mapping: FhirMapping) -> None:
    strict = mapping.model_copy(update={"default_data": None, "default_purposes": None})
    resource = _r5([{"actor": [_actor("Practitioner/13")]}])
    assert {"no-data", "no-purpose"} <= _codes(_refused(resource, strict))
    (consent,) = consent_from_fhir(resource, mapping).consents
    assert (consent.data, consent.purposes) == (("work",), ("follow-up",))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8)
    | st.sampled_from(["Consent", "permit", "deny", "active", "Patient/72", "2026-01-01",
                       "2026-01-01T00:00:00Z", "2026-01-01T00:00:00"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["resourceType", "status", "subject", "patient", "provision", "actor",
                         "reference", "date", "dateTime", "decision", "code", "coding",
                         "system", "period", "start", "type", "grantor", "id", "purpose"]),
        inner, max_size=5),
    max_leaves=25)


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(resource=JSON)
def test_arbitrary_json_never_raises_anything_but_registry_error(resource: Any) -> None:
    mapping = load_fhir_mapping(MAP)
    try:
        consent_from_fhir(resource, mapping)
    except RegistryError as exc:
        assert exc.diagnostics and all(d.severity == "error" for d in exc.diagnostics)


# --------------------------------------------------------------------------- the map


def test_map_errors_name_file_and_line_but_not_subject_keys(write: Write) -> None:
    text = ("subjects:\n  \"urn:oid:1.2.208.176.1.2|0101901234\": \"not an id!\"\n"
            "  \"0101901234\": citizen-1\n"
            "recipeints: {}\n")
    path = write("map.yaml", text)
    with pytest.raises(RegistryError) as info:
        load_fhir_mapping(path)
    found = {(d.line, d.code) for d in info.value.diagnostics}
    assert found == {(2, "type"), (3, "invalid"), (4, "unknown-key")}
    assert "0101901234" not in str(info.value)
    assert "did you mean `recipients`?" in str(info.value)


def test_map_normalises_resource_type_keys(write: Write) -> None:
    mapping = load_fhir_mapping(write("map.yaml", "data: {\"class:Observation\": health}\n"))
    assert mapping.data == {"http://hl7.org/fhir/resource-types|Observation": "health"}
    with pytest.raises(RegistryError) as info:
        load_fhir_mapping(write("map.yaml", "data: {observations: health}\n"))
    assert "not `system|code`" in str(info.value) and info.value.diagnostics[0].line == 1


# --------------------------------------------------------------------------- export

REGISTRIES = [(EXAMPLES / name / "policy.yaml", EXAMPLES / name / "consents.yaml")
              for name in ("aalborg-aktiv", "youth-services")]


def _registry_consents() -> list[tuple[Policy, Consent]]:
    found: list[tuple[Policy, Consent]] = []
    for policy_file, consents_file in REGISTRIES:
        policy = flowguard.load_policy(policy_file)
        registry = flowguard.load_registry(consents_file, policy)
        found += [(policy, consent) for consent in registry.all_consents()]
    return found


@pytest.mark.parametrize("version", VERSIONS)
def test_every_shipped_consent_exports_valid_fhir_and_reads_back_equal(
        version: str, mapping: FhirMapping) -> None:
    """The bar of issue 14: every consent of both shipped registries, exported as R5 and
    as R4, with and without a map, validates with fhir.resources and reads back equal."""
    shipped = _registry_consents()
    assert len(shipped) > 20
    for policy, consent in shipped:
        for m in (mapping, FhirMapping()):
            resource = consent_to_fhir(consent, m, version)  # type: ignore[arg-type]
            _valid(resource, version)
            result = consent_from_fhir(resource, m, policy)
            assert result.consents == (consent,), consent.id
            assert result.unmapped == (), consent.id


def test_r5_export_is_a_deny_base_with_the_consent_as_its_exception(
        mapping: FhirMapping) -> None:
    consent = _shipped("k-0318-shelter-2026")                 # withdrawn 2026-04-01
    resource = consent_to_fhir(consent, mapping)
    assert resource["decision"] == "deny" and len(resource["provision"]) == 1
    assert resource["date"] == consent.given_at.date().isoformat()   # a FHIR date
    assert resource["period"]["start"] == consent.given_at.isoformat().replace("+00:00", "Z")
    assert resource["status"] == "inactive"
    assert "meta" not in resource                        # servers overwrite meta
    assert {"url": "urn:flowguard:withdrawn-at", "valueDateTime": "2026-04-01T08:00:00Z"} \
        in resource["extension"]
    assert resource["subject"] == {"reference": "Patient/f201"}     # the map, reversed
    assert resource["grantor"] == [resource["subject"]]
    assert consent_to_fhir(consent)["subject"] == {     # no map: flowguard's own system
        "identifier": {"system": "urn:flowguard:subject", "value": "citizen-0318"}}
    assert re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", resource["id"])
    (provision,) = resource["provision"]
    codes = [c["coding"][0] for c in provision["code"]]
    assert {"system": "http://example.org/fhir/data", "code": "name"} in codes   # the map's
    assert {"system": "urn:flowguard:category", "code": "work.schedule"} in codes  # own
    _valid(resource, "5.0.0")


def test_r4_export_frames_one_typed_permit_under_an_untyped_root(
        mapping: FhirMapping) -> None:
    consent = _shipped("k-0042-cafe")
    resource = consent_to_fhir(consent, mapping, "4.0.1")
    assert "type" not in resource["provision"]                  # R4: none at the root
    (permit,) = resource["provision"]["provision"]
    assert permit["type"] == "permit"
    assert resource["dateTime"] == consent.given_at.isoformat().replace("+00:00", "Z")
    assert resource["policyRule"]["coding"][0]["code"] == "OPTIN"
    _valid(resource, "4.0.1")


def test_registry_bundle_validates_in_both_versions(mapping: FhirMapping) -> None:
    consents = [consent for _, consent in _registry_consents()[:15]]
    for version in VERSIONS:
        bundle = consents_to_fhir_bundle(consents, mapping, version)  # type: ignore[arg-type]
        _valid(bundle, version)
        assert [e["resource"]["identifier"][0]["value"] for e in bundle["entry"]] == \
            [k.id for k in consents]


def test_unknown_fhir_version_is_refused() -> None:
    with pytest.raises(RegistryError) as info:
        consent_to_fhir(_shipped("k-0042-cafe"), None, "3.0.1")  # type: ignore[arg-type]
    assert "write 5.0.0 or 4.0.1" in str(info.value)


IDS = st.from_regex(r"[a-z][a-z0-9\-]{0,6}(\.[a-z0-9]{1,4}){0,2}", fullmatch=True)
INSTANTS = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1),
                        timezones=st.just(UTC))
SECTORS = st.sampled_from(["public", "private", "voluntary"])
# FHIR strings are non-empty and hold no whitespace but space, tab, CR and LF
TEXTS = st.text(st.characters(blacklist_categories=("Cs", "Zl", "Zp", "Cc"),
                              blacklist_characters="\x0b\x0c\x85\xa0\u1680\u2000\u3000"),
                min_size=1, max_size=10)
PRINTABLE = st.text(st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl",
                                                        "Zp", "Zs")), min_size=1, max_size=10)
"""Evidence method and reference: printable text only (issue 13)."""


@st.composite
def selectors(draw: st.DrawFn) -> Selector:
    values: dict[str, Any] = {}
    for key in ("actor", "organization", "kind", "role"):
        if draw(st.booleans()):
            values[key] = tuple(draw(st.lists(IDS, min_size=1, max_size=2, unique=True)))
    if draw(st.booleans()):
        values["sector"] = tuple(draw(st.lists(SECTORS, min_size=1, max_size=2, unique=True)))
    return Selector.model_validate(values)


@st.composite
def consents(draw: st.DrawFn) -> Consent:
    given_at = draw(INSTANTS)
    subject = draw(IDS)
    expires = draw(st.none() | st.timedeltas(min_value=timedelta(seconds=1),
                                            max_value=timedelta(days=3000)))
    withdrawn = draw(st.none() | INSTANTS)
    return Consent(
        id=draw(st.sampled_from(["k", "fhir-k", "k.1", "K_o", "a:b"]))
        + draw(IDS.filter(lambda i: not re.search(r"[0-9]{6}", i))),  # no CPR-like id
        subject=subject, given_by=draw(st.just(subject) | IDS), given_at=given_at,
        recipients=tuple(draw(st.lists(selectors(), min_size=1, max_size=3, unique=True))),
        data=tuple(draw(st.lists(IDS, min_size=1, max_size=3, unique=True))),
        purposes=tuple(draw(st.lists(IDS, min_size=1, max_size=2, unique=True))),
        subprocesses=draw(st.none() | st.lists(IDS, min_size=1, max_size=2).map(tuple)),
        explicit=draw(st.booleans()),
        expires_at=None if expires is None else given_at + expires,
        withdrawn_at=withdrawn,
        evidence=draw(st.none() | st.builds(
            Evidence, method=PRINTABLE, reference=st.none() | PRINTABLE,
            note=st.none() | TEXTS)))


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(consent=consents(), use_map=st.booleans(), version=st.sampled_from(VERSIONS))
def test_export_then_import_gives_an_equal_consent(consent: Consent, use_map: bool,
                                                   version: str) -> None:
    base = load_fhir_mapping(MAP)
    own = ["Organization/rt", "http://example.org/rt|d", "http://example.org/rt|p"]
    mapping = base.model_copy(update={
        "subjects": {**base.subjects, "Patient/rt": consent.subject},
        "persons": {**base.persons, "RelatedPerson/rt": consent.given_by},
        "recipients": {**base.recipients, "Organization/rt": consent.recipients[0]},
        "data": {**base.data, "http://example.org/rt|d": consent.data[0]},
        "purposes": {**base.purposes, "http://example.org/rt|p": consent.purposes[0]},
        "export": (*base.export, *own),
    }) if use_map else FhirMapping()
    resource = consent_to_fhir(consent, mapping, version)  # type: ignore[arg-type]
    _valid(json.loads(json.dumps(resource)), version)
    result = consent_from_fhir(resource, mapping)
    assert result.consents == (consent,)
    assert result.unmapped == ()


# --------------------------------------------------------------------------- R5 semantics

CODES = st.lists(st.sampled_from(NODES), min_size=1, max_size=2, unique=True)
PROVISIONS = st.recursive(
    st.builds(lambda codes: {"codes": codes, "children": []}, CODES),
    lambda inner: st.builds(lambda codes, children: {"codes": codes, "children": children},
                            CODES, st.lists(inner, max_size=2)),
    max_leaves=6)


def _r5_tree(node: dict[str, Any]) -> dict[str, Any]:
    codes = [{"coding": [{"system": "http://example.org/c", "code": c}]} for c in node["codes"]]
    out: dict[str, Any] = {"code": codes}
    if node["children"]:
        out["provision"] = [_r5_tree(child) for child in node["children"]]
    return out


def _reference(permit: bool, provisions: list[dict[str, Any]], leaf: str) -> bool:
    """R5 as HL7 writes it: a provision that matches the leaf turns its parent's decision
    around, recursively; siblings have no precedence, so a leaf is permitted only if every
    matching sibling permits it (the reading that is never wider)."""
    matching = [p for p in provisions
                if any(leaf == c or leaf.startswith(c + ".") for c in p["codes"])]
    if not matching:
        return permit
    return all(_reference(not permit, p["children"], leaf) for p in matching)


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(decision=st.sampled_from(["permit", "deny"]),
       provisions=st.lists(PROVISIONS, max_size=3))
def test_r5_import_permits_exactly_what_the_provision_tree_permits(
        decision: str, provisions: list[dict[str, Any]]) -> None:
    """Random R5 trees over data (one grantee, every category mapped): the imported consents
    cover a leaf exactly when R5's reading permits it, or the resource is refused and R5
    permits nothing."""
    policy = flowguard.load_policy(AALBORG / "policy.yaml")
    mapping = FhirMapping(recipients={"Practitioner/13": Selector(actor=("job-consultant",))},
                          data={f"http://example.org/c|{c}": c for c in NODES},
                          default_data=("health", "work"), default_purposes=("job-matching",),
                          default_grantor="subject", subjects={"Patient/1": "s-1"})
    resource = {"resourceType": "Consent", "id": "t", "status": "active",
                "subject": {"reference": "Patient/1"}, "date": "2026-01-01T00:00:00Z",
                "decision": decision, "grantee": [{"reference": "Practitioner/13"}],
                "provision": [_r5_tree(p) for p in provisions]}
    expected = {leaf for leaf in LEAVES if _reference(decision == "permit", provisions, leaf)}
    try:
        consents = consent_from_fhir(resource, mapping, policy).consents
    except RegistryError as exc:
        assert not expected, (exc, decision, provisions)
        assert _codes(exc) <= {"empty", "base-deny"}, exc
        return
    got = {leaf for leaf in LEAVES
           if any(leaf == c or leaf.startswith(c + ".") for k in consents for c in k.data)}
    assert got == expected, (decision, provisions)


# recipients too: who the references are, and which actors of the policy each one matches
WHO = {"Practitioner/13": Selector(actor=("job-consultant",)),
       "Practitioner/f001": Selector(actor=("case-worker",)),
       "Organization/jobcenter": Selector(organization=("aalborg-kommune",)),
       "Organization/f001": Selector(organization=("bosted-lindholm",))}
MEMBERS = {"Practitioner/13": {"job-consultant"}, "Practitioner/f001": {"case-worker"},
           "Organization/jobcenter": {"job-consultant", "case-worker"},
           "Organization/f001": {"care-staff", "care-home-manager"}}
WHOM = st.lists(st.sampled_from(sorted(WHO)), max_size=2, unique=True)
SCOPED = st.recursive(
    st.builds(lambda codes, whom: {"codes": codes, "whom": whom, "children": []},
              CODES, WHOM),
    lambda inner: st.builds(lambda codes, whom, children: {"codes": codes, "whom": whom,
                                                           "children": children},
                            CODES, WHOM, st.lists(inner, max_size=2)),
    max_leaves=5)


def _scoped_tree(node: dict[str, Any]) -> dict[str, Any]:
    out = _r5_tree({"codes": node["codes"], "children": []})
    if node["whom"]:
        out["actor"] = [{"reference": {"reference": r}} for r in node["whom"]]
    if node["children"]:
        out["provision"] = [_scoped_tree(child) for child in node["children"]]
    return out


def _scoped_reference(permit: bool, provisions: list[dict[str, Any]], actor: str,
                      leaf: str) -> bool:
    matching = [p for p in provisions
                if any(leaf == c or leaf.startswith(c + ".") for c in p["codes"])
                and (not p["whom"] or any(actor in MEMBERS[r] for r in p["whom"]))]
    if not matching:
        return permit
    return all(_scoped_reference(not permit, p["children"], actor, leaf) for p in matching)


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(decision=st.sampled_from(["permit", "deny"]), grantee=st.sampled_from(sorted(WHO)),
       provisions=st.lists(SCOPED, max_size=3))
def test_r5_import_is_exact_for_every_recipient_and_category(
        decision: str, grantee: str, provisions: list[dict[str, Any]]) -> None:
    """As above, with recipients: an (actor, leaf) pair is covered by the imported consents
    exactly when R5's reading permits it to that actor."""
    policy = flowguard.load_policy(AALBORG / "policy.yaml")
    mapping = FhirMapping(recipients=WHO, data={f"http://example.org/c|{c}": c for c in NODES},
                          default_data=("health", "work"), default_purposes=("job-matching",),
                          default_grantor="subject", subjects={"Patient/1": "s-1"})
    resource = {"resourceType": "Consent", "id": "t", "status": "active",
                "subject": {"reference": "Patient/1"}, "date": "2026-01-01T00:00:00Z",
                "decision": decision, "grantee": [{"reference": grantee}],
                "provision": [_scoped_tree(p) for p in provisions]}
    everyone = sorted(policy.actors)            # an import wider to anyone else shows too
    expected = {(a, leaf) for a in everyone for leaf in LEAVES if a in MEMBERS[grantee]
                and _scoped_reference(decision == "permit", provisions, a, leaf)}
    try:
        consents = consent_from_fhir(resource, mapping, policy).consents
    except RegistryError as exc:
        assert not expected, (exc, decision, grantee, provisions)
        assert _codes(exc) <= {"empty", "base-deny"}, exc
        return
    def matches(selector: Selector, actor: str) -> bool:
        org = policy.actors[actor].organization
        facts = {"actor": actor, "organization": org, "role": policy.actors[actor].role,
                 "kind": policy.organizations[org].kind,
                 "sector": policy.organizations[org].sector}
        return all(getattr(selector, key) is None or facts[key] in getattr(selector, key)
                   for key in facts)

    got = {(a, leaf) for a in everyone for leaf in LEAVES for k in consents
           if any(matches(s, a) for s in k.recipients)
           and any(leaf == c or leaf.startswith(c + ".") for c in k.data)}
    assert got == expected, (decision, grantee, provisions)
