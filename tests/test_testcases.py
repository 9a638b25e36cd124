"""`flowguard test` catches typos (issue 12, item 5): every id of a case is checked
against the policy, at `file:line:column` with "did you mean"; only a case that expects
UNKNOWN_ENTITY may name an unknown id; a failing case prints its file and line, its number
(from 1), expected vs actual and the decision explained."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from flowguard._cli import cli
from flowguard.errors import TestSuiteError
from flowguard.testing import load_suite

from .conftest import EXAMPLES

AALBORG = EXAMPLES / "aalborg-aktiv"
FLOW = ("{sender: job-consultant, recipient: %s, subject: citizen-0042,\n"
        "           data: [%s], purpose: %s,\n"
        "           subprocess: co-delivery, at: 2026-03-01T10:00:00Z}")


def case(name: str, expect: str, recipient: str = "cafe-manager",
         data: str = "identity.name", purpose: str = "job-matching.employer-contact",
         reason: str | None = None) -> str:
    text = (f"  - name: {name}\n    flow: {FLOW % (recipient, data, purpose)}\n"
            f"    expect: {expect}\n")
    return text + (f"    reason: {reason}\n" if reason else "")


def suite(tmp_path: Path, *cases: str) -> Path:
    path = tmp_path / "tests.yaml"
    path.write_text(f"policy: {AALBORG}\nconsents: {AALBORG / 'consents.yaml'}\ncases:\n"
                    + "".join(cases))
    return path


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize(("field", "typo", "message", "suggestion", "column"), [
    ("recipient", "cafe-manger", "unknown actor `cafe-manger`", "cafe-manager", 47),
    ("data", "helth.diagnosis", "unknown data category `helth.diagnosis`",
     "health.diagnosis", 19),
    ("purpose", "job-matchin", "unknown purpose `job-matchin`", "job-matching", 44),
])
def test_a_typo_is_an_error_at_its_place_with_did_you_mean(
        tmp_path: Path, field: str, typo: str, message: str, suggestion: str,
        column: int) -> None:
    kwargs = {field: typo}
    path = suite(tmp_path, case("fine", "permit"), case("with a typo", "deny", **kwargs))
    with pytest.raises(TestSuiteError) as raised:
        load_suite(path)
    [diagnostic] = raised.value.diagnostics
    assert message in diagnostic.message
    assert "case 2 (`with a typo`)" in diagnostic.message  # numbered from 1
    assert diagnostic.file == str(path)
    line = 10 if field == "recipient" else 11
    assert (diagnostic.line, diagnostic.column) == (line, column), diagnostic
    assert diagnostic.hint is not None and f"did you mean `{suggestion}`" in diagnostic.hint
    result = run("test", str(path))
    assert result.exit_code == 2
    assert f"{path}:{line}:{column}: error:" in result.output
    assert "0 passed, 0 failed" in result.output


def test_the_issues_typos_no_longer_pass(tmp_path: Path) -> None:
    path = suite(tmp_path, case("visiting", "deny", recipient="visitng-friend"),
                 case("health", "deny", data="helth.diagnosis"))
    result = run("test", str(path))
    assert result.exit_code == 2, result.output
    assert "unknown actor `visitng-friend`" in result.output
    assert "unknown data category `helth.diagnosis`" in result.output


def test_only_a_case_expecting_unknown_entity_may_name_unknown_ids(tmp_path: Path) -> None:
    path = suite(tmp_path, case("nobody receives", "deny", recipient="nobody",
                                reason="UNKNOWN_ENTITY"))
    result = run("test", str(path))
    assert result.exit_code == 0, result.output
    assert "1 passed, 0 failed" in result.output
    wrong_reason = suite(tmp_path, case("nobody", "deny", recipient="nobody",
                                        reason="NO_PERMIT_RULE"))
    assert run("test", str(wrong_reason)).exit_code == 2


def test_a_failing_case_prints_file_line_number_expected_actual_and_explanation(
        tmp_path: Path) -> None:
    path = suite(tmp_path, case("fine", "permit"),
                 case("the whole [bold]work[/] group", "permit", data="work"))
    result = run("test", str(path))
    assert result.exit_code == 1
    assert re.search(rf"FAIL {re.escape(str(path))}:9: case 2 the whole \[bold\]work\[/\] "
                     r"group: expected permit, got deny \(CONSENT_MISSING\)", result.output), \
        result.output
    assert "deny   work.capacity: rule `employer-contact` needs consent" in result.output
    assert "to make it lawful: obtain consent" in result.output
    assert "permit work.preferences" in result.output
    assert "1 passed, 1 failed" in result.output


def test_results_carry_number_and_line(tmp_path: Path) -> None:
    path = suite(tmp_path, case("one", "permit"), case("two", "permit"))
    results = load_suite(path).run().results
    assert [(r.number, r.line) for r in results] == [(1, 4), (2, 9)]
    assert results[0].explanation and results[0].explanation[0].startswith("permit ")


def test_the_shipped_suites_still_pass() -> None:
    for path in sorted(EXAMPLES.glob("*/tests.yaml")):
        result = load_suite(path).run()
        assert result.failed == 0
