"""Counts in CLI output agree with their noun: "1 entry", "2 entries", never "1 entries"
(review of issue 18)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from flowguard._plain import counted
from flowguard.audit.entries import write_secret
from flowguard.audit.note import Signer, generate_key
from flowguard.audit.trail import open_audit_log
from tests.test_witness import ORIGIN, _skey_of, entries, run


@given(st.integers(min_value=0, max_value=10**9))
def test_counted_agrees_with_its_number(count: int) -> None:
    text = counted(count, "entry", "entries")
    assert text == f"{count} {'entry' if count == 1 else 'entries'}"
    assert counted(count, "checkpoint").endswith("checkpoint" if count == 1 else "checkpoints")


def test_one_of_a_thing_is_singular_in_the_audit_output(tmp_path: Path) -> None:
    skey, vkey = generate_key(ORIGIN)
    signer = Signer(skey)
    key_file = tmp_path / "log.key"
    write_secret(key_file, "PRIVATE+KEY+" + _skey_of(signer) + "\n")
    url = f"sqlite:///{tmp_path / 'log.db'}"
    log = open_audit_log(url, log_key=key_file)
    log.append_encoded(entries(1))
    log.checkpoint()
    log.append_encoded(entries(1, "unsigned"))
    log.close()
    result = run("audit", "verify", "--audit", url, "--vkey", vkey)
    assert result.exit_code == 0, result.output
    assert "OK: 2 entries verified" in result.output
    assert "  1 checkpoint of " in result.output and "(latest at 1 entry;" in result.output
    assert "0 consistency proofs checked" in result.output
    assert "  1 entry after the latest checkpoint is not signed for yet" in result.output
