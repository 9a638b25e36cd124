"""Database connections chosen by URL, and versioned schema migrations.

Two dialects: SQLite (`sqlite:///path.db`, embedded) and PostgreSQL (`postgresql://...`,
psycopg 3 with a connection pool). SQL is written once with `?` placeholders; the
PostgreSQL side rewrites them. Every component (the registry now, the audit log later)
keeps its own migration list and records its version in `flowguard_migrations`.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from flowguard.errors import Diagnostic, StoreError

Dialect = Literal["sqlite", "postgresql"]
Row = tuple[Any, ...]


@dataclass(frozen=True)
class Migration:
    """One schema version: statements per dialect, applied in one transaction."""

    version: int
    description: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]


class Cursor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any: ...
    def fetchone(self) -> Row | None: ...
    def fetchall(self) -> list[Row]: ...


def redact_url(url: str) -> str:
    """The URL without a password, for messages."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}@{host}" if user else f"{scheme}://{host}"


def store_error(url: str, message: str, hint: str | None = None) -> StoreError:
    return StoreError([Diagnostic(message, redact_url(url), code="store", hint=hint)])


class Database(ABC):
    """A connection (SQLite) or a pool (PostgreSQL) with one way to read and one to write."""

    dialect: Dialect

    def __init__(self, url: str) -> None:
        self.url = url

    @abstractmethod
    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """All rows of one query, outside any write transaction."""

    def read_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = self.read(sql, params)
        return rows[0] if rows else None

    @abstractmethod
    def write(self) -> AbstractContextManager[Cursor]:
        """A transaction that holds the database's write lock from its first statement
        (SQLite `BEGIN IMMEDIATE`; on PostgreSQL the caller locks a coordination row)."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection or pool."""


class SqliteDatabase(Database):
    dialect: Dialect = "sqlite"

    def __init__(self, url: str, path: str, *, create: bool = True) -> None:
        super().__init__(url)
        if path != ":memory:" and not Path(path).parent.is_dir():
            raise store_error(url, f"the directory of the database file does not exist: "
                              f"{Path(path).parent}")
        if not create and path != ":memory:" and not path.startswith("file:") \
                and not Path(path).is_file():
            raise store_error(url, f"no database file at {path}",
                              hint="create it with `flowguard registry init URL` (a read "
                                   "never creates one)")
        try:
            _create_private(path)
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                         timeout=30.0)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=30000")
        except sqlite3.DatabaseError as exc:
            raise store_error(url, f"cannot open the SQLite database: {exc}") from None
        self._lock = threading.RLock()

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    @contextmanager
    def write(self) -> Iterator[Cursor]:
        with self._lock:
            cursor = self._conn.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _create_private(path: str) -> None:
    """Create a new database file readable by its owner only (0600, whatever the umask):
    it holds registry records or audit entries. SQLite gives its -wal and -shm files the
    database file's mode. An existing file is left as it is."""
    if path == ":memory:" or path.startswith("file:"):
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:
        raise sqlite3.OperationalError(f"cannot create the database file: {exc.strerror}") \
            from None


class _PgCursor:
    """Adapts a psycopg cursor to `?` placeholders."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._cursor.execute(_pg(sql), params)

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any:
        return self._cursor.executemany(_pg(sql), params)

    def fetchone(self) -> Row | None:
        row: Row | None = self._cursor.fetchone()
        return row

    def fetchall(self) -> list[Row]:
        rows: list[Row] = self._cursor.fetchall()
        return rows


_PG_SQL: dict[str, str] = {}


def _pg(sql: str) -> str:
    converted = _PG_SQL.get(sql)
    if converted is None:
        converted = _PG_SQL[sql] = sql.replace("?", "%s")
    return converted


DEFAULT_CONNECT_TIMEOUT_S = 5
"""How long a PostgreSQL connection may take, unless the URL says (`connect_timeout`)."""


class PostgresDatabase(Database):
    dialect: Dialect = "postgresql"

    def __init__(self, url: str, *, max_connections: int = 8) -> None:
        super().__init__(url)
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError:  # pragma: no cover - declared dependency
            raise store_error(url, "PostgreSQL support needs psycopg 3 and psycopg-pool") \
                from None
        self._errors: tuple[type[BaseException], ...] = (psycopg.Error,)
        options, timeout = _connect_options(url)
        # One connection first, so that an unreachable server or a missing database is
        # reported at once with its cause (the pool would retry, warn, and say only that
        # it is incomplete).
        try:
            psycopg.connect(url, **options).close()
        except Exception as exc:
            raise store_error(url, "cannot connect to PostgreSQL: "
                              f"{_connect_cause(exc, timeout)}") from None
        try:
            self._pool = ConnectionPool(url, min_size=1, max_size=max_connections,
                                        kwargs=options, open=False)
            self._pool.open(wait=True, timeout=timeout)
        except Exception as exc:  # psycopg_pool raises PoolTimeout and others
            raise store_error(url, f"cannot connect to PostgreSQL: {_first_line(exc)}") \
                from None

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._pool.connection() as conn:
            rows: list[Row] = conn.execute(_pg(sql), params).fetchall()
            return rows

    @contextmanager
    def write(self) -> Iterator[Cursor]:
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            yield _PgCursor(cursor)

    def close(self) -> None:
        self._pool.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _connect_options(url: str) -> tuple[dict[str, Any], float]:
    """The options every connection to `url` gets, and its connect timeout in seconds: the
    URL's `connect_timeout` as libpq reads it, else `DEFAULT_CONNECT_TIMEOUT_S`."""
    from psycopg.conninfo import conninfo_to_dict, timeout_from_conninfo

    options: dict[str, Any] = {"autocommit": True}
    try:
        params = conninfo_to_dict(url)
    except Exception as exc:
        raise store_error(url, f"invalid PostgreSQL URL: {_first_line(exc)}",
                          hint="write postgresql://user@host:port/database") from None
    if params.get("connect_timeout") is None:
        options["connect_timeout"] = DEFAULT_CONNECT_TIMEOUT_S
        params["connect_timeout"] = DEFAULT_CONNECT_TIMEOUT_S
    try:
        timeout = float(timeout_from_conninfo(params))
    except Exception as exc:
        raise store_error(url, f"invalid PostgreSQL URL: {_first_line(exc)}",
                          hint="connect_timeout is a whole number of seconds") from None
    return options, timeout


