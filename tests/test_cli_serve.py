"""`flowguard serve` checks its options before it opens anything (review of issue 18): a bad
client secret file is reported before the registry and the audit log are opened, so no
reconciled audit entry is written by a server that then refuses to start."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from flowguard._cli import cli


@pytest.mark.parametrize("problem", ["group-readable", "missing"])
def test_a_bad_client_secret_file_stops_serve_before_it_opens_anything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, problem: str) -> None:
    import flowguard.server.app as server_app

    opened: list[Any] = []

    def create_app(*args: Any, **kwargs: Any) -> None:  # would open registry and audit log
        opened.append(args)
        raise AssertionError("serve opened the registry and the audit log first")

    monkeypatch.setattr(server_app, "create_app", create_app)
    secret = tmp_path / "client.secret"
    if problem == "group-readable":
        secret.write_text("s3cret\n")
        os.chmod(secret, 0o640)
    result = CliRunner().invoke(cli, [
        "serve", "-p", str(tmp_path / "policy"), "--tokens", str(tmp_path / "tokens.yaml"),
        "--registry", f"sqlite:///{tmp_path / 'r.db'}", "--audit",
        f"sqlite:///{tmp_path / 'a.db'}", "--citizen-issuer", "https://broker.example",
        "--citizen-client-id", "flowguard", "--citizen-client-secret-file", str(secret)])
    assert not opened
    assert result.exit_code == 2, result.output
    assert str(secret) in result.output and "Traceback" not in result.output
    assert ("chmod 600" if problem == "group-readable" else "cannot read") in result.output
    assert not (tmp_path / "a.db").exists()
