"""Writes need the policy, reads never create a database (issue 12, item 4).

Every registry write that adds or widens something (grant, correct, import, subject,
guardianship) validates against a policy and refuses without one: the history is
append-only, so an unknown id written once could never be removed. A withdrawal (and an
end) needs none (GDPR Art. 7(3)). A read never creates a database file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from flowguard._cli import cli

from .conftest import EXAMPLES
from .test_server import Served, make_setup

AALBORG = EXAMPLES / "aalborg-aktiv"
CONSENT = {"id": "k-new", "subject": "citizen-0609", "given_by": "citizen-0609",
           "given_at": "2026-01-01T00:00:00Z",
           "recipients": [{"organization": "cafe-solsikke"}], "data": ["identity.name"],
           "purposes": ["job-matching"]}


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False,
                              env={"FLOWGUARD_POLICY": None})


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/registry.db"
    result = run("registry", "import", str(AALBORG / "consents.yaml"), "-r", url, "-p",
                 str(AALBORG))
    assert result.exit_code == 0, result.output
    return url


def _history(url: str) -> str:
    return run("registry", "export", "-r", url, "--history").output


def _writes(tmp_path: Path) -> list[list[str]]:
    record = tmp_path / "k.yaml"
    record.write_text(yaml.safe_dump(CONSENT))
    corrected = tmp_path / "k-0042-cafe.yaml"
    corrected.write_text(yaml.safe_dump({**CONSENT, "id": "k-0042-cafe",
                                         "subject": "citizen-0042",
                                         "given_by": "citizen-0042"}))
    return [
        ["consent", "grant", "--file", str(record)],
        ["consent", "grant", "--id", "k-x", "--subject", "citizen-0609", "--recipient",
         "cafe-solsikke", "--data", "identity.name", "--purpose", "job-matching"],
        ["consent", "correct", str(corrected)],
        ["registry", "import", str(AALBORG / "consents.yaml")],
        ["subject", "add", "citizen-7777"],
        ["guardianship", "add", "--id", "g-x", "--guardian", "person-x", "--subject",
         "citizen-0609", "--kind", "adult", "--valid-from", "2026-01-01"],
    ]


def test_every_write_that_adds_refuses_without_a_policy_and_changes_nothing(
        url: str, tmp_path: Path) -> None:
    before = _history(url)
    for args in _writes(tmp_path):
        result = run(*args, "-r", url)
        assert result.exit_code == 2, (args, result.output)
        assert "needs the policy to check every id it writes against" in result.output
        assert "--policy" in result.output and "Traceback" not in result.output
        assert _history(url) == before, args
    # with the policy, each of them goes through
    for args in _writes(tmp_path):
        if args[:2] == ["registry", "import"]:
            continue  # already imported
        result = run(*args, "-r", url, "-p", str(AALBORG))
        assert result.exit_code == 0, (args, result.output)


def test_an_unknown_id_is_refused_with_the_policy(url: str) -> None:
    result = run("subject", "add", "citizen-7777", "--jurisdiction", "XX", "-r", url,
                 "-p", str(AALBORG))
    assert result.exit_code == 2 and "XX" in result.output


def test_withdrawal_and_ends_need_no_policy(url: str) -> None:
    assert run("consent", "withdraw", "k-0042-cafe", "-r", url).exit_code == 0
    assert run("consent", "expire", "k-0042-placements", "-r", url).exit_code == 0
    assert run("guardianship", "end", "g-0107-vaerge", "-r", url,
               "--at", "2026-05-01").exit_code == 0


def test_an_import_without_a_policy_creates_no_database(tmp_path: Path) -> None:
    target = tmp_path / "new.db"
    result = run("registry", "import", str(AALBORG / "consents.yaml"), "-r",
                 f"sqlite:///{target}")
    assert result.exit_code == 2
    assert not target.exists()


@pytest.mark.parametrize("args", [
    ["check", "-p", str(AALBORG), "--sender", "job-consultant", "--recipient",
     "cafe-manager", "--subject", "citizen-0042", "--data", "identity.name", "--purpose",
     "job-matching.employer-contact", "--subprocess", "co-delivery", "-r"],
    ["consent", "show", "k-1", "-p", str(AALBORG), "-r"],
    ["consent", "list", "-p", str(AALBORG), "-r"],
    ["consent", "history", "k-1", "-r"],
    ["consent", "withdraw", "k-1", "-r"],
    ["subject", "show", "citizen-1", "-p", str(AALBORG), "-r"],
    ["guardianship", "list", "-r"],
    ["registry", "export", "-r"],
    ["test", str(AALBORG / "tests.yaml"), "-r"],
    ["lint", str(AALBORG), "-r"],
], ids=lambda a: " ".join(a[:2]))
def test_reads_never_create_a_database(tmp_path: Path, args: list[str]) -> None:
    target = tmp_path / "nothing.db"
    result = run(*args, f"sqlite:///{target}")
    assert not target.exists(), result.output
    assert result.exit_code != 0
    assert "no database file at" in result.output, result.output
    assert "registry init" in result.output
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- HTTP


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Served, dict[str, str], Path]]:
    setup = make_setup(tmp_path)
    s = Served(setup.config())
    yield s, setup.token, setup.policy
    s.stop()


def test_http_writes_validate_against_the_active_policy(
        served: tuple[Served, dict[str, str], Path]) -> None:
    server, token, policy = served
    kommune = token["kommune"]
    typo = {**CONSENT, "data": ["identity.nam"]}
    refused = server.post("/v1/consents", {"consent": typo}, kommune)
    assert refused.status_code in (400, 422), refused.text
    assert "identity.name" in refused.text  # did you mean
    assert server.get("/v1/consents/k-new", kommune).status_code == 404
    # a category the policy does not declare yet, then does after a reload
    nickname = {**CONSENT, "data": ["identity.nickname"]}
    assert server.post("/v1/consents", {"consent": nickname},
                       kommune).status_code in (400, 422)
    policy_file = policy / "policy.yaml"
    policy_file.write_text(policy_file.read_text().replace(
        "data_categories:\n", "data_categories:\n  identity.nickname: {}\n", 1))
    reloaded = server.post("/v1/policy/reload", None, token["admin"])
    assert reloaded.json()["activated"] is True, reloaded.text
    granted = server.post("/v1/consents", {"consent": nickname}, kommune)
    assert granted.status_code == 201, granted.text


def test_http_consent_view_gives_the_lawful_status(
        served: tuple[Served, dict[str, str], Path]) -> None:
    server, token, _ = served
    shown = server.get("/v1/consents/k-0107-cafe-by-guardian", token["kommune"])
    assert shown.status_code == 200
    body = json.loads(shown.text)
    assert body["status"] == "grantor-not-authorized"
    assert "no guardianship covering" in body["reason"]
    own = server.get("/v1/consents/k-0107-cafe-own", token["kommune"]).json()
    assert own["status"] in ("active", "expired", "withdrawn") and own["reason"]
