"""Readiness and reload reporting of the HTTP service (issue 13, item 7).

`/readyz` must answer within 2 s and say "not ready" when the audit log or the registry
cannot take a write: it probes each database on a fresh connection with a 1 s lock wait (a
server whose own connection is stuck behind a lock would otherwise wait 30 s and then say
ready). A failed policy reload, from SIGHUP or HTTP, is logged with its problems.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

log = logging.getLogger("flowguard.server")

LOCK_WAIT_SECONDS = 1.0
"""How long a probe waits for a database lock."""
READY_DEADLINE_SECONDS = 1.8
"""How long `/readyz` waits for its probes before it says not ready."""


def probe(url: str, table: str) -> None:
    """Raise unless the database at `url` takes a write lock on `table` within
    `LOCK_WAIT_SECONDS` (nothing is written; the transaction is rolled back)."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = url[len("sqlite:///"):]
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=LOCK_WAIT_SECONDS,
                               isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout={int(LOCK_WAIT_SECONDS * 1000)}")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchall()
            conn.execute("ROLLBACK")
        finally:
            conn.close()
    elif url.startswith(("postgresql://", "postgres://")):
        import psycopg

        with psycopg.connect(url, connect_timeout=max(1, int(LOCK_WAIT_SECONDS))) as pg:
            pg.execute(f"SET LOCAL lock_timeout = '{int(LOCK_WAIT_SECONDS * 1000)}ms'")
            pg.execute(f"SELECT 1 FROM {table} FOR UPDATE").fetchall()
            pg.rollback()


class Readiness:
    """Probes the service's databases, one probe at a time (a burst of `/readyz` calls
    shares the probe under way rather than opening a connection each)."""

    def __init__(self, targets: Sequence[tuple[str, str, str]]) -> None:
        self.targets = tuple(targets)  # (what, url, table)
        self._running: asyncio.Task[str | None] | None = None

    async def unavailable(self) -> str | None:
        """None when every database answers, else what does not ("audit log",
        "registry"); never waits longer than `READY_DEADLINE_SECONDS`."""
        if self._running is None or self._running.done():
            self._running = asyncio.get_running_loop().create_task(self._probe_all())
        try:
            return await asyncio.wait_for(asyncio.shield(self._running),
                                          READY_DEADLINE_SECONDS)
        except TimeoutError:
            return " and ".join(what for what, _, _ in self.targets) or "storage"

    async def _probe_all(self) -> str | None:
        down = []
        for what, url, table in self.targets:
            try:
                await asyncio.to_thread(probe, url, table)
            except Exception as exc:
                log.error("not ready: the %s is unavailable (%s)", what, type(exc).__name__)
                down.append(what)
        return " and ".join(down) or None


class _Reloaded(Protocol):
    activated: bool
    digest: str
    problems: list[str]


def log_reload(result: _Reloaded, trigger: str) -> None:
    """Log a reload's outcome: an activation at INFO, a refusal at ERROR with each
    problem (policy files name no citizen)."""
    if result.activated:
        log.info("policy reload (%s): %s active", trigger, result.digest)
        return
    log.error("policy reload (%s) refused, policy %s stays active: %d problem(s)", trigger,
              result.digest, len(result.problems))
    for problem in result.problems:
        log.error("  %s", problem.replace("\n", " "))


async def logged_reload(reload: Callable[[], Awaitable[Any]], trigger: str) -> Any:
    """Run `reload` and log its outcome, or its failure."""
    try:
        result = await reload()
    except Exception as exc:
        log.error("policy reload (%s) failed (%s)", trigger, type(exc).__name__)
        raise
    log_reload(result, trigger)
    return result
