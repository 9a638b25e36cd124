"""The `flowguard` command (SPEC §§ 6, 7, 10): check, test, lint, schema, demo.

Most runs use click's `CliRunner` in-process (fast); a few run the real command in a new
interpreter (`python -m flowguard`) to cover the entry point.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner, Result

from flowguard._cli import cli

ROOT = Path(__file__).resolve().parent.parent
AALBORG = ROOT / "policies" / "aalborg-aktiv"
YOUTH = ROOT / "policies" / "youth-services"
SHIPPED = [AALBORG, YOUTH]
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed$")

AT = "2026-03-01T10:00:00Z"
# employer-contact, consent k-0042-cafe: permitted, with the rule's two obligations
PERMIT_FLOW = {"sender": "job-consultant", "recipient": "cafe-manager",
               "subject": "citizen-0042", "data": ["identity.name", "work.preferences"],
               "purpose": "job-matching.employer-contact", "subprocess": "co-delivery",
               "at": AT}
# the same for a citizen who has consented to nothing
DENY_FLOW = {**PERMIT_FLOW, "subject": "citizen-0609"}
# work.capacity is not in k-0042-cafe: partly permitted
PARTIAL_FLOW = {**PERMIT_FLOW, "data": ["work"]}
# case-to-jobcenter: public task, no consent needed
PUBLIC_TASK_FLOW = {"sender": "case-worker", "recipient": "job-consultant",
                    "subject": "citizen-0609", "data": ["work.capacity", "identity.cpr"],
                    "purpose": "job-matching.employer-contact", "subprocess": "co-design",
                    "at": AT}


def invoke(*args: str | Path, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], input=input,
                              catch_exceptions=True)


def ok(result: Result, code: int) -> Result:
    """The exit code is `code` and nothing escaped as an exception or a traceback."""
    text = result.stdout + result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"exception {result.exception!r}\n{text}") from result.exception
    assert "Traceback" not in text, text
    assert result.exit_code == code, (result.exit_code, text)
    return result


def options(flow: dict[str, Any]) -> list[str]:
    args = []
    for key, value in flow.items():
        for item in value if isinstance(value, list) else [value]:
            args += [f"--{key}", item]
    return args


def check(flow: dict[str, Any], *extra: str | Path, registry: bool = True) -> Result:
    reg = ["-r", AALBORG / "consents.yaml"] if registry else []
    return invoke("check", "-p", AALBORG, *reg, *options(flow), *extra)


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- check

def test_check_with_options_permits() -> None:
    result = ok(check(PERMIT_FLOW), 0)
    assert "PERMIT" in result.stdout
    assert "job-consultant" in result.stdout and "cafe-manager" in result.stdout


def test_check_with_options_denies() -> None:
    result = ok(check(DENY_FLOW), 1)
    assert "DENY" in result.stdout
    assert "CONSENT_MISSING" in result.stdout or "consent" in result.stdout.lower()


def test_check_data_may_be_comma_separated_or_repeated() -> None:
    base = {k: v for k, v in PERMIT_FLOW.items() if k != "data"}
    comma = ok(check(base, "--data", "identity.name,work.preferences", "--json"), 0)
    repeated = ok(check(base, "--data", "identity.name", "--data", "work.preferences",
                        "--json"), 0)
    for result in (comma, repeated):
        decision = json.loads(result.stdout)
        assert decision["flow"]["data"] == ["identity.name", "work.preferences"]
        assert decision["decision"] == "permit"


def test_check_without_registry_denies_consent_flows() -> None:
    ok(check(PERMIT_FLOW, registry=False), 1)
    ok(check(PUBLIC_TASK_FLOW, registry=False), 0)


def test_check_partial_flow_lists_what_would_be_permitted() -> None:
    result = ok(check(PARTIAL_FLOW, "--json"), 1)
    decision = json.loads(result.stdout)
    assert decision["decision"] == "deny"
    assert set(decision["permitted"]) == {"work.preferences", "work.schedule"}
    denied = [c for c in decision["categories"] if c["decision"] == "deny"]
    assert [c["category"] for c in denied] == ["work.capacity"]
    assert denied[0]["reasons"][0]["code"] == "CONSENT_MISSING"
    assert denied[0]["remedy"] is not None
    text = ok(check(PARTIAL_FLOW), 1).stdout
    assert "work.preferences" in text and "work.schedule" in text


def _assert_decision_shape(decision: dict[str, Any], flow: dict[str, Any]) -> None:
    for key in ("decision", "flow", "categories", "permitted", "obligations",
                "policy_digest", "decision_id", "evaluated_at"):
        assert key in decision, key
    assert decision["decision"] in ("permit", "deny")
    assert decision["flow"] == flow
    assert decision["policy_digest"].startswith("sha256:")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", decision["policy_digest"])
    assert isinstance(decision["decision_id"], str) and decision["decision_id"]
    dt.datetime.fromisoformat(decision["evaluated_at"].replace("Z", "+00:00"))
    assert isinstance(decision["permitted"], list)
    assert isinstance(decision["obligations"], list)
    assert decision["categories"]
    for category in decision["categories"]:
        for key in ("category", "decision", "reasons", "basis", "remedy"):
            assert key in category, key
        assert category["decision"] in ("permit", "deny")
        assert category["reasons"]
        for reason in category["reasons"]:
            assert {"code", "message"} <= set(reason)
        if category["decision"] == "permit":
            assert category["reasons"][0]["code"] == "PERMITTED"
            assert category["basis"] is not None
            assert category["remedy"] is None
        else:
            assert category["basis"] is None
            assert category["remedy"] is not None


def test_check_json_permit_has_the_spec_keys() -> None:
    decision = json.loads(ok(check(PERMIT_FLOW, "--json"), 0).stdout)
    _assert_decision_shape(decision, PERMIT_FLOW)
    assert decision["decision"] == "permit"
    assert sorted(decision["permitted"]) == sorted(PERMIT_FLOW["data"])
    assert decision["obligations"] == sorted(set(decision["obligations"]))
    assert decision["obligations"] == [
        "Delete the contact details within 30 days after the placement ends",
        "Use the information only to arrange and run the placement",
    ]
    for category in decision["categories"]:
        assert category["basis"] == {**category["basis"], "rule": "employer-contact",
                                     "basis": "consent", "consent": "k-0042-cafe"}


def test_check_json_public_task_basis_names_the_law() -> None:
    decision = json.loads(ok(check(PUBLIC_TASK_FLOW, "--json"), 0).stdout)
    _assert_decision_shape(decision, PUBLIC_TASK_FLOW)
    for category in decision["categories"]:
        assert category["basis"]["basis"] == "public-task"
        assert category["basis"]["rule"] == "case-to-jobcenter"
        assert category["basis"]["law"]


def test_check_json_deny_has_the_spec_keys() -> None:
    decision = json.loads(ok(check(DENY_FLOW, "--json"), 1).stdout)
    _assert_decision_shape(decision, DENY_FLOW)
    assert decision["decision"] == "deny"
    assert decision["permitted"] == []
    assert decision["obligations"] == []
    remedy = decision["categories"][0]["remedy"]
    assert remedy["action"] == "obtain-consent"


def test_check_flow_file(tmp_path: Path) -> None:
    path = write(tmp_path / "flow.json", json.dumps(PERMIT_FLOW))
    result = ok(invoke("check", "-p", AALBORG, "-r", AALBORG / "consents.yaml", path,
                       "--json"), 0)
    assert json.loads(result.stdout)["flow"] == PERMIT_FLOW
    path = write(tmp_path / "deny.json", json.dumps(DENY_FLOW))
    ok(invoke("check", "-p", AALBORG, "-r", AALBORG / "consents.yaml", path), 1)


def test_check_yaml_flow_file(tmp_path: Path) -> None:
    path = write(tmp_path / "flow.yaml", yaml.safe_dump(PERMIT_FLOW))
    ok(invoke("check", "-p", AALBORG, "-r", AALBORG / "consents.yaml", path), 0)


@pytest.mark.parametrize(("flows", "code"), [
    ([PERMIT_FLOW, PUBLIC_TASK_FLOW], 0),
    ([PERMIT_FLOW, DENY_FLOW], 1),
    ([DENY_FLOW, PERMIT_FLOW], 1),
    ([DENY_FLOW, PARTIAL_FLOW], 1),
    ([PERMIT_FLOW], 0),
])
def test_check_list_of_flows_exits_0_only_if_all_permit(tmp_path: Path,
                                                        flows: list[dict[str, Any]],
                                                        code: int) -> None:
    path = write(tmp_path / "flows.json", json.dumps(flows))
    result = ok(invoke("check", "-p", AALBORG, "-r", AALBORG / "consents.yaml", path,
                       "--json"), code)
    decisions = json.loads(result.stdout)
    assert isinstance(decisions, list) and len(decisions) == len(flows)
    for decision, flow in zip(decisions, flows, strict=True):
        _assert_decision_shape(decision, flow)
    text = ok(invoke("check", "-p", AALBORG, "-r", AALBORG / "consents.yaml", path), code)
    assert text.stdout.count("PERMIT") + text.stdout.count("DENY") >= len(flows)


def test_check_from_stdin() -> None:
    result = ok(invoke("check", "-p", AALBORG, "-r", AALBORG / "consents.yaml", "-", "--json",
                       input=json.dumps(PERMIT_FLOW)), 0)
    assert json.loads(result.stdout)["decision"] == "permit"
    ok(invoke("check", "-p", AALBORG, "-r", AALBORG / "consents.yaml", "-",
              input=json.dumps(DENY_FLOW)), 1)
    result = ok(invoke("check", "-p", AALBORG, "-r", AALBORG / "consents.yaml", "-", "--json",
                       input=json.dumps([PERMIT_FLOW, DENY_FLOW])), 1)
    assert [d["decision"] for d in json.loads(result.stdout)] == ["permit", "deny"]


def test_check_unknown_recipient_is_a_deny_not_an_input_error() -> None:
    result = ok(check({**PERMIT_FLOW, "recipient": "cafe-managr"}, "--json"), 1)
    decision = json.loads(result.stdout)
    assert decision["decision"] == "deny"
    assert decision["reason"] == "UNKNOWN_ENTITY"
    assert "cafe-manager" in decision["categories"][0]["reasons"][0]["message"]


@pytest.mark.parametrize("bad", [
    pytest.param({k: v for k, v in PERMIT_FLOW.items() if k != "purpose"}, id="missing-key"),
    pytest.param({**PERMIT_FLOW, "at": "2026-03-01T10:00:00"}, id="naive-time"),
    pytest.param({**PERMIT_FLOW, "at": "yesterday"}, id="not-a-time"),
    pytest.param({**PERMIT_FLOW, "at": "2026-03-01"}, id="date-only"),
    pytest.param({**PERMIT_FLOW, "sender": "bad id with spaces"}, id="bad-id"),
])
def test_check_bad_flow_options_exit_2(bad: dict[str, Any]) -> None:
    result = ok(check(bad), 2)
    assert result.stdout.strip() == ""
    assert "error" in result.stderr


def test_check_bad_input_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path / "flow.json", json.dumps(PERMIT_FLOW))
    # a flow file and flow options at once
    ok(invoke("check", "-p", AALBORG, path, "--sender", "case-worker"), 2)
    # a flow file that does not exist, or is not JSON
    ok(invoke("check", "-p", AALBORG, tmp_path / "missing.json"), 2)
    ok(invoke("check", "-p", AALBORG, write(tmp_path / "x.json", "{not json")), 2)
    ok(invoke("check", "-p", AALBORG, write(tmp_path / "n.json", "42")), 2)
    # a policy or registry that does not load
    ok(invoke("check", "-p", tmp_path / "nope", *options(PERMIT_FLOW)), 2)
    bad_registry = write(tmp_path / "consents.yaml", "consents: 5\n")
    result = ok(invoke("check", "-p", AALBORG, "-r", bad_registry, *options(PERMIT_FLOW)), 2)
    assert "consents.yaml:1:" in result.stderr
    # no policy at all
    ok(invoke("check", *options(PERMIT_FLOW)), 2)


def test_check_empty_list_of_flows_is_not_a_permit(tmp_path: Path) -> None:
    """`[]` asks about nothing: exit 0 would tell a caller "permitted" for no decision."""
    result = invoke("check", "-p", AALBORG, write(tmp_path / "flows.json", "[]"))
    assert result.exit_code != 0, (result.exit_code, result.stdout, result.stderr)
    ok(result, 2)


# --------------------------------------------------------------------------- test

@pytest.mark.parametrize("example", SHIPPED, ids=lambda p: p.name)
def test_test_command_on_shipped_examples(example: Path) -> None:
    result = ok(invoke("test", example / "tests.yaml"), 0)
    match = SUMMARY.match(last_line(result.stdout))
    assert match, result.stdout
    assert int(match[1]) > 0 and match[2] == "0"


def test_test_command_on_all_shipped_examples_at_once() -> None:
    result = ok(invoke("test", *(p / "tests.yaml" for p in SHIPPED)), 0)
    assert SUMMARY.match(last_line(result.stdout)), result.stdout


def test_test_command_verbose_lists_passing_cases() -> None:
    result = ok(invoke("test", "-v", AALBORG / "tests.yaml"), 0)
    assert "PASS" in result.stdout
    assert "own consent lets the café receive name and preferences" in result.stdout


def _copy_example(tmp_path: Path) -> Path:
    target = tmp_path / "aalborg-aktiv"
    shutil.copytree(AALBORG, target)
    return target


def test_test_command_fails_on_a_wrong_expectation(tmp_path: Path) -> None:
    example = _copy_example(tmp_path)
    tests = example / "tests.yaml"
    text = tests.read_text(encoding="utf-8")
    name = "own consent lets the café receive name and preferences"
    start = text.index(name)
    expect = text.index("expect: permit", start)
    tests.write_text(text[:expect] + "expect: deny" + text[expect + len("expect: permit"):],
                     encoding="utf-8")
    result = ok(invoke("test", tests), 1)
    match = SUMMARY.match(last_line(result.stdout))
    assert match, result.stdout
    assert match[2] == "1"
    assert "FAIL" in result.stdout and name in result.stdout
    failing = [line for line in result.stdout.splitlines() if "FAIL" in line]
    assert len(failing) == 1 and name in failing[0]


def test_test_command_fails_on_a_wrong_reason(tmp_path: Path) -> None:
    example = _copy_example(tmp_path)
    tests = example / "tests.yaml"
    text = tests.read_text(encoding="utf-8")
    tests.write_text(text.replace("reason: CONSENT_WITHDRAWN", "reason: CONSENT_EXPIRED", 1),
                     encoding="utf-8")
    result = ok(invoke("test", tests), 1)
    assert "CONSENT_EXPIRED" in result.stdout
    assert SUMMARY.match(last_line(result.stdout))


def test_test_command_bad_file_exits_2(tmp_path: Path) -> None:
    suite = write(tmp_path / "tests.yaml", f"policy: {AALBORG}\ncases: 5\n")
    result = ok(invoke("test", suite), 2)
    assert "tests.yaml" in result.stderr
    suite = write(tmp_path / "t2.yaml", "policy: nowhere\ncases:\n  - name: x\n"
                  "    flow: {sender: a, recipient: b, subject: c, data: [d], purpose: e,"
                  " subprocess: f}\n    expect: permit\n")
    result = ok(invoke("test", suite), 2)
    assert "nowhere" in result.stderr


# --------------------------------------------------------------------------- lint

@pytest.mark.parametrize("example", SHIPPED, ids=lambda p: p.name)
def test_lint_shipped_examples_have_no_errors(example: Path) -> None:
    result = ok(invoke("lint", example, "-r", example / "consents.yaml"), 0)
    assert re.match(r"^0 errors, \d+ warnings$", last_line(result.stdout)), result.stdout
    diagnostics = json.loads(ok(invoke("lint", example, "--json"), 0).stdout)
    assert not [d for d in diagnostics if d["severity"] == "error"]


LINT_HEAD = """\
version: 1
jurisdictions: {DK: {majority_age: 18}}
default_jurisdiction: DK
organizations:
  kommune: {kind: municipality, sector: public}
  cafe: {kind: employer, sector: private}
