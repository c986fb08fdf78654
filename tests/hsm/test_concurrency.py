"""8 threads x 2,000 mixed calls through one engine: no crash (SoftHSM is not thread-safe as
python-pkcs11 initialises it) and no wrong code, with and without injected session loss."""

from __future__ import annotations

import hmac
import os
import random
import threading
from collections import Counter

import pytest

from otphsm.core.otp import HashAlgorithm
from otphsm.core.seeds import SeedRef
from otphsm.hsm import HsmSeedVault, HsmSessionOwner, ModuleSessionSource
from otphsm.hsm.errors import HsmUnavailable
from otphsm.simulators.hsm.faults import (
    CKR_DEVICE_REMOVED,
    CKR_SESSION_HANDLE_INVALID,
    FaultInjectingSource,
    FaultPlan,
)

pytestmark = [pytest.mark.softhsm, pytest.mark.slow]
THREADS = 8
CALLS_PER_THREAD = 2000
ALGORITHMS = list(HashAlgorithm)


def _hammer(
    vault: HsmSeedVault, seeds: list[tuple[SeedRef, bytes, HashAlgorithm]], plan: FaultPlan | None
) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def worker(worker_id: int) -> None:
        rng = random.Random(worker_id)
        local: Counter[str] = Counter()
        for i in range(CALLS_PER_THREAD):
            if plan is not None and worker_id == 0 and i == CALLS_PER_THREAD // 2:
                plan.fail_next(8, CKR_SESSION_HANDLE_INVALID)  # a burst longer than the retries
            try:
                if i % 50 == 49:  # now and then a new seed goes in (create + wrap)
                    value = os.urandom(20)
                    ref = vault.import_seed(value, HashAlgorithm.SHA1)
                    ok = (
                        vault.hmac(ref, HashAlgorithm.SHA1, b"x")
                        == hmac.new(value, b"x", "sha1").digest()
                    )
                else:
                    ref, value, alg = rng.choice(seeds)
                    message = rng.randbytes(8)
                    expected = hmac.new(value, message, alg.hashlib_name).digest()
                    ok = vault.hmac(ref, alg, message) == expected
                local["right" if ok else "WRONG"] += 1
            except HsmUnavailable:
                local["unavailable"] += 1
        with lock:
            outcomes.update(local)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def _engine(softhsm, plan: FaultPlan | None) -> HsmSeedVault:  # type: ignore[no-untyped-def]
    source = ModuleSessionSource.for_module(softhsm.module)
    if plan is not None:
        source = FaultInjectingSource(source, plan)  # type: ignore[assignment]
    # A cache smaller than the fleet, so the mix is cache hits (sign) and misses (unwrap + sign).
    config = softhsm.hsm_config(handle_cache_size=12, retry_backoff_seconds=0.001)
    return HsmSeedVault(HsmSessionOwner(config, source))


def _fleet(vault: HsmSeedVault) -> list[tuple[SeedRef, bytes, HashAlgorithm]]:
    fleet = []
    for n in range(40):
        alg = ALGORITHMS[n % 3]
        value = os.urandom(alg.digest_size)
        fleet.append((vault.import_seed(value, alg), value, alg))
    return fleet


def test_eight_threads_no_crash_no_wrong_code(softhsm) -> None:  # type: ignore[no-untyped-def]
    vault = _engine(softhsm, None)
    try:
        outcomes = _hammer(vault, _fleet(vault), None)
    finally:
        vault.close()
    assert outcomes == Counter(right=THREADS * CALLS_PER_THREAD)
    assert vault.cache.misses > 1000 and vault.cache.hits > 1000


def test_injected_session_loss_mid_run_gives_right_answers_or_clear_errors(softhsm) -> None:  # type: ignore[no-untyped-def]
    plan = FaultPlan()
    vault = _engine(softhsm, plan)
    try:
        fleet = _fleet(vault)
        plan.fail_every(97, CKR_SESSION_HANDLE_INVALID)
        plan.fail_next(1, CKR_DEVICE_REMOVED)
        outcomes = _hammer(vault, fleet, plan)
        assert outcomes["WRONG"] == 0
        assert outcomes["unavailable"] >= 1  # the burst outlasted the retry budget once
        assert outcomes["right"] > THREADS * CALLS_PER_THREAD * 0.95
        assert vault.owner.recoveries > 50
        plan.clear()
        for ref, value, alg in fleet:  # healed by itself, no restart
            assert (
                vault.hmac(ref, alg, b"after")
                == hmac.new(value, b"after", alg.hashlib_name).digest()
            )
    finally:
        vault.close()
