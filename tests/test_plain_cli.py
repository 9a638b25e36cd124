"""The command line for people (issue 16, items 5 and 6): 1-based case numbers in `test`,
`--at` taking a date like `--as-of`, and output at 80 columns (and piped) that wraps
instead of truncating, with ids never broken and help summaries whole."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from click.testing import CliRunner, Result

from flowguard._cli import cli

ROOT = Path(__file__).resolve().parent.parent
HOME_CARE = ROOT / "policies" / "senior-home-care"
AALBORG = ROOT / "policies" / "aalborg-aktiv"


def invoke(*args: str | Path, columns: int = 80) -> Result:
    runner = CliRunner()
    return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False,
                         env={"COLUMNS": str(columns), "LINES": "50"}, terminal_width=columns)


def test_test_file_errors_number_cases_from_one(tmp_path: Path) -> None:
    copy = tmp_path / "hc"
    shutil.copytree(HOME_CARE, copy)
    tests = copy / "tests.yaml"
    text = tests.read_text(encoding="utf-8")
    ats = [m.start() for m in re.finditer(r"at: 2026-\d\d-\d\dT09:00:00Z", text)]
    third = ats[2]
    tests.write_text(text[:third] + "at: 2026-3-2" + text[third + len("at: 2026-03-02T09:00:00Z"):],
                     encoding="utf-8")
    result = invoke("test", tests)
    assert result.exit_code == 2, result.output
    assert "case 3: flow.at: not a valid date or time" in result.stderr
    assert "cases.2" not in result.stderr
    assert "write a date as 2026-03-01 or a time as 2026-03-01T09:00:00Z" in result.stderr


def _check(*extra: str) -> Result:
    return invoke("check", "-p", HOME_CARE, "-r", HOME_CARE / "consents.yaml",
                  "--sender", "home-care-nurse", "--recipient", "gp",
                  "--subject", "citizen-2001", "--data", "health",
                  "--purpose", "treatment", "--subprocess", "co-delivery", "--json", *extra)


def test_check_at_accepts_a_date_like_as_of() -> None:
    result = _check("--at", "2026-03-01")
    assert result.exit_code in (0, 1), result.output
    assert '"at": "2026-03-01T00:00:00Z"' in result.stdout
    same = _check("--at", "2026-03-01T00:00:00Z")
    assert json.loads(same.stdout)["flow"] == json.loads(result.stdout)["flow"]
    bad = _check("--at", "01-03-2026")
    assert bad.exit_code == 2
    assert "--at" in bad.stderr and "2026-05-01" in bad.stderr
