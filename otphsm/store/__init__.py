"""Persistence: SQLite (embedded default) and PostgreSQL behind one interface."""

from __future__ import annotations

from otphsm.core.errors import ConfigurationError
from otphsm.core.ports import Store
from otphsm.store.errors import StoreError, StoreUnavailable
from otphsm.store.postgres import PostgresStore
from otphsm.store.schema import LATEST_VERSION
from otphsm.store.sql_store import SqlStore
from otphsm.store.sqlite import SqliteStore
from otphsm.store.urls import (
    URL_FORMS,
    describe_store_url,
    resolve_store_url,
    sqlite_path,
    sqlite_url,
)

__all__ = [
    "LATEST_VERSION",
    "PostgresStore",
    "SqlStore",
    "SqliteStore",
    "StoreError",
    "StoreUnavailable",
    "describe_store_url",
    "open_store",
    "resolve_store_url",
    "sqlite_path",
    "sqlite_url",
]


def open_store(url: str, *, pool_size: int = 4, timeout: float = 5.0) -> Store:
    """Open the store a URL names (one of `URL_FORMS`); the caller runs `migrate()`.

    `pool_size` and `timeout` (seconds to wait for a connection or a lock) apply as the engine
    allows: SQLite uses `timeout` as its busy timeout and has no pool."""
    scheme, _, _ = url.partition(":")
    if scheme == "sqlite":
        return SqliteStore(sqlite_path(url), busy_timeout=timeout)
    if scheme in ("postgresql", "postgres"):
        return PostgresStore(url, pool_size=pool_size, timeout=timeout)
    raise ConfigurationError(f"unsupported store URL scheme {scheme!r}: use {URL_FORMS}")
