"""The FHIR options of the CLI: `registry import --fhir-map`, `consent show --fhir` and
`registry export --fhir` (R5 by default, R4 with `--fhir-version 4.0.1`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from fhir.resources.bundle import Bundle as R5Bundle
from fhir.resources.consent import Consent as R5Consent
from fhir.resources.R4B.bundle import Bundle as R4Bundle
from fhir.resources.R4B.consent import Consent as R4Consent

from flowguard._cli import cli

ROOT = Path(__file__).resolve().parent.parent
AALBORG = ROOT / "policies" / "aalborg-aktiv"
FHIR = ROOT / "tests" / "data" / "fhir"
MAP = str(FHIR / "map.yaml")


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def url(store_url: str) -> str:
    result = run("registry", "import", str(AALBORG / "consents.yaml"), "-r", store_url,
                 "-p", str(AALBORG), "--by", "anne")
    assert result.exit_code == 0, result.output
    return store_url


def _consents(url: str) -> list[dict[str, Any]]:
    data = json.loads(run("registry", "export", "-r", url, "--format", "json").output)
    consents: list[dict[str, Any]] = data["consents"]
    return consents


def test_official_r5_not_org_is_refused_and_nothing_is_stored(url: str) -> None:
    before = run("registry", "export", "-r", url, "--history").output
    refused = run("registry", "import", str(FHIR / "r5" / "Consent-consent-example-notOrg.json"),
                  "-r", url, "-p", str(AALBORG), "--fhir-map", MAP)
    assert refused.exit_code == 2
    assert "'everyone except these' cannot be written exactly" in refused.output
    assert "Organization/f001" not in refused.output and "Traceback" not in refused.output
    assert run("registry", "export", "-r", url, "--history").output == before


def test_a_folder_of_official_r4_examples_is_refused_as_a_whole(url: str) -> None:
    before = run("registry", "export", "-r", url, "--history").output
    refused = run("registry", "import", str(FHIR / "r4"), "-r", url, "-p", str(AALBORG),
                  "--fhir-map", MAP)
    assert refused.exit_code == 2
    assert "opt-out `policyRule`" in refused.output and "Traceback" not in refused.output
    assert run("registry", "export", "-r", url, "--history").output == before


@pytest.mark.parametrize("version,model", [("5.0.0", R5Consent), ("4.0.1", R4Consent)])
def test_consent_show_fhir_writes_valid_fhir(url: str, version: str, model: Any) -> None:
    args = ["consent", "show", "k-0318-shelter-2026", "-r", url, "--fhir", "--fhir-map", MAP]
    if version != "5.0.0":
        args += ["--fhir-version", version]
    shown = run(*args)
    assert shown.exit_code == 0, shown.output
    resource = json.loads(shown.output)
    model.model_validate(resource)
    assert resource["status"] == "inactive" and "meta" not in resource
    assert ("subject" if version == "5.0.0" else "patient") in resource


@pytest.mark.parametrize("version,model", [("5.0.0", R5Bundle), ("4.0.1", R4Bundle)])
def test_registry_export_fhir_round_trips_through_import(url: str, version: str, model: Any,
                                                         tmp_path: Path) -> None:
    exported = run("registry", "export", "-r", url, "--fhir", "--fhir-map", MAP,
                   "--fhir-version", version)
    assert exported.exit_code == 0, exported.output
    bundle = json.loads(exported.output)
    model.model_validate(bundle)
    assert len(bundle["entry"]) == len(_consents(url)) == 15
    path = tmp_path / "bundle.json"
    path.write_text(exported.output, encoding="utf-8")
    before = run("registry", "export", "-r", url, "--history").output
    imported = run("registry", "import", str(path), "-r", url, "-p", str(AALBORG),
                   "--fhir-map", MAP)
    assert imported.exit_code == 0, imported.output
    # every consent read back is equal to the one stored, so nothing is written
    assert "0 consents (15 already stored unchanged)" in imported.output
    assert run("registry", "export", "-r", url, "--history").output == before


def test_ambiguous_map_refuses_to_export(url: str, tmp_path: Path) -> None:
    ambiguous = tmp_path / "map.yaml"
    ambiguous.write_text('purposes:\n  "http://a|1": follow-up\n  "http://a|2": follow-up\n',
                         encoding="utf-8")
    refused = run("consent", "show", "k-0042-centre", "-r", url, "--fhir", "--fhir-map",
                  str(ambiguous))
    assert refused.exit_code == 2
    assert "2 `purposes` keys for purpose `follow-up`" in refused.output
    bad = run("consent", "show", "k-0042-centre", "-r", url, "--fhir", "--fhir-version", "3")
    assert bad.exit_code == 2 and "Traceback" not in bad.output
