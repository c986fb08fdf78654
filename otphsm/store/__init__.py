"""Persistence: SQLite (embedded default) and PostgreSQL behind one interface."""

from __future__ import annotations

from otphsm.core.errors import ConfigurationError
from otphsm.core.ports import Store
from otphsm.store.errors import StoreError, StoreUnavailable
from otphsm.store.postgres import PostgresStore
from otphsm.store.schema import LATEST_VERSION
from otphsm.store.sql_store import SqlStore
from otphsm.store.sqlite import MEMORY, SqliteStore

__all__ = [
    "LATEST_VERSION",
    "PostgresStore",
    "SqlStore",
    "SqliteStore",
    "StoreError",
    "StoreUnavailable",
    "open_store",
    "sqlite_path",
]

_URL_FORMS = (
    "sqlite:///absolute/path.db, sqlite:relative/path.db, sqlite::memory: "
    "or postgresql://user@host:port/database"
)


def open_store(url: str, *, pool_size: int = 4, timeout: float = 5.0) -> Store:
    """Open the store a URL names (one of `_URL_FORMS`); the caller runs `migrate()`.

    `pool_size` and `timeout` (seconds to wait for a connection or a lock) apply as the engine
    allows: SQLite uses `timeout` as its busy timeout and has no pool."""
    scheme, _, _ = url.partition(":")
    if scheme == "sqlite":
        return SqliteStore(sqlite_path(url), busy_timeout=timeout)
    if scheme in ("postgresql", "postgres"):
        return PostgresStore(url, pool_size=pool_size, timeout=timeout)
    raise ConfigurationError(f"unsupported store URL scheme {scheme!r}: use {_URL_FORMS}")


def sqlite_path(url: str) -> str:
    """`sqlite:///abs.db` (or SQLAlchemy's `sqlite:////abs.db`) → `/abs.db`;
    `sqlite:rel.db` → `rel.db`; `sqlite::memory:` → `:memory:`."""
    rest = url.removeprefix("sqlite:")
    if rest == MEMORY:
        return MEMORY
    if rest.startswith("//"):
        rest = rest[2:]
        if not rest.startswith("/"):
            raise ConfigurationError(f"a SQLite URL names a file, not a host: use {_URL_FORMS}")
        rest = "/" + rest.lstrip("/")
    if not rest:
        raise ConfigurationError(f"the SQLite URL names no file: use {_URL_FORMS}")
    return rest
