"""PostgreSQL trouble under load, against an `otphsm serve` process: every connection of the
service killed (pg_terminate_backend) again and again, the database refusing connections for a
moment (as while it restarts), and the service itself restarted. It recovers each time without
help; no accepted code is lost or accepted twice, no token appears or disappears, and the
audit chain still verifies."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from support.fault_support import (
    Replica,
    VerifyLoad,
    add_hotp_tokens,
    check_at_most_once,
    replay_all,
    serve_configs,
    stored_counters,
    terminate_backends,
)

from otphsm.core.app.audit import verify_audit
from otphsm.service.assembly import assemble
from otphsm.service.config import load_config

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
        final = stored_counters(assembly.app, tokens)
        check_at_most_once(record, final)
        snapshot = assembly.store.snapshot()
        assert {"tokens": len(snapshot["tokens"])} == rows_before
        assert verify_audit(assembly.app).intact
        replay_all(server.stub(), record.accepted, tokens, sample=40)
    finally:
        assembly.close()
        server.close()
