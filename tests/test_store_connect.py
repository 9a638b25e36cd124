"""PostgreSQL connection failures (issue 12, item 7): reported within the connect timeout
(default 5 s, the URL's `connect_timeout` honoured), with their cause, in one line and
without the connection pool's warnings; exit 2 on the CLI."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from flowguard.errors import StoreError
from flowguard.store._db import connect
from tests.conftest import POSTGRES_URL, ROOT, _postgres_or_skip


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nobody listens there now


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (a hung server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command in a new process: the pool's warnings would go to its stderr."""
    return subprocess.run([sys.executable, "-m", "flowguard", *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)


def _assert_one_line_error(result: subprocess.CompletedProcess[str], cause: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # no pool warning, no traceback
    assert "cannot connect to PostgreSQL: " + cause in lines[0], lines[0]
    assert "pool" not in lines[0]


def test_a_closed_port_is_reported_as_refused_in_one_line() -> None:
    url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/test"
    _assert_one_line_error(_cli("consent", "list", "-r", url), "connection refused")


def test_a_missing_database_is_reported_by_name_in_one_line() -> None:
    _postgres_or_skip()
    base = POSTGRES_URL.split("?", 1)[0].rsplit("/", 1)[0]
    url = f"{base}/flowguard_no_such_database"
    _assert_one_line_error(_cli("consent", "list", "-r", url),
                           'database "flowguard_no_such_database" does not exist')


def test_the_urls_connect_timeout_is_honoured(silent_server: int) -> None:
    url = f"postgresql://postgres@127.0.0.1:{silent_server}/test?connect_timeout=2"
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        connect(url)
    waited = time.monotonic() - started
    message = caught.value.diagnostics[0].message
    assert message.startswith("cannot connect to PostgreSQL: no answer within 2 s"), message
    # before: the pool kept retrying for 10 s whatever the URL said
    assert waited < 2 + 3, waited


def test_the_default_connect_timeout_is_five_seconds() -> None:
    from flowguard.store._db import DEFAULT_CONNECT_TIMEOUT_S, _connect_options

    options, timeout = _connect_options("postgresql://postgres@127.0.0.1/test")
    assert DEFAULT_CONNECT_TIMEOUT_S == 5
    assert timeout == 5 and options["connect_timeout"] == 5
    options, timeout = _connect_options("postgresql://postgres@127.0.0.1/test?connect_timeout=9")
    assert timeout == 9 and "connect_timeout" not in options  # the URL's own stands


def test_a_bad_connect_timeout_is_an_error_naming_it() -> None:
    url = "postgresql://postgres@127.0.0.1/test?connect_timeout=soon"
    with pytest.raises(StoreError) as caught:
        connect(url)
    assert "connect_timeout" in caught.value.diagnostics[0].message