actors:
  case-worker: {organization: kommune, role: case-worker}
  job-consultant: {organization: kommune, role: job-consultant}
  cafe-manager: {organization: cafe, role: manager}
data_categories:
  identity.name: {}
  health: {special: true}
  health.diagnosis: {}
purposes:
  job-matching: {}
subprocesses:
  co-delivery: {co_produced: true, order: 1}
rules:
  - id: name-to-cafe
    effect: permit
    sender: {role: job-consultant}
    recipient: {kind: employer}
    data: [identity.name]
    purposes: [job-matching]
    basis: consent
"""

ART9_MISSING = """\
  - id: diagnosis-to-consultant
    effect: permit
    sender: {role: case-worker}
    recipient: {role: job-consultant}
    data: [health.diagnosis]
    purposes: [job-matching]
    basis: public-task
    law: "Serviceloven § 12"
"""

LAW_MISSING = """\
  - id: name-to-consultant
    effect: permit
    sender: {role: case-worker}
    recipient: {role: job-consultant}
    data: [identity.name]
    purposes: [job-matching]
    basis: public-task
"""


def _lint_json(path: Path, code: int) -> list[dict[str, Any]]:
    diagnostics: list[dict[str, Any]] = json.loads(ok(invoke("lint", path, "--json"),
                                                      code).stdout)
    for d in diagnostics:
        assert {"severity", "code", "message", "file", "line", "column", "hint"} <= set(d)
    return diagnostics


def test_lint_clean_policy(tmp_path: Path) -> None:
    path = write(tmp_path / "policy.yaml", LINT_HEAD.replace(
        "  health: {special: true}\n  health.diagnosis: {}\n", ""))
    result = ok(invoke("lint", path), 0)
    assert last_line(result.stdout) == "0 errors, 1 warning", result.stdout  # case-worker


def test_lint_special_category_on_public_task_without_art9(tmp_path: Path) -> None:
    text = LINT_HEAD + ART9_MISSING
    path = write(tmp_path / "policy.yaml", text)
    result = ok(invoke("lint", path), 1)
    assert re.match(r"^1 error, \d+ warnings?$", last_line(result.stdout)), result.stdout
    errors = [d for d in _lint_json(path, 1) if d["severity"] == "error"]
    assert len(errors) == 1
    assert "art9" in errors[0]["message"] + (errors[0]["hint"] or "")
    assert "diagnosis-to-consultant" in errors[0]["message"]
    assert errors[0]["line"] == text.count("\n", 0, text.index("basis: public-task")) + 1
    assert "policy.yaml" in result.stderr
    # naming the Art. 9(2) condition fixes it
    fixed = write(tmp_path / "fixed.yaml", text + "    art9: social-protection\n")
    assert not [d for d in _lint_json(fixed, 0) if d["severity"] == "error"]


def test_lint_public_task_without_law(tmp_path: Path) -> None:
    text = LINT_HEAD + LAW_MISSING
    path = write(tmp_path / "policy.yaml", text)
    ok(invoke("lint", path), 1)
    errors = [d for d in _lint_json(path, 1) if d["severity"] == "error"]
    assert len(errors) == 1
    assert "law" in errors[0]["message"] and "name-to-consultant" in errors[0]["message"]
    assert errors[0]["line"] is not None


def test_lint_reports_missing_art9_and_missing_law_together(tmp_path: Path) -> None:
    """Two independent errors of one file are reported in one run."""
    path = write(tmp_path / "policy.yaml", LINT_HEAD + ART9_MISSING + LAW_MISSING)
    errors = [d for d in _lint_json(path, 1) if d["severity"] == "error"]
    text = " ".join(d["message"] for d in errors)
    assert "diagnosis-to-consultant" in text and "name-to-consultant" in text, errors


def test_lint_warnings(tmp_path: Path) -> None:
    text = LINT_HEAD + """\
  - id: diagnosis-to-cafe
    effect: permit
    sender: {role: job-consultant}
    recipient: {kind: employer}
    data: [health]
    purposes: [job-matching]
    basis: consent
  - id: to-nobody
    effect: permit
    sender: {role: job-consultant}
    recipient: {role: case-worker, organization: cafe}
    data: [identity.name]
    purposes: [job-matching]
    basis: consent
  - id: no-health-private
    effect: forbid
    recipient: {sector: private}
    data: [health]
