"""Consent forms with a version (issue 17, item 5): one form per consent of the design's plan,
a stable id and the SHA-256 of its exact text; a consent granted on a form (CLI or HTTP)
records both as evidence, and the citizen is shown the very text they agreed to."""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from flowguard import load_policy
from flowguard._cli import cli
from flowguard.forms import EVIDENCE_METHOD, consent_forms
from flowguard.store import open_store

from .citizen_fixtures import LOGINS, Browser, Citizen, start_citizen
from .conftest import EXAMPLES

AALBORG = EXAMPLES / "aalborg-aktiv"
CAFE = "cafe-solsikke/job-matching.employer-contact"


def test_each_form_has_a_stable_id_and_the_digest_of_its_exact_text(tmp_path: Path) -> None:
    forms = consent_forms(load_policy(AALBORG), AALBORG / "design.yaml")
    assert CAFE in forms and len(forms) == 7
    form = forms[CAFE]
    assert form.digest == "sha256:" + hashlib.sha256(form.text.encode()).hexdigest()
    assert form.record["recipients"] == [{"organization": "cafe-solsikke"}]
    # the same design gives the same forms; a changed wording a new version, same id
    again = consent_forms(load_policy(AALBORG), AALBORG / "design.yaml")
    assert again[CAFE].digest == form.digest
    changed = tmp_path / "policy"
    shutil.copytree(AALBORG, changed)
    text = (changed / "policy.yaml").read_text(encoding="utf-8")
    (changed / "policy.yaml").write_text(text.replace('"Café Solsikken ApS"',
                                                      '"Café Solsikken A/S"'),
                                         encoding="utf-8")
    new = consent_forms(load_policy(changed), changed / "design.yaml")[CAFE]
    assert new.id == form.id and new.digest != form.digest
    assert not new.agreed(form.evidence) and form.agreed(form.evidence)


def test_cli_forms_pages_and_grant_on_a_form(tmp_path: Path) -> None:
    registry = f"sqlite:///{tmp_path / 'r.db'}"
    runner = CliRunner()
    assert runner.invoke(cli, ["registry", "init", registry]).exit_code == 0
    listed = runner.invoke(cli, ["consent", "forms", "--design", str(AALBORG / "design.yaml"),
                                 "-p", str(AALBORG), "--out", str(tmp_path / "forms")])
    assert listed.exit_code == 0, listed.output
    form = consent_forms(load_policy(AALBORG), AALBORG / "design.yaml")[CAFE]
    assert f"{CAFE}  {form.digest}" in listed.output
    page = (tmp_path / "forms" / "cafe-solsikke--job-matching.employer-contact.html").read_text()
    assert form.digest in page and "<script" not in page
    assert "default-src 'none'" in page
    added = runner.invoke(cli, ["subject", "add", "citizen-1", "-r", registry,
                                "-p", str(AALBORG)])
    assert added.exit_code == 0, added.output
    granted = runner.invoke(cli, [
        "consent", "grant", "--form", CAFE, "--design", str(AALBORG / "design.yaml"),
        "-p", str(AALBORG), "--id", "k-1", "--subject", "citizen-1", "-r", registry])
    assert granted.exit_code == 0, granted.output
    with open_store(registry) as store:
        found = store.consent("k-1")
    assert found is not None
    consent = found[0]
    assert consent.evidence is not None and consent.evidence.method == EVIDENCE_METHOD
    assert (consent.evidence.reference, consent.evidence.note) == (CAFE, form.digest)
    assert list(consent.data) == form.record["data"]
    wrong = runner.invoke(cli, ["consent", "grant", "--form", "nope", "--design",
                                str(AALBORG / "design.yaml"), "-p", str(AALBORG), "--id", "k-2",
                                "--subject", "citizen-1", "-r", registry])
    assert wrong.exit_code == 2 and "no consent form `nope`" in wrong.output
    assert CAFE in wrong.output and "Traceback" not in wrong.output


def test_form_page_text_is_never_markup(tmp_path: Path) -> None:
    changed = tmp_path / "policy"
    shutil.copytree(AALBORG, changed)
    data = yaml.safe_load((changed / "policy.yaml").read_text(encoding="utf-8"))
    data["organizations"]["cafe-solsikke"]["name"] = "<img src=x onerror=alert(1)>"
    (changed / "policy.yaml").write_text(yaml.safe_dump(data, allow_unicode=True),
                                         encoding="utf-8")
    result = CliRunner().invoke(cli, ["consent", "forms", "--design",
                                      str(changed / "design.yaml"), "-p", str(changed),
                                      "--out", str(tmp_path / "forms")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "forms" / "cafe-solsikke--job-matching.employer-contact.html").read_text()
    assert "<img" not in page and "&lt;img src=x" in page


@pytest.fixture
def citizen(tmp_path: Path) -> Iterator[Citizen]:
    c = start_citizen(tmp_path, design=str(tmp_path / "policy" / "design.yaml"))
    yield c
    c.stop()


def test_http_grant_on_a_form_and_the_citizen_sees_the_exact_text(citizen: Citizen) -> None:
    served, token = citizen.served, citizen.setup.token["kommune"]
    body = {"form": CAFE, "id": "k-0609-form", "subject": "citizen-0609",
            "given_at": "2026-03-01T10:00:00Z"}
    assert served.post("/v1/consents/form", body, "fgt_" + "x" * 43).status_code == 401
    made = served.post("/v1/consents/form", body, token)
    assert made.status_code == 201, made.text
    form = consent_forms(load_policy(citizen.setup.policy),
                         citizen.setup.policy / "design.yaml")[CAFE]
    assert made.json()["digest"] == form.digest
    unknown = served.post("/v1/consents/form", {**body, "id": "k-x", "form": "nope"}, token)
    assert unknown.status_code == 422 and "no consent form" in unknown.text
    browser = Browser(citizen)
    other = Browser(citizen)
    try:
        listed = browser.sign_in(LOGINS["citizen-0609"])
        assert "/me/form/k-0609-form" in listed.text
        shown = browser.get("/me/form/k-0609-form")
        assert shown.status_code == 200
        body_text = re.sub(r"\s+", " ", shown.text)
        for paragraph in form.paragraphs[1:]:
            escaped = (paragraph.replace("&", "&amp;").replace("<", "&lt;")
                       .replace(">", "&gt;").replace('"', "&#34;").replace("'", "&#39;"))
            assert re.sub(r"\s+", " ", escaped) in body_text
        # consents not signed on a form have no such page; nor has another person's
        assert browser.get("/me/form/k-0042-cafe").status_code == 404
        other.sign_in(LOGINS["citizen-0042"])
        assert other.get("/me/form/k-0609-form").status_code == 404
    finally:
        browser.close()
        other.close()
