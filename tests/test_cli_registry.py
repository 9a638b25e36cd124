"""`flowguard registry | consent | subject | guardianship` and `check --registry URL`, on
every store, as a case worker would use them."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from flowguard._cli import cli

ROOT = Path(__file__).resolve().parent.parent
AALBORG = ROOT / "policies" / "aalborg-aktiv"
CHECK = ["check", "-p", str(AALBORG), "--sender", "job-consultant", "--recipient",
         "cafe-manager", "--subject", "citizen-0042", "--data", "identity.name", "--purpose",
         "job-matching.employer-contact", "--subprocess", "co-delivery"]


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def url(store_url: str) -> str:
    result = run("registry", "import", str(AALBORG / "consents.yaml"), "-r", store_url,
                 "-p", str(AALBORG), "--by", "anne")
    assert result.exit_code == 0, result.output
    assert "imported 7 subjects, 3 guardianships, 15 consents" in result.output
    return store_url


def test_init_then_import_twice(store_url: str) -> None:
    first = run("registry", "init", store_url)
    assert first.exit_code == 0 and "applied migration 1" in first.output
    assert "up to date" in run("registry", "init", store_url).output
    args = ("registry", "import", str(AALBORG / "consents.yaml"), "-r", store_url,
            "-p", str(AALBORG))
    assert run(*args).exit_code == 0
    again = run(*args)
    assert again.exit_code == 0
    assert "(25 already stored unchanged)" in again.output


def test_withdraw_takes_one_command_and_the_next_check_denies(url: str) -> None:
    assert run(*CHECK, "-r", url).exit_code == 0
    withdrawn = run("consent", "withdraw", "k-0042-cafe", "-r", url, "--by", "anne")
    assert withdrawn.exit_code == 0, withdrawn.output
    denied = run(*CHECK, "-r", url, "--json")
    assert denied.exit_code == 1
    assert json.loads(denied.output)["reason"] == "CONSENT_WITHDRAWN"
    history = run("consent", "history", "k-0042-cafe", "-r", url, "--json")
    kinds = [e["kind"] for e in json.loads(history.output)]
    assert kinds == ["consent.granted", "consent.withdrawn"]
    shown = json.loads(
        run("consent", "show", "k-0042-cafe", "-r", url, "--json", "-p", str(AALBORG)).output
    )
    assert shown["status"] == "withdrawn" and shown["version"] == 1


def test_check_as_of_before_the_withdrawal(url: str) -> None:
    before = datetime.now(UTC).isoformat()
    assert run("consent", "withdraw", "k-0042-cafe", "-r", url).exit_code == 0
    assert run(*CHECK, "-r", url).exit_code == 1
    assert run(*CHECK, "-r", url, "--as-of", before).exit_code == 0
    file_as_of = run(*CHECK, "-r", str(AALBORG / "consents.yaml"), "--as-of", before)
    assert file_as_of.exit_code == 2 and "has no history" in file_as_of.output


def test_grant_from_options_then_list_and_show(url: str) -> None:
    granted = run("consent", "grant", "-r", url, "-p", str(AALBORG), "--id", "k-cli",
                  "--subject", "citizen-0609", "--recipient", "organization:cafe-solsikke",
                  "--data", "identity.name", "--purpose", "job-matching",
                  "--subprocess", "co-delivery", "--evidence", "signed-form",
                  "--reference", "SBSYS-1")
    assert granted.exit_code == 0, granted.output
    check = [*CHECK[:8], "citizen-0609", *CHECK[9:]]
    assert run(*check, "-r", url).exit_code == 0
    listed = json.loads(run("consent", "list", "-r", url, "--subject", "citizen-0609",
                            "--json", "-p", str(AALBORG)).output)
    assert [k["id"] for k in listed] == ["k-cli"]
    assert listed[0]["evidence"] == {"method": "signed-form", "reference": "SBSYS-1"}
    table = run("consent", "list", "-r", url, "--status", "active", "-p", str(AALBORG))
    assert table.exit_code == 0 and "consents" in table.output


def test_correct_from_a_file_keeps_the_old_version(url: str, tmp_path: Path) -> None:
    exported = yaml.safe_load(run("registry", "export", "-r", url).output)
    record = next(k for k in exported["consents"] if k["id"] == "k-0042-cafe")
    record["data"] = ["identity.name"]
    file = tmp_path / "k.yaml"
    file.write_text(yaml.safe_dump(record))
    assert run("consent", "correct", str(file), "-r", url, "-p", str(AALBORG)).exit_code == 0
    shown = json.loads(
        run("consent", "show", "k-0042-cafe", "-r", url, "--json", "-p", str(AALBORG)).output
    )
    assert shown["version"] == 2 and shown["consent"]["data"] == ["identity.name"]
    history = json.loads(run("consent", "history", "k-0042-cafe", "-r", url, "--json").output)
    assert history[0]["body"]["data"] != history[1]["body"]["data"]


def test_subject_and_guardianship_commands(url: str) -> None:
    assert run("subject", "add", "citizen-7777", "-r", url, "-p", str(AALBORG),
               "--birth-date", "2011-04-01").exit_code == 0
    added = run("guardianship", "add", "-r", url, "-p", str(AALBORG), "--id", "g-7777",
                "--guardian", "person-mum", "--subject", "citizen-7777", "--kind", "parental",
                "--valid-from", "2011-04-01", "--evidence", "birth-record")
    assert added.exit_code == 0, added.output
    listed = json.loads(run("guardianship", "list", "-r", url, "--subject", "citizen-7777",
                            "--json").output)
    assert [g["id"] for g in listed] == ["g-7777"]
    ended = run("guardianship", "end", "g-7777", "-r", url, "--at", "2026-01-01")
    assert ended.exit_code == 0, ended.output
    shown = yaml.safe_load(
        run("subject", "show", "citizen-7777", "-r", url, "-p", str(AALBORG)).output
    )
    assert shown["guardianships"][0]["valid_until"] == "2026-01-01T00:00:00Z"
    assert shown["subject"] == {"birth_date": "2011-04-01"}


def test_export_round_trips_through_a_file(url: str, tmp_path: Path) -> None:
    exported = run("registry", "export", "-r", url, "--format", "json")
    file = tmp_path / "exported.json"
    file.write_text(exported.output)
    result = run("test", str(AALBORG / "tests.yaml"), "-r", str(file))
    assert result.exit_code == 0, result.output
    history = run("registry", "export", "-r", url, "--history").output.splitlines()
    assert [json.loads(line)["seq"] for line in history] == list(range(1, 26))


BAD: list[tuple[list[str], str]] = [
    (["consent", "withdraw", "k-missing"], "no consent `k-missing`"),
    (["consent", "show", "k-missing"], "no consent `k-missing`"),
    (["consent", "history", "k-missing"], "no consent `k-missing`"),
    (["consent", "grant", "-p", str(AALBORG), "--id", "k-x", "--subject", "citizen-0042",
      "--recipient", "cafe-solsikke", "--data", "helth", "--purpose", "job-matching"],
     "did you mean `health`"),
    (["consent", "grant", "-p", str(AALBORG), "--id", "k-x", "--subject", "citizen-9999",
      "--recipient", "cafe-solsikke", "--data", "health", "--purpose", "job-matching"],
     "not recorded in the registry"),
    (["consent", "withdraw", "k-0042-cafe", "--at", "yesterday"], "RFC 3339"),
    (["subject", "show", "citizen-9999"], "not recorded"),
    (["guardianship", "end", "g-missing"], "no guardianship"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[" ".join(b[0][:2]) for b in BAD])
def test_bad_input_exits_2_with_a_clear_message_and_changes_nothing(
        url: str, args: list[str], message: str) -> None:
    before = run("registry", "export", "-r", url, "--history").output
    result = run(*args, "-r", url)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert "citizen-9999" not in result.output
    assert run("registry", "export", "-r", url, "--history").output == before


def test_uninitialised_and_wrong_urls(tmp_path: Path) -> None:
    empty = run("consent", "list", "-r", f"sqlite:///{tmp_path}/empty.db")
    assert empty.exit_code == 2 and "flowguard registry init" in empty.output
    wrong = run("consent", "list", "-r", str(tmp_path / "file.yaml"))
    assert wrong.exit_code == 2 and "expected a database URL" in wrong.output


def test_the_real_command_with_the_default_sqlite_database(tmp_path: Path) -> None:
    """The installed entry point, in a fresh interpreter, with the default
    `sqlite:///flowguard.db` in the working directory."""
    def flowguard(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "flowguard", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120,
                              env={"PATH": "/usr/bin:/bin", "FLOWGUARD_ACTOR": "anne"})

    imported = flowguard("registry", "import", str(AALBORG / "consents.yaml"), "-p", str(AALBORG))
    assert imported.returncode == 0, imported.stderr
    assert (tmp_path / "flowguard.db").exists()
    assert flowguard("consent", "withdraw", "k-0042-cafe").returncode == 0
    history: list[dict[str, Any]] = json.loads(
        flowguard("consent", "history", "k-0042-cafe", "--json").stdout)
    assert history[-1]["by"] == "anne"
    check = flowguard(*CHECK, "-r", "sqlite:///flowguard.db")
    assert check.returncode == 1 and "withdrawn" in check.stdout


