"""The seed unwrap cache when it misses (more seeds in use than `hsm.cache_size`, as at 10⁶
tokens): every HMAC is still right, evicted seeds leave the HSM, and the unwrapped keys share
one Python class, so the class python-pkcs11 makes for each unwrapped key is garbage at once
instead of dying old with its key (where thousands piled up for one long collection). On
SoftHSM2 itself."""

from __future__ import annotations

import gc
import hmac
import os
from collections.abc import Iterator

import pkcs11
import pytest
from pkcs11 import Attribute, ObjectClass

from otphsm.core.otp import HashAlgorithm
from otphsm.hsm import HsmSeedVault, open_vault

pytestmark = pytest.mark.softhsm
CACHE = 4
SEEDS = 3 * CACHE
COUNTER = (7).to_bytes(8, "big")


@pytest.fixture
def small_cache(softhsm) -> Iterator[HsmSeedVault]:  # type: ignore[no-untyped-def]
    vault = open_vault(softhsm.hsm_config(handle_cache_size=CACHE))
    yield vault
    vault.close()


def _key_classes() -> int:
    return sum(
        1 for o in gc.get_objects() if isinstance(o, type) and issubclass(o, pkcs11.SecretKey)
    )


def test_a_missing_cache_gives_the_right_hmacs_and_keeps_one_class(
    small_cache: HsmSeedVault,
) -> None:
    secrets = [os.urandom(20) for _ in range(SEEDS)]
    seeds = [small_cache.import_seed(secret, HashAlgorithm.SHA1) for secret in secrets]
    gc.collect()
    before = _key_classes()
    for _ in range(3):  # in turn: every call a miss and, with the cache full, an eviction
        for secret, seed in zip(secrets, seeds, strict=True):
            expected = hmac.new(secret, COUNTER, "sha1").digest()
            assert small_cache.hmac(seed, HashAlgorithm.SHA1, COUNTER) == expected
    assert small_cache.cache.misses == 3 * SEEDS
    cached = list(small_cache.cache._entries.values())  # type: ignore[attr-defined]
    assert len(cached) == CACHE
    assert len({type(key) for key in cached}) == 1
    gc.collect(0)  # the young generation only
    assert _key_classes() <= before + 1


def test_evicted_seeds_leave_the_hsm(small_cache: HsmSeedVault) -> None:
    seeds = [small_cache.import_seed(os.urandom(20), HashAlgorithm.SHA1) for _ in range(SEEDS)]
    for seed in seeds:
        small_cache.hmac(seed, HashAlgorithm.SHA1, COUNTER)

    def unwrapped(ctx) -> int:  # type: ignore[no-untyped-def]
        found = ctx.session.get_objects(
            {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.TOKEN: False}
        )
        return sum(1 for key in found if key[Attribute.SIGN])

    assert small_cache.owner.run("counting unwrapped seeds", unwrapped) == CACHE
