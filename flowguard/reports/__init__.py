"""Renderers of flowguard's reports: terminal (rich), JSON, SARIF 2.1.0, Markdown and
self-contained HTML with an SVG swimlane diagram. Every renderer is deterministic: the same
report gives byte-identical text."""

from flowguard.reports.html import consent_forms_html, design_html, ropa_html
from flowguard.reports.json_report import (
    design_document,
    design_json,
    diff_document,
    diff_json,
    reach_document,
    reach_json,
    ropa_document,
    ropa_json,
)
from flowguard.reports.markdown import design_markdown, diff_markdown, ropa_markdown
from flowguard.reports.sarif import design_sarif, design_sarif_document
from flowguard.reports.svg import swimlane_svg
from flowguard.reports.terminal import print_design, print_diff, print_reach

__all__ = [
    "consent_forms_html",
    "design_document",
    "design_html",
    "design_json",
    "design_markdown",
    "design_sarif",
    "design_sarif_document",
    "diff_document",
    "diff_json",
    "diff_markdown",
    "print_design",
    "print_diff",
    "print_reach",
    "reach_document",
    "reach_json",
    "ropa_document",
    "ropa_html",
    "ropa_json",
    "ropa_markdown",
    "swimlane_svg",
]
