"""`flowguard keys` and `flowguard audit`, end to end as an operator, an auditor and a
citizen would use them: keys, `check --audit` appending, checkpoints, export, verify (and
tampering), receipts, consistency proofs, filtered listings, replay and the access report.
No raw subject id may appear in the audit database or in any output."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from flowguard._cli import cli
from flowguard.audit.checkpoint import Checkpoint
from flowguard.audit.entries import load_pseudonym_key
from flowguard.audit.log import AuditLog
from flowguard.audit.merkle import verify_consistency
from flowguard.audit.note import Signer, Verifier
from flowguard.store._db import connect

ROOT = Path(__file__).resolve().parent.parent
AALBORG = ROOT / "policies" / "aalborg-aktiv"
ORIGIN = "audit.aalborg.test/flowguard"
AUDIT_TRIGGERS = [f"{table}_no_{op}" for table in ("audit_entries", "audit_nodes",
                                                   "audit_checkpoints", "audit_policies")
                  for op in ("update", "delete")]


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def no_traceback(result: Result) -> None:
    assert "Traceback" not in result.output


@dataclass(frozen=True)
class Setup:
    folder: Path
    audit: str
    audit_path: Path
    registry: str
    log_key: Path
    pseudonym_key: Path
    vkey: str
    subjects: tuple[str, ...]

    @property
    def audit_options(self) -> list[str]:
        return ["--audit", self.audit, "--log-key", str(self.log_key), "--pseudonym-key",
                str(self.pseudonym_key)]

    def pseudonym(self, subject: str) -> str:
        pseudonym: str = load_pseudonym_key(self.pseudonym_key)(subject)
        return pseudonym

    def log(self) -> AuditLog:
        return AuditLog(connect(self.audit))


def _flows() -> list[dict[str, Any]]:
    """Every flow of the example's table-driven tests: permits and denials, many bases."""
    suite = yaml.safe_load((AALBORG / "tests.yaml").read_text(encoding="utf-8"))
    return [dict(case["flow"]) for case in suite["cases"]]


def _iso(value: Any) -> str:
    return value.isoformat().replace("+00:00", "Z") if hasattr(value, "isoformat") \
        else str(value)


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    keys = tmp_path / "keys"
    keys.mkdir()
    generated = run("keys", "generate", "--name", ORIGIN, "--out", str(keys / "log.key"))
    assert generated.exit_code == 0, generated.output
    vkey = generated.stdout.strip()
    assert run("keys", "pseudonym", "--out", str(keys / "pseudonym.key")).exit_code == 0
    registry = f"sqlite:///{tmp_path / 'registry.db'}"
    imported = run("registry", "import", str(AALBORG / "consents.yaml"), "-r", registry,
                   "-p", str(AALBORG), "--by", "anne")
    assert imported.exit_code == 0, imported.output
    subjects = tuple(yaml.safe_load((AALBORG / "consents.yaml").read_text(encoding="utf-8"))
                     ["subjects"])
    audit_path = tmp_path / "audit.db"
    done = Setup(tmp_path, f"sqlite:///{audit_path}", audit_path, registry,
                 keys / "log.key", keys / "pseudonym.key", vkey, subjects)
    flows = tmp_path / "flows.json"
    flows.write_text(json.dumps(_flows(), default=_iso), encoding="utf-8")
    checked = run("check", str(flows), "-p", str(AALBORG), "-r", registry,
                  *done.audit_options)
    assert checked.exit_code == 1, checked.output  # some flows are denied
    one = run("check", "-p", str(AALBORG), "-r", registry, *done.audit_options,
              "--sender", "job-consultant", "--recipient", "cafe-manager", "--subject",
              "citizen-0042", "--data", "identity.name", "--purpose",
              "job-matching.employer-contact", "--subprocess", "co-delivery",
              "--at", "2026-03-02T09:30:00Z")
    assert one.exit_code == 0, one.output
    return done


# --------------------------------------------------------------------------- keys


