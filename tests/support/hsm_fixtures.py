"""Fixtures for the SoftHSM2 tier: one private SoftHSM2 installation per test run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from support.requirements import require_softhsm

if TYPE_CHECKING:
    from otphsm.hsm import HsmSeedVault
    from otphsm.simulators.hsm.softhsm import SoftHsm

MAIN_TOKEN = "otphsm"
OTHER_TOKEN = "other"  # provisioned with its own KEK: blobs from MAIN must not open there
BARE_TOKEN = "bare"  # initialised, never provisioned: no KEK
LEGACY_TOKEN = "legacy"  # initialised only; a test gives it a KEK without an unwrap template


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> SoftHsm:
    require_softhsm()
    from otphsm.simulators.deployment import provisioned_softhsm
    from otphsm.simulators.hsm.softhsm import provision_softhsm

    hsm = provisioned_softhsm(
        Path(tmp_path_factory.mktemp("softhsm")),
        (MAIN_TOKEN, OTHER_TOKEN, BARE_TOKEN, LEGACY_TOKEN),
    )
    provision_softhsm(hsm.token(OTHER_TOKEN))
    return hsm


@pytest.fixture
def serve_softhsm(softhsm: SoftHsm, tmp_path: Path) -> SoftHsm:
    """For `otphsm serve` processes that a test starts (and kills): a clone of the run's SoftHSM
    (same keys, so the test process's own HSM calls interoperate), so that a process killed
    while it logs in cannot leave the run's token unreadable for the tests after it."""
    from otphsm.simulators.hsm.softhsm import clone_softhsm

    return clone_softhsm(softhsm, tmp_path / "serve-softhsm")


@pytest.fixture
def vault(softhsm: SoftHsm) -> Iterator[HsmSeedVault]:
    from otphsm.hsm import open_vault

    engine = open_vault(softhsm.hsm_config())
    yield engine
    engine.close()


@pytest.fixture
def resident_vault(softhsm: SoftHsm) -> Iterator[HsmSeedVault]:
    from otphsm.core.seeds import SeedStorage
    from otphsm.hsm import open_vault

    engine = open_vault(softhsm.hsm_config(seed_storage=SeedStorage.RESIDENT))
    yield engine
    engine.close()
