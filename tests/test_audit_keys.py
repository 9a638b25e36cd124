"""Keys that cannot be confused, signed exits and clear audit argument errors (issue 12,
items 6 and 7): a log key named otherwise than the log's origin and a pseudonym key other
than the log's are refused by every writer before anything is written, and by every
reader; a process that appends signs a checkpoint over its entries before it exits;
argument errors are one line with exit 2; audit and registry databases are private."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from flowguard._cli import cli
from flowguard.audit.entries import generate_pseudonym_key, write_secret
from flowguard.audit.log import MIGRATIONS, AuditLog
from flowguard.audit.note import Signer, generate_key
from flowguard.audit.trail import open_audit_log
from flowguard.errors import InputError
from flowguard.store import open_store
from flowguard.store._db import connect, migrate

ROOT = Path(__file__).resolve().parent.parent
AALBORG = ROOT / "policies" / "aalborg-aktiv"
ORIGIN = "audit.keys.test/log"
FLOW = ["--sender", "job-consultant", "--recipient", "cafe-manager", "--subject",
        "citizen-0042", "--data", "identity.name", "--purpose",
        "job-matching.employer-contact", "--subprocess", "co-delivery", "--at",
        "2026-03-02T09:30:00Z"]


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def one_line_error(result: Result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in result.output and "internal error" not in result.output
    for word in words:
        assert word in lines[0], (word, lines[0])


class Keys:
    def __init__(self, folder: Path, name: str = ORIGIN) -> None:
        folder.mkdir(exist_ok=True)
        skey, self.vkey = generate_key(name)
        self.log_key = folder / "log.key"
        write_secret(self.log_key, skey + "\n")
        self.pseudonym_key = folder / "pseudonym.key"
        generate_pseudonym_key(self.pseudonym_key)


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path / "keys")


@pytest.fixture
def other(tmp_path: Path) -> Keys:
    """Valid keys, but not the log's: another name, another pseudonym key."""
    return Keys(tmp_path / "other", "audit.other.test/log")