def test_keys_are_private_files_never_overwritten(tmp_path: Path) -> None:
    key = tmp_path / "log.key"
    made = run("keys", "generate", "--name", ORIGIN, "--out", str(key))
    assert made.exit_code == 0, made.output
    vkey = made.stdout.strip()
    verifier = Verifier(vkey)
    assert verifier.name == ORIGIN
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert Signer(key.read_text().strip()).vkey == vkey
    shown = run("keys", "vkey", str(key))
    assert (shown.exit_code, shown.stdout.strip()) == (0, vkey)
    before = key.read_bytes()
    again = run("keys", "generate", "--name", ORIGIN, "--out", str(key))
    assert again.exit_code == 2 and "refusing to overwrite" in again.stderr
    assert key.read_bytes() == before
    bad = run("keys", "generate", "--name", "has space", "--out", str(tmp_path / "x.key"))
    assert bad.exit_code == 2 and bad.stderr.startswith("--name: error")
    assert not (tmp_path / "x.key").exists()
    pseudonym = tmp_path / "p.key"
    assert run("keys", "pseudonym", "--out", str(pseudonym)).exit_code == 0
    assert stat.S_IMODE(pseudonym.stat().st_mode) == 0o600
    assert len(bytes.fromhex(pseudonym.read_text().strip())) == 32
    assert run("keys", "pseudonym", "--out", str(pseudonym)).exit_code == 2
    key.chmod(0o644)
    readable = run("keys", "vkey", str(key))
    assert readable.exit_code == 2 and "read by others" in readable.stderr
    missing = run("keys", "vkey", str(tmp_path / "none.key"))
    assert missing.exit_code == 2
    for result in (again, bad, readable, missing):
        no_traceback(result)


# --------------------------------------------------------------------------- the auditor


def test_check_appends_and_the_auditor_verifies_then_catches_tampering(setup: Setup) -> None:
    log = setup.log()
    size = log.size
    stored = [data for _, data in log.entries()]
    log.close()
    assert size == 2 + len(_flows()) + 1  # a policy activation per run, the decisions
    latest = run("audit", "checkpoint", "--audit", setup.audit)
    assert latest.exit_code == 0
    signed = run("audit", "checkpoint", "--audit", setup.audit, "--sign", "--log-key",
                 str(setup.log_key))
    assert signed.exit_code == 0, signed.output
    checkpoint = Checkpoint.parse(signed.stdout[:signed.stdout.rfind("\n\n") + 1])
    assert (checkpoint.origin, checkpoint.size) == (ORIGIN, size)
    kept = setup.folder / "kept.checkpoint"
    kept.write_text(signed.stdout, encoding="utf-8")

    exported = run("audit", "export", "--audit", setup.audit)
    assert exported.exit_code == 0
    assert exported.stdout_bytes == b"".join(data + b"\n" for data in stored)
    part = run("audit", "export", "--audit", setup.audit, "--start", "3", "--end", "5")
    assert part.stdout_bytes == stored[3] + b"\n" + stored[4] + b"\n"

    vkey_file = setup.folder / "log.vkey"
    vkey_file.write_text(setup.vkey + "\n", encoding="utf-8")
    ok = run("audit", "verify", "--audit", setup.audit, "--vkey", setup.vkey, "--progress")
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.startswith(f"OK: {size} entries verified")
    since = run("audit", "verify", "--audit", setup.audit, "--vkey", str(vkey_file),
                "--since", str(kept))
    assert since.exit_code == 0 and f"extends the kept checkpoint of {size}" in since.stdout

    export_file = setup.folder / "export.jsonl"
    export_file.write_bytes(exported.stdout_bytes)
    offline = run("audit", "verify", "--entries", str(export_file), "--checkpoint", str(kept),
                  "--vkey", setup.vkey)
    assert offline.exit_code == 0, offline.output

    conn = sqlite3.connect(setup.audit_path, isolation_level=None)
    for trigger in AUDIT_TRIGGERS:
        conn.execute(f"DROP TRIGGER {trigger}")
    altered = stored[7].replace(b'"decision":"deny"', b'"decision":"permit"', 1)
    if altered == stored[7]:
        altered = stored[7].replace(b'"v":1', b'"v":2')
    conn.execute("UPDATE audit_entries SET entry = ? WHERE idx = 7", (altered,))
    conn.close()
    tampered = run("audit", "verify", "--audit", setup.audit, "--vkey", setup.vkey)
    assert tampered.exit_code == 1
    assert "entry 7 " in tampered.stderr and "FAILED" in tampered.stderr
    no_traceback(tampered)
    export_file.write_bytes(exported.stdout_bytes.replace(stored[7], altered))
    offline = run("audit", "verify", "--entries", str(export_file), "--checkpoint", str(kept),
                  "--vkey", setup.vkey)
    assert offline.exit_code == 1 and str(export_file) in offline.stderr


