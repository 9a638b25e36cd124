"""Reports of a design (issue 5): SARIF 2.1.0 pointing at the design's lines, a self-contained
HTML page with one arrow per flow, JSON and Markdown; and every report byte-identical for
the same input, also across processes with different hash seeds."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from flowguard import load_policy
from flowguard.design import OUTCOMES, DesignReport, analyse_design, load_design
from flowguard.policy import load_policy_with_sources
from flowguard.reports import (
    design_document,
    design_html,
    design_json,
    design_markdown,
    design_sarif_document,
    swimlane_svg,
)
from flowguard.reports._common import DASH, LABEL, SYMBOL

from .conftest import EXAMPLES

ROOT = Path(__file__).resolve().parent.parent
AALBORG = EXAMPLES / "aalborg-aktiv"
YOUTH = EXAMPLES / "youth-services"
SHIPPED = [AALBORG, YOUTH]


def report_of(example: Path) -> DesignReport:
    policy = load_policy(example)
    return analyse_design(policy, load_design(example / "design.yaml", policy))


# --------------------------------------------------------------------------- SARIF

# The parts of the SARIF 2.1.0 schema (OASIS, sarif-schema-2.1.0.json) that flowguard
# writes, with their required properties, types and enumerations.
_MESSAGE = {"type": "object", "required": ["text"],
            "properties": {"text": {"type": "string", "minLength": 1}}}
_REGION = {"type": "object", "required": ["startLine"], "additionalProperties": False,
           "properties": {"startLine": {"type": "integer", "minimum": 1},
                          "startColumn": {"type": "integer", "minimum": 1}}}
_LOCATION = {"type": "object", "required": ["physicalLocation"], "properties": {
    "id": {"type": "integer", "minimum": -1},
    "message": _MESSAGE,
    "physicalLocation": {"type": "object", "required": ["artifactLocation"], "properties": {
        "artifactLocation": {"type": "object", "required": ["uri"],
                             "properties": {"uri": {"type": "string", "format": "uri-reference"}}},
        "region": _REGION}}}}
_DESCRIPTOR = {"type": "object", "required": ["id"], "properties": {
    "id": {"type": "string"}, "name": {"type": "string"},
    "shortDescription": _MESSAGE, "fullDescription": _MESSAGE,
    "defaultConfiguration": {"type": "object", "properties": {
        "level": {"enum": ["none", "note", "warning", "error"]}}}}}
SARIF_SUBSET = {
    "type": "object", "required": ["version", "runs"],
    "properties": {
        "$schema": {"type": "string"},
        "version": {"const": "2.1.0"},
        "runs": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["tool"], "properties": {
                "tool": {"type": "object", "required": ["driver"], "properties": {
                    "driver": {"type": "object", "required": ["name"], "properties": {
                        "name": {"type": "string"}, "version": {"type": "string"},
                        "informationUri": {"type": "string"},
                        "rules": {"type": "array", "items": _DESCRIPTOR}}}}},
                "artifacts": {"type": "array", "items": {"type": "object", "properties": {
                    "location": {"type": "object", "required": ["uri"]}}}},
                "columnKind": {"enum": ["utf16CodeUnits", "unicodeCodePoints"]},
                "results": {"type": "array", "items": {
                    "type": "object", "required": ["message"], "properties": {
                        "ruleId": {"type": "string"},
                        "ruleIndex": {"type": "integer", "minimum": -1},
                        "level": {"enum": ["none", "note", "warning", "error"]},
                        "message": _MESSAGE,
                        "locations": {"type": "array", "items": _LOCATION},
                        "relatedLocations": {"type": "array", "items": _LOCATION},
                        "partialFingerprints": {"type": "object",
                                                "additionalProperties": {"type": "string"}},
                    }}}}}}}}


@pytest.mark.parametrize("example", SHIPPED, ids=lambda p: p.name)
def test_sarif_is_valid_and_points_at_the_design_lines(example: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    loaded = load_policy_with_sources(example.relative_to(ROOT))
    assert loaded.policy is not None
    design_path = (example / "design.yaml").relative_to(ROOT)
    report = analyse_design(loaded.policy, load_design(design_path, loaded.policy))
    rules = {k: v for (section, k), v in loaded.locations.items() if section == "rules"}
    sarif = design_sarif_document(report, rules)
    jsonschema.validate(sarif, SARIF_SUBSET,
                        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    run = sarif["runs"][0]
    descriptors = run["tool"]["driver"]["rules"]
    lines = (example / "design.yaml").read_text(encoding="utf-8").splitlines()
    by_rule: dict[str, int] = {}
    for result in run["results"]:
        assert descriptors[result["ruleIndex"]]["id"] == result["ruleId"]
        location = result["locations"][0]["physicalLocation"]
        assert location["artifactLocation"]["uri"] == design_path.as_posix()
        line = lines[location["region"]["startLine"] - 1]
        by_rule[result["ruleId"]] = by_rule.get(result["ruleId"], 0) + 1
        flow_id = re.match(r"flow `([^`]+)`", result["message"]["text"])
        if result["ruleId"].startswith("flow/") and flow_id:
            flow = report.flow_result(flow_id.group(1))
            assert flow.position[0] is not None
            assert flow.position[0] <= location["region"]["startLine"] <= flow.position[0] + 7
        if result["ruleId"] in ("flow/forbidden", "flow/no-rule", "flow/needs-consent"):
            assert "data:" in line or line.strip().startswith("- "), line  # the data item
        for related in result.get("relatedLocations", ()):
            policy_line = (ROOT / related["physicalLocation"]["artifactLocation"]["uri"]
                           ).read_text(encoding="utf-8").splitlines()[
                related["physicalLocation"]["region"]["startLine"] - 1]
            assert "id:" in policy_line  # the forbid rule itself
    assert by_rule["flow/forbidden"] >= 2 and by_rule["flow/no-rule"] == 1
    assert by_rule["flow/invalid"] == 1
    levels = {r["ruleId"]: r["level"] for r in run["results"]}
    assert levels["flow/forbidden"] == "error" and levels["flow/needs-consent"] == "note"
    assert any(k.startswith("design/") and v == "warning" for k, v in levels.items())


def test_sarif_invalid_result_lands_on_the_typo() -> None:
    report = report_of(AALBORG)
    sarif = design_sarif_document(report)
    invalid = [r for r in sarif["runs"][0]["results"] if r["ruleId"] == "flow/invalid"]
    assert len(invalid) == 1
    line = invalid[0]["locations"][0]["physicalLocation"]["region"]["startLine"]
    text = (AALBORG / "design.yaml").read_text(encoding="utf-8").splitlines()[line - 1]
    assert "purpose: follow-upp" in text
    assert "did you mean `follow-up`?" in invalid[0]["message"]["text"]


# --------------------------------------------------------------------------- HTML


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


@pytest.mark.parametrize("example", SHIPPED, ids=lambda p: p.name)
def test_html_is_one_self_contained_page(example: Path) -> None:
    report = report_of(example)
    page = design_html(report)
    parser = _Page()
    parser.feed(page)
    tags = [t for t, _ in parser.tags]
    assert "script" not in tags and "link" not in tags and "img" not in tags
    assert "iframe" not in tags and "object" not in tags
    for _, attrs in parser.tags:
        for name in ("src", "href", "xlink:href", "action"):
            value = attrs.get(name)
            assert value is None or value.startswith("#"), (name, value)
    assert "@import" not in page
    assert all(u.startswith("url(#") for u in re.findall(r"url\([^)]*\)", page))
    assert "http-equiv=\"Content-Security-Policy\"" in page and "default-src 'none'" in page
    assert page.count("<svg") >= 1 and page.count("<html") == 1


@pytest.mark.parametrize("example", SHIPPED, ids=lambda p: p.name)
def test_html_has_one_arrow_per_flow_with_its_outcome(example: Path) -> None:
    report = report_of(example)
    parser = _Page()
    parser.feed(design_html(report))
    arrows = {a["data-flow"]: a for t, a in parser.tags
              if t == "g" and "flow" in (a.get("class") or "").split()}
    assert len(arrows) == len(report.flows)
    for r in report.flows:
        classes = (arrows[r.flow.id]["class"] or "").split()
        assert f"outcome-{r.outcome}" in classes
        assert [c for c in classes if c.startswith("outcome-")] == [f"outcome-{r.outcome}"]
    rows = {a["id"]: a for t, a in parser.tags if t == "tr" and a.get("id")}
    assert all(rows[f"flow-{r.flow.id}"]["data-outcome"] == r.outcome for r in report.flows)
    # sub-processes are columns in `order`, co-produced ones marked
    columns = [a for t, a in parser.tags if t == "g" and "column" in (a.get("class") or "")]
    assert [c["data-subprocess"] for c in columns] == list(report.policy.subprocesses)
    for c in columns:
        co_produced = report.policy.subprocesses[c["data-subprocess"] or ""].co_produced
        assert ("co-produced" in (c["class"] or "").split()) == co_produced


def test_the_legend_does_not_rely_on_colour_alone() -> None:
    page = design_html(report_of(AALBORG))
    legend = page[page.index('<ul class="legend"'):page.index("</ul>", page.index(
        '<ul class="legend"'))]
    for outcome in OUTCOMES:
        assert f"{SYMBOL[outcome]} {LABEL[outcome]}" in legend  # a symbol and a word each
    assert len(set(DASH.values())) == len(DASH)  # and a line pattern each
    assert len(set(SYMBOL.values())) == len(SYMBOL)
    assert "hatched column" in legend


def test_swimlane_lanes_and_citizen() -> None:
    report = report_of(AALBORG)
    svg = swimlane_svg(report)
    assert 'data-lane="citizen"' in svg
    actors = {r.flow.sender for r in report.flows} | {r.flow.recipient for r in report.flows}
    for actor in actors - {"citizen"}:
        assert f'data-lane="{actor}"' in svg
    assert svg.count('class="band"') == 1 + len(
        {report.policy.actors[a].organization for a in actors if a in report.policy.actors})


# --------------------------------------------------------------------------- JSON, Markdown


def test_json_document() -> None:
    report = report_of(YOUTH)
    document = design_document(report)
    assert json.loads(design_json(report)) == document
    assert document["summary"]["flows"] == len(report.flows)
    assert sum(document["summary"][o] for o in OUTCOMES) == len(report.flows)
    assert [f["id"] for f in document["flows"]] == [r.flow.id for r in report.flows]
    plan = document["consent_plan"]
    assert plan and all(item["record"]["recipients"] == [{"organization": item["organization"]}]
                        for item in plan)
    assert {x["check"] for x in document["findings"]} <= set(document["checks"])


def test_markdown_design() -> None:
    text = design_markdown(report_of(AALBORG))
    assert text.startswith("# Flow design: Aalborg Aktiv")
    for heading in ("## Flows", "## Design checks", "## Consent plan"):
        assert heading in text
    assert "| `f8` |" in text
    assert "For staff, the registry record:" in text


# --------------------------------------------------------------------------- determinism


COMMANDS: list[list[str]] = [
    ["design", "policies/aalborg-aktiv", "--json", "-o", "{out}/design.json",
     "--html", "{out}/design.html"],
    ["design", "policies/youth-services", "--sarif", "-o", "{out}/design.sarif"],
    ["design", "policies/aalborg-aktiv", "--markdown", "-o", "{out}/design.md"],
    ["ropa", "policies/aalborg-aktiv", "-o", "{out}/ropa.md", "--html", "{out}/ropa.html"],
    ["ropa", "policies/youth-services", "--json", "-o", "{out}/ropa.json"],
    ["diff", "policies/aalborg-aktiv", "policies/youth-services", "--json", "-o",
     "{out}/diff.json"],
    ["diff", "policies/youth-services", "policies/aalborg-aktiv", "--markdown", "-o",
     "{out}/diff.md"],
]


def _run_all(out: Path, seed: str) -> dict[str, bytes]:
    env = {**os.environ, "PYTHONHASHSEED": seed, "COLUMNS": "100"}
    for command in COMMANDS:
        args = [a.format(out=out) for a in command]
        done = subprocess.run([sys.executable, "-m", "flowguard", *args], cwd=ROOT, env=env,
                              capture_output=True, check=False, timeout=300)
        assert done.returncode in (0, 1), done.stderr.decode()
    for query in (["who-can-receive", "health", "-p", "policies/aalborg-aktiv", "--json"],
                  ["what-can-receive", "work-coach", "-p", "policies/youth-services"]):
        done = subprocess.run([sys.executable, "-m", "flowguard", *query], cwd=ROOT, env=env,
                              capture_output=True, check=True, timeout=300)
        (out / f"{query[0]}.out").write_bytes(done.stdout)
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_every_report_is_byte_identical_across_runs(tmp_path: Path) -> None:
    first = _run_all(tmp_path / "a", "0")
    second = _run_all(tmp_path / "b", "12345")
    assert sorted(first) == sorted(second)
    assert len(first) == 11
    for name in first:
        assert first[name] == second[name], name


@pytest.fixture(autouse=True)
def _folders(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()


def test_renderers_are_pure() -> None:
    report = report_of(AALBORG)
    again = report_of(AALBORG)
    for render in (design_json, design_html, design_markdown):
        assert render(report) == render(again)
    sarif: dict[str, Any] = design_sarif_document(report)
    assert sarif == design_sarif_document(again)
