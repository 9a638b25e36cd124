"""A registry's identity: a random id created with it, by which an audit log tracks the
last of the registry's events it has audited (a URL is no identity: one database has many)."""

from __future__ import annotations

from flowguard.store._db import Database, Migration, migrate, schema_version

IDENTITY_COMPONENT = "registry-identity"
IDENTITY_MIGRATIONS = (
    Migration(
        1, "a random identity for the registry, by which audit logs track what they audited",
        sqlite=("CREATE TABLE registry_identity (id INTEGER PRIMARY KEY CHECK (id = 1),"
                " identity TEXT NOT NULL)",
                "INSERT INTO registry_identity VALUES (1, lower(hex(randomblob(16))))"),
        postgresql=("CREATE TABLE registry_identity (id INTEGER PRIMARY KEY CHECK (id = 1),"
                    " identity TEXT NOT NULL)",
                    "INSERT INTO registry_identity VALUES "
                    "(1, md5(random()::text || clock_timestamp()::text))"),
    ),
)


def init_identity(db: Database) -> list[Migration]:
    return migrate(db, IDENTITY_COMPONENT, IDENTITY_MIGRATIONS)


def registry_identity(db: Database) -> str:
    """The registry's identity, created first if the registry predates identities."""
    if schema_version(db, IDENTITY_COMPONENT) == 0:
        init_identity(db)
    row = db.read_one("SELECT identity FROM registry_identity WHERE id = 1")
    assert row is not None
    return str(row[0])
