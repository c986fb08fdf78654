"""Every kind of seed object is locked: C_CopyObject and C_SetAttributeValue are refused on
resident seeds, on the transient seeds made to be wrapped, and on unwrapped session seeds
(to sign with, or to re-wrap at KEK rotation). On SoftHSM2 itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pkcs11.exceptions as p11e
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from otphsm.core.otp import HashAlgorithm
from otphsm.core.seeds import SeedRef, SeedStorage
from otphsm.hsm import HsmSeedVault, templates
from otphsm.hsm.errors import ckr_of
from otphsm.hsm.session import SessionContext

pytestmark = pytest.mark.softhsm
SEED = bytes(range(1, 21))
CKR_ATTRIBUTE_READ_ONLY = 0x10
CKR_ACTION_PROHIBITED = 0x1B
LOOSER_COPIES = (
    {},
    {Attribute.TOKEN: True},
    {Attribute.TOKEN: True, Attribute.PRIVATE: False},
)
LOOSER_VALUES = (
    (Attribute.LABEL, "renamed"),
    (Attribute.SIGN, False),
    (Attribute.ENCRYPT, True),
    (Attribute.DERIVE, True),
    (Attribute.WRAP_WITH_TRUSTED, False),
    (Attribute.EXTRACTABLE, False),
)


def _device_point() -> bytes:
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    return public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def _refused(action: Callable[[], Any]) -> int | None:
    with pytest.raises(p11e.PKCS11Error) as refused:
        action()
    return ckr_of(refused.value)[0]


def _assert_locked(ctx: SessionContext, key: Any) -> None:
    before = len(list(ctx.session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})))
    assert key[Attribute.MODIFIABLE] is False and key[Attribute.COPYABLE] is False
    for template in LOOSER_COPIES:
        assert _refused(lambda t=template: key.copy(t)) == CKR_ACTION_PROHIBITED  # type: ignore[misc]
    for attribute, value in LOOSER_VALUES:

        def change(a: Attribute = attribute, v: Any = value) -> None:
            key[a] = v

        assert _refused(change) in (CKR_ACTION_PROHIBITED, CKR_ATTRIBUTE_READ_ONLY)
    after = len(list(ctx.session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})))
    assert after == before  # no copy appeared
    assert key[Attribute.LABEL] != "renamed" and key[Attribute.SIGN] is True


def _raw(vault: HsmSeedVault, op: Callable[[SessionContext], Any]) -> Any:
    return vault.owner.run("test", op)


def test_resident_seeds_are_locked(resident_vault: HsmSeedVault) -> None:
    seeds = [
        resident_vault.generate_seed(HashAlgorithm.SHA1),
        resident_vault.import_seed(SEED, HashAlgorithm.SHA1),
        resident_vault.derive_seed_ecdh(_device_point(), HashAlgorithm.SHA256).seed,
    ]

    def op(ctx: SessionContext) -> int:
        for seed in seeds:
            _assert_locked(
                ctx, ctx.session.get_key(object_class=ObjectClass.SECRET_KEY, id=seed.data)
            )
        return len(seeds)

    try:
        assert _raw(resident_vault, op) == 3
    finally:
        for seed in seeds:
            resident_vault.destroy_seed(seed)


def test_seeds_made_to_be_wrapped_are_locked(
    vault: HsmSeedVault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Generated, imported and ECDH-derived: each is checked just before the vault wraps it."""
    checked: list[str] = []
    wrap = vault._wrap_and_destroy  # the one place transient seeds pass through

    def check_then_wrap(ctx: SessionContext, key: Any) -> SeedRef:
        _assert_locked(ctx, key)
        checked.append("ok")
        return wrap(ctx, key)

    monkeypatch.setattr(vault, "_wrap_and_destroy", check_then_wrap)
    vault.generate_seed(HashAlgorithm.SHA256)
    vault.import_seed(SEED, HashAlgorithm.SHA1)
    vault.derive_seed_ecdh(_device_point(), HashAlgorithm.SHA1)
    assert checked == ["ok"] * 3


def test_unwrapped_session_seeds_are_locked(vault: HsmSeedVault) -> None:
    seed = vault.import_seed(SEED, HashAlgorithm.SHA1)
    vault.hmac(seed, HashAlgorithm.SHA1, b"warm the cache")

    def op(ctx: SessionContext) -> bool:
        in_use = vault.cache.get((seed.storage, seed.data), ctx.generation)
        assert in_use is not None
        _assert_locked(ctx, in_use)
        return True

    assert _raw(vault, op)


def test_a_seed_unwrapped_for_rotation_is_locked_and_wraps_only_under_a_trusted_key(
    vault: HsmSeedVault,
) -> None:
    seed = vault.import_seed(SEED, HashAlgorithm.SHA1)
    assert seed.storage is SeedStorage.WRAPPED

    def op(ctx: SessionContext) -> bytes:
        kek = ctx.session.get_key(label=vault.owner.config.kek_label)
        key = kek.unwrap_key(
            ObjectClass.SECRET_KEY,
            KeyType.GENERIC_SECRET,
            seed.data,
            mechanism=Mechanism.AES_KEY_WRAP_PAD,
            template=templates.without_class_and_type(templates.SEED_REWRAPPABLE),
        )
        try:
            assert key[Attribute.SIGN] is False and key[Attribute.EXTRACTABLE] is True
            with pytest.raises(p11e.AttributeSensitive):
                key[Attribute.VALUE]
            before = len(list(ctx.session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})))
            for template in LOOSER_COPIES:
                assert _refused(lambda t=template: key.copy(t)) == CKR_ACTION_PROHIBITED  # type: ignore[misc]
            for attribute, value in LOOSER_VALUES:

                def change(a: Attribute = attribute, v: Any = value) -> None:
                    key[a] = v

                assert _refused(change) in (CKR_ACTION_PROHIBITED, CKR_ATTRIBUTE_READ_ONLY)
            after = len(list(ctx.session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})))
            assert after == before
            rogue = ctx.session.generate_key(
                KeyType.AES, 256, template={Attribute.WRAP: True, Attribute.TOKEN: False}
            )
            with pytest.raises(p11e.KeyNotWrappable):
                rogue.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_PAD)
            return bytes(kek.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_PAD))
        finally:
            key.destroy()

    rewrapped = SeedRef(SeedStorage.WRAPPED, _raw(vault, op))
    assert vault.hmac(rewrapped, HashAlgorithm.SHA1, b"x") == vault.hmac(
        seed, HashAlgorithm.SHA1, b"x"
    )
