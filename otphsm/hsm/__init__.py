"""The PKCS#11 adapter (python-pkcs11): one owner of login and sessions, seeds, HMAC, ECDH."""

from __future__ import annotations

from otphsm.hsm.backend import ModuleSessionSource, SessionSource
from otphsm.hsm.config import HsmConfig
from otphsm.hsm.session import HsmSessionOwner, SessionContext
from otphsm.hsm.vault import HsmSeedVault

__all__ = [
    "HsmConfig",
    "HsmSeedVault",
    "HsmSessionOwner",
    "ModuleSessionSource",
    "SessionContext",
    "SessionSource",
    "open_vault",
]


def open_vault(config: HsmConfig, source: SessionSource | None = None) -> HsmSeedVault:
    """Log in and check the provisioned keys now, so a bad deployment fails at start-up."""
    owner = HsmSessionOwner(config, source)
    try:
        owner.connect()
        vault = HsmSeedVault(owner)
        vault.check_keys()
    except BaseException:
        owner.close()
        raise
    return vault
