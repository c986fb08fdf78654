"""How a seed is referred to outside the HSM: never its value, only a wrapped blob or an id."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass


class SeedStorage(enum.StrEnum):
    WRAPPED = "wrapped"
    """AES-key-wrapped under the HSM's KEK; the blob is stored in the database."""
    RESIDENT = "resident"
    """A non-extractable token object; the database keeps only its CKA_ID."""


@dataclass(frozen=True, slots=True)
class SeedRef:
    storage: SeedStorage
    data: bytes
    """The wrapped blob (WRAPPED) or the token object's CKA_ID (RESIDENT)."""

    @property
    def fingerprint(self) -> str:
        """A short, non-secret name for logs: a hash of the reference, never of the seed."""
        return hashlib.sha256(self.storage.value.encode() + self.data).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"SeedRef({self.storage.value}, {self.fingerprint})"


@dataclass(frozen=True, slots=True)
class EcdhSeed:
    """A seed derived by ECDH inside the HSM, and the HSM's public point for the device."""

    seed: SeedRef
    server_public_point: bytes
    """Uncompressed SEC1 point (0x04 || X || Y)."""
