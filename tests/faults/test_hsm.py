"""HSM faults under load, on a running gRPC server (real SoftHSM2 behind the fault-injecting
session source): sessions dying now and then, the device gone for a while, slow calls.
Wrong codes are never accepted, right codes never accepted twice; while the device is gone
every answer is a clear UNAVAILABLE; afterwards the same process serves again, unrestarted."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import grpc
import pytest
from support.fault_support import (
    VerifyLoad,
    add_hotp_tokens,
    check_at_most_once,
    replay_all,
)
from support.service_fixtures import start_service

from otphsm.simulators.hsm.faults import CKR_DEVICE_REMOVED, CKR_SESSION_HANDLE_INVALID
from otphsm.store.urls import sqlite_url
from otphsm.v1 import validation_pb2

pytestmark = [pytest.mark.softhsm, pytest.mark.slow, pytest.mark.timeout(120)]


def answers_during(load: VerifyLoad, answers: int) -> Counter[str]:
    before = Counter(load.record.answers)
    load.wait_for(answers)
    return Counter(load.record.answers) - before


def test_hsm_faults_under_load_never_accept_a_wrong_code_and_recover_in_place(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = tmp_path / "otphsm.db"
    service = start_service(
        request,
        tmp_path,
        sqlite_url(db),
        db,
        overrides={"verification": {"lock_after_failures": 10**9}, "ratelimit": {"enabled": False}},
    )
    try:
        app = service.running.assembly.app
        owner = service.running.assembly.vault.owner
        tokens = add_hotp_tokens(app, 10)
        stub = service.validation()
        load = VerifyLoad([lambda: stub], tokens, threads=3, wrong_every=3).start()
        healthy = answers_during(load, 30)
        assert set(healthy) <= {"OK", "WRONG_CODE"}, healthy

        # sessions die every few calls: the owner reopens, logs in, retries; nobody notices
        recoveries = owner.recoveries
        service.faults.fail_every(20, CKR_SESSION_HANDLE_INVALID)
        flaky = answers_during(load, 60)
        service.faults.clear()
        assert owner.recoveries > recoveries
        assert set(flaky) <= {"OK", "WRONG_CODE"}, flaky

        # the device is gone: every answer is UNAVAILABLE, saying so
        service.faults.fail_every(1, CKR_DEVICE_REMOVED)
        load.wait_for(3)  # requests already past the HSM finish first
        gone = answers_during(load, 6)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Verify(
                validation_pb2.VerifyRequest(serial=tokens[0].serial, code="123456"), timeout=10
            )
        service.faults.clear()
        assert gone["rpc:UNAVAILABLE"] >= 5 and not set(gone) - {"rpc:UNAVAILABLE", "OK"}, gone
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "HSM" in (refused.value.details() or "")

        # slow calls: answers come late, and right
        service.faults.latency_seconds = 0.005
        slow = answers_during(load, 15)
        service.faults.clear()
        assert set(slow) <= {"OK", "WRONG_CODE"}, slow

        # back to normal in the same process
        after = answers_during(load, 30)
        assert after["OK"] > 0 and set(after) <= {"OK", "WRONG_CODE"}, after
        record = load.stop()
        stored = {t.serial: app.store.get_token(t.serial) for t in tokens}
        check_at_most_once(record, {s: t.moving_factor for s, t in stored.items() if t})
        replay_all(stub, record.accepted, tokens, sample=30)
    finally:
        service.close()