@pytest.fixture
def registry(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    imported = run("registry", "import", str(AALBORG / "consents.yaml"), "-r", url, "-p",
                   str(AALBORG), "--by", "anne")
    assert imported.exit_code == 0, imported.output
    return url


def options(audit: str, log_key: Path, pseudonym_key: Path) -> list[str]:
    return ["--audit", audit, "--log-key", str(log_key), "--pseudonym-key",
            str(pseudonym_key)]


def check(registry: str, *audit_options: str) -> Result:
    return run("check", "-p", str(AALBORG), "-r", registry, *audit_options, *FLOW)


def log_state(audit: str) -> tuple[int, list[tuple[int, str]]]:
    log = open_audit_log(audit, create=False)
    try:
        return log.size, log.checkpoints()
    finally:
        log.close()


# --------------------------------------------------------------------------- log key


def test_a_log_key_named_otherwise_is_refused_before_anything_is_written(
        tmp_path: Path, keys: Keys, other: Keys, registry: str) -> None:
    audit = f"sqlite:///{tmp_path / 'audit.db'}"
    assert check(registry, *options(audit, keys.log_key, keys.pseudonym_key)).exit_code == 0
    before = log_state(audit)
    wrong = check(registry, *options(audit, other.log_key, keys.pseudonym_key))
    one_line_error(wrong, str(other.log_key), "audit.other.test/log", ORIGIN,
                   "nothing was written")
    granted = run("consent", "grant", "-r", registry, "-p", str(AALBORG), "--by", "anne",
                  "--id", "k-x", "--subject", "citizen-0042", "--recipient",
                  "organization:cafe-solsikke", "--data", "identity.name", "--purpose",
                  "job-matching", *options(audit, other.log_key, keys.pseudonym_key))
    one_line_error(granted, ORIGIN)
    with open_store(registry) as store:
        assert store.consent("k-x") is None
    assert log_state(audit) == before
    # the log still verifies, and its own key still signs
    assert run("audit", "verify", "--audit", audit, "--vkey", keys.vkey).exit_code == 0
    signed = run("audit", "checkpoint", "--audit", audit, "--sign", "--log-key",
                 str(keys.log_key))
    assert signed.exit_code == 0, signed.output
    refused = run("audit", "checkpoint", "--audit", audit, "--sign", "--log-key",
                  str(other.log_key))
    one_line_error(refused, ORIGIN)


def test_the_server_refuses_keys_that_are_not_the_logs(tmp_path: Path, keys: Keys,
                                                       other: Keys, registry: str) -> None:
    from flowguard.server.app import ServerConfig, Service

    audit = f"sqlite:///{tmp_path / 'audit.db'}"
    assert check(registry, *options(audit, keys.log_key, keys.pseudonym_key)).exit_code == 0
    before = log_state(audit)
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text('{"tokens": []}', encoding="utf-8")
    tokens.chmod(0o600)
    for log_key, pseudonym_key, words in ((other.log_key, keys.pseudonym_key, ORIGIN),
                                          (keys.log_key, other.pseudonym_key, "pseudonym")):
        with pytest.raises(InputError, match=words):
            Service(ServerConfig(policy=str(AALBORG), tokens=str(tokens), registry=registry,
                                 audit=audit, log_key=str(log_key),
                                 pseudonym_key=str(pseudonym_key)))
    assert log_state(audit) == before


def test_a_new_log_takes_its_origin_from_its_first_key(tmp_path: Path, keys: Keys,
                                                       other: Keys) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    log = open_audit_log(url, log_key=keys.log_key)  # no checkpoint yet
    log.close()
    with pytest.raises(InputError, match="origin"):
        open_audit_log(url, log_key=other.log_key)
    db = connect(url)
    with pytest.raises(InputError, match="origin"):
        AuditLog(db, signer=Signer(other.log_key.read_text().strip()))
    db.close()


# --------------------------------------------------------------------------- pseudonym key


def test_a_pseudonym_key_that_is_not_the_logs_is_refused_by_every_command(
        tmp_path: Path, keys: Keys, other: Keys, registry: str) -> None:
    audit = f"sqlite:///{tmp_path / 'audit.db'}"
    assert check(registry, *options(audit, keys.log_key, keys.pseudonym_key)).exit_code == 0
    before = log_state(audit)
    wrong = str(other.pseudonym_key)
    results = {
        "check": check(registry, *options(audit, keys.log_key, other.pseudonym_key)),
        "withdraw": run("consent", "withdraw", "k-0042-cafe", "-r", registry, "--by", "anne",
                        *options(audit, keys.log_key, other.pseudonym_key)),
        "access-report": run("audit", "access-report", "--audit", audit, "--subject",
                             "citizen-0042", "--pseudonym-key", wrong),
        "show": run("audit", "show", "--audit", audit, "--subject", "citizen-0042",
                    "--pseudonym-key", wrong),
        "replay": run("audit", "replay", "--audit", audit, "-r", registry,
                      "--pseudonym-key", wrong),
        "reconcile": run("audit", "reconcile", "--audit", audit, "-r", registry,
                         "--pseudonym-key", wrong),
    }
    for name, result in results.items():
        one_line_error(result, wrong, "not the audit log's pseudonym key")
        assert "Nobody" not in result.output, name
        assert "citizen-0042" not in result.output, name
    assert log_state(audit) == before
    with open_store(registry) as store:
        found = store.consent("k-0042-cafe")
        assert found is not None and found[0].withdrawn_at is None
    right = run("audit", "access-report", "--audit", audit, "--subject", "citizen-0042",
                "--pseudonym-key", str(keys.pseudonym_key))
    assert right.exit_code == 0 and "Nobody" not in right.stdout and not right.stderr


def _legacy_log(url: str) -> None:
    """A log written before keys were recorded: the audit schema only, two entries."""
    db = connect(url)
    migrate(db, "audit", MIGRATIONS)
    log = AuditLog(db)
    log.append([{"v": 1, "kind": "policy", "time": "2026-01-01T00:00:00.000000Z",
                 "policy_digest": "sha256:00", "service": "x"}])
    log.close()


def test_a_log_without_a_fingerprint_gets_one_from_its_first_writer_who_says_so(
        tmp_path: Path, keys: Keys, other: Keys, registry: str) -> None:
    audit = f"sqlite:///{tmp_path / 'audit.db'}"
    _legacy_log(audit)
    read = run("audit", "access-report", "--audit", audit, "--subject", "citizen-0042",
               "--pseudonym-key", str(keys.pseudonym_key))
    assert read.exit_code == 0
    assert "could not be checked" in read.stderr  # a reader can only warn
    first = check(registry, *options(audit, keys.log_key, keys.pseudonym_key))
    assert first.exit_code == 0, first.output
    assert "the key given is now recorded as the log's" in first.stderr
    second = check(registry, *options(audit, keys.log_key, keys.pseudonym_key))
    assert second.exit_code == 0 and not second.stderr
    refused = check(registry, *options(audit, keys.log_key, other.pseudonym_key))
    one_line_error(refused, "not the audit log's pseudonym key")


def test_the_log_records_a_fingerprint_never_the_key(tmp_path: Path, keys: Keys,
                                                     registry: str) -> None:
    audit_path = tmp_path / "audit.db"
    audit = f"sqlite:///{audit_path}"
    assert check(registry, *options(audit, keys.log_key, keys.pseudonym_key)).exit_code == 0
    key = keys.pseudonym_key.read_text().strip()
    assert key.encode() not in audit_path.read_bytes()
    assert bytes.fromhex(key) not in audit_path.read_bytes()
    log = open_audit_log(audit, create=False)
    try:
        fingerprint = log.setting("pseudonym-key")
        assert fingerprint is not None and fingerprint.startswith("hmac-sha256:")
        assert log.setting("origin") == ORIGIN
    finally:
        log.close()


# --------------------------------------------------------------------------- signed exits


def test_check_signs_a_checkpoint_over_its_entries_before_it_exits(
        tmp_path: Path, keys: Keys, registry: str) -> None:
    audit = f"sqlite:///{tmp_path / 'audit.db'}"
    for _ in range(3):  # within a minute: no checkpoint would be due by time
        assert check(registry, *options(audit, keys.log_key, keys.pseudonym_key)).exit_code == 0
        size, checkpoints = log_state(audit)
        assert checkpoints and checkpoints[-1][0] == size
    verified = run("audit", "verify", "--audit", audit, "--vkey", keys.vkey)
    assert verified.exit_code == 0 and "not signed for yet" not in verified.stdout


# --------------------------------------------------------------------------- arguments


@pytest.fixture
def audited(tmp_path: Path, keys: Keys, registry: str) -> str:
    audit = f"sqlite:///{tmp_path / 'audit.db'}"
    assert check(registry, *options(audit, keys.log_key, keys.pseudonym_key)).exit_code == 0
    return audit


def test_export_ranges_are_checked(audited: str) -> None:
    one_line_error(run("audit", "export", "--audit", audited, "--start",
                       "99999999999999999999"), "--start", "past the end of the log")
    one_line_error(run("audit", "export", "--audit", audited, "--start", "10", "--end", "5"),
                   "--end", "before --start")
    size = log_state(audited)[0]
    at_end = run("audit", "export", "--audit", audited, "--start", str(size))
    assert at_end.exit_code == 0 and at_end.stdout == ""
    clamped = run("audit", "export", "--audit", audited, "--end", "99999999999999999999")
    assert clamped.exit_code == 0 and len(clamped.stdout.splitlines()) == size


def test_show_refuses_an_unknown_category_naming_the_known_ones(audited: str) -> None:
    result = run("audit", "show", "--audit", audited, "--category", "nosuch")
    one_line_error(result, "--category", "'nosuch'", "identity.name", "health")
    parent = run("audit", "show", "--audit", audited, "--category", "identity")
    assert parent.exit_code == 0, parent.output


def test_verify_of_an_export_honours_no_check_entries(tmp_path: Path) -> None:
    skey, vkey = generate_key("form.test/log")
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    log = open_audit_log(url)
    log.close()
    db = connect(url)
    log = AuditLog(db, signer=Signer(skey))
    log.append([{"kind": "decision", "subject": "citizen-0042", "v": 1}])
    note = log.checkpoint()
    log.close()
    export = tmp_path / "export.jsonl"
    export.write_bytes(run("audit", "export", "--audit", url).stdout_bytes)
    kept = tmp_path / "kept.checkpoint"
    kept.write_text(note, encoding="utf-8")
    base = ["audit", "verify", "--entries", str(export), "--checkpoint", str(kept),
            "--vkey", vkey]
    assert run(*base, "--no-check-entries").exit_code == 0
    assert run(*base).exit_code == 0  # the default, as for a database: the tree only
    form = run(*base, "--check-entries")
    assert form.exit_code == 1 and "without a pseudonym" in form.output
    assert "citizen-0042" not in form.output


@pytest.fixture
def common_umask() -> Iterator[None]:
    """The usual umask, under which SQLite alone creates files readable by everyone."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.mark.usefixtures("common_umask")
def test_audit_and_registry_databases_are_private(tmp_path: Path, keys: Keys) -> None:
    registry_path = tmp_path / "registry.db"
    assert run("registry", "init", f"sqlite:///{registry_path}").exit_code == 0
    imported = run("registry", "import", str(AALBORG / "consents.yaml"), "-r",
                   f"sqlite:///{registry_path}", "-p", str(AALBORG), "--by", "anne")
    assert imported.exit_code == 0
    audit_path = tmp_path / "audit.db"
    assert check(f"sqlite:///{registry_path}",
                 *options(f"sqlite:///{audit_path}", keys.log_key,
                          keys.pseudonym_key)).exit_code == 0
    for path in (registry_path, audit_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        for companion in (Path(f"{path}-wal"), Path(f"{path}-shm")):
            if companion.exists():
                assert stat.S_IMODE(companion.stat().st_mode) == 0o600, companion


def test_no_key_or_fingerprint_leaks_into_messages(tmp_path: Path, keys: Keys, other: Keys,
                                                   audited: str) -> None:
    result = run("audit", "access-report", "--audit", audited, "--subject", "citizen-0042",
                 "--pseudonym-key", str(other.pseudonym_key))
    for key in (keys.pseudonym_key, other.pseudonym_key):
        assert key.read_text().strip() not in result.output
    assert "hmac-sha256:" not in result.output
    assert json.dumps("citizen-0042") not in result.output
