"""PostgreSQL trouble under load, against an `otphsm serve` process: every connection of the
service killed (pg_terminate_backend) again and again, the database refusing connections for a
moment (as while it restarts), and the service itself restarted. It recovers each time without
help; no accepted code is lost or accepted twice, no token appears or disappears, and the
audit chain still verifies.

The same under a real crash: a private PostgreSQL server (never the machine's shared one) is
stopped with `pg_ctl stop -m immediate` under load, the load goes on against it while it is
down, and it is started again through crash recovery: every code a client saw accepted must
still be recorded (fsync and synchronous_commit are on), and the service comes back alone."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from support.fault_support import (
    HotpToken,
    LoadRecord,
    Replica,
    VerifyLoad,
    add_hotp_tokens,
    check_at_most_once,
    replay_all,
    serve_configs,
    stored_counters,
    terminate_backends,
)
from support.private_postgres import PrivatePostgres, private_postgres
from support.store_records import token

from otphsm.core.app.audit import verify_audit
from otphsm.service.assembly import Assembly, assemble
from otphsm.service.config import load_config
from otphsm.store import StoreUnavailable, open_store

pytestmark = [
    pytest.mark.softhsm,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.timeout(180),
]


@pytest.fixture
def maintenance(postgres_database: dict[str, Any]) -> Iterator[psycopg.Connection[Any]]:
    settings = {**postgres_database, "dbname": "postgres"}
    with psycopg.connect(make_conninfo("", **settings), autocommit=True) as connection:
        yield connection


def test_connections_killed_an_outage_and_a_restart_under_load(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    postgres_store_url: str,
    postgres_database: dict[str, Any],
    maintenance: psycopg.Connection[Any],
) -> None:
    (config,) = serve_configs(request, tmp_path, postgres_store_url, ("a",))
    server = Replica(
        config, request.getfixturevalue("serve_softhsm"), request.getfixturevalue("dev_pki")
    )
    assembly = assemble(load_config(config, env={}))
    database = postgres_database["dbname"]
    try:
        tokens = add_hotp_tokens(assembly.app, 12)
        rows_before = {k: len(v) for k, v in assembly.store.snapshot().items() if k == "tokens"}
        load = VerifyLoad([server.stub], tokens, threads=4).start()
        load.wait_for(100)

        for _ in range(3):  # connections die under the service's feet
            assert terminate_backends(maintenance, postgres_store_url) >= 1
            load.wait_for(60)

        maintenance.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false')
        try:
            terminate_backends(maintenance, postgres_store_url)
            before = Counter(load.record.answers)
            load.wait_for(10)
            during = Counter(load.record.answers) - before
        finally:
            maintenance.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')
        assert during["rpc:UNAVAILABLE"] > 0, during
        before = Counter(load.record.answers)
        load.wait_for(100)  # back, without a restart
        assert (Counter(load.record.answers) - before)["OK"] > 0

        server.terminate()  # a graceful restart under load
        server.start()
        load.wait_for(100)
        record = load.stop()

        # A call still waiting for the database when the client's 10 s deadline passes ends as
        # DEADLINE_EXCEEDED; a call that reached the server as its graceful stop began is reset
        # by it (CANCELLED). Either way the code is sent again, and counts as REPLAYED if it was
        # accepted.
        allowed = {"OK", "REPLAYED", "rpc:UNAVAILABLE", "rpc:DEADLINE_EXCEEDED", "rpc:CANCELLED"}
        assert set(record.answers) <= allowed, record.answers
        check_nothing_lost_or_doubled(assembly, server, record, tokens, rows_before)
    finally:
        assembly.close()
        server.close()


@pytest.fixture
def crashable_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL server of this test alone, stopped and removed at the end whatever happens."""
    with private_postgres() as server:
        yield server


