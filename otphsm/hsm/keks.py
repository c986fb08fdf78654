"""KEK generations on a token, and what KEK rotation does inside the HSM.

The first KEK is labelled `hsm.kek_label`; each rotation adds the next generation,
`<kek_label>-2`, `-3`, …, and the newest present wraps every new seed. A stored seed names the
KEK that wraps it (`SeedRef.kek`; None: the first). Re-wrapping unwraps a seed into a session
object that is never readable and can only be wrapped again under a trusted key
(`templates.SEED_REWRAPPABLE`), wraps it under the new KEK and destroys it.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import pkcs11
import pkcs11.exceptions as p11e
from pkcs11 import Attribute, KeyType, ObjectClass

from otphsm.core.seeds import SeedRef, SeedStorage
from otphsm.hsm import templates
from otphsm.hsm.errors import RECOVERABLE, HsmKeyMissing, HsmOperationRefused, ckr_of
from otphsm.hsm.session import SessionContext

if TYPE_CHECKING:
    from otphsm.hsm.vault import HsmSeedVault


def kek_generation(label: str, first: str) -> int | None:
    """1 for `first`, n for `first-n` (n >= 2), None for any other label."""
    if label == first:
        return 1
    number = label.removeprefix(first + "-")
    if number != label and number.isascii() and number.isdigit() and int(number) >= 2:
        return int(number)
    return None


def kek_label(first: str, generation: int) -> str:
    return first if generation == 1 else f"{first}-{generation}"


def kek_labels(session: pkcs11.Session, first: str) -> list[str]:
    """The KEK generations on the token, oldest first."""
    found: list[tuple[int, str]] = []
    aes_keys = {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES}
    # Drained first: a search left open by an error mid-way would be ended later, by the GC.
    for key in list(session.get_objects(aes_keys)):
        label = str(key[Attribute.LABEL])
        generation = kek_generation(label, first)
        if generation is not None:
            found.append((generation, label))
    return [label for _, label in sorted(found)]


class HsmKeyRing:
    """The `KeyRing` port of KEK rotation on a vault's token; the SO PIN makes and destroys
    KEKs (only the Security Officer can make a trusted key)."""

    def __init__(self, vault: HsmSeedVault, so_pin: str) -> None:
        self._vault = vault
        self._owner = vault.owner
        self._first = vault.owner.config.kek_label
        self._so_pin = so_pin

    @property
    def first(self) -> str:
        return self._first

    def labels(self) -> list[str]:
        return self._owner.run("listing the KEKs", lambda ctx: kek_labels(ctx.session, self._first))

    def create_next(self) -> str:
        """Make the next KEK generation and check that it confines seeds; remove it if not."""
        labels = self.labels()
        last = kek_generation(labels[-1], self._first) if labels else 0
        label = kek_label(self._first, (last or 0) + 1)
        self._owner.run_as_security_officer(
            self._so_pin,
            "creating a new KEK",
            lambda session: session.generate_key(
                KeyType.AES, 256, label=label, store=True, template=templates.KEK
            ),
        )
        try:
            self._vault.check_keys()
        except BaseException:
            self.destroy(label)
            raise
        return label

    def rewrap(self, seed: SeedRef, to_kek: str) -> SeedRef:
        if seed.storage is not SeedStorage.WRAPPED:
            raise ValueError("only a wrapped seed is re-wrapped")
        mechanism, param = self._vault.wrap_mechanism

        def op(ctx: SessionContext) -> SeedRef:
            old = self._vault.kek(ctx, seed.kek or self._first)
            new = self._vault.kek(ctx, to_kek)
            try:
                key: Any = old.unwrap_key(
                    ObjectClass.SECRET_KEY,
                    KeyType.GENERIC_SECRET,
                    seed.data,
                    mechanism=mechanism,
                    mechanism_param=param,
                    template=templates.without_class_and_type(templates.SEED_REWRAPPABLE),
                )
            except RECOVERABLE:
                raise
            except p11e.PKCS11Error as exc:
                code, name = ckr_of(exc)
                raise HsmOperationRefused(
                    f"seed {seed.fingerprint} cannot be re-wrapped: its KEK "
                    f"{seed.kek or self._first!r} does not allow it (a KEK made before rotation "
                    "existed) or the blob is damaged; re-issue its token",
                    ckr=code,
                    ckr_name=name,
                ) from exc
            try:
                blob = new.wrap_key(key, mechanism=mechanism, mechanism_param=param)
            finally:
                with contextlib.suppress(p11e.PKCS11Error):
                    key.destroy()
            return SeedRef(SeedStorage.WRAPPED, bytes(blob), to_kek)

        return self._owner.run("re-wrapping a seed", op)

    def destroy(self, label: str) -> None:
        if kek_generation(label, self._first) is None:
            raise ValueError(f"{label!r} is not a KEK generation of {self._first!r}")

        def op(session: pkcs11.Session) -> None:
            try:
                key = session.get_key(
                    object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES, label=label
                )
            except p11e.NoSuchKey:
                return
            except p11e.MultipleObjectsReturned:
                raise HsmKeyMissing(f"several keys labelled {label!r}: keep exactly one") from None
            key.destroy()

        self._owner.run_as_security_officer(self._so_pin, f"destroying KEK {label!r}", op)
        self._vault.forget_key(label)
