"""A replica killed with SIGKILL under load and started again: two `otphsm serve` processes share
PostgreSQL and the SoftHSM token; the load keeps verifying HOTP codes over both, resending
a code whose answer was lost. No code accepted before the kill is accepted after it, no code
is accepted twice, and no token's counter goes back."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.fault_support import (
    Replica,
    VerifyLoad,
    add_hotp_tokens,
    check_at_most_once,
    replay_all,
    serve_configs,
    stored_counters,
)

from otphsm.service.assembly import assemble
from otphsm.service.config import load_config

pytestmark = [
    pytest.mark.softhsm,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.timeout(180),
]


def test_a_replica_killed_under_load_and_restarted_accepts_no_code_twice(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_store_url: str
) -> None:
    configs = serve_configs(request, tmp_path, postgres_store_url, ("a", "b"))
    softhsm, pki = request.getfixturevalue("serve_softhsm"), request.getfixturevalue("dev_pki")
    replicas = [Replica(config, softhsm, pki) for config in configs]
    assembly = assemble(load_config(configs[0], env={}))
    try:
        tokens = add_hotp_tokens(assembly.app, 12)
        load = VerifyLoad([replicas[0].stub, replicas[1].stub], tokens, threads=4).start()
        load.wait_for(150)

        replicas[0].kill()
        before_kill = list(load.record.accepted)
        counters_at_kill = stored_counters(assembly.app, tokens)
        load.wait_for(100)  # the survivor carries the load; calls to the dead one fail
        replicas[0].start()
        load.wait_for(150)
        record = load.stop()

        # A call still waiting for the database when the client's 10 s deadline passes ends as
        # DEADLINE_EXCEEDED; the code is sent again, and counts as REPLAYED if it was accepted.
        allowed = {"OK", "REPLAYED", "rpc:UNAVAILABLE", "rpc:DEADLINE_EXCEEDED"}
        assert set(record.answers) <= allowed, record.answers
        assert record.answers["rpc:UNAVAILABLE"] > 0  # the kill was felt
        final = stored_counters(assembly.app, tokens)
        assert all(final[s] >= counters_at_kill[s] for s in final), (counters_at_kill, final)
        check_at_most_once(record, final)
        assert len(record.accepted) > len(before_kill)
        for replica in replicas:  # neither replica accepts a code used before the kill
            replay_all(replica.stub(), before_kill, tokens, sample=40)
    finally:
        assembly.close()
        for replica in replicas:
            replica.close()