def _connect_cause(exc: BaseException, timeout: float) -> str:
    """Why a connection failed, in libpq's words without its framing: `connection refused`,
    `database "x" does not exist`, `password authentication failed for user "u"`."""
    line = _first_line(exc)
    if type(exc).__name__ == "ConnectionTimeout" or "timeout expired" in line:
        return (f"no answer within {timeout:g} s (the connect timeout; set "
                "connect_timeout=SECONDS in the URL to change it)")
    cause = line.rsplit(" failed: ", 1)[-1].strip()
    for prefix in ("FATAL:", "ERROR:"):
        cause = cause.removeprefix(prefix).strip()
    cause = " ".join(cause.split())
    return cause[:1].lower() + cause[1:] if cause else type(exc).__name__


def connect(url: str, *, create: bool = True) -> Database:
    """The database a storage URL names (SPEC §10). `create=False`: a SQLite file that
    does not exist is an error, not a new empty database (every read, every open of a
    registry that must already hold one)."""
    if url.startswith("sqlite:///"):
        return SqliteDatabase(url, url[len("sqlite:///"):] or ":memory:", create=create)
    if url == "sqlite://" or url == "sqlite:///:memory:":
        return SqliteDatabase(url, ":memory:")
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(url)
    raise store_error(url, "unsupported storage URL",
                      hint="use sqlite:///path.db or postgresql://user@host/db")


# --------------------------------------------------------------------------- migrations

_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS flowguard_migrations ("
    " component TEXT NOT NULL, version INTEGER NOT NULL, description TEXT NOT NULL,"
    " applied_at BIGINT NOT NULL, PRIMARY KEY (component, version))"
)


def schema_version(db: Database, component: str) -> int:
    """The component's applied schema version; 0 when it has never been initialised."""
    try:
        row = db.read_one("SELECT max(version) FROM flowguard_migrations WHERE component = ?",
                          (component,))
    except Exception as exc:
        if _is_missing_table(exc):
            return 0
        raise
    return int(row[0]) if row and row[0] is not None else 0


def _is_missing_table(exc: Exception) -> bool:
    text = str(exc).lower()
    return "no such table" in text or "does not exist" in text


def migrate(db: Database, component: str, migrations: Sequence[Migration]) -> list[Migration]:
    """Apply the pending migrations, each in its own transaction; returns those applied.
    Refuses a database whose schema is newer than this flowguard knows."""
    latest = migrations[-1].version
    with db.write() as cursor:
        if db.dialect == "postgresql":
            # serialise concurrent `init`s: the first creates, the others see it done
            cursor.execute("SELECT pg_advisory_xact_lock(7283519)")
        cursor.execute(_MIGRATIONS_TABLE)
    current = schema_version(db, component)
    if current > latest:
        raise store_error(db.url, f"the {component} schema is version {current}, newer than "
                          f"this flowguard knows (version {latest})",
                          hint="upgrade flowguard; it will not touch a newer schema")
    applied = []
    for migration in migrations:
        if migration.version <= current:
            continue
        with db.write() as cursor:
            if db.dialect == "postgresql":
                cursor.execute("SELECT pg_advisory_xact_lock(7283519)")
            cursor.execute("SELECT 1 FROM flowguard_migrations WHERE component = ? AND "
                           "version = ?", (component, migration.version))
            if cursor.fetchone() is not None:
                continue  # another process applied it meanwhile
            statements = migration.sqlite if db.dialect == "sqlite" else migration.postgresql
            for statement in statements:
                cursor.execute(statement)
            cursor.execute("INSERT INTO flowguard_migrations VALUES (?, ?, ?, ?)",
                           (component, migration.version, migration.description,
                            time.time_ns() // 1000))
        applied.append(migration)
    return applied


def require_schema(db: Database, component: str, migrations: Sequence[Migration]) -> None:
    """Refuse to work on a database whose schema is missing, older or newer than ours."""
    current = schema_version(db, component)
    latest = migrations[-1].version
    if current == latest:
        return
    if current == 0:
        raise store_error(db.url, f"the database holds no flowguard {component}",
                          hint="create it with `flowguard registry init URL`")
    if current < latest:
        raise store_error(db.url, f"the {component} schema is version {current}; this "
                          f"flowguard needs version {latest}",
                          hint="migrate it with `flowguard registry init URL`")
    raise store_error(db.url, f"the {component} schema is version {current}, newer than "
                      f"this flowguard knows (version {latest})",
                      hint="upgrade flowguard; it will not touch a newer schema")
