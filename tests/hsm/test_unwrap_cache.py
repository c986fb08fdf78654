"""The seed unwrap cache when it misses (more seeds in use than `hsm.cache_size`, as at 10⁶
tokens): every HMAC is still right, evicted seeds leave the HSM, and the unwrapped keys share
one Python class, so the class python-pkcs11 makes for each unwrapped key is garbage at once
instead of dying old with its key (where thousands piled up for one long collection). On
SoftHSM2 itself; the calls a miss makes, as OpenSC's pkcs11-spy logs them between the service
and SoftHSM2: no round trip to read back the key type the unwrap has just set."""

from __future__ import annotations

import gc
import hmac
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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


PKCS11_SPY = "/usr/lib/x86_64-linux-gnu/pkcs11-spy.so"
"""OpenSC's logging PKCS#11 module (package opensc-pkcs11, which `make setup` installs with
opensc): it loads the module named by $PKCS11SPY and logs every call to $PKCS11SPY_OUTPUT."""
MISSES = """
import os, sys
from pathlib import Path
from otphsm.core.otp import HashAlgorithm
from otphsm.hsm import open_vault
from otphsm.hsm.config import HsmConfig

config = HsmConfig(
    token_label=os.environ["OTPHSM_HSM_TOKEN"],
    user_pin=os.environ["OTPHSM_HSM_PIN"],
    module=sys.argv[1],
    handle_cache_size=1,
)
vault = open_vault(config)
seeds = [vault.generate_seed(HashAlgorithm.SHA1) for _ in range(2)]
print(Path(os.environ["PKCS11SPY_OUTPUT"]).stat().st_size, flush=True)
for seed in seeds * 2:  # a cache of one: every call a miss
    vault.hmac(seed, HashAlgorithm.SHA1, bytes(8))
vault.close()
"""


def test_a_miss_unwraps_and_signs_without_reading_the_key_type_back(
    softhsm, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    assert Path(PKCS11_SPY).is_file(), f"{PKCS11_SPY} is missing: run make setup"
    log = tmp_path / "spy.log"
    env = {
        **os.environ,
        **softhsm.settings(),
        "PKCS11SPY": softhsm.module,
        "PKCS11SPY_OUTPUT": str(log),
    }
    run = subprocess.run(
        [sys.executable, "-c", MISSES, PKCS11_SPY],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    logged = log.read_text(encoding="utf-8", errors="replace")[int(run.stdout.split()[0]) :]
    calls = re.split(r"^\d+: (C_\w+)$", logged, flags=re.MULTILINE)[1:]
    made = list(zip(calls[0::2], calls[1::2], strict=True))
    names = [name for name, _ in made]
    assert names.count("C_UnwrapKey") == 4 and names.count("C_SignInit") == 4, names
    reads = [text for name, text in made if name == "C_GetAttributeValue"]
    assert reads, names  # python-pkcs11 reads the new key's class and capabilities
    assert not any("CKA_KEY_TYPE" in text for text in reads), names