def test_verify_refuses_bad_input_with_exit_2(setup: Setup) -> None:
    cases = [
        (["audit", "verify", "--audit", setup.audit, "--vkey", "not-a-key"], "--vkey"),
        (["audit", "verify", "--audit", f"sqlite:///{setup.folder / 'none.db'}", "--vkey",
          setup.vkey], "none.db"),
        (["audit", "verify", "--audit", setup.audit, "--vkey", setup.vkey, "--since",
          str(setup.folder / "none.checkpoint")], "none.checkpoint"),
        (["audit", "verify", "--vkey", setup.vkey], "--audit"),
        (["audit", "prove", "-1", "--audit", setup.audit], "INDEX"),
        (["audit", "prove", "100000", "--audit", setup.audit], "INDEX"),
        (["audit", "consistency", "0", "3", "--audit", setup.audit], "OLD"),
        (["audit", "consistency", "5", "100000", "--audit", setup.audit], "100000"),
        (["audit", "show", "--audit", setup.audit, "--subject", "citizen-0042"],
         "--pseudonym-key"),
        (["audit", "show", "--audit", setup.audit, "--since", "yesterday"], "--since"),
        (["audit", "export", "--audit", setup.audit, "--start", "-3"], "--start"),
        (["audit", "replay", "--audit", setup.audit, "-r", str(AALBORG / "consents.yaml"),
          "--pseudonym-key", str(setup.pseudonym_key)], "--registry"),
    ]
    for args, place in cases:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert place in result.stderr, (args, result.stderr)
        no_traceback(result)
        assert "citizen-0042" not in result.output
    garbage = setup.folder / "garbage.db"
    garbage.write_bytes(b"not a database" * 100)
    result = run("audit", "show", "--audit", f"sqlite:///{garbage}")
    assert result.exit_code == 2 and "garbage.db" in result.stderr


