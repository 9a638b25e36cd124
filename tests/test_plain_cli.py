"""The command line for people (issue 16, items 5 and 6): 1-based case numbers in `test`,
`--at` taking a date like `--as-of`, and output at 80 columns (and piped) that wraps
instead of truncating, with ids never broken and help summaries whole."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.text import Text

from flowguard._cli import cli
from flowguard.reports._fit import column_widths, wrap_line

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


# ------------------------------------------------------------------------- 80 columns

def _words_whole(text: str, words: set[str]) -> None:
    """Every one of `words` (ids, reason codes) appears whole somewhere, and no line is
    wider than 80 columns or ends in an ellipsis."""
    for line in text.splitlines():
        assert len(line) <= 80, line
        assert "…" not in line, line
    flat = set(re.findall(r"[\w.\-]+", text))
    missing = {w for w in words if w not in flat}
    assert not missing, missing


def test_demo_at_80_columns_keeps_every_decision_whole() -> None:
    result = invoke("demo", "--examples", ROOT / "policies")
    assert result.exit_code == 0, result.output
    table = result.stdout.split("Consent and withdrawal")[0]
    for line in table.splitlines():
        assert len(line) <= 80, line
        assert "…" not in line, line
    for reason in ("PERMITTED", "CONSENT_MISSING", "NO_PERMIT_RULE"):
        assert re.search(rf"\b(permit|deny) {reason}\b", table), reason


def test_design_at_80_columns_never_breaks_an_id() -> None:
    import yaml

    result = invoke("design", HOME_CARE)
    assert result.exit_code in (0, 1), result.output
    design = yaml.safe_load((HOME_CARE / "design.yaml").read_text(encoding="utf-8"))
    ids = {f["subprocess"] for f in design["flows"]} | {f["purpose"] for f in design["flows"]}
    ids |= {c for f in design["flows"] for c in f["data"]}
    assert "co-commissioning" in ids
    _words_whole(result.stdout.split("\n", 1)[1], ids)


def test_help_summaries_are_whole() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    commands = result.stdout.split("Commands:")[1]
    assert "Art.\n" not in commands and not re.search(r"Art\.\s*$", commands, re.M)
    ropa = next(line for line in commands.splitlines() if line.strip().startswith("ropa"))
    assert "records of processing" in ropa.lower() or "30" in ropa, ropa


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.text(alphabet="abc-. ", min_size=0, max_size=30), min_size=3,
                         max_size=3), min_size=1, max_size=6),
       st.integers(min_value=20, max_value=160))
def test_fitted_columns_hold_every_word_within_the_width(rows: list[list[str]],
                                                         width: int) -> None:
    texts = [[Text(c) for c in row] for row in rows]
    widths = column_widths(("a", "b", "c"), texts, width)
    longest = [max([len(w) for row in rows for w in row[c].split()] + [1]) for c in range(3)]
    if widths is None:
        assert sum(longest) > width - 10
    else:
        assert sum(widths) + 10 <= width
        assert all(w >= low for w, low in zip(widths, longest, strict=True))


def test_counts_say_one_error_not_one_errors(tmp_path: Path) -> None:
    from flowguard._plain import counted

    assert [counted(1, "error"), counted(2, "error"), counted(1, "entry"),
            counted(0, "entry")] == ["1 error", "2 errors", "1 entry", "0 entries"]
    bad = tmp_path / "policy.yaml"
    bad.write_text((HOME_CARE / "policy.yaml").read_text(encoding="utf-8")
                   .replace("\n  contact:", "\n  contakt:", 1), encoding="utf-8")
    result = invoke("lint", bad)
    assert result.stdout.strip().splitlines()[-1] == "1 error, 0 warnings", result.stdout
    line = (HOME_CARE / "policy.yaml").read_text(encoding="utf-8").splitlines().index(
        "  contact: " + "\"Visitationen, Nordby Kommune, telefon 70 10 20 30 (hverdage kl. 8-15), "
        "eller skriv via Digital Post\"") + 1
    assert f"{bad}:{line}:3: error: service: unknown key `contakt`" in result.stderr


def test_check_shows_the_art9_condition_the_json_has() -> None:
    as_json = json.loads(_check("--at", "2026-03-01").stdout)
    conditions = {c["basis"]["art9"] for c in as_json["categories"] if c.get("basis")}
    assert conditions == {"health-care"}
    args = [a for a in ("check", "-p", HOME_CARE, "-r", HOME_CARE / "consents.yaml",
                        "--sender", "home-care-nurse", "--recipient", "gp",
                        "--subject", "citizen-2001", "--data", "health",
                        "--purpose", "treatment", "--subprocess", "co-delivery",
                        "--at", "2026-03-01")]
    text = invoke(*args, columns=200).stdout
    permits = [line for line in text.splitlines() if line.strip().startswith("permit")]
    assert permits and all("GDPR Art. 9(2) health-care" in line for line in permits), text


def test_check_at_80_columns_cuts_nothing() -> None:
    args = ("check", "-p", AALBORG, "-r", AALBORG / "consents.yaml",
            "--sender", "job-consultant", "--recipient", "cafe-manager",
            "--subject", "citizen-0609", "--data", "identity.name,work.preferences",
            "--purpose", "job-matching.employer-contact", "--subprocess", "co-delivery",
            "--at", "2026-03-01T10:00:00Z")
    narrow, wide = invoke(*args).stdout, invoke(*args, columns=300).stdout
    assert "…" not in narrow
    # the same text, whatever the width: a decision is never cut to fit
    def words(text: str) -> list[str]:  # without the decision id, new on every run
        return re.sub(r"decision [0-9a-f]+-\d+", "", text).split()

    assert words(narrow) == words(wide)
    assert "DENY job-consultant → cafe-manager" in narrow


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab-.`  ", max_size=200), st.integers(min_value=10, max_value=100))
def test_wrap_line_keeps_every_word_whole(text: str, width: int) -> None:
    wrapped = wrap_line(text, width, "  ")
    assert wrapped.split() == text.split()
    for line in wrapped.split("\n"):
        assert len(line) <= width or len(line.split()) == 1, (line, width)


SNAPSHOTS = Path(__file__).resolve().parent / "data" / "snapshots"


def test_snapshot_of_the_design_report_at_80_columns() -> None:
    """The whole 80-column report, as a person reads it piped or in a narrow terminal.
    After an intended change: FLOWGUARD_UPDATE_SNAPSHOTS=1 pytest tests/test_plain_cli.py"""
    import os

    text = re.sub(r"sha256:[0-9a-f]{64}", "sha256:<digest>",
                  invoke("design", HOME_CARE).stdout)
    path = SNAPSHOTS / "design-senior-home-care-80.txt"
    if os.environ.get("FLOWGUARD_UPDATE_SNAPSHOTS") == "1" or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")