"""
    text = text.replace("  health.diagnosis: {}\n", "  health.diagnosis: {}\n  hobbies: {}\n")
    path = write(tmp_path / "policy.yaml", text)
    result = ok(invoke("lint", path), 0)
    assert re.match(r"^0 errors, [1-9]\d* warnings$", last_line(result.stdout)), result.stdout
    warnings = [d for d in _lint_json(path, 0) if d["severity"] == "warning"]
    by_code: dict[str, list[str]] = {}
    for d in warnings:
        by_code.setdefault(d["code"], []).append(d["message"])
        assert d["file"] and d["line"], d
    shadowed = " ".join(by_code.get("shadowed", []))
    assert "diagnosis-to-cafe" in shadowed and "no-health-private" in shadowed, warnings
    assert "name-to-cafe" not in shadowed
    assert any("to-nobody" in m for m in by_code.get("never-applies", [])), warnings
    assert any("hobbies" in m for m in by_code.get("unused", [])), warnings
    # --strict turns warnings into a failure
    ok(invoke("lint", "--strict", path), 1)


def test_lint_unreadable_policy(tmp_path: Path) -> None:
    result = invoke("lint", write(tmp_path / "policy.yaml", "rules: [\n"))
    assert result.exit_code in (1, 2)
    assert "Traceback" not in result.stdout + result.stderr
    assert "policy.yaml" in result.stderr


# --------------------------------------------------------------------------- schema

KINDS = ["policy", "registry", "tests", "flow", "decision"]


def _schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(ok(invoke("schema", kind), 0).stdout)
    return schema


def _plain(value: Any) -> Any:
    """YAML data as JSON would have it: dates and times become RFC 3339 strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _errors(schema: dict[str, Any], document: Any) -> list[str]:
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{list(e.absolute_path)}: {e.message[:120]}"
            for e in validator.iter_errors(document)]


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_valid_json_schema(kind: str) -> None:
    schema = _schema(kind)
    assert schema["$schema"].startswith("https://json-schema.org/")
    jsonschema.validators.validator_for(schema).check_schema(schema)


