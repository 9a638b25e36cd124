"""Accessibility and layout of the HTML pages a citizen or a committee reads (issue 16), in
real headless Chromium with axe-core: the consent forms in every language at 1,024 and 1,440
px (no horizontal scrolling, every form a `section.consent-form` with a unique name), and the
design pages; axe finds no serious or critical violation.

Needs /usr/bin/chromium, playwright and axe-playwright-python; skips without them, except
under CI=true, where it fails."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from flowguard import load_policy
from flowguard.design import analyse_design, load_design
from flowguard.i18n import LANGUAGES
from flowguard.reports import consent_forms_html, design_html

from .conftest import EXAMPLES
from .test_html_chromium import browser  # noqa: F401  (the fixture)

HOME_CARE = EXAMPLES / "senior-home-care"


def _axe() -> Any:
    try:
        from axe_playwright_python.sync_playwright import Axe
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true and axe-playwright-python is not installed")
        pytest.skip("axe-playwright-python is not installed")
    return Axe()


def _report(example: Path):  # type: ignore[no-untyped-def]
    policy = load_policy(example)
    return analyse_design(policy, load_design(example / "design.yaml", policy))


def _serious(axe: Any, page: Any) -> list[tuple[str, str, list[str]]]:
    found = axe.run(page).response["violations"]
    return [(v["id"], v["impact"], [n["html"][:120] for n in v["nodes"]]) for v in found
            if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("width", (1024, 1440))
@pytest.mark.parametrize("lang", LANGUAGES)
def test_consent_forms_fit_the_width_and_pass_axe(browser: Any,  # noqa: F811
                                                  tmp_path: Path, lang: str,
                                                  width: int) -> None:
    axe = _axe()
    report = _report(HOME_CARE)
    page_file = tmp_path / f"forms-{lang}.html"
    page_file.write_text(consent_forms_html(report, lang), encoding="utf-8")
    page = browser.new_page(viewport={"width": width, "height": 900})
    try:
        page.goto(page_file.as_uri(), wait_until="load")
        assert page.evaluate("document.documentElement.lang") == lang
        assert page.locator("section.consent-form").count() == len(report.plan)
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        assert _serious(axe, page) == []
    finally:
        page.close()


@pytest.mark.parametrize("example", sorted(p.parent for p in EXAMPLES.glob("*/design.yaml")),
                         ids=lambda p: p.name)
def test_design_pages_pass_axe(browser: Any, tmp_path: Path,  # noqa: F811
                               example: Path) -> None:
    axe = _axe()
    page_file = tmp_path / "design.html"
    page_file.write_text(design_html(_report(example)), encoding="utf-8")
    page = browser.new_page(viewport={"width": 1024, "height": 900})
    try:
        page.goto(page_file.as_uri(), wait_until="load")
        assert _serious(axe, page) == []
    finally:
        page.close()