def wait_until(condition: Callable[[], bool], timeout: float, what: Callable[[], str]) -> float:
    """Poll `condition`; the seconds it took. Fails after `timeout`, saying `what()`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"timed out waiting for {what()}"
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.mark.timeout(60)
def test_postgres_crashed_and_restarted_under_load(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    crashable_postgres: PrivatePostgres,
) -> None:
    database = crashable_postgres
    with psycopg.connect(database.url(), autocommit=True) as admin:
        admin.execute("CREATE DATABASE otphsm")
    store_url = database.url("otphsm")
    (config,) = serve_configs(request, tmp_path, store_url, ("a",))
    server = Replica(
        config, request.getfixturevalue("serve_softhsm"), request.getfixturevalue("dev_pki")
    )
    serving_pid = server.process.process.pid
    assembly = assemble(load_config(config, env={}))
    try:
        tokens = add_hotp_tokens(assembly.app, 12)
        rows_before = {k: len(v) for k, v in assembly.store.snapshot().items() if k == "tokens"}
        load = VerifyLoad([server.stub], tokens, threads=4).start()
        load.wait_for(100)

        def since(mark: Counter[str]) -> Counter[str]:
            return Counter(load.record.answers) - mark

        # The power fails under PostgreSQL: no shutdown checkpoint, commits in flight cut.
        before_crash = Counter(load.record.answers)
        database.crash()
        crashed = time.monotonic()
        down_for = wait_until(  # a few seconds, and until every load thread was refused
            lambda: time.monotonic() - crashed >= 3 and since(before_crash)["rpc:UNAVAILABLE"] >= 4,
            timeout=30,
            what=lambda: f"UNAVAILABLE answers while PostgreSQL is down: {since(before_crash)}",
        )
        during = since(before_crash)
        database.start()  # crash recovery replays the WAL
        assert "automatic recovery in progress" in database.server_log()
        after_start = Counter(load.record.answers)
        recovered_in = wait_until(
            lambda: since(after_start)["OK"] >= 20,
            timeout=30,
            what=lambda: f"OK answers after PostgreSQL came back: {since(after_start)}",
        )
        assert server.process.process.poll() is None
        assert server.process.process.pid == serving_pid  # no restart of otphsm
        recovery = since(after_start)
        load.wait_for(100)
        record = load.stop()
        print(
            f"\nPostgreSQL down {down_for:.1f} s, answers meanwhile: {dict(during)}; "
            f"back to 20 OK {recovered_in:.1f} s after the start, answers: {dict(recovery)}; "
            f"all answers: {dict(record.answers)}"
        )

        # Only answers that say what happened: a code answered UNAVAILABLE is sent again,
        # and counts as REPLAYED if its write had committed before the crash.
        allowed = {"OK", "REPLAYED", "rpc:UNAVAILABLE"}
        assert set(during) <= allowed, during
        assert during["rpc:UNAVAILABLE"] > 0, during
        assert set(record.answers) <= allowed, record.answers
        # an acknowledged commit survived the crash
        check_nothing_lost_or_doubled(assembly, server, record, tokens, rows_before)
    finally:
        assembly.close()
        server.close()


def check_nothing_lost_or_doubled(
    assembly: Assembly,
    server: Replica,
    record: LoadRecord,
    tokens: list[HotpToken],
    rows_before: dict[str, int],
) -> None:
    """No code accepted twice or forgotten, no token row gained or lost, the audit intact,
    and accepted codes replayed are refused."""
    check_at_most_once(record, stored_counters(assembly.app, tokens))
    snapshot = assembly.store.snapshot()
    assert {"tokens": len(snapshot["tokens"])} == rows_before
    assert verify_audit(assembly.app).intact
    replay_all(server.stub(), record.accepted, tokens, sample=40)


@pytest.mark.timeout(60)
def test_while_postgresql_is_down_the_store_answers_at_once(
    crashable_postgres: PrivatePostgres,
) -> None:
    """The first caller after a crash waits out the pool's whole timeout; once the outage is
    known every later one gets its StoreUnavailable within a fraction of a second (not a queue
    of callers each waiting the full timeout), and the first success after the restart ends
    the outage."""
    database = crashable_postgres
    with psycopg.connect(database.url(), autocommit=True) as admin:
        admin.execute("CREATE DATABASE otphsm")
    store = open_store(database.url("otphsm"), pool_size=2, timeout=2.0)
    try:
        store.migrate()
        store.insert_token(token("TOK-DOWN"))
        database.crash()
        with pytest.raises(StoreUnavailable):
            store.get_token("TOK-DOWN")
        waits = []
        for _ in range(5):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="PostgreSQL is unavailable"):
                store.get_token("TOK-DOWN")
            waits.append(time.monotonic() - started)
        assert max(waits) < 1.0, waits

        database.start()

        def answers() -> bool:
            try:
                return store.get_token("TOK-DOWN") == token("TOK-DOWN")
            except StoreUnavailable:
                return False

        wait_until(answers, 20, lambda: "the store to answer after the restart")
        started = time.monotonic()
        assert store.update_token(replace(token("TOK-DOWN"), failures=1))
        assert time.monotonic() - started < 1.0
    finally:
        store.close()