def test_schema_default_is_policy() -> None:
    assert json.loads(ok(invoke("schema"), 0).stdout) == _schema("policy")


def test_schema_unknown_kind_is_a_usage_error() -> None:
    result = invoke("schema", "nonsense")
    assert result.exit_code == 2
    assert "Traceback" not in result.stdout + result.stderr


def test_shipped_policy_validates_against_the_policy_schema() -> None:
    document = _plain(yaml.safe_load((AALBORG / "policy.yaml").read_text(encoding="utf-8")))
    assert _errors(_schema("policy"), document) == []


@pytest.mark.parametrize(("kind", "file"), [("registry", "consents.yaml"),
                                            ("tests", "tests.yaml")])
@pytest.mark.parametrize("example", SHIPPED, ids=lambda p: p.name)
def test_shipped_files_validate_against_their_schema(example: Path, kind: str, file: str
                                                     ) -> None:
    document = _plain(yaml.safe_load((example / file).read_text(encoding="utf-8")))
    assert _errors(_schema(kind), document) == []


def test_policy_schema_rejects_what_flowguard_rejects() -> None:
    schema = _schema("policy")
    document = _plain(yaml.safe_load((AALBORG / "policy.yaml").read_text(encoding="utf-8")))
    document["rules"][0]["efect"] = document["rules"][0].pop("effect")
    assert _errors(schema, document)
    document = {"rules": [{"id": "r", "effect": "allow", "data": ["x"]}]}
    assert _errors(schema, document)


