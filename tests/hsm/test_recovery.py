"""Session loss, device removal, idle expiry, latency and object caps, injected into the real
SoftHSM2 path: every answer is right or a clear error, and the engine heals by itself."""

from __future__ import annotations

import ctypes
import hmac
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from otphsm.core.otp import HashAlgorithm
from otphsm.core.seeds import SeedRef, SeedStorage
from otphsm.hsm import HsmSeedVault, HsmSessionOwner, ModuleSessionSource, open_vault
from otphsm.hsm.errors import (
    HsmCapacityExceeded,
    HsmOperationRefused,
    HsmUnavailable,
)
from otphsm.simulators.hsm.faults import (
    CKR_DEVICE_REMOVED,
    CKR_SESSION_HANDLE_INVALID,
    CKR_TOKEN_NOT_PRESENT,
    FaultInjectingSource,
    FaultPlan,
)
from otphsm.simulators.hsm.softhsm import SoftHsm

pytestmark = pytest.mark.softhsm
SHA1 = HashAlgorithm.SHA1
CKR_SESSION_CLOSED = 0xB0
CKR_USER_NOT_LOGGED_IN = 0x101
LOGIN_OR_SESSION_LOST = pytest.mark.parametrize(
    ("ckr", "name"),
    [
        (CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN"),
        (CKR_SESSION_CLOSED, "CKR_SESSION_CLOSED"),
    ],
    ids=["user-not-logged-in", "session-closed"],
)


@dataclass
class Rig:
    vault: HsmSeedVault
    plan: FaultPlan
    source: FaultInjectingSource
    seeds: dict[SeedRef, bytes]
    sleeps: list[float]

    def check(self, seed: SeedRef, message: bytes = b"msg") -> None:
        expected = hmac.new(self.seeds[seed], message, "sha1").digest()
        assert self.vault.hmac(seed, SHA1, message) == expected


class ManualMonotonic:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_rig(softhsm, count: int = 4, **config) -> Rig:  # type: ignore[no-untyped-def]
    sleeps: list[float] = []
    plan = FaultPlan(sleep=sleeps.append)
    source = FaultInjectingSource(ModuleSessionSource.for_module(softhsm.module), plan)
    owner = HsmSessionOwner(softhsm.hsm_config(**config), source, sleep=sleeps.append)
    vault = HsmSeedVault(owner)
    seeds = {}
    for _ in range(count):
        value = os.urandom(20)
        seeds[vault.import_seed(value, SHA1)] = value
    return Rig(vault, plan, source, seeds, sleeps)


@pytest.fixture
def rig(softhsm) -> Iterator[Rig]:  # type: ignore[no-untyped-def]
    made = make_rig(softhsm)
    yield made
    made.vault.close()


def test_lost_sessions_are_replaced_and_answers_stay_right(rig: Rig) -> None:
    for seed in rig.seeds:
        rig.check(seed)
    rig.plan.fail_next(2, CKR_SESSION_HANDLE_INVALID)
    for seed in rig.seeds:
        rig.check(seed)
    assert rig.vault.owner.recoveries == 2
    assert rig.sleeps[:2] == [0.05, 0.1]  # bounded exponential backoff


def test_stale_handles_are_never_reused_after_a_session_loss(rig: Rig) -> None:
    order = list(rig.seeds)
    for seed in order:
        rig.check(seed)  # every seed now has a cached handle in session 1
    rig.plan.fail_next(1, CKR_SESSION_HANDLE_INVALID)
    for seed in reversed(order):  # session 2 hands out handles in the opposite order
        rig.check(seed)
    for seed in order:
        rig.check(seed)


def test_a_loss_that_outlasts_the_retries_is_unavailable_then_heals(rig: Rig) -> None:
    seed = next(iter(rig.seeds))
    rig.plan.fail_next(rig.vault.owner.config.max_attempts, CKR_TOKEN_NOT_PRESENT)
    with pytest.raises(HsmUnavailable) as err:
        rig.vault.hmac(seed, SHA1, b"msg")
    assert err.value.ckr == CKR_TOKEN_NOT_PRESENT
    assert "CKR_TOKEN_NOT_PRESENT" in str(err.value)
    rig.check(seed)  # no restart needed


@LOGIN_OR_SESSION_LOST
def test_a_lost_login_or_closed_session_is_reopened_and_logged_in(
    rig: Rig, ckr: int, name: str
) -> None:
    seeds = list(rig.seeds)
    for seed in seeds:
        rig.check(seed)  # a live, logged-in session with every seed's handle cached
    opened, epoch = rig.source.sessions_opened, rig.source.epoch
    rig.plan.fail_next(1, ckr)
    rig.check(seeds[0])
    assert rig.plan.injected == 1
    assert rig.vault.owner.recoveries == 1
    assert rig.source.sessions_opened == opened + 1  # one new session, logged in by the owner
    assert rig.source.epoch == epoch  # a session fault, not a device one: no module reload
    assert rig.sleeps == [0.05]  # one retry after the first backoff step
    for seed in reversed(seeds):  # the old session's handles are not reused
        rig.check(seed)
    assert rig.vault.owner.recoveries == 1


@LOGIN_OR_SESSION_LOST
def test_a_lost_login_or_closed_session_is_retried_a_bounded_number_of_times(
    rig: Rig, ckr: int, name: str
) -> None:
    seed = next(iter(rig.seeds))
    rig.check(seed)
    attempts = rig.vault.owner.config.max_attempts
    opened = rig.source.sessions_opened
    rig.plan.fail_next(attempts, ckr)
    with pytest.raises(HsmUnavailable) as err:
        rig.vault.hmac(seed, SHA1, b"msg")
    assert err.value.ckr == ckr
    assert name in str(err.value)
    assert rig.plan.injected == attempts  # every attempt hit the fault, none more were made
    assert rig.source.sessions_opened == opened + attempts - 1
    assert rig.sleeps == [0.05 * 2**i for i in range(attempts - 1)]
    rig.check(seed)  # heals on the next call
    assert rig.plan.injected == attempts


LogOut = Callable[[], None]


@pytest.fixture
def log_out(softhsm: SoftHsm) -> Iterator[LogOut]:
    """A real C_Logout, from a session of the test's own. Login state is per application and
    token, so every session this process has on the token becomes a public session: SoftHSM
    then voids the handles of private objects (CKR_OBJECT_HANDLE_INVALID), hides private
    objects from searches and answers CKR_USER_NOT_LOGGED_IN to creating one."""
    source = ModuleSessionSource.for_module(softhsm.module)
    c_logout = ctypes.CDLL(softhsm.module).C_Logout
    c_logout.argtypes = (ctypes.c_ulong,)
    c_logout.restype = ctypes.c_ulong

    def log_out_now() -> None:
        session = source.open_session(softhsm.token_label, softhsm.user_pin)
        try:
            handle = session.handle  # type: ignore[attr-defined]  # not in the stubs
            assert c_logout(handle) == 0  # CKR_OK
        finally:
            session.close()

    yield log_out_now
    # Logged in again whatever the test did, for the sessions of the tests after it.
    source.open_session(softhsm.token_label, softhsm.user_pin).close()


@pytest.mark.parametrize(
    "storage",
    [SeedStorage.WRAPPED, SeedStorage.RESIDENT],
    ids=["wrapped", "resident"],
)
def test_a_real_logout_is_healed_by_logging_in_again(
    softhsm: SoftHsm, log_out: LogOut, storage: SeedStorage
) -> None:
    """Not injected: the module itself loses the login under the engine's live session."""
    made = make_rig(softhsm, count=2, seed_storage=storage)
    try:
        seeds = list(made.seeds)
        for seed in seeds:
            made.check(seed)
        log_out()
        for seed in seeds:
            made.check(seed)
        assert made.plan.injected == 0
        assert made.vault.owner.recoveries == 1
    finally:
        made.vault.close()


def test_a_real_logout_does_not_break_the_keyed_digest(softhsm: SoftHsm, log_out: LogOut) -> None:
    vault = open_vault(softhsm.hsm_config())
    try:
        before = vault.keyed_digest(b"subscriber 42")
        log_out()
        assert vault.keyed_digest(b"subscriber 42") == before
    finally:
        vault.close()


def test_device_removal_reloads_the_module(rig: Rig) -> None:
    seed = next(iter(rig.seeds))
    rig.check(seed)
    epoch = rig.source.epoch
    rig.plan.fail_next(1, CKR_DEVICE_REMOVED)
    rig.check(seed)
    assert rig.source.epoch == epoch + 1


def test_refusals_are_not_retried(rig: Rig) -> None:
    seed = next(iter(rig.seeds))
    rig.plan.fail_next(1, 0x70)  # CKR_MECHANISM_INVALID
    with pytest.raises(HsmOperationRefused, match="CKR_MECHANISM_INVALID"):
        rig.vault.hmac(seed, SHA1, b"msg")
    assert rig.vault.owner.recoveries == 0
    rig.check(seed)


def test_idle_sessions_expired_by_the_hsm_are_reopened(softhsm) -> None:  # type: ignore[no-untyped-def]
    made = make_rig(softhsm)
    clock = ManualMonotonic()
    made.plan.clock = clock
    made.plan.idle_timeout_seconds = 30
    try:
        seed = next(iter(made.seeds))
        made.check(seed)
        clock.now += 31
        made.check(seed)
        assert made.vault.owner.recoveries == 1
    finally:
        made.vault.close()


def test_added_latency_slows_calls_but_changes_no_answer(rig: Rig) -> None:
    rig.plan.latency_seconds = 0.002
    seed = next(iter(rig.seeds))
    rig.check(seed)
    assert rig.sleeps and set(rig.sleeps) == {0.002}


def test_an_object_cap_shrinks_the_handle_cache(softhsm) -> None:  # type: ignore[no-untyped-def]
    made = make_rig(softhsm, count=8, handle_cache_size=100)
    made.plan.max_session_objects = 5
    try:
        for _ in range(3):
            for seed in made.seeds:
                made.check(seed)
        assert len(made.vault.cache) <= 5
    finally:
        made.vault.close()


def test_no_room_at_all_is_a_clear_capacity_error(softhsm) -> None:  # type: ignore[no-untyped-def]
    made = make_rig(softhsm, count=1)
    made.plan.max_session_objects = 0
    try:
        made.vault.close()  # start from an empty session
        with pytest.raises(HsmCapacityExceeded, match=r"hsm\.cache_size"):
            made.check(next(iter(made.seeds)))
    finally:
        made.vault.close()
