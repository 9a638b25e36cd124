"""The design's HTML page in real headless Chromium (issue 5): it renders without console
errors or failed requests, the SVG has one arrow per flow with the class of its outcome, and a
screenshot is written to the test's output folder.

Needs Debian's `chromium` (/usr/bin/chromium) and the `playwright` package; without them the
test skips, except under CI=true, where it fails."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from flowguard import load_policy
from flowguard.analysis import ropa
from flowguard.design import analyse_design, load_design
from flowguard.reports import design_html, ropa_html

from .conftest import EXAMPLES

CHROMIUM = Path("/usr/bin/chromium")


def _browser_or_skip() -> Any:
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "the playwright package is not installed (pip install playwright)"
        sync_playwright = None
    if problem is None and not CHROMIUM.exists():
        problem = f"{CHROMIUM} is missing (apt-get install chromium)"
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {problem}")
        pytest.skip(problem)
    return sync_playwright


@pytest.fixture(scope="module")
def browser() -> Any:
    sync_playwright = _browser_or_skip()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def _open(browser: Any, page_file: Path) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.on("request", lambda r: problems.append(f"request: {r.url}")
            if not r.url.startswith("file://") else None)
    page.goto(page_file.as_uri(), wait_until="load")
    return page, problems


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*/design.yaml")),
                         ids=lambda p: p.parent.name)
def test_design_page_renders_in_chromium(browser: Any, example: Path, tmp_path: Path) -> None:
    policy = load_policy(example.parent)
    report = analyse_design(policy, load_design(example, policy))
    page_file = tmp_path / f"{example.parent.name}-design.html"
    page_file.write_text(design_html(report), encoding="utf-8")
    page, problems = _open(browser, page_file)
    try:
        arrows = page.locator("svg.swimlane g.flow")
        assert arrows.count() == len(report.flows)
        for r in report.flows:
            arrow = page.locator(f'svg.swimlane g.flow[data-flow="{r.flow.id}"]')
            assert arrow.count() == 1
            classes = (arrow.get_attribute("class") or "").split()
            assert f"outcome-{r.outcome}" in classes, (r.flow.id, classes)
            box = arrow.bounding_box()
            assert box is not None and box["height"] > 0  # drawn, not just present
        # every arrow lies inside the diagram, and the legend is visible
        svg_box = page.locator("svg.swimlane").bounding_box()
        assert svg_box is not None and svg_box["width"] > 500
        assert page.locator("ul.legend li").count() >= 7
        assert page.locator("#consent-plan section.consent-form").count() == len(report.plan)
        shot = tmp_path / f"{example.parent.name}-design.png"
        page.screenshot(path=str(shot), full_page=True)
        diagram = tmp_path / f"{example.parent.name}-diagram.png"
        page.locator("#diagram").screenshot(path=str(diagram))
        assert shot.stat().st_size > 10_000 and diagram.stat().st_size > 5_000
        print(f"screenshots: {shot} {diagram}")
    finally:
        page.close()
    assert problems == []


def test_ropa_page_renders_in_chromium(browser: Any, tmp_path: Path) -> None:
    page_file = tmp_path / "ropa.html"
    page_file.write_text(ropa_html(ropa(load_policy(EXAMPLES / "aalborg-aktiv"))),
                         encoding="utf-8")
    page, problems = _open(browser, page_file)
    try:
        assert page.locator("section#activities article").count() >= 5
        page.screenshot(path=str(tmp_path / "ropa.png"), full_page=True)
    finally:
        page.close()
    assert problems == []
