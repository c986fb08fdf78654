"""Pepper key generations: the HSM-keyed MACs of activation codes, temporary secrets, SMS and
login codes, personal code parts and the audit chain, across pepper rotation.

The first pepper is labelled `hsm.pepper_label`; `otphsm admin hsm rotate-pepper` adds
`<pepper_label>-2`, `-3`, …, and the newest MACs everything new. A MAC names its generation:
the first pepper's MACs are the bare 32-byte HMAC (as before rotation existed); a later one's
are `TAG || generation (2 bytes) || HMAC`. So a MAC made with an older pepper, kept on the
token, stays checkable: stored codes until they expire, audit entries for ever.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from otphsm.hsm import templates
from otphsm.hsm.keks import kek_generation as generation_of
from otphsm.hsm.keks import kek_label as generation_label

if TYPE_CHECKING:
    from otphsm.hsm.vault import HsmSeedVault

TAG = b"\xfe"
_GENERATION_BYTES = 2
_HMAC_LENGTH = 32
NEWEST_TTL_SECONDS = 5.0
"""How long a process keeps using the newest pepper it found before looking again (another
process's rotation is seen within this; the older pepper stays valid meanwhile)."""

KeyLookup = Callable[[str], Any]
"""A pepper generation's key by label (a cached handle)."""


def pepper_labels(session: pkcs11.Session, first: str, known: int = 1) -> list[str]:
    """The pepper generations on the token from `known` on, oldest first. Found by label, one
    generation after the other (resident seeds are generic secrets too: never list them all)."""
    labels: list[str] = []
    generation = known
    while True:
        label = generation_label(first, generation)
        if _exists(session, label):
            labels.append(label)
        elif generation > 1:
            return labels
        generation += 1


def _exists(session: pkcs11.Session, label: str) -> bool:
    template = {
        Attribute.CLASS: ObjectClass.SECRET_KEY,
        Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
        Attribute.LABEL: label,
    }
    return bool(list(session.get_objects(template)))


def tagged(generation: int, mac: bytes) -> bytes:
    if generation == 1:
        return mac
    return TAG + generation.to_bytes(_GENERATION_BYTES, "big") + mac


def generation_of_mac(mac: bytes) -> int | None:
    if len(mac) == _HMAC_LENGTH:
        return 1
    if len(mac) == len(TAG) + _GENERATION_BYTES + _HMAC_LENGTH and mac.startswith(TAG):
        return int.from_bytes(mac[len(TAG) : len(TAG) + _GENERATION_BYTES], "big")
    return None


class Peppers:
    """Which pepper MACs new data, and the MAC of data under any generation."""

    def __init__(self, first: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.first = first
        self._clock = clock
        self._newest: tuple[int, str] | None = None
        self._looked_at = 0.0

    def forget_newest(self) -> None:
        self._newest = None

    def newest(self, session: pkcs11.Session) -> tuple[int, str]:
        now = self._clock()
        if self._newest is None or now - self._looked_at > NEWEST_TTL_SECONDS:
            known = self._newest[0] if self._newest else 1
            labels = pepper_labels(session, self.first, known)
            label = labels[-1] if labels else self.first
            self._newest = (generation_of(label, self.first) or 1, label)
            self._looked_at = now
        return self._newest

    def digest(self, session: pkcs11.Session, key: KeyLookup, data: bytes) -> bytes:
        generation, label = self.newest(session)
        return tagged(generation, _mac(key(label), data))

    def digests(self, session: pkcs11.Session, key: KeyLookup, data: bytes) -> list[bytes]:
        """`data`'s MAC under every generation on the token, newest first (for look-ups)."""
        labels = pepper_labels(session, self.first) or [self.first]
        return [
            tagged(generation_of(label, self.first) or 1, _mac(key(label), data))
            for label in reversed(labels)
        ]

    def matches(self, key: KeyLookup, data: bytes, mac: bytes) -> bool:
        generation = generation_of_mac(mac)
        if generation is None:
            return False
        expected = tagged(generation, _mac(key(generation_label(self.first, generation)), data))
        return hmac.compare_digest(expected, mac)


def _mac(key: Any, data: bytes) -> bytes:
    return bytes(key.sign(data, mechanism=Mechanism.SHA256_HMAC))


class HsmPepperRing:
    """The `PepperRing` port on a vault's token: the next pepper generation, made in the user
    session like the first (`otphsm admin hsm-init`)."""

    def __init__(self, vault: HsmSeedVault) -> None:
        self._vault = vault
        self._first = vault.owner.config.pepper_label

    def labels(self) -> list[str]:
        return self._vault.owner.run(
            "listing the pepper keys", lambda ctx: pepper_labels(ctx.session, self._first)
        )

    def create_next(self) -> str:
        labels = self.labels()
        last = generation_of(labels[-1], self._first) if labels else 0
        label = generation_label(self._first, (last or 0) + 1)
        self._vault.owner.run(
            "creating a pepper key",
            lambda ctx: ctx.session.generate_key(
                KeyType.GENERIC_SECRET, 256, label=label, store=True, template=templates.PEPPER
            ),
        )
        self._vault.forget_newest_pepper()
        return label
