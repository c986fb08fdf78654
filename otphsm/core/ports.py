"""The ports (Protocols) adapters implement. The domain talks only to these."""

from __future__ import annotations

from typing import Protocol

from otphsm.core.clock import Clock
from otphsm.core.otp import HashAlgorithm
from otphsm.core.seeds import EcdhSeed, SeedRef

__all__ = ["Clock", "OtpHsm"]


class OtpHsm(Protocol):
    """Everything the OTP domain needs from an HSM. Seeds go in; only MACs come out."""

    def generate_seed(self, algorithm: HashAlgorithm, length: int | None = None) -> SeedRef: ...

    def import_seed(self, secret: bytearray | bytes, algorithm: HashAlgorithm) -> SeedRef:
        """Store given bytes as a seed; a bytearray is wiped once it is inside the HSM."""
        ...

    def derive_seed_ecdh(
        self, device_public_point: bytes, algorithm: HashAlgorithm
    ) -> EcdhSeed: ...

    def hmac(self, seed: SeedRef, algorithm: HashAlgorithm, message: bytes) -> bytes: ...

    def destroy_seed(self, seed: SeedRef) -> None: ...

    def random_bytes(self, length: int) -> bytes: ...

    def keyed_digest(self, data: bytes) -> bytes:
        """HMAC-SHA256 under the HSM-resident pepper key (activation codes, audit chain)."""
        ...
