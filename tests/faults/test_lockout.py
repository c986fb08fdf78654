"""Lockout cannot lock a citizen out for good: every lock expires (the growing wait is capped
by `verification.lock_max_seconds`), and a caller flooding wrong codes is slowed per caller
(RESOURCE_EXHAUSTED with retry-after) without slowing other callers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from support.fault_support import HotpToken, add_hotp_tokens
from support.service_fixtures import TWO_ROLES, ServiceUnderTest, start_service

from otphsm.client.wire import RETRY_AFTER_KEY
from otphsm.core.clock import ManualClock
from otphsm.core.errors import RateLimited
from otphsm.core.ports import Store
from otphsm.service.config import RateLimitSection
from otphsm.service.ratelimit import FailureRateLimiter
from otphsm.store import open_store, sqlite_url
from otphsm.v1 import common_pb2, grid_pb2, grid_pb2_grpc, oob_pb2, oob_pb2_grpc, validation_pb2

pytestmark = [pytest.mark.softhsm, pytest.mark.slow, pytest.mark.timeout(120)]

LOCK_MAX = 900
BURST = 20


def _service(
    request: pytest.FixtureRequest, tmp_path: Path, ratelimit: dict[str, object]
) -> ServiceUnderTest:
    db = tmp_path / "otphsm.db"
    return start_service(
        request,
        tmp_path,
        sqlite_url(db),
        db,
        overrides={"ratelimit": ratelimit, "verification": {"lock_max_seconds": LOCK_MAX}},
    )


@pytest.fixture
def limited_service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServiceUnderTest]:
    service = _service(request, tmp_path, {"failures_per_second": 0.01, "burst": BURST})
    yield service
    service.close()


@pytest.fixture
def unlimited_service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServiceUnderTest]:
    """No rate limit at all: the lock must expire on its own."""
    service = _service(request, tmp_path, {"enabled": False})
    yield service
    service.close()


def verify(stub: object, token: HotpToken, code: str) -> common_pb2.VerifyResponse:
    answer: common_pb2.VerifyResponse = stub.Verify(  # type: ignore[attr-defined]
        validation_pb2.VerifyRequest(serial=token.serial, code=code), timeout=10
    )
    return answer


def test_a_lock_always_expires_however_often_it_is_provoked(
    unlimited_service: ServiceUnderTest,
) -> None:
    service = unlimited_service
    (token,) = add_hotp_tokens(service.running.assembly.app, 1)
    # each lock cycle: an attacker (its own certificate, its own bucket) sends 3 wrong codes
    attackers = [service.validation(), service.validation(TWO_ROLES)]
    waits = []
    for cycle in range(10):
        attacker = attackers[cycle % 2]
        answers = [verify(attacker, token, token.wrong_code(0)) for _ in range(3)]
        assert answers[-1].retry_after_seconds > 0, answers
        waits.append(answers[-1].retry_after_seconds)
        locked = verify(service.validation(), token, token.code(0))
        assert locked.result == common_pb2.VERIFY_RESULT_LOCKED
        service.clock.advance(locked.retry_after_seconds)
    assert max(waits) == LOCK_MAX and waits == sorted(waits)  # grows, then stays capped
    # the citizen's own right code goes through as soon as the lock has run out
    accepted = verify(service.validation(), token, token.code(0))
    assert accepted.result == common_pb2.VERIFY_RESULT_OK


def test_a_caller_flooding_wrong_codes_is_slowed_and_other_callers_are_not(
    limited_service: ServiceUnderTest,
) -> None:
    service = limited_service
    tokens = add_hotp_tokens(service.running.assembly.app, 12)
    flooder, other = service.validation(), service.validation(TWO_ROLES)
    outcomes: Counter[str] = Counter()
    retry_after = []
    for i in range(3 * BURST):
        token = tokens[i % len(tokens)]
        try:
            answer = verify(flooder, token, token.wrong_code(0))
            outcomes[common_pb2.VerifyResult.Name(answer.result)] += 1
        except grpc.RpcError as error:
            assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, error
            outcomes["limited"] += 1
            trailers = dict(error.trailing_metadata() or ())
            retry_after.append(int(trailers[RETRY_AFTER_KEY]))
    assert outcomes["limited"] == 2 * BURST, outcomes  # the burst, then nothing
    assert retry_after and min(retry_after) >= 1
    before = service.snapshot()
    with pytest.raises(grpc.RpcError) as refused:  # even a right code waits: nothing is read
        verify(flooder, tokens[-1], tokens[-1].code(0))
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert service.snapshot() == before
    # another relying party is served as usual, right and wrong codes alike
    fresh = add_hotp_tokens(service.running.assembly.app, 1, prefix="OTHER")[0]
    assert verify(other, fresh, fresh.code(0)).result == common_pb2.VERIFY_RESULT_OK
    assert verify(other, fresh, fresh.wrong_code(1)).result == (common_pb2.VERIFY_RESULT_WRONG_CODE)


UNKNOWN_CF = "BNCGNN75C12F205J"  # well-formed, never enrolled


def test_login_codes_and_grid_answers_count_against_the_same_limit(
    limited_service: ServiceUnderTest,
) -> None:
    """Every RPC the table marks as checking a code drains the caller's one bucket."""
    service = limited_service
    guesses = [
        (
            oob_pb2_grpc.OobServiceStub(service.channel("verifier")).VerifyLoginCode,
            oob_pb2.VerifyLoginCodeRequest(codice_fiscale=UNKNOWN_CF, code="123456"),
        ),
        (
            grid_pb2_grpc.GridCardServiceStub(service.channel(TWO_ROLES)).VerifyGridAnswer,
            grid_pb2.VerifyGridAnswerRequest(
                codice_fiscale=UNKNOWN_CF, first_value="12", second_value="34"
            ),
        ),
    ]
    for rpc, guess in guesses:
        codes: Counter[str] = Counter()
        for _ in range(BURST + 5):
            try:
                rpc(guess, timeout=10)
                codes["answered"] += 1
            except grpc.RpcError as error:
                codes[error.code().name] += 1
        assert codes["RESOURCE_EXHAUSTED"] == 5, (rpc, codes)


