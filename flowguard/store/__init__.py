"""Storage chosen by URL (SPEC §10): the registry on a file (read-only), on SQLite
(`sqlite:///path.db`, the embedded default) or on PostgreSQL (`postgresql://...`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flowguard.model import Policy
from flowguard.registry import InMemoryRegistry, Registry, load_registry
from flowguard.store._db import Migration, connect, redact_url
from flowguard.store.events import Event
from flowguard.store.registry_store import ImportSummary, RegistryStore, init_registry

if TYPE_CHECKING:
    from flowguard.audit.trail import AuditTrail

__all__ = [
    "Event",
    "ImportSummary",
    "RegistryStore",
    "init_database",
    "is_database_url",
    "open_registry",
    "open_store",
    "redact_url",
]


def is_database_url(location: str) -> bool:
    return location.startswith(("sqlite:", "postgresql:", "postgres:"))


def open_store(url: str, policy: Policy | None = None, *,
               audit: AuditTrail | None = None) -> RegistryStore:
    """A registry store on a database URL whose schema is current (`StoreError` if not);
    with `audit`, every change is also appended to that audit trail. Never creates a
    database: that is `init_database`'s job."""
    db = connect(url, create=False)
    try:
        return RegistryStore(db, policy, audit=audit)
    except Exception:
        db.close()
        raise


def open_registry(location: str | Path, policy: Policy | None = None
                  ) -> RegistryStore | InMemoryRegistry:
    """The registry at a database URL, or read from a YAML/JSON file."""
    if isinstance(location, str) and is_database_url(location):
        return open_store(location, policy)
    return load_registry(location, policy)


def init_database(url: str) -> list[Migration]:
    """Create or migrate the registry schema at `url`; returns the migrations applied."""
    db = connect(url)
    try:
        return init_registry(db)
    finally:
        db.close()


_: type[Registry] = RegistryStore  # RegistryStore implements the engine's interface
