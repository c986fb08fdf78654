"""HSM settings. Validated when built; the PIN is held but never printed."""

from __future__ import annotations

from dataclasses import dataclass, field

from otphsm.core.seeds import SeedStorage

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


@dataclass(frozen=True)
class HsmConfig:
    token_label: str
    user_pin: str = field(repr=False)
    module: str = DEFAULT_MODULE
    kek_label: str = "otphsm-kek"
    pepper_label: str = "otphsm-pepper"
    wrap_mechanism: str = "AES_KEY_WRAP_PAD"
    seed_storage: SeedStorage = SeedStorage.WRAPPED
    handle_cache_size: int = 4096
    """How many unwrapped seeds stay in the HSM as session objects (0: unwrap on every use)."""
    max_attempts: int = 4
    """Attempts per operation when the session or the device is lost (first try included)."""
    retry_backoff_seconds: float = 0.05

    def __post_init__(self) -> None:
        if not self.token_label:
            raise ValueError("hsm.token_label is empty")
        if self.handle_cache_size < 0:
            raise ValueError("hsm.handle_cache_size must be >= 0")
        if self.max_attempts < 1:
            raise ValueError("hsm.max_attempts must be >= 1")
