"""Consent forms for citizens (issue 16 item 3): in the policy's language or the one asked
for, without command lines or ids, the minors paragraph only where the service admits minors,
whom to tell to take a consent back, and no policy text read as markup."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowguard import load_policy
from flowguard._cli import cli
from flowguard.design import analyse_design, load_design
from flowguard.i18n import LANGUAGES
from flowguard.reports import consent_forms_html, design_html, design_markdown
from flowguard.reports.forms import consent_forms, form_paragraphs

from .conftest import EXAMPLES

HOME_CARE = EXAMPLES / "senior-home-care"
AALBORG = EXAMPLES / "aalborg-aktiv"


def _report(example: Path):  # type: ignore[no-untyped-def]
    policy = load_policy(example)
    return analyse_design(policy, load_design(example / "design.yaml", policy))


def _ids(report) -> set[str]:  # type: ignore[no-untyped-def]
    policy = report.policy
    ids = {i.id for i in report.plan} | {f.flow.id for f in report.flows}
    ids |= {r.id for r in policy.rules} | set(policy.actors) | set(policy.organizations)
    ids |= set(policy.category_tree.ids) | set(policy.purpose_tree.ids)
    return ids | set(policy.subprocesses)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_home_care_forms_hold_no_command_line_id_or_minors_paragraph(lang: str) -> None:
    report = _report(HOME_CARE)
    page = consent_forms_html(report, lang)
    assert f'<html lang="{lang}">' in page
    assert page.count('<section class="consent-form"') == 3
    text = re.sub(r"<[^>]+>", " ", page.split("<main>")[1])
    assert "flowguard" not in text and "$" not in text
    words = set(re.findall(r"[\w.-]+", text))
    ids = {i for i in _ids(report) if re.search(r"[-.0-9]", i)}  # not words such as `health`
    assert not words & ids, words & ids
    # seniors only (service.citizens.min_age 65): no paragraph for parents of minors
    for minors in ("under 18", "under 18 år", "alle 18", "custody", "forældremyndighed",
                   "huoltaja"):
        assert minors not in text


def test_aalborg_forms_keep_the_minors_paragraph() -> None:
    text = "\n".join(form_paragraphs(consent_forms(_report(AALBORG), "en")[0]))
    assert "If you are under 18, a parent or another person with custody" in text
    assert "if you are 18 or older" in text


def test_home_care_forms_are_danish_by_default_and_say_whom_to_tell() -> None:
    report = _report(HOME_CARE)
    forms = {f.title: f for f in consent_forms(report)}
    ngo = forms["Samtykke til at dele oplysninger med Besøgsvennerne i Nordby"]
    family = forms["Samtykke til at dele oplysninger med Pårørende"]
    # the voluntary organisation records consents (records_consents: true); the family does not
    assert "Sig det til Nordby Kommune, Sundhed og Omsorg eller Besøgsvennerne i Nordby." \
        in ngo.withdraw
    assert "Sig det til Nordby Kommune, Sundhed og Omsorg." in family.withdraw
    assert any("telefon 70 10 20 30" in line for line in family.withdraw)
    assert family.explicit is not None and ngo.explicit is None
    assert ngo.promises_heading == "Det skal Besøgsvennerne i Nordby gøre"


@pytest.mark.parametrize("lang", ("da", "fi"))
def test_no_english_product_string_is_left_in_a_translated_form(lang: str) -> None:
    english = "\n".join("\n".join(form_paragraphs(f))
                        for f in consent_forms(_report(HOME_CARE), "en"))
    translated = "\n".join("\n".join(form_paragraphs(f))
                           for f in consent_forms(_report(HOME_CARE), lang))
    for phrase in ("say yes", "Who can", "change your mind", "Signature", "Consent to share",
                   "How to reach"):
        assert phrase in english
        assert phrase not in translated


def test_policy_text_is_never_read_as_markup(tmp_path: Path) -> None:
    policy_text = (HOME_CARE / "policy.yaml").read_text(encoding="utf-8").replace(
        'name: "Pårørende"\n    description', 'name: "<script>alert(1)</script> & Co"\n'
        '    description', 1)
    for name in ("consents.yaml", "design.yaml", "tests.yaml"):
        (tmp_path / name).write_text((HOME_CARE / name).read_text(encoding="utf-8"),
                                     encoding="utf-8")
    (tmp_path / "policy.yaml").write_text(policy_text, encoding="utf-8")
    page = consent_forms_html(_report(tmp_path), "da")
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in page


def test_design_lang_writes_forms_in_the_language_asked_for(tmp_path: Path) -> None:
    forms = tmp_path / "forms.html"
    page = tmp_path / "design.html"
    result = CliRunner().invoke(cli, ["design", str(HOME_CARE), "--lang", "fi", "--forms",
                                       str(forms), "--html", str(page)])
    assert result.exit_code == 0, result.output
    assert "Kuka voi sanoa kyllä" in result.output
    assert '<html lang="fi">' in forms.read_text(encoding="utf-8")
    assert 'lang="fi"' in page.read_text(encoding="utf-8")
    bad = CliRunner().invoke(cli, ["design", str(HOME_CARE), "--lang", "sv"])
    assert bad.exit_code == 2 and "sv" in bad.output


def test_markdown_and_html_reports_carry_the_same_forms() -> None:
    report = _report(HOME_CARE)
    markdown = design_markdown(report, "da")
    html = design_html(report, "da")
    for form in consent_forms(report, "da"):
        assert f"### {form.title}" in markdown
        assert form.title in html
