"""schemathesis against the OpenAPI document a real `flowguard serve` serves: no 500s, no
response that violates the document, no undocumented status or content type.

`positive_data_acceptance` is excluded: a request can be schema-valid and still name a
category, subject or actor the policy or registry does not know, which the service rightly
refuses with a 4xx; JSON Schema cannot express the policy's vocabulary."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .test_server import free_port, make_setup, start_cli_server


def test_schemathesis_finds_no_500s_and_no_schema_violations(tmp_path: Path) -> None:
    # The venv's own schemathesis, as pinned by the test extra, never one found first on PATH.
    scripts = Path(sys.executable).parent
    st = next((str(scripts / name) for name in ("st", "schemathesis")
               if (scripts / name).exists()), None)
    if st is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true and schemathesis is not installed")
        pytest.skip("schemathesis is not installed")
    setup = make_setup(tmp_path)
    from flowguard.server.tokens import new_token

    secret, digest = new_token()
    setup.tokens.write_text(setup.tokens.read_text().replace(
        '"tokens": [', '"tokens": [{"id": "fuzzer", "hash": "' + digest + '", '
        '"organization": "aalborg-kommune", "scopes": ["check", "consent:write", '
        '"consent:read", "audit:read", "admin"]}, ', 1))
    port = free_port()
    server = start_cli_server(setup, port, "--checkpoint-every", "10")
    try:
        result = subprocess.run(
            [st, "run", f"http://127.0.0.1:{port}/openapi.json",
             "-H", f"Authorization: Bearer {secret}", "--checks", "all",
             "--exclude-checks", "positive_data_acceptance", "--max-examples", "40",
             "--workers", "2", "--seed", "1", "--no-color"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Traceback" not in output
    for subject in ("citizen-0042", "citizen-0107"):
        assert subject not in output
