"""Store URLs: which engine, which SQLite file (read as SQLAlchemy reads them), and what of a
URL a log line may show. No driver is imported here."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from otphsm.core.errors import ConfigurationError

MEMORY = ":memory:"

URL_FORMS = (
    "sqlite:///relative/path.db, sqlite:////absolute/path.db, sqlite::memory: "
    "or postgresql://user@host:port/database"
)


def sqlite_path(url: str, base: Path | None = None) -> str:
    """The file a SQLite URL names, read as SQLAlchemy reads it: `sqlite:///rel.db` → `rel.db`
    (relative: joined to `base` when given, the configuration file's directory), `sqlite:////abs.db`
    → `/abs.db`; also `sqlite:rel.db` (relative) and `sqlite::memory:`."""
    rest = url.removeprefix("sqlite:")
    if rest == MEMORY:
        return MEMORY
    if rest.startswith("//"):
        rest = rest[2:]
        if not rest.startswith("/"):
            raise ConfigurationError(f"a SQLite URL names a file, not a host: use {URL_FORMS}")
        rest = rest[1:]
    if not rest:
        raise ConfigurationError(f"the SQLite URL names no file: use {URL_FORMS}")
    if base is not None and not rest.startswith("/"):
        return str(base / rest)
    return rest


def sqlite_url(path: Path | str) -> str:
    """The URL of the SQLite file `path` (`sqlite:////abs.db` for an absolute path)."""
    return f"sqlite:///{path}"


def resolve_store_url(url: str, base: Path) -> str:
    """`url` with a relative SQLite file made absolute against `base` (other URLs unchanged)."""
    if url.partition(":")[0] != "sqlite" or url.removeprefix("sqlite:") == MEMORY:
        return url
    return sqlite_url(Path(sqlite_path(url, base)).absolute())


def describe_store_url(url: str) -> str:
    """What a start-up line may show of `url`: the SQLite file, or the URL without a password."""
    scheme = url.partition(":")[0]
    if scheme == "sqlite":
        return sqlite_path(url)
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