def test_policy_schema_rejects_an_empty_data_list(tmp_path: Path) -> None:
    """flowguard refuses `data: []` (a rule must list data); the schema must say so too
    (`minItems`, not `minLength`, constrains an array)."""
    text = LINT_HEAD.replace("data: [identity.name]", "data: []")
    assert ok(invoke("lint", write(tmp_path / "policy.yaml", text)), 1)
    document = {"rules": [{"id": "r", "effect": "forbid", "data": []}]}
    assert _errors(_schema("policy"), document)


def test_flow_schema_accepts_a_flow_and_decision_schema_a_decision() -> None:
    assert _errors(_schema("flow"), PERMIT_FLOW) == []
    decision = json.loads(ok(check(PARTIAL_FLOW, "--json"), 1).stdout)
    assert _errors(_schema("decision"), decision) == []


# --------------------------------------------------------------------------- demo

def test_demo_in_process() -> None:
    result = ok(invoke("demo", "--examples", ROOT / "policies"), 0)
    match = SUMMARY.match(last_line(result.stdout))
    assert match and int(match[1]) > 0 and match[2] == "0", result.stdout
    # the registry is an embedded SQLite store; a withdrawal takes effect on the next check
    scene = result.stdout[result.stdout.index("Consent and withdrawal"):]
    assert "registry sqlite:///" in scene
    assert scene.index("PERMIT") < scene.index("consent withdraw k-demo") < scene.index("DENY")
    assert "consent `k-demo` was withdrawn" in scene


