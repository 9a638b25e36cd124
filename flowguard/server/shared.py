"""What every worker of every server agrees on, kept in the database they share (issue 13).

Two things live here, in the registry's database (else the audit log's; SQLite or
PostgreSQL), in tables of their own (component `server` in `flowguard_migrations`):

- **Request ids**, per token, for a time window (`--replay-window`, default 10 min). A
  request id is claimed by one atomic `INSERT ... ON CONFLICT ... DO UPDATE ... WHERE
  expired RETURNING`: of N concurrent uses of one id, whichever the database orders first
  gets a row back, every other gets none (409), whatever the number of workers or servers.
  An id is free again only once its window has passed; expired ids are pruned. Only a
  keyed digest of (token, id) is stored, never the id itself.
- **The active policy**: its generation number, digest and body (canonical JSON). A reload
  (or SIGHUP, or a start with a policy file that differs) writes a new generation in one
  transaction; every worker reads the generation in the same transaction that claims a
  check's request id, and adopts the new policy before it decides. So once a reload has
  answered, no worker of any server decides under the old policy, and before it commits,
  none decides under the new one.
- **Ended citizen sessions** (the pages under /me/): a session signed out in one worker is
  refused by every worker until its cookie would have expired anyway. Only a digest of the
  session id is stored; rows past their expiry are pruned.
- **Rate-limit events** of the citizen pages (sign-ins, withdrawals), per client address:
  a sliding minute counted over every worker and server, so N workers do not allow N times
  the limit. Only a keyed digest of the address is stored; rows older than an hour are
  pruned. Two workers counting at the same instant on PostgreSQL may each admit one event
  over the limit: a rate limit, not a quota.

Clocks: the window is measured by each server's wall clock; servers sharing a database
should keep their clocks in step (NTP), as the audit log already assumes.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from flowguard.model import Policy
from flowguard.store._db import Database, Migration, connect, migrate

COMPONENT = "server"
DEFAULT_REPLAY_WINDOW_S = 600.0
PRUNE_EVERY_S = 30.0

_V1 = (
    "CREATE TABLE flowguard_server_replay ("
    " key TEXT PRIMARY KEY, seen_at BIGINT NOT NULL)",
    "CREATE INDEX flowguard_server_replay_seen ON flowguard_server_replay (seen_at)",
    "CREATE TABLE flowguard_server_policy ("
    " id INTEGER PRIMARY KEY CHECK (id = 1), generation BIGINT NOT NULL,"
    " digest TEXT NOT NULL, body TEXT NOT NULL, activated_at BIGINT NOT NULL)",
)
"""Migration 1: the same statements in both dialects."""
_V2 = (
    "CREATE TABLE flowguard_server_ended_sessions ("
    " key TEXT PRIMARY KEY, expires_at BIGINT NOT NULL)",
    "CREATE INDEX flowguard_server_ended_sessions_exp"
    " ON flowguard_server_ended_sessions (expires_at)",
    "CREATE TABLE flowguard_server_rate (key TEXT NOT NULL, at BIGINT NOT NULL)",
    "CREATE INDEX flowguard_server_rate_key ON flowguard_server_rate (key, at)",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        description="request ids per token (replay window) and the active policy",
        sqlite=_V1,
        postgresql=_V1,
    ),
    Migration(
        version=2,
        description="ended citizen sessions and rate-limit events (seen by every worker)",
        sqlite=_V2,
        postgresql=_V2,  # the same statements in both dialects
    ),
)

_CLAIM = ("INSERT INTO flowguard_server_replay (key, seen_at) VALUES (?, ?) "
          "ON CONFLICT (key) DO UPDATE SET seen_at = excluded.seen_at "
          "WHERE flowguard_server_replay.seen_at < ? RETURNING 1")
_GENERATION = "SELECT generation FROM flowguard_server_policy WHERE id = 1"
_PUBLISH = ("INSERT INTO flowguard_server_policy (id, generation, digest, body, activated_at) "
            "VALUES (1, 1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "generation = flowguard_server_policy.generation + 1, digest = excluded.digest, "
            "body = excluded.body, activated_at = excluded.activated_at")


def shared_url(registry: str | None, audit: str | None) -> str | None:
    """The database the servers share: the registry's if it is one, else the audit log's."""
    from flowguard.store import is_database_url

    for url in (registry, audit):
        if url and is_database_url(url):
            return url
    return None


@dataclass(frozen=True)
class ActivePolicy:
    generation: int
    digest: str
    policy: Policy
    activated_at: float


class SharedState:
    """The request ids and the active policy, in the shared database (or, with none, in a
    private in-memory one: right for one process only, which `flowguard serve` enforces)."""

    def __init__(self, url: str | None, *, window: float = DEFAULT_REPLAY_WINDOW_S) -> None:
        if window <= 0:
            raise ValueError("the replay window must be positive")
        self.window = window
        self.shared = url is not None
        self.db: Database = connect(url or "sqlite://")
        try:
            migrate(self.db, COMPONENT, MIGRATIONS)
        except Exception:
            self.db.close()
            raise
        self.seen_generation = 0
        """The highest policy generation this process has read (monotonic)."""
        self._lock = threading.Lock()
        self._pruned_at = 0.0
        self._rate_pruned_at = 0.0
        self._claims: list[tuple[str, str, asyncio.Future[bool]]] = []
        self._claiming: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ replay

    @staticmethod
    def _key(token_id: str, request_id: str) -> str:
        return hashlib.sha256(f"{token_id}\0{request_id}".encode()).hexdigest()

    def claim(self, token_id: str, request_id: str, now: float | None = None) -> bool:
        """True for the first use of `request_id` by `token_id` within the window, False
        for a replay. Also reads the active policy generation (`seen_generation`)."""
        return self.claim_many([(token_id, request_id)], now)[0]

    def claim_many(self, claims: Sequence[tuple[str, str]],
                   now: float | None = None) -> list[bool]:
        """`claim` for each (token id, request id), in one transaction (in order: of two
        equal ones, the first is accepted)."""
        now_us = int((time.time() if now is None else now) * 1_000_000)
        cutoff = now_us - int(self.window * 1_000_000)
        prune = now_us / 1_000_000 - self._pruned_at >= PRUNE_EVERY_S
        accepted = []
        with self.db.write() as cursor:
            if prune:
                cursor.execute("DELETE FROM flowguard_server_replay WHERE seen_at < ?",
                               (cutoff,))
            for token_id, request_id in claims:
                cursor.execute(_CLAIM, (self._key(token_id, request_id), now_us, cutoff))
                accepted.append(cursor.fetchone() is not None)
            cursor.execute(_GENERATION)
            row = cursor.fetchone()
        if prune:
            self._pruned_at = now_us / 1_000_000
        self._saw(int(row[0]) if row else 0)
        return accepted

    async def claim_async(self, token_id: str, request_id: str) -> bool:
        """`claim` from the event loop: the claims of concurrent requests share one
        transaction and one thread hop (group commit)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._claims.append((token_id, request_id, future))
        if self._claiming is None or self._claiming.done():
            self._claiming = asyncio.create_task(self._claim_pending())
        return await future

    async def _claim_pending(self) -> None:
        while self._claims:
            await asyncio.sleep(0)  # let requests that are already parsed join
            batch, self._claims = self._claims, []
            try:
                results = await asyncio.to_thread(self.claim_many,
                                                  [(t, r) for t, r, _ in batch])
            except Exception as exc:  # fail closed: no claim, no answer
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, _, future), accepted in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(accepted)

    def replay_ids(self) -> int:
        """How many request ids are kept (expired ones not yet pruned included)."""
        row = self.db.read_one("SELECT COUNT(*) FROM flowguard_server_replay")
        return int(row[0]) if row else 0

    # ------------------------------------------------------------------ sessions

    @staticmethod
    def _session_key(session_id: str) -> str:
        return hashlib.sha256(b"flowguard citizen session\0" + session_id.encode()).hexdigest()

    def end_session(self, session_id: str, expires_at: float) -> None:
        """Record that a session is ended (signed out) for every worker, until
        `expires_at` (seconds since the epoch), after which its cookie is refused anyway."""
        now_us = time.time_ns() // 1000
        with self.db.write() as cursor:
            cursor.execute("DELETE FROM flowguard_server_ended_sessions WHERE expires_at < ?",
                           (now_us,))
            cursor.execute("INSERT INTO flowguard_server_ended_sessions (key, expires_at) "
                           "VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                           (self._session_key(session_id), int(expires_at * 1_000_000)))

    def session_ended(self, session_id: str) -> bool:
        """Whether a session was ended by any worker."""
        return self.db.read_one("SELECT 1 FROM flowguard_server_ended_sessions WHERE key = ?",
                                (self._session_key(session_id),)) is not None

    # ------------------------------------------------------------------ rate limits

    def allow(self, key: str, limit: int, now: float | None = None,
              per: float = 60.0) -> bool:
        """Whether one more event of `key` (a keyed digest naming the limit and the client)
        stays within `limit` events per `per` seconds, counted over every worker; if so,
        the event is counted."""
        now_us = int((time.time() if now is None else now) * 1_000_000)
        cutoff = now_us - int(per * 1_000_000)
        prune = now_us / 1_000_000 - self._rate_pruned_at >= PRUNE_EVERY_S
        with self.db.write() as cursor:
            if prune:
                cursor.execute("DELETE FROM flowguard_server_rate WHERE at < ?",
                               (now_us - 3_600_000_000,))
            cursor.execute("SELECT COUNT(*) FROM flowguard_server_rate WHERE key = ? "
                           "AND at >= ?", (key, cutoff))
            row = cursor.fetchone()
            if row is not None and int(row[0]) >= limit:
                return False
            cursor.execute("INSERT INTO flowguard_server_rate (key, at) VALUES (?, ?)",
                           (key, now_us))
        if prune:
            self._rate_pruned_at = now_us / 1_000_000
        return True

    # ------------------------------------------------------------------ policy

    def _saw(self, generation: int) -> None:
        with self._lock:
            self.seen_generation = max(self.seen_generation, generation)

    def generation(self) -> int:
        row = self.db.read_one(_GENERATION)
        generation = int(row[0]) if row else 0
        self._saw(generation)
        return generation

    def active(self) -> ActivePolicy | None:
        row = self.db.read_one("SELECT generation, digest, body, activated_at "
                               "FROM flowguard_server_policy WHERE id = 1")
        if row is None:
            return None
        self._saw(int(row[0]))
        return ActivePolicy(int(row[0]), str(row[1]), Policy.model_validate_json(row[2]),
                            int(row[3]) / 1_000_000)

    def publish(self, policy: Policy, *, only_if_different: bool = False) -> int:
        """Make `policy` the active one for every worker: one transaction. Returns its
        generation. With `only_if_different`, a policy with the active digest is left as
        it is (what a starting worker does)."""
        with self.db.write() as cursor:
            if only_if_different:
                cursor.execute("SELECT generation, digest FROM flowguard_server_policy "
                               "WHERE id = 1")
                row = cursor.fetchone()
                if row is not None and row[1] == policy.digest:
                    self._saw(int(row[0]))
                    return int(row[0])
            cursor.execute(_PUBLISH, (policy.digest, policy.model_dump_json(),
                                      time.time_ns() // 1000))
            cursor.execute(_GENERATION)
            found = cursor.fetchone()
        generation = int(found[0]) if found else 0
        self._saw(generation)
        return generation

    def close(self) -> None:
        self.db.close()