class CountingBuckets:
    """The store's failed-check buckets, with its reads and writes counted."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.reads = 0
        self.writes = 0

    def failure_bucket_full_at(self, caller: str) -> int:
        self.reads += 1
        return self.store.failure_bucket_full_at(caller)

    def drain_failure_bucket(self, caller: str, now_ms: int, cost_ms: int, max_debt_ms: int) -> int:
        self.writes += 1
        return self.store.drain_failure_bucket(caller, now_ms, cost_ms, max_debt_ms)


@pytest.fixture
def buckets(tmp_path: Path) -> Iterator[CountingBuckets]:
    store = open_store(sqlite_url(tmp_path / "buckets.db"))
    store.migrate()
    yield CountingBuckets(store)
    store.close()


def test_the_bucket_refills_with_time_and_right_codes_cost_nothing(
    buckets: CountingBuckets,
) -> None:
    clock = ManualClock(0.0)
    limiter = FailureRateLimiter(RateLimitSection(failures_per_second=2.0, burst=3), buckets, clock)
    verify_rpc = "/otphsm.v1.ValidationService/Verify"
    ok = common_pb2.VerifyResponse(result=common_pb2.VERIFY_RESULT_OK)
    wrong = common_pb2.VerifyResponse(result=common_pb2.VERIFY_RESULT_WRONG_CODE)
    for _ in range(50):
        limiter.admit(verify_rpc, "CN=portal")
        limiter.record(verify_rpc, "CN=portal", ok)
    assert (buckets.reads, buckets.writes) == (50, 0)  # a right code: one read, no write
    for _ in range(3):
        limiter.admit(verify_rpc, "CN=portal")
        limiter.record(verify_rpc, "CN=portal", wrong)
    assert (buckets.reads, buckets.writes) == (53, 3)  # a failure: one single-row upsert
    with pytest.raises(Exception, match="retry in 1 s") as raised:
        limiter.admit(verify_rpc, "CN=portal")
    assert getattr(raised.value, "retry_after", 0) == 1
    for _ in range(100):  # a flood past the budget costs the store nothing
        with pytest.raises(RateLimited):
            limiter.admit(verify_rpc, "CN=portal")
    assert (buckets.reads, buckets.writes) == (53, 3)
    limiter.admit(verify_rpc, "CN=other")  # another caller has its own bucket
    limiter.admit("/otphsm.v1.AdminService/GetToken", "CN=portal")  # not a code check
    clock.advance(0.5)  # one failure's worth refilled
    limiter.admit(verify_rpc, "CN=portal")


def test_a_flood_costs_the_store_one_write_per_admitted_failure(buckets: CountingBuckets) -> None:
    """Over 60 s of a caller sending 100 wrong codes a second, the store takes burst + 60 x rate
    writes of one row each; every other guess is refused without touching it."""
    clock = ManualClock(0.0)
    section = RateLimitSection(failures_per_second=10.0, burst=100)
    limiter = FailureRateLimiter(section, buckets, clock)
    verify_rpc = "/otphsm.v1.ValidationService/Verify"
    admitted = refused = 0
    for _ in range(60 * 100):
        clock.advance(0.01)
        try:
            limiter.admit(verify_rpc, "CN=flood")
        except RateLimited:
            refused += 1
            continue
        admitted += 1
        limiter.record(verify_rpc, "CN=flood", None)
    assert admitted == buckets.writes
    assert 100 + 10 * 60 - 2 <= admitted <= 100 + 10 * 60 + 1, admitted
    assert buckets.reads <= admitted + 60 * 10, buckets.reads  # at most one per refused spell
    print(
        f"flood of 6000 failures in 60 s: {admitted} admitted, {refused} refused; "
        f"store: {buckets.writes} single-row writes, {buckets.reads} reads"
    )
