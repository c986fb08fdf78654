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
    kek: str | None = None
    """WRAPPED: the label of the KEK it is wrapped under; None for a seed stored before KEK
    rotation existed, wrapped under the first KEK (`hsm.kek_label`)."""

    @property
    def fingerprint(self) -> str:
        """A short, non-secret name for logs: a hash of the reference, never of the seed."""
        return hashlib.sha256(self.storage.value.encode() + self.data).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"SeedRef({self.storage.value}, {self.fingerprint})"


class SeedHolder(enum.StrEnum):
    """What a stored seed belongs to."""

    TOKEN = "token"  # noqa: S105 (a kind of record, not a secret)
    GRID_CARD = "grid_card"


@dataclass(frozen=True, slots=True)
class StoredSeed:
    """A wrapped seed as the store holds it, for KEK rotation."""

    holder: SeedHolder
    serial: str
    seed: SeedRef


@dataclass(frozen=True, slots=True)
class EcdhSeed:
    """A seed derived by ECDH inside the HSM, and the HSM's public point for the device."""

    seed: SeedRef
    server_public_point: bytes
    """Uncompressed SEC1 point (0x04 || X || Y)."""
