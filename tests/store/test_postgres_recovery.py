"""PostgreSQL connections die (a restart, a failover, `pg_terminate_backend`): the store must
replace them, retry only what is safe to retry, and never wait without bound."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from support.store_fixtures import chained_entry
from support.store_records import token

from otphsm.core.records import AuditEntry
from otphsm.store import PostgresStore, SqlStore, StoreUnavailable

pytestmark = pytest.mark.postgres


@pytest.fixture
def admin(postgres_database: dict[str, Any]) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(make_conninfo("", **postgres_database), autocommit=True) as connection:
        yield connection


@pytest.fixture
def store(postgres_store_url: str) -> Iterator[SqlStore]:
    opened = PostgresStore(postgres_store_url, pool_size=4, timeout=5.0)
    opened.migrate()
    yield opened
    opened.close()


def terminate_store_connections(admin: psycopg.Connection[Any], url: str) -> int:
    application_name = url.split("application_name=", 1)[1].split("&", 1)[0]
    killed = admin.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
        (application_name,),
    ).fetchone()
    return int(killed[0]) if killed else 0


def use_every_pool_connection(store: SqlStore) -> None:
    def slow_read(_: int) -> None:
        store._engine.run(lambda tx: tx.fetch_one("SELECT pg_sleep(0.05)"), write=False)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(slow_read, range(4)))


def test_operations_recover_after_every_connection_is_terminated(
    store: SqlStore, admin: psycopg.Connection[Any], postgres_store_url: str
) -> None:
    store.insert_token(token())
    for _ in range(3):
        use_every_pool_connection(store)
        assert terminate_store_connections(admin, postgres_store_url) >= 2
        started = time.monotonic()
        current = store.get_token("TOK-0001")
        assert current is not None
        assert store.update_token(replace(current, failures=current.failures + 1)) is True
        store.ping()
        assert time.monotonic() - started < 5
    final = store.get_token("TOK-0001")
    assert final is not None and final.failures == 3 and final.version == 3


def test_a_transaction_cut_before_commit_runs_once_more(
    store: SqlStore, admin: psycopg.Connection[Any], postgres_store_url: str
) -> None:
    calls: list[AuditEntry | None] = []

    def build_while_the_connection_dies(last: AuditEntry | None) -> AuditEntry:
        calls.append(last)
        if len(calls) == 1:
            assert terminate_store_connections(admin, postgres_store_url) >= 1
        return chained_entry(last)

    stored = store.append_audit(build_while_the_connection_dies)
    assert calls == [None, None]
    assert list(store.audit_entries()) == [stored]


def test_a_connection_that_keeps_dying_gives_store_unavailable(
    store: SqlStore, admin: psycopg.Connection[Any], postgres_store_url: str
) -> None:
    def build_and_die(last: AuditEntry | None) -> AuditEntry:
        terminate_store_connections(admin, postgres_store_url)
        return chained_entry(last)

    with pytest.raises(StoreUnavailable) as raised:
        store.append_audit(build_and_die)
    assert raised.value.code in ("57P01", None)
    assert list(store.audit_entries()) == []
    store.append_audit(chained_entry)


def test_the_store_comes_back_soon_after_an_outage_ends(
    postgres_database: dict[str, Any], postgres_store_url: str
) -> None:
    name = postgres_database["dbname"]
    store = PostgresStore(postgres_store_url, ping_timeout=0.3, reconnect_timeout=1.0)
    store.migrate()
    maintenance = make_conninfo("", **{**postgres_database, "dbname": "postgres"})
    try:
        with psycopg.connect(maintenance, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            try:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                outage_ends = time.monotonic() + 3
                while time.monotonic() < outage_ends:
                    with pytest.raises(StoreUnavailable):
                        store.ping()
                    time.sleep(0.2)
            finally:
                admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        back_by = time.monotonic() + 3
        while True:
            try:
                store.ping()
                break
            except StoreUnavailable:
                assert time.monotonic() < back_by, "still unavailable 3 s after the outage"
                time.sleep(0.1)
        store.insert_token(token())
    finally:
        store.close()


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda store: store.ping(), id="ping"),
        pytest.param(lambda store: store.get_token("TOK-0001"), id="get_token"),
        pytest.param(lambda store: store.update_token(token()), id="update_token"),
    ],
)
def test_an_unreachable_server_is_unavailable_quickly_and_without_the_password(
    call: Callable[[SqlStore], object],
) -> None:
    unreachable = PostgresStore(
        "postgresql://otphsm:hunter2-secret@127.0.0.1:1/otphsm", timeout=0.5, ping_timeout=0.5
    )
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as raised:
            call(unreachable)
        assert time.monotonic() - started < 3
    finally:
        unreachable.close()
    assert "hunter2" not in str(raised.value)
    assert "PostgreSQL is unavailable" in str(raised.value)
