"""Linking a citizen's login to a subject or a guardian (issue 17, item 2): only a keyed hash
of the login value is stored, as an audited `login.linked` registry event; the CLI and
`POST /v1/logins` are thin shells over `flowguard.store.logins`."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from flowguard._cli import cli
from flowguard.audit.entries import Pseudonymizer, load_pseudonym_key
from flowguard.errors import RegistryError
from flowguard.store import open_store
from flowguard.store.logins import link_login, person_of_login

from .test_server import Served, Setup, audit_entries, make_setup

NATIONAL_ID = "0205911234"


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return make_setup(tmp_path)


def _files_contain(folder: Path, needle: bytes) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


def _link(setup: Setup, *args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["subject", "link", *args, "-r", setup.registry,
                                      "--audit", setup.audit, "--log-key", str(setup.log_key),
                                      "--pseudonym-key", str(setup.pseudonym_key)],
                                input=stdin, catch_exceptions=False)
    return result.exit_code, result.output


def test_cli_link_stores_only_a_keyed_hash_and_audits_by_pseudonym(setup: Setup) -> None:
    code, output = _link(setup, "citizen-0042", "--login", NATIONAL_ID, "--by", "clerk")
    assert code == 0, output
    assert NATIONAL_ID not in output
    keyed = load_pseudonym_key(setup.pseudonym_key)
    with open_store(setup.registry) as store:
        assert person_of_login(store, keyed.login(NATIONAL_ID)) == "citizen-0042"
        assert person_of_login(store, keyed.login("0205911235")) is None
        events = [e for e in store.subject_history("citizen-0042") if e.kind == "login.linked"]
    assert len(events) == 1 and events[0].by == "clerk"
    assert events[0].record == keyed.login(NATIONAL_ID)
    # the raw value is nowhere on disk: registry, audit log, keys
    assert _files_contain(setup.folder, NATIONAL_ID.encode()) == []
    linked = [e for e in audit_entries(setup) if e.get("event") == "login.linked"]
    assert len(linked) == 1
    assert linked[0]["subject"] == keyed("citizen-0042")
    assert "citizen-0042" not in json.dumps(linked[0])


def test_cli_link_reads_the_value_from_stdin_and_links_a_guardian(setup: Setup) -> None:
    code, output = _link(setup, "person-bente", "--login", "-", stdin=NATIONAL_ID + "\n")
    assert code == 0, output
    keyed = load_pseudonym_key(setup.pseudonym_key)
    with open_store(setup.registry) as store:
        assert person_of_login(store, keyed.login(NATIONAL_ID)) == "person-bente"


@pytest.mark.parametrize(("args", "expected"), [
    (("nobody-here", "--login", NATIONAL_ID), "neither a recorded subject nor a guardian"),
    (("citizen-0042", "--login", "  "), "the login value is empty"),
])
def test_cli_link_refuses_bad_input_clearly(setup: Setup, args: tuple[str, ...],
                                            expected: str) -> None:
    code, output = _link(setup, *args)
    assert code == 2 and expected in output and "Traceback" not in output


def test_a_login_links_to_one_person_only(setup: Setup) -> None:
    assert _link(setup, "citizen-0042", "--login", NATIONAL_ID)[0] == 0
    code, output = _link(setup, "citizen-0107", "--login", NATIONAL_ID)
    assert code == 2 and "already linked to another person" in output
    assert NATIONAL_ID not in output


def test_cli_link_without_a_pseudonym_key_is_refused(setup: Setup) -> None:
    result = CliRunner().invoke(cli, ["subject", "link", "citizen-0042", "--login",
                                      NATIONAL_ID, "-r", setup.registry],
                                env={"FLOWGUARD_PSEUDONYM_KEY": ""})
    assert result.exit_code == 2 and "--pseudonym-key is needed" in result.output


def test_store_refuses_a_raw_value_in_place_of_a_hash(setup: Setup) -> None:
    with open_store(setup.registry) as store, pytest.raises(RegistryError,
                                                            match="not a login value"):
        link_login(store, "citizen-0042", NATIONAL_ID, by="clerk")


def test_without_citizen_pages_there_is_no_login_route(setup: Setup) -> None:
    served = Served(setup.config())
    try:
        body = {"by": "clerk", "person": "citizen-0042", "login": NATIONAL_ID}
        assert served.post("/v1/logins", body, setup.token["kommune"]).status_code == 404
    finally:
        served.stop()


def test_http_link_on_a_server_with_citizen_pages(tmp_path: Path) -> None:
    from .citizen_fixtures import start_citizen

    citizen = start_citizen(tmp_path, link=False)
    try:
        served, setup = citizen.served, citizen.setup
        body = {"person": "citizen-0042", "login": NATIONAL_ID}
        # the recorder is the token (flowguard.server.authz): a client's own `by` is refused
        assert served.post("/v1/logins", {**body, "by": "clerk"},
                           setup.token["kommune"]).status_code == 422
        assert served.post("/v1/logins", body, None).status_code == 401
        assert served.post("/v1/logins", body, setup.token["cafe"]).status_code == 403
        made = served.post("/v1/logins", body, setup.token["kommune"])
        assert made.status_code == 201, made.text
        assert NATIONAL_ID not in made.text and made.json()["kind"] == "login.linked"
        with open_store(setup.registry) as store:
            linked = [e for e in store.subject_history("citizen-0042")
                      if e.kind == "login.linked"]
        assert linked[-1].by == "token:kommune organization:aalborg-kommune"
        again = served.post("/v1/logins", body, setup.token["kommune"])
        assert again.status_code == 409 and NATIONAL_ID not in again.text
        rid = uuid.uuid4().hex
        body2 = {**body, "person": "citizen-0107", "login": "2311781235"}
        assert served.post("/v1/logins", body2, setup.token["kommune"],
                           request_id=rid).status_code == 201
        assert served.post("/v1/logins", body2, setup.token["kommune"],
                           request_id=rid).status_code == 409  # replay
        unknown = served.post("/v1/logins", {**body, "person": "nobody", "login": "1"},
                              setup.token["kommune"])
        assert unknown.status_code == 422 and "neither a recorded subject" in unknown.text
        assert _files_contain(setup.folder, NATIONAL_ID.encode()) == []
    finally:
        citizen.stop()


@settings(max_examples=200, deadline=None)
@given(key=st.binary(min_size=32, max_size=48), value=st.text(min_size=1, max_size=40))
def test_login_hashes_are_domain_separated_from_pseudonyms(key: bytes, value: str) -> None:
    keyed = Pseudonymizer(key)
    assert keyed.login(value) != keyed(value)
    assert keyed.login(value).split(":", 1)[1] != keyed(value).split(":", 1)[1]
    assert keyed.login(value) == Pseudonymizer(key).login(value)
    other = Pseudonymizer(bytes(b ^ 1 for b in key))
    assert other.login(value) != keyed.login(value)
