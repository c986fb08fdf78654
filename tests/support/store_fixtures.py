"""Fixtures for the storage tier, and the worker functions multi-process tests spawn.

Each PostgreSQL test run gets a private database (`otphsm_test_<random>`, created through the
database of OTPHSM_TEST_PG_DSN and dropped at the end) and each test a private schema in it,
selected by `search_path` in the URL every store of that test opens. PostgreSQL tests skip
with the reason when the server cannot be reached.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from otphsm.core.ports import Store
from otphsm.core.records import AuditEntry
from otphsm.store import SqlStore, open_store, sqlite_url

if TYPE_CHECKING:
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Barrier

PG_DSN = os.environ.get("OTPHSM_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_url(settings: dict[str, Any]) -> str:
    """A postgresql:// URL from libpq settings (the form `open_store` accepts)."""
    settings = dict(settings)
    user = quote(str(settings.pop("user", "")), safe="")
    password = settings.pop("password", None)
    credentials = f"{user}:{quote(str(password), safe='')}@" if password else f"{user}@"
    host = settings.pop("host", "127.0.0.1")
    port = settings.pop("port", "5432")
    dbname = quote(str(settings.pop("dbname", "")), safe="")
    query = f"?{urlencode(settings, quote_via=quote)}" if settings else ""
    return f"postgresql://{credentials}{host}:{port}/{dbname}{query}"


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[dict[str, Any]]:
    """libpq settings of a database private to this test run."""
    admin_settings = conninfo_to_dict(PG_DSN)
    admin_settings.setdefault("connect_timeout", 3)
    try:
        admin = psycopg.connect(make_conninfo("", **admin_settings), autocommit=True)
    except psycopg.Error as exc:
        pytest.skip(
            f"PostgreSQL is not reachable through OTPHSM_TEST_PG_DSN "
            f"({postgres_url({**admin_settings, 'password': None})}): {str(exc).strip()}"
        )
    name = f"otphsm_test_{secrets.token_hex(6)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield {**admin_settings, "dbname": name}
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_store_url(postgres_database: dict[str, Any]) -> Iterator[str]:
    """A URL whose connections all land in a fresh schema; `application_name` names the test's
    connections so a test can find and terminate them."""
    schema = f"s_{secrets.token_hex(6)}"
    database = make_conninfo("", **postgres_database)
    with psycopg.connect(database, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    yield postgres_url(
        {
            **postgres_database,
            "options": f"-c search_path={schema}",
            "application_name": f"otphsm_{schema}",
        }
    )
    # A new connection: a test may have terminated every backend of its database.
    with psycopg.connect(database, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")


ENGINES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("sqlite-memory", id="sqlite-memory"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]
SHARED_ENGINES = [ENGINES[0], ENGINES[2]]
"""Engines a second process or a second store can open (not `:memory:`)."""


def _store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "otphsm.db")
    if request.param == "sqlite-memory":
        return "sqlite::memory:"
    url: str = request.getfixturevalue("postgres_store_url")
    return url


@pytest.fixture(params=ENGINES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty, unmigrated database on each engine."""
    return _store_url(request, tmp_path)


@pytest.fixture(params=SHARED_ENGINES)
def shared_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Like `store_url`, on engines several stores and processes can share."""
    return _store_url(request, tmp_path)


@pytest.fixture
def open_test_store() -> Iterator[Callable[[str], SqlStore]]:
    """Opens stores (migrated) and closes them after the test."""
    opened: list[SqlStore] = []

    def open_migrated(url: str) -> SqlStore:
        store = open_store(url)
        assert isinstance(store, SqlStore)
        store.migrate()
        opened.append(store)
        return store

    yield open_migrated
    for store in opened:
        store.close()


@pytest.fixture
def store(store_url: str, open_test_store: Callable[[str], SqlStore]) -> SqlStore:
    return open_test_store(store_url)


def race(count: int, action: Callable[[], bool]) -> list[bool]:
    """Run `action` in `count` threads released together; their results."""
    start = threading.Barrier(count)

    def released() -> bool:
        start.wait(timeout=10)
        return action()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: released(), range(count)))


def run_processes(target: Callable[..., None], count: int, *args: Any) -> list[Any]:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(count)
    results = context.Queue()
    processes = [context.Process(target=target, args=(*args, start, results)) for _ in range(count)]
    for process in processes:
        process.start()
    reported = [results.get(timeout=30) for _ in processes]
    for process in processes:
        process.join(timeout=10)
    assert [process.exitcode for process in processes] == [0] * count, reported
    return reported


# Workers for multiprocessing (spawn): importable as `support.store_fixtures` in the child.


def race_update_token(url: str, serial: str, start: Barrier, results: Queue[object]) -> None:
    def update(store: Store) -> bool:
        token = store.get_token(serial)
        assert token is not None
        start.wait(timeout=10)
        return store.update_token(replace(token, moving_factor=os.getpid()))

    _report(url, update, results)


def append_audit_entries(url: str, count: int, start: Barrier, results: Queue[object]) -> None:
    def append(store: Store) -> int:
        start.wait(timeout=10)
        for _ in range(count):
            store.append_audit(lambda last: chained_entry(last, actor=f"pid-{os.getpid()}"))
        return count

    _report(url, append, results)


def migrate_concurrently(url: str, start: Barrier, results: Queue[object]) -> None:
    def migrate(store: Store) -> str:
        start.wait(timeout=10)
        store.migrate()
        return "migrated"

    _report(url, migrate, results)


def _report(url: str, work: Callable[[Store], object], results: Queue[object]) -> None:
    """Put what `work` returned, or the error it raised, so the parent never waits in vain."""
    try:
        store = open_store(url)
        try:
            results.put(work(store))
        finally:
            store.close()
    except BaseException as exc:
        results.put(f"{type(exc).__name__}: {exc}")
        raise


def chained_entry(last: AuditEntry | None, *, actor: str = "tester", at: int = 0) -> AuditEntry:
    """The next link of a test chain: its hash covers its predecessor's hash and its seq."""
    seq = last.seq + 1 if last else 1
    prev_hash = last.entry_hash if last else b""
    entry_hash = hashlib.sha256(prev_hash + f"{seq}|{actor}".encode()).digest()
    return AuditEntry(
        seq=seq,
        at=at,
        actor=actor,
        action="test.append",
        subject=f"entry-{seq}",
        details={"built_after": last.seq if last else 0},
        prev_hash=prev_hash,
        entry_hash=entry_hash,
        mac=hashlib.sha256(b"mac" + entry_hash).digest(),
    )