def test_demo_without_examples_exits_2(tmp_path: Path) -> None:
    result = ok(invoke("demo", "--examples", tmp_path), 2)
    assert "no examples" in result.stderr


# --------------------------------------------------------------------------- real processes

def _run(*args: str | Path, cwd: Path = ROOT, stdin: str | None = None
         ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "flowguard", *map(str, args)], cwd=cwd,
                            input=stdin, capture_output=True, text=True, timeout=60,
                            check=False)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


def test_real_demo_from_the_repo_root() -> None:
    result = _run("demo")
    assert result.returncode == 0, result.stderr
    match = SUMMARY.match(last_line(result.stdout))
    assert match and int(match[1]) > 0 and match[2] == "0", result.stdout[-500:]


def test_real_check_from_stdin_with_json() -> None:
    flows = [PERMIT_FLOW, PUBLIC_TASK_FLOW]
    result = _run("check", "-p", AALBORG, "-r", AALBORG / "consents.yaml", "-", "--json",
                  stdin=json.dumps(flows))
    assert result.returncode == 0, result.stderr
    assert [d["decision"] for d in json.loads(result.stdout)] == ["permit", "permit"]
    result = _run("check", "-p", AALBORG, "-r", AALBORG / "consents.yaml", *options(DENY_FLOW))
    assert result.returncode == 1, result.stderr
    assert "DENY" in result.stdout


def test_real_test_command_and_version() -> None:
    result = _run("test", *(p / "tests.yaml" for p in SHIPPED))
    assert result.returncode == 0, result.stdout + result.stderr
    assert SUMMARY.match(last_line(result.stdout))
    result = _run("--version")
    assert result.returncode == 0 and "flowguard" in result.stdout
