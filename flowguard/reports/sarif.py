"""SARIF 2.1.0 of a design report: one result per finding, pointing at the line and column
of the design file it concerns, so that CI annotations land on the YAML."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

from flowguard.design import CHECKS, DesignReport, FlowResult, Position
from flowguard.policy import Location
from flowguard.reports._common import TOOL_NAME, TOOL_URI, dumps

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"

_FLOW_RULES: dict[str, tuple[str, str, str]] = {
    # outcome: (rule id, level, description)
    "forbidden": ("flow/forbidden", "error",
                  "A flow of the design is forbidden by a rule of the policy: no consent or "
                  "other basis can make it lawful."),
    "no-rule": ("flow/no-rule", "error",
                "No permit rule of the policy covers a flow of the design: the policy must "
                "gain a rule with a legal basis, or the flow must go."),
    "invalid": ("flow/invalid", "error",
                "A flow of the design names an actor, data category, purpose or sub-process "
                "the policy does not declare."),
    "needs-consent": ("flow/needs-consent", "note",
                      "A flow of the design is lawful only with the citizen's (or a "
                      "guardian's) consent: it is part of the consent plan."),
}


def _descriptors() -> list[dict[str, Any]]:
    rules = []
    for outcome, (rule_id, level, text) in _FLOW_RULES.items():
        rules.append({"id": rule_id, "name": _pascal(outcome),
                      "shortDescription": {"text": text.split(":")[0]},
                      "fullDescription": {"text": text},
                      "defaultConfiguration": {"level": level},
                      "properties": {"tags": ["privacy", "gdpr"]}})
    for check, text in CHECKS.items():
        rules.append({"id": f"design/{check}", "name": _pascal(check),
                      "shortDescription": {"text": text[0].upper() + text[1:]},
                      "fullDescription": {"text": f"Design check: {text}."},
                      "defaultConfiguration": {"level": "warning"},
                      "properties": {"tags": ["privacy", "gdpr", "design"]}})
    return rules


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-"))


def artifact_uri(file: str | None) -> str:
    """The design file as a URI reference: relative to the working directory when it lies
    under it (so annotations land on the repository's file), else a file URI."""
    if not file:
        return "design.yaml"
    path = Path(file)
    if not path.is_absolute():
        return PurePath(file).as_posix()
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return path.as_uri()


def _location(uri: str, position: Position) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": {"uri": uri}}
    line, column = position
    if line is not None:
        region: dict[str, Any] = {"startLine": line}
        if column is not None:
            region["startColumn"] = column
        physical["region"] = region
    return {"physicalLocation": physical}


def _fingerprint(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def design_sarif_document(report: DesignReport,
                          rule_locations: Mapping[str, Location] | None = None
                          ) -> dict[str, Any]:
    uri = artifact_uri(report.file)
    descriptors = _descriptors()
    rule_index = {d["id"]: i for i, d in enumerate(descriptors)}
    results: list[dict[str, Any]] = []
    for r in report.flows:
        results += _flow_results(r, uri, rule_index, rule_locations or {})
    for finding in report.findings:
        rule_id = f"design/{finding.check}"
        results.append({
            "ruleId": rule_id, "ruleIndex": rule_index[rule_id], "level": "warning",
            "message": {"text": finding.message},
            "locations": [_location(uri, finding.position)],
            "partialFingerprints": {"flowguardFinding/v1": _fingerprint(
                rule_id, finding.flow or "", *finding.related)},
        })
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [{
            "tool": {"driver": {"name": TOOL_NAME, "informationUri": TOOL_URI,
                                "version": _version(), "rules": descriptors}},
            "artifacts": [{"location": {"uri": uri}}],
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    }


def _version() -> str:
    from flowguard import __version__

    return __version__


def _flow_results(r: FlowResult, uri: str, rule_index: dict[str, int],
                  rule_locations: Mapping[str, Location]) -> list[dict[str, Any]]:
    flow = r.flow
    results = []
    if r.outcome == "invalid" and any(not k.startswith("data.") for k, _ in r.problems):
        for key, message in r.problems:
            results.append(_result("flow/invalid", rule_index, uri,
                                   f"flow `{flow.id}`: {message}", r.where(key),
                                   (flow.id, key), []))
        return results
    # one result per outcome and data item, pointing at that item
    grouped: dict[tuple[str, int], list[str]] = {}
    messages: dict[tuple[str, int], list[str]] = {}
    rules: dict[tuple[str, int], set[str]] = {}
    for c in r.categories:
        if c.outcome not in _FLOW_RULES:
            continue
        group = (c.outcome, c.data_index)
        grouped.setdefault(group, []).append(c.category)
        if c.message not in messages.setdefault(group, []):
            messages[group].append(c.message)
        if c.status is not None and c.outcome == "forbidden":
            rules.setdefault(group, set()).update(c.status.rules)
    for (outcome, j), categories in sorted(grouped.items(),
                                           key=lambda kv: (list(_FLOW_RULES).index(kv[0][0]),
                                                           kv[0][1])):
        rule_id = _FLOW_RULES[outcome][0]
        text = (f"flow `{flow.id}` ({flow.sender} → {flow.recipient}, `{flow.purpose}` at "
                f"`{flow.subprocess}`): " + "; ".join(messages[(outcome, j)]))
        related = [rule_locations[x] for x in sorted(rules.get((outcome, j), ()))
                   if x in rule_locations]
        results.append(_result(rule_id, rule_index, uri, text, r.where(f"data.{j}"),
                               (flow.id, outcome, *categories), related))
    return results


def _result(rule_id: str, rule_index: dict[str, int], uri: str, text: str,
            position: Position, identity: tuple[str, ...],
            related: list[Location]) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ruleId": rule_id, "ruleIndex": rule_index[rule_id],
        "level": _FLOW_RULES[rule_id.split("/", 1)[1]][1],
        "message": {"text": text},
        "locations": [_location(uri, position)],
        "partialFingerprints": {"flowguardFlow/v1": _fingerprint(rule_id, *identity)},
    }
    if related:
        result["relatedLocations"] = [
            {"id": i + 1, **_location(artifact_uri(loc.file), (loc.line, loc.column)),
             "message": {"text": "the policy rule"}}
            for i, loc in enumerate(related)]
    return result


def design_sarif(report: DesignReport,
                 rule_locations: Mapping[str, Location] | None = None) -> str:
    return dumps(design_sarif_document(report, rule_locations))