def test_receipts_prove_entries_offline(setup: Setup) -> None:
    signed = run("audit", "checkpoint", "--audit", setup.audit, "--sign", "--log-key",
                 str(setup.log_key))
    assert signed.exit_code == 0
    log = setup.log()
    size = log.size
    entries = {index: data for index, data in log.entries()}
    log.close()
    for index in (0, 1, size // 2, size - 1):
        proved = run("audit", "prove", str(index), "--audit", setup.audit)
        assert proved.exit_code == 0, proved.output
        assert proved.stdout.startswith(f"c2sp.org/tlog-proof@v1\nindex {index}\n")
        receipt = setup.folder / f"receipt-{index}.txt"
        receipt.write_text(proved.stdout, encoding="utf-8")
        entry = setup.folder / f"entry-{index}.json"
        entry.write_bytes(entries[index] + b"\n")
        checked = run("audit", "verify-receipt", str(receipt), "--vkey", setup.vkey,
                      "--entry", str(entry))
        assert checked.exit_code == 0, checked.output
        assert f"entry {index} is in the log {ORIGIN} of {size} entries" in checked.stdout
        from_log = run("audit", "verify-receipt", str(receipt), "--vkey", setup.vkey,
                       "--audit", setup.audit)
        assert from_log.exit_code == 0
    # another entry, another key, a doctored receipt: all refused with exit 1
    receipt = setup.folder / "receipt-1.txt"
    other_entry = setup.folder / "entry-0.json"
    wrong_entry = run("audit", "verify-receipt", str(receipt), "--vkey", setup.vkey,
                      "--entry", str(other_entry))
    assert wrong_entry.exit_code == 1 and "does not prove" in wrong_entry.stderr
    _, other_vkey = __import__("flowguard.audit.note", fromlist=["generate_key"]) \
        .generate_key(ORIGIN)
    wrong_key = run("audit", "verify-receipt", str(receipt), "--vkey", other_vkey,
                    "--entry", str(setup.folder / "entry-1.json"))
    assert wrong_key.exit_code == 1
    doctored = setup.folder / "doctored.txt"
    doctored.write_text(receipt.read_text().replace("index 1\n", "index 2\n"), "utf-8")
    assert run("audit", "verify-receipt", str(doctored), "--vkey", setup.vkey, "--entry",
               str(setup.folder / "entry-1.json")).exit_code == 1
    malformed = setup.folder / "malformed.txt"
    malformed.write_text("not a receipt\n", "utf-8")
    result = run("audit", "verify-receipt", str(malformed), "--vkey", setup.vkey, "--entry",
                 str(other_entry))
    assert result.exit_code == 2 and "malformed.txt" in result.stderr
    # a checkpoint covering the index is needed
    sized = run("audit", "prove", "1", "--size", str(size), "--audit", setup.audit)
    assert sized.exit_code == 0
    assert run("audit", "prove", "1", "--size", "3", "--audit", setup.audit).exit_code == 2


def test_consistency_prints_a_proof_that_verifies(setup: Setup) -> None:
    log = setup.log()
    size = log.size
    for old, new in ((1, size), (3, size), (size // 2, size - 1), (4, 4)):
        result = run("audit", "consistency", str(old), str(new), "--audit", setup.audit)
        assert result.exit_code == 0, result.output
        proof = [base64.b64decode(line) for line in result.stdout.splitlines()]
        assert proof == log.consistency_proof(old, new)
        verify_consistency(old, new, log.root(old), log.root(new), proof)
    log.close()


# --------------------------------------------------------------------------- show


def _show(setup: Setup, *args: str) -> list[dict[str, Any]]:
    result = run("audit", "show", "--audit", setup.audit, "--json", *args)
    assert result.exit_code == 0, result.output
    listed: list[dict[str, Any]] = json.loads(result.stdout)
    return listed


def test_show_filters_and_finds_exactly_one_citizens_entries(setup: Setup) -> None:
    log = setup.log()
    everything = [(index, json.loads(data)) for index, data in log.entries()]
    log.close()
    subject = "citizen-0042"
    pseudonym = setup.pseudonym(subject)
    mine = [index for index, entry in everything if entry.get("subject") == pseudonym]
    assert len(mine) >= 5
    shown = _show(setup, "--subject", subject, "--pseudonym-key", str(setup.pseudonym_key))
    assert [item["index"] for item in shown] == mine
    table = run("audit", "show", "--audit", setup.audit, "--subject", subject,
                "--pseudonym-key", str(setup.pseudonym_key))
    assert table.exit_code == 0 and f"{len(mine)} entries" in table.stdout
    denied = _show(setup, "--outcome", "deny")
    assert denied and all(item["entry"]["outcome"] == "deny" for item in denied)
    assert len(denied) == sum(e.get("outcome") == "deny" for _, e in everything)
    cafe = _show(setup, "--organization", "cafe-solsikke", "--kind", "decision")
    assert cafe and all(item["entry"]["organization"] == "cafe-solsikke" for item in cafe)
    to_manager = _show(setup, "--recipient", "cafe-manager")
    assert {item["index"] for item in to_manager} == {
        index for index, e in everything if e.get("recipient") == "cafe-manager"}
    health = _show(setup, "--category", "health")
    assert health and all(any(c.startswith("health") for c in item["entry"]["data"])
                          or any(c["category"].startswith("health")
                                 for c in item["entry"]["categories"]) for item in health)
    policies = _show(setup, "--kind", "policy")
    assert len(policies) == 2
    times = sorted(e["time"] for _, e in everything)
    late = _show(setup, "--since", times[-1])
    assert [item["entry"]["time"] for item in late] == [times[-1]]
    assert _show(setup, "--until", times[0]) == []
    assert _show(setup, "--subject", "nobody-here", "--pseudonym-key",
                 str(setup.pseudonym_key)) == []


def test_no_raw_subject_id_in_the_store_or_any_output(setup: Setup) -> None:
    # a registry change, audited, for good measure
    withdrawn = run("consent", "withdraw", "k-0042-cafe", "-r", setup.registry, "--by", "anne",
                    *setup.audit_options)
    assert withdrawn.exit_code == 0, withdrawn.output
    outputs = [run("audit", "export", "--audit", setup.audit).stdout]
    for subject in setup.subjects:
        for args in (["--json"], []):
            result = run("audit", "show", "--audit", setup.audit, "--subject", subject,
                         "--pseudonym-key", str(setup.pseudonym_key), *args)
            assert result.exit_code == 0
            outputs.append(result.output)
    outputs.append(run("audit", "show", "--audit", setup.audit, "--json").output)
    outputs.append(run("audit", "show", "--audit", setup.audit).output)
    stored = b"".join(path.read_bytes() for path in setup.folder.glob("audit.db*"))
    for subject in setup.subjects:
        assert subject.encode() not in stored, subject
        for output in outputs:
            assert subject not in output, subject
    assert setup.pseudonym("citizen-0042") in outputs[0]


# --------------------------------------------------------------------------- replay


def test_replay_reproduces_an_honest_log_even_after_the_registry_changes(
        setup: Setup) -> None:
    args = ["audit", "replay", "--audit", setup.audit, "-r", setup.registry,
            "--pseudonym-key", str(setup.pseudonym_key)]
    honest = run(*args)
    assert honest.exit_code == 0, honest.output
    decisions = len(_flows()) + 1
    assert f"{decisions} of {decisions} decisions replayed, 0 differ" in honest.stdout
    # the registry moves on, even with a withdrawal back-dated before the logged flows
    # (which would deny them now): replay decides at each decision's recorded revision
    assert run("consent", "withdraw", "k-0042-cafe", "-r", setup.registry, "--by",
               "anne", "--at", "2026-01-15T00:00:00Z").exit_code == 0
    assert run("consent", "withdraw", "k-0451-cafe", "-r", setup.registry, "--by",
               "anne").exit_code == 0
    flow = ["--sender", "job-consultant", "--recipient", "cafe-manager", "--subject",
            "citizen-0042", "--data", "identity.name", "--purpose",
            "job-matching.employer-contact", "--subprocess", "co-delivery",
            "--at", "2026-03-02T09:30:00Z"]
    denied_now = run("check", "-p", str(AALBORG), "-r", setup.registry, *setup.audit_options,
                     *flow, "--json")
    assert denied_now.exit_code == 1
    assert json.loads(denied_now.stdout)["reason"] == "CONSENT_WITHDRAWN"
    after = run(*args)
    assert after.exit_code == 0, after.output
    assert f"{decisions + 1} of {decisions + 1} decisions replayed, 0 differ" in after.stdout
    for subject in setup.subjects:
        assert subject not in after.output


def test_replay_reports_an_altered_history_or_policy_text(setup: Setup) -> None:
    args = ["audit", "replay", "--audit", setup.audit, "-r", setup.registry,
            "--pseudonym-key", str(setup.pseudonym_key)]
    # the registry's history rewritten: k-0042-cafe given later than it was
    registry = sqlite3.connect(setup.folder / "registry.db", isolation_level=None)
    registry.execute("DROP TRIGGER registry_events_no_update")
    seq, body = registry.execute("SELECT seq, body FROM registry_events WHERE record = ? AND "
                                 "kind = 'consent.granted'", ("k-0042-cafe",)).fetchone()
    record = json.loads(body)
    record["given_at"] = "2026-06-01T00:00:00Z"
    registry.execute("UPDATE registry_events SET body = ? WHERE seq = ?",
                     (json.dumps(record), seq))
    registry.close()
    rewritten = run(*args)
    assert rewritten.exit_code == 1
    assert "DIFFERS" in rewritten.stdout and "recorded permit" in rewritten.stdout
    assert "citizen-0042" not in rewritten.output
    # the kept policy text altered
    conn = sqlite3.connect(setup.audit_path, isolation_level=None)
    conn.execute("DROP TRIGGER audit_policies_no_update")
    conn.execute("UPDATE audit_policies SET canonical = CAST(replace(CAST(canonical AS TEXT), "
                 "'\"consent\"', '\"contract\"') AS BLOB)")
    conn.close()
    altered = run(*args)
    assert altered.exit_code == 1
    assert "does not hash to it" in altered.stderr
    no_traceback(altered)
    # a policy given on the command line does not stand in for an altered kept text
    assert run(*args, "--policy-dir", str(AALBORG)).exit_code == 1


# --------------------------------------------------------------------------- access report


def test_the_access_report_tells_a_citizen_who_received_what_and_why(setup: Setup) -> None:
    page = setup.folder / "report.html"
    result = run("audit", "access-report", "--audit", setup.audit, "--subject", "citizen-0042",
                 "--pseudonym-key", str(setup.pseudonym_key), "--html", str(page))
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "WHO RECEIVED YOUR DATA" in text and "REQUESTS THAT WERE REFUSED" in text
    assert "Café Solsikken ApS (cafe-solsikke)" in text  # the organization, by name
    assert "cafe-manager" in text  # the recipient actor
    assert "identity.name" in text  # the category
    assert "your consent (GDPR Art. 6(1)(a)), consent record k-0042-cafe" in text  # basis
    assert "rule employer-contact" in text
    assert "2 March 2026 at 09:30 UTC" in text  # the date of the flow
    assert "1 March 2026 at 10:00 UTC" in text
    assert "there was no consent covering it" in text  # a refused request, in words
    assert "k-0042-health-jobcenter" in text  # explicit consent for health data
    html = page.read_text(encoding="utf-8")
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<h2>Who received your data</h2>" in html
    assert "<h2>Requests that were refused</h2>" in html
    assert "Café Solsikken ApS" in html and "identity.name" in html
    assert "consent record k-0042-cafe" in html and "2 March 2026" in html
    assert "<script" not in html and "src=" not in html and "href=" not in html
    assert "http://" not in html and "https://" not in html
    for subject in setup.subjects:
        assert subject not in text and subject not in html
    lawful = run("audit", "access-report", "--audit", setup.audit, "--subject", "citizen-0609",
                 "--pseudonym-key", str(setup.pseudonym_key))
    assert lawful.exit_code == 0
    assert "a task in the public interest or in the exercise of official authority (GDPR " \
           "Art. 6(1)(e)), under Serviceloven" in lawful.stdout  # a basis in law
    nobody = run("audit", "access-report", "--audit", setup.audit, "--subject", "no-one",
                 "--pseudonym-key", str(setup.pseudonym_key))
    assert nobody.exit_code == 0 and "records no transfer of your data" in nobody.stdout


def test_the_html_report_escapes_what_it_shows() -> None:
    from flowguard.audit.report import AccessItem, AccessReport, CategoryLine, render_access_html

    line = CategoryLine("x<y", "<b>bold</b>", "permit", "permitted", "a & b", None, None, None,
                        None)
    item = AccessItem(0, "d", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "s<", None,
                      "r\"", "<script>alert(1)</script>", "o", None, "p", None, "sp", None,
                      "permit", "permitted", (line,), None)
    page = render_access_html(AccessReport((item,), (), (), 1, "o<rigin", 1, "root"))
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>bold</b>" not in page and "x&lt;y" in page and "a &amp; b" in page


# --------------------------------------------------------------------------- a real process


def test_the_auditor_through_real_processes(setup: Setup) -> None:
    env = {**os.environ, "FLOWGUARD_AUDIT": setup.audit}

    def flowguard(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "flowguard", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    key = setup.folder / "second.key"
    made = flowguard("keys", "generate", "--name", ORIGIN, "--out", str(key))
    assert made.returncode == 0 and Verifier(made.stdout.strip()).name == ORIGIN
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    ok = flowguard("audit", "verify", "--vkey", setup.vkey)
    assert ok.returncode == 0, ok.stderr
    conn = sqlite3.connect(setup.audit_path, isolation_level=None)
    conn.execute("DROP TRIGGER audit_entries_no_delete")
    conn.execute("DELETE FROM audit_entries WHERE idx = 4")
    conn.close()
    bad = flowguard("audit", "verify", "--vkey", setup.vkey)
    assert bad.returncode == 1
    assert "entry 4 is missing" in bad.stderr and "Traceback" not in bad.stderr


def test_verify_checks_the_entries_form_only_when_asked(tmp_path: Path) -> None:
    from flowguard.audit.log import init_audit
    from flowguard.audit.note import generate_key
    from flowguard.store._db import connect

    skey, vkey = generate_key("form.test/log")
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    db = connect(url)
    init_audit(db)
    log = AuditLog(db, signer=Signer(skey))
    log.append([{"kind": "decision", "subject": "citizen-0042", "v": 1}])
    log.checkpoint()
    log.close()
    integrity = CliRunner().invoke(cli, ["audit", "verify", "--audit", url, "--vkey", vkey])
    assert integrity.exit_code == 0, integrity.output
    form = CliRunner().invoke(cli, ["audit", "verify", "--audit", url, "--vkey", vkey,
                                    "--check-entries"])
    assert form.exit_code == 1
    assert "entry 0 names its subject without a pseudonym" in form.output
    assert "citizen-0042" not in form.output
