"""The outside review of the FHIR import (issue 14): staggered sibling permits, the limits
on one resource, permits to access only, messages that name the provision, Bundles (types,
methods, repeated entries), map errors at their line, and a property that an import never
permits what the resource does not."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowguard
from flowguard import RegistryError
from flowguard._cli import cli
from flowguard.fhir import (
    FhirMapping,
    consent_from_fhir,
    consent_to_fhir,
    consents_from_fhir_path,
    consents_to_fhir_bundle,
    load_fhir_mapping,
)
from flowguard.model import Consent, Policy, Selector

from .conftest import EXAMPLES

Write = Callable[[str, str], Path]
AALBORG = EXAMPLES / "aalborg-aktiv"
MAP = Path(__file__).resolve().parent / "data" / "fhir" / "map.yaml"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
ACTION = "http://terminology.hl7.org/CodeSystem/consentaction"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return flowguard.load_policy(AALBORG / "policy.yaml")


@pytest.fixture(scope="module")
def mapping() -> FhirMapping:
    return load_fhir_mapping(MAP)


def _day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _code(code: str) -> dict[str, Any]:
    return {"coding": [{"system": "http://example.org/fhir/data", "code": code}]}


def _actor(ref: str) -> dict[str, Any]:
    return {"reference": {"reference": ref}}


def _action(*codes: str) -> list[dict[str, Any]]:
    return [{"coding": [{"system": ACTION, "code": c}]} for c in codes]


def _resource(provision: list[dict[str, Any]], decision: str = "deny",
              **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Consent", "id": "k1", "status": "active",
        "subject": {"reference": "Patient/72"}, "date": _iso(T0),
        "grantor": [{"reference": "RelatedPerson/peter"}], "decision": decision,
        "provision": provision}
    resource.update(extra)
    return resource


def _refused(resource: Any, mapping: FhirMapping, policy: Policy | None = None
             ) -> RegistryError:
    with pytest.raises(RegistryError) as info:
        consent_from_fhir(resource, mapping, policy)
    return info.value


def _codes(error: RegistryError) -> set[str]:
    return {d.code for d in error.diagnostics}


_POLICY = flowguard.load_policy(AALBORG / "policy.yaml")


def _matches(selector: Selector, actor: str) -> bool:
    """Whether `selector` matches `actor` of the shipped policy (every key it names)."""
    org = _POLICY.actors[actor].organization
    facts = {"actor": actor, "organization": org, "role": _POLICY.actors[actor].role,
             "kind": _POLICY.organizations[org].kind,
             "sector": _POLICY.organizations[org].sector}
    return all(getattr(selector, key) is None or facts[key] in getattr(selector, key)
               for key in facts)


def _covers(consents: tuple[Consent, ...], leaf: str, at: datetime,
            actor: str = "job-consultant") -> bool:
    """Whether a consent permits disclosing `leaf` to `actor` at `at`."""
    return any(any(leaf == c or leaf.startswith(c + ".") for c in k.data)
               and any(_matches(s, actor) for s in k.recipients)
               and k.given_at <= at and (k.expires_at is None or at < k.expires_at)
               for k in consents)


# --------------------------------------------------------------------------- staggered

def test_sixty_staggered_sibling_permits_import_fast_and_exactly(
        mapping: FhirMapping, policy: Policy) -> None:
    """60 sibling permits to one recipient, each for 30 days starting a day after the one
    before, alternately for health and for work: they used to multiply into hundreds of
    identical consents and run for minutes."""
    provisions = [{"actor": [_actor("Practitioner/13")], "code": [_code(data)],
                   "period": {"start": _iso(_day(i)), "end": _iso(_day(i + 30))}}
                  for i in range(60) for data in (("health", "work")[i % 2],)]
    started = time.perf_counter()
    consents = consent_from_fhir(_resource(provisions), mapping, policy).consents
    assert time.perf_counter() - started < 10
    assert len(consents) == 2          # health days 0-88, work days 1-89, merged
    for leaf, first in (("health.diagnosis", 0), ("work.capacity", 1)):
        for half_day in range(-2, 2 * 95):
            at = _day(half_day / 2 + 0.25)
            assert _covers(consents, leaf, at) == (first <= half_day / 2 < first + 88), at
        assert not _covers(consents, leaf, _day(50), actor="case-worker")


# --------------------------------------------------------------------------- limits

def test_more_than_a_hundred_consents_is_refused_plainly(mapping: FhirMapping,
                                                         policy: Policy) -> None:
    provisions = [{"actor": [_actor("Practitioner/13")], "code": [_code("work")],
                   "period": {"start": _iso(_day(2 * i)), "end": _iso(_day(2 * i + 1))}}
                  for i in range(101)]
    error = _refused(_resource(provisions), mapping, policy)
    assert _codes(error) == {"too-many-consents"}
    text = str(error)
    assert "would become 101 flowguard consents, more than the 100" in text
    assert "Split it into several Consent resources" in text and "Traceback" not in text
    assert len(consent_from_fhir(_resource(provisions[:100]), mapping, policy).consents) == 100


def test_too_intricate_provisions_are_refused_plainly(mapping: FhirMapping,
                                                      policy: Policy) -> None:
    """A permit with 1,100 exceptions, each withholding one hour: more than the 1,000
    regions (and 400,000 steps) one resource may take to work out."""
    denies = [{"period": {"start": _iso(_day(i / 24 + 1)), "end": _iso(_day(i / 24 + 1.02))}}
              for i in range(1100)]
    provisions = [{"actor": [_actor("Practitioner/13")], "code": [_code("work")],
                   "provision": denies}]
    started = time.perf_counter()
    error = _refused(_resource(provisions), mapping, policy)
    assert time.perf_counter() - started < 20
    assert _codes(error) == {"too-complex"}
    assert "too intricate to work out exactly within flowguard's limits (at most 1,000 " \
        "separate regions and 400,000 steps per resource)" in str(error)
    assert "Split the resource into several Consent resources" in str(error)


# --------------------------------------------------------------------------- actions

@pytest.mark.parametrize("actions", [("access",), ("collect",), ("access", "collect")])
def test_a_permit_to_access_or_collect_only_is_refused(actions: tuple[str, ...],
                                                       mapping: FhirMapping) -> None:
    provision = {"actor": [_actor("Practitioner/13")], "code": [_code("work")],
                 "action": _action(*actions)}
    error = _refused(_resource([provision]), mapping)
    assert _codes(error) == {"action-not-disclose"}
    (diag,) = error.diagnostics
    assert diag.message.startswith("Consent.provision[0].action: this permit allows only "
                                   "`access` or `collect`, not `disclose`")
    assert "add the action `disclose`" in diag.message
    provision["action"] = _action(*actions, "disclose")
    (consent,) = consent_from_fhir(_resource([provision]), mapping).consents
    assert consent.data == ("work",)


# --------------------------------------------------------------------------- wording

def test_an_empty_import_names_each_provision_and_why(mapping: FhirMapping,
                                                      policy: Policy) -> None:
    """A permit whose exception withholds all of it, and a sibling that therefore vetoes
    the other permit: each error names its provision and says why in plain words."""
    withheld = {"actor": [_actor("Practitioner/13")], "code": [_code("work")],
                "provision": [{"code": [_code("work")]}]}
    other = {"actor": [_actor("Practitioner/13")], "code": [_code("work")],
             "period": {"start": _iso(_day(3)), "end": _iso(_day(9))}}
    error = _refused(_resource([other, withheld]), mapping, policy)
    assert _codes(error) == {"empty"}
    messages = [d.message for d in error.diagnostics]
    assert any(m.startswith("Consent.provision[1]: nothing in this consent can be "
                            "imported: its exceptions (Consent.provision[1].provision[0]) "
                            "withhold everything this provision permits") for m in messages)
    assert any(m.startswith("Consent.provision[0]: nothing in this consent can be imported: "
                            "this provision grants nothing: where it applies, its sibling "
                            "provision(s) Consent.provision[1] do not permit the same")
               for m in messages), messages
    unmapped = {"actor": [_actor("Practitioner/nobody")], "code": [_code("work")]}
    error = _refused(_resource([unmapped]), mapping, policy)
    assert "Consent.provision[0]: nothing in this consent can be imported: this provision " \
        "grants nothing: none of its recipients (`actor`) is in the map" in str(error)


# --------------------------------------------------------------------------- Bundles

def _bundle(policy: Policy, mapping: FhirMapping) -> dict[str, Any]:
    registry = flowguard.load_registry(AALBORG / "consents.yaml", policy)
    consents = sorted(registry.all_consents(), key=lambda k: k.id)[:4]
    return consents_to_fhir_bundle(consents, mapping)


def _save(tmp_path: Path, data: Any, name: str = "bundle.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def _transaction(bundle: dict[str, Any], method: str = "PUT") -> dict[str, Any]:
    out = copy.deepcopy(bundle)
    out["type"] = "transaction"
    for entry in out["entry"]:
        entry["request"] = {"method": method, "url": f"Consent/{entry['resource']['id']}"}
    return out


def _line_of(path: Path, text: str, after: int = 0) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(n for n, line in enumerate(lines, 1) if n > after and text in line)


def test_collection_and_put_transaction_import(tmp_path: Path, policy: Policy,
                                               mapping: FhirMapping) -> None:
    bundle = _bundle(policy, mapping)
    plain = consents_from_fhir_path(_save(tmp_path, bundle), mapping, policy)
    assert len(plain.consents) == 4
    for method in ("PUT", "POST"):
        again = consents_from_fhir_path(_save(tmp_path, _transaction(bundle, method)),
                                        mapping, policy)
        assert again.consents == plain.consents


def test_a_delete_entry_is_refused_never_imported_as_a_grant(tmp_path: Path, policy: Policy,
                                                             mapping: FhirMapping) -> None:
    bundle = _transaction(_bundle(policy, mapping))
    bundle["entry"][2]["request"]["method"] = "DELETE"
    path = _save(tmp_path, bundle)
    with pytest.raises(RegistryError) as info:
        consents_from_fhir_path(path, mapping, policy)
    (diag,) = info.value.diagnostics
    assert diag.code == "bundle-method" and diag.file == str(path)
    assert diag.line == _line_of(path, '"DELETE"')
    assert diag.message.startswith("Bundle.entry[2].request.method: `DELETE` deletes a "
                                   "resource: a deletion is never imported as a consent")
    assert "flowguard consent withdraw" in diag.message
    del bundle["entry"][2]["resource"]           # as a real DELETE entry is written
    with pytest.raises(RegistryError) as info:
        consents_from_fhir_path(_save(tmp_path, bundle), mapping, policy)
    assert _codes(info.value) == {"bundle-method"}


@pytest.mark.parametrize("kind", ["searchset", "history", "document", "message",
                                  "transaction-response", "made-up", None])
def test_bundle_types_that_hold_no_records_are_refused(kind: str | None, tmp_path: Path,
                                                       policy: Policy,
                                                       mapping: FhirMapping) -> None:
    bundle = _bundle(policy, mapping)
    if kind is None:
        del bundle["type"]
    else:
        bundle["type"] = kind
    path = _save(tmp_path, bundle)
    with pytest.raises(RegistryError) as info:
        consents_from_fhir_path(path, mapping, policy)
    (diag,) = info.value.diagnostics
    assert diag.code == "bundle-type" and diag.message.startswith("Bundle.type: ")
    assert "`collection`, `batch` and `transaction` Bundles" in diag.message
    if kind is not None:
        assert diag.line == _line_of(path, '"type"')


def test_entries_a_bundle_should_not_have_are_refused(tmp_path: Path, policy: Policy,
                                                      mapping: FhirMapping) -> None:
    bundle = _bundle(policy, mapping)
    odd = copy.deepcopy(bundle)
    odd["entry"][1]["request"] = {"method": "POST", "url": "Consent"}
    odd["entry"][2]["resource"] = {"resourceType": "Patient", "id": "p"}
    odd["entry"][3] = {"fullUrl": "urn:uuid:x"}
    with pytest.raises(RegistryError) as info:
        consents_from_fhir_path(_save(tmp_path, odd), mapping, policy)
    assert {(d.code, d.message.split(":")[0]) for d in info.value.diagnostics} == {
        ("bundle-request", "Bundle.entry[1].request"),
        ("not-consent", "Bundle.entry[2].resource.resourceType"),
        ("missing", "Bundle.entry[3]")}
    batch = _transaction(bundle)
    batch["type"] = "batch"
    del batch["entry"][0]["request"]
    batch["entry"][1]["request"]["method"] = "PATCH"
    with pytest.raises(RegistryError) as info:
        consents_from_fhir_path(_save(tmp_path, batch), mapping, policy)
    assert {(d.code, d.message.split(":")[0]) for d in info.value.diagnostics} == {
        ("bundle-request", "Bundle.entry[0].request"),
        ("bundle-method", "Bundle.entry[1].request.method")}


def test_errors_inside_an_entry_name_the_entry_and_its_line(tmp_path: Path, policy: Policy,
                                                            mapping: FhirMapping) -> None:
    bundle = _bundle(policy, mapping)
    bundle["entry"][1]["resource"]["status"] = "draft"
    path = _save(tmp_path, bundle)
    with pytest.raises(RegistryError) as info:
        consents_from_fhir_path(path, mapping, policy)
    (diag,) = info.value.diagnostics
    assert diag.message.startswith("Bundle.entry[1].resource.status: `draft`")
    assert diag.line == _line_of(path, '"draft"')


def test_repeated_entries_are_imported_once_with_a_note(tmp_path: Path, policy: Policy,
                                                        mapping: FhirMapping) -> None:
    bundle = _bundle(policy, mapping)
    once = consents_from_fhir_path(_save(tmp_path, bundle), mapping, policy).consents
    bundle["entry"].append(copy.deepcopy(bundle["entry"][1]))
    result = consents_from_fhir_path(_save(tmp_path, bundle), mapping, policy)
    assert result.consents == once
    notes = [d for d in result.unmapped if d.code == "duplicate-entry"]
    assert len(notes) == 1 and notes[0].severity == "warning"
    assert notes[0].message.startswith("Bundle.entry[4].resource: the same resource as "
                                       "Bundle.entry[1].resource (line ")
    # one resource in a file of its own and in a Bundle of the folder: imported once
    folder = tmp_path / "folder"
    folder.mkdir()
    _save(folder, bundle, "a.json")
    _save(folder, bundle["entry"][0]["resource"], "b.json")
    assert consents_from_fhir_path(folder, mapping, policy).consents == once
    # the same consent id with other content is refused
    changed = copy.deepcopy(bundle)
    changed["entry"][4]["resource"]["provision"][0]["purpose"] = [
        {"system": "http://example.org/fhir/purpose", "code": "employer-contact"}]
    with pytest.raises(RegistryError) as info:
        consents_from_fhir_path(_save(tmp_path, changed), mapping, policy)
    assert _codes(info.value) == {"duplicate-id"}
    assert "Keep one of the two resources" in str(info.value)


def test_cli_refuses_a_delete_and_a_searchset_and_stores_nothing(
        store_url: str, tmp_path: Path, policy: Policy, mapping: FhirMapping) -> None:
    def run(*args: str) -> Any:
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)

    seeded = run("registry", "import", str(AALBORG / "consents.yaml"), "-r", store_url,
                 "-p", str(AALBORG), "--by", "anne")
    assert seeded.exit_code == 0, seeded.output
    before = run("registry", "export", "-r", store_url, "--history").output
    bundle = _transaction(_bundle(policy, mapping))
    bundle["entry"][0]["request"]["method"] = "DELETE"
    search = copy.deepcopy(bundle)
    search["type"] = "searchset"
    for data, what in ((bundle, "Bundle.entry[0].request.method: `DELETE`"),
                       (search, "Bundle.type: a `searchset` Bundle is not imported")):
        refused = run("registry", "import", str(_save(tmp_path, data)), "-r", store_url,
                      "-p", str(AALBORG), "--fhir-map", str(MAP))
        assert refused.exit_code == 2 and what in refused.output
        assert "Traceback" not in refused.output
    assert run("registry", "export", "-r", store_url, "--history").output == before
    bundle["entry"][0]["request"]["method"] = "PUT"
    bundle["entry"].append(copy.deepcopy(bundle["entry"][0]))
    imported = run("registry", "import", str(_save(tmp_path, bundle)), "-r", store_url,
                   "-p", str(AALBORG), "--fhir-map", str(MAP))
    assert imported.exit_code == 0, imported.output
    assert "the same resource as Bundle.entry[0].resource" in imported.output
    assert "0 consents (4 already stored unchanged)" in imported.output


# --------------------------------------------------------------------------- the map

def test_map_errors_about_export_give_the_entry_line(write: Write) -> None:
    text = ('purposes:\n'
            '  "http://a|1": follow-up\n'
            '\n'
            '  "http://a|2": follow-up\n'
            'export:\n'
            '  - "http://a|1"\n'
            '  - "http://nowhere|3"\n'
            '  - "http://a|2"\n')
    with pytest.raises(RegistryError) as info:
        load_fhir_mapping(write("map.yaml", text))
    assert {(d.line, d.message.split(" entr")[0]) for d in info.value.diagnostics} == {
        (7, "FHIR map: `export`"), (8, "FHIR map: `export`")}
    assert all(d.file and d.file.endswith("map.yaml") for d in info.value.diagnostics)
    ambiguous = load_fhir_mapping(write("map.yaml", text.split("export")[0]))
    registry = flowguard.load_registry(AALBORG / "consents.yaml",
                                       flowguard.load_policy(AALBORG / "policy.yaml"))
    consent = next(k for k in registry.all_consents() if "follow-up" in k.purposes)
    with pytest.raises(RegistryError) as caught:
        consent_to_fhir(consent, ambiguous)
    (diag,) = caught.value.diagnostics
    assert diag.code == "ambiguous-export" and diag.file and diag.file.endswith("map.yaml")
    assert diag.line == 2 and "(they are on lines 2, 4)" in diag.message
    bad = write("map.yaml", 'data:\n  "http://c|x": health\n  "no key": work\n')
    with pytest.raises(RegistryError) as info:
        load_fhir_mapping(bad)
    assert [d.line for d in info.value.diagnostics] == [3]


# --------------------------------------------------------------------------- property

WHO = {"Practitioner/13": Selector(actor=("job-consultant",)),
       "Practitioner/f001": Selector(actor=("case-worker",)),
       "Organization/jobcenter": Selector(organization=("aalborg-kommune",))}
MEMBERS = {"Practitioner/13": {"job-consultant"}, "Practitioner/f001": {"case-worker"},
           "Organization/jobcenter": {"job-consultant", "case-worker"}}
ACTORS = ("job-consultant", "case-worker", "care-staff")
NODES = ("health", "work", "health.diagnosis", "health.mental", "work.capacity")
LEAVES = ("health.diagnosis", "health.mental", "health.medication", "work.capacity",
          "work.cv")
DAYS = 8
PERIODS = st.one_of(st.none(), st.tuples(st.integers(0, DAYS), st.integers(0, DAYS)))
ACTIONS = st.sampled_from([None, None, None, ("disclose",), ("access",),
                           ("access", "disclose"), ("use",)])
LEAF_NODE = st.fixed_dictionaries({
    "codes": st.lists(st.sampled_from(NODES), min_size=1, max_size=2, unique=True),
    "whom": st.lists(st.sampled_from(sorted(WHO)), max_size=2, unique=True),
    "period": PERIODS, "action": ACTIONS, "children": st.just([])})
TREES = st.recursive(LEAF_NODE, lambda inner: st.fixed_dictionaries({
    "codes": st.lists(st.sampled_from(NODES), min_size=1, max_size=2, unique=True),
    "whom": st.lists(st.sampled_from(sorted(WHO)), max_size=1, unique=True),
    "period": PERIODS, "action": ACTIONS,
    "children": st.lists(inner, max_size=3)}), max_leaves=7)


def _tree(node: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"code": [_code(c.replace(".", "-")) for c in node["codes"]]}
    if node["whom"]:
        out["actor"] = [_actor(r) for r in node["whom"]]
    if node["period"] is not None:
        start, end = node["period"]
        out["period"] = {"start": _iso(_day(start)), "end": _iso(_day(end))}
    if node["action"] is not None:
        out["action"] = _action(*node["action"])
    if node["children"]:
        out["provision"] = [_tree(c) for c in node["children"]]
    return out


def _applies(node: dict[str, Any], actor: str, leaf: str, day: int) -> bool:
    """Whether a provision is about disclosing `leaf` to `actor` on `day` (at noon)."""
    period = node["period"]
    return (any(leaf == c or leaf.startswith(c + ".") for c in node["codes"])
            and (not node["whom"] or any(actor in MEMBERS[r] for r in node["whom"]))
            and (period is None or period[0] <= day < period[1])
            and (node["action"] is None or "disclose" in node["action"]))


def _hl7(permit: bool, provisions: list[dict[str, Any]], actor: str, leaf: str,
         day: int) -> bool:
    """R5: a provision that applies turns its parent's decision around; where several
    siblings apply, each must permit."""
    matching = [p for p in provisions if _applies(p, actor, leaf, day)]
    if not matching:
        return permit
    return all(_hl7(not permit, p["children"], actor, leaf, day) for p in matching)


@settings(deadline=None, max_examples=250, suppress_health_check=[HealthCheck.too_slow])
@given(decision=st.sampled_from(["permit", "deny"]), grantee=st.sampled_from(sorted(WHO)),
       period=PERIODS, provisions=st.lists(TREES, min_size=1, max_size=3))
def test_an_import_never_permits_a_disclosure_the_resource_does_not(
        decision: str, grantee: str, period: tuple[int, int] | None,
        provisions: list[dict[str, Any]]) -> None:
    """Random R5 resources with actions, periods, sibling and nested exceptions: every
    (recipient, data, day) the imported consents permit, the resource permits too."""
    policy = _POLICY
    mapping = FhirMapping(
        recipients=WHO, data={f"http://example.org/fhir/data|{c.replace('.', '-')}": c
                              for c in NODES},
        default_data=("health", "work"), default_purposes=("job-matching",),
        default_grantor="subject", subjects={"Patient/1": "s-1"})
    resource = {"resourceType": "Consent", "id": "t", "status": "active",
                "subject": {"reference": "Patient/1"}, "date": _iso(T0),
                "decision": decision, "grantee": [{"reference": grantee}],
                "provision": [_tree(p) for p in provisions]}
    if period is not None:
        resource["period"] = {"start": _iso(_day(period[0])), "end": _iso(_day(period[1]))}
    try:
        consents = consent_from_fhir(resource, mapping, policy).consents
    except RegistryError:
        return                                  # refused: never wider
    for actor in ACTORS:
        for leaf in LEAVES:
            for day in range(-1, DAYS + 1):
                if not _covers(consents, leaf, _day(day + 0.5), actor):
                    continue
                assert actor in MEMBERS[grantee], (actor, consents)
                assert period is None or period[0] <= day < period[1]
                assert _hl7(decision == "permit", provisions, actor, leaf, day), (
                    actor, leaf, day, decision, grantee, provisions)
