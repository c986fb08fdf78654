"""The security properties of the key hierarchy, checked against SoftHSM2 itself."""

from __future__ import annotations

import hmac

import pkcs11.exceptions as p11e
import pytest
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from support.hsm_fixtures import LEGACY_TOKEN, OTHER_TOKEN

from otphsm.core.errors import InvalidInput
from otphsm.core.otp import HashAlgorithm
from otphsm.core.seeds import SeedStorage
from otphsm.hsm import HsmSeedVault, open_vault, templates
from otphsm.hsm.errors import HsmKeyUnsafe, HsmOperationRefused
from otphsm.hsm.provision import provision
from otphsm.hsm.session import HsmSessionOwner

pytestmark = pytest.mark.softhsm
SEED = b"\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14"


def _raw(vault: HsmSeedVault, op):  # type: ignore[no-untyped-def]
    return vault.owner.run("test", op)


def _seed_as_made_for_wrapping(ctx):  # type: ignore[no-untyped-def]
    return ctx.session.generate_key(
        KeyType.GENERIC_SECRET,
        160,
        template=templates.without_class_and_type(templates.SEED_TO_WRAP),
    )


def test_a_generated_seed_value_cannot_be_read(vault: HsmSeedVault) -> None:
    def op(ctx):  # type: ignore[no-untyped-def]
        key = _seed_as_made_for_wrapping(ctx)
        with pytest.raises(p11e.AttributeSensitive):
            key[Attribute.VALUE]
        return True

    assert _raw(vault, op)


def test_an_unwrapped_seed_in_use_cannot_be_read_or_rewrapped(vault: HsmSeedVault) -> None:
    seed = vault.import_seed(SEED, HashAlgorithm.SHA1)
    vault.hmac(seed, HashAlgorithm.SHA1, b"warm the cache")

    def op(ctx):  # type: ignore[no-untyped-def]
        key = vault.cache.get((seed.storage, seed.data), ctx.generation)
        assert key is not None
        with pytest.raises(p11e.AttributeSensitive):
            key[Attribute.VALUE]
        kek = ctx.session.get_key(label=vault.owner.config.kek_label)
        with pytest.raises(p11e.KeyUnextractable):
            kek.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_PAD)
        return True

    assert _raw(vault, op)


def test_wrapping_a_seed_under_any_key_but_the_kek_is_refused(vault: HsmSeedVault) -> None:
    def op(ctx):  # type: ignore[no-untyped-def]
        key = _seed_as_made_for_wrapping(ctx)
        rogue = ctx.session.generate_key(
            KeyType.AES, 256, template={Attribute.WRAP: True, Attribute.TOKEN: False}
        )
        with pytest.raises(p11e.KeyNotWrappable):
            rogue.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_PAD)
        kek = ctx.session.get_key(label=vault.owner.config.kek_label)
        return kek.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_PAD)

    assert len(_raw(vault, op)) == 32  # under the KEK it wraps


def test_a_resident_seed_cannot_be_wrapped_at_all(resident_vault: HsmSeedVault) -> None:
    seed = resident_vault.generate_seed(HashAlgorithm.SHA1)
    assert seed.storage is SeedStorage.RESIDENT

    def op(ctx):  # type: ignore[no-untyped-def]
        key = ctx.session.get_key(id=seed.data)
        assert key[Attribute.EXTRACTABLE] is False
        kek = ctx.session.get_key(label=resident_vault.owner.config.kek_label)
        with pytest.raises(p11e.KeyUnextractable):
            kek.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_PAD)
        with pytest.raises(p11e.AttributeSensitive):
            key[Attribute.VALUE]
        return True

    assert _raw(resident_vault, op)
    resident_vault.destroy_seed(seed)


def test_a_stored_blob_is_useless_without_the_hsm(vault: HsmSeedVault, softhsm) -> None:  # type: ignore[no-untyped-def]
    seed = vault.import_seed(SEED, HashAlgorithm.SHA1)
    blob = seed.data
    assert SEED not in blob
    assert len(blob) == 32
    # The same blob on another HSM token (its own KEK) does not open.
    other = open_vault(softhsm.token(OTHER_TOKEN).hsm_config())
    try:
        with pytest.raises(HsmOperationRefused) as refused:
            other.hmac(seed, HashAlgorithm.SHA1, b"x")
        assert refused.value.ckr is not None
    finally:
        other.close()
    # And it still works on its own HSM.
    assert vault.hmac(seed, HashAlgorithm.SHA1, b"x") == hmac.new(SEED, b"x", "sha1").digest()


def test_a_stored_blob_unwraps_into_nothing_but_a_sign_only_session_key(
    vault: HsmSeedVault,
) -> None:
    """Whoever holds the user PIN and a copy of the database still cannot read a seed: the
    KEK's unwrap template makes the HSM refuse every other shape of unwrapped key (but the
    one KEK rotation uses: extractable under trusted keys only, below)."""
    seed = vault.import_seed(SEED, HashAlgorithm.SHA1)
    allowed = templates.without_class_and_type(templates.SEED_UNWRAPPED)
    attempts = {
        "readable": {**allowed, Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
        "extractable, to wrap elsewhere": {
            **allowed,
            Attribute.EXTRACTABLE: True,
            Attribute.WRAP_WITH_TRUSTED: False,
        },
        "modifiable": {**allowed, Attribute.MODIFIABLE: True},
        "copyable": {**allowed, Attribute.COPYABLE: True},
        "usable to derive": {**allowed, Attribute.DERIVE: True},
        "usable to encrypt": {**allowed, Attribute.ENCRYPT: True},
        "kept on the token": {**allowed, Attribute.TOKEN: True},
        "unstated (the HSM's defaults)": {Attribute.SIGN: True},
    }

    def unwrap(ctx, template):  # type: ignore[no-untyped-def]
        kek = ctx.session.get_key(label=vault.owner.config.kek_label)
        return kek.unwrap_key(
            ObjectClass.SECRET_KEY,
            KeyType.GENERIC_SECRET,
            seed.data,
            mechanism=Mechanism.AES_KEY_WRAP_PAD,
            template=template,
        )

    def op(ctx):  # type: ignore[no-untyped-def]
        refused = []
        for name, template in attempts.items():
            with pytest.raises(p11e.TemplateInconsistent):
                unwrap(ctx, template)
            refused.append(name)
        key = unwrap(ctx, allowed)
        try:
            mac = bytes(key.sign(b"x", mechanism=Mechanism.SHA_1_HMAC))
        finally:
            key.destroy()
        return refused, mac

    refused, mac = _raw(vault, op)
    assert refused == list(attempts)
    assert mac == hmac.new(SEED, b"x", "sha1").digest()


def test_a_kek_that_unwraps_into_readable_keys_is_refused_at_start_up(softhsm) -> None:  # type: ignore[no-untyped-def]
    legacy = softhsm.token(LEGACY_TOKEN).hsm_config()
    unconfined_kek = {k: v for k, v in templates.KEK.items() if k is not Attribute.UNWRAP_TEMPLATE}
    with HsmSessionOwner(legacy) as owner:
        owner.run_as_security_officer(
            softhsm.so_pin,
            "making a KEK as otphsm did before the unwrap template",
            lambda session: session.generate_key(
                KeyType.AES, 256, label=legacy.kek_label, store=True, template=unconfined_kek
            ),
        )
        owner.run(
            "making the pepper key",
            lambda ctx: ctx.session.generate_key(
                KeyType.GENERIC_SECRET,
                256,
                label=legacy.pepper_label,
                store=True,
                template=templates.PEPPER,
            ),
        )
    with pytest.raises(HsmKeyUnsafe) as refused:
        open_vault(legacy)
    message = str(refused.value)
    assert (
        "'otphsm-kek'" in message and "readable" in message and "provision a new token" in message
    )


def test_a_tampered_blob_is_refused(vault: HsmSeedVault) -> None:
    seed = vault.import_seed(SEED, HashAlgorithm.SHA1)
    tampered = type(seed)(seed.storage, seed.data[:-1] + bytes([seed.data[-1] ^ 1]))
    with pytest.raises(HsmOperationRefused, match="damaged or was wrapped under another"):
        vault.hmac(tampered, HashAlgorithm.SHA1, b"x")


def test_the_kek_is_trusted_sensitive_and_not_extractable(vault: HsmSeedVault) -> None:
    def op(ctx):  # type: ignore[no-untyped-def]
        kek = ctx.session.get_key(label=vault.owner.config.kek_label)
        return {
            attr: kek[attr]
            for attr in (
                Attribute.TRUSTED,
                Attribute.SENSITIVE,
                Attribute.EXTRACTABLE,
                Attribute.TOKEN,
            )
        }

    assert _raw(vault, op) == {
        Attribute.TRUSTED: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.TOKEN: True,
    }


def test_provisioning_twice_keeps_the_kek(vault: HsmSeedVault, softhsm) -> None:  # type: ignore[no-untyped-def]
    seed = vault.import_seed(SEED, HashAlgorithm.SHA1)
    report = provision(vault.owner, softhsm.so_pin)
    assert (report.kek_created, report.pepper_created) == (False, False)
    assert vault.hmac(seed, HashAlgorithm.SHA1, b"x") == hmac.new(SEED, b"x", "sha1").digest()


def test_generated_seeds_are_distinct_and_sized(vault: HsmSeedVault) -> None:
    refs = {vault.generate_seed(alg).data for alg in HashAlgorithm for _ in range(3)}
    assert len(refs) == 9
    with pytest.raises(InvalidInput):
        vault.generate_seed(HashAlgorithm.SHA256, 20)
    with pytest.raises(InvalidInput):
        vault.generate_seed(HashAlgorithm.SHA1, 24)


def test_keyed_digest_is_stable_and_token_specific(vault: HsmSeedVault, softhsm) -> None:  # type: ignore[no-untyped-def]
    first = vault.keyed_digest(b"activation")
    assert first == vault.keyed_digest(b"activation")
    assert first != vault.keyed_digest(b"activatioN")
    other = open_vault(softhsm.token(OTHER_TOKEN).hsm_config())
    try:
        assert other.keyed_digest(b"activation") != first
    finally:
        other.close()


def test_random_bytes_come_from_the_hsm(vault: HsmSeedVault) -> None:
    draws = {vault.random_bytes(16) for _ in range(20)}
    assert len(draws) == 20 and all(len(d) == 16 for d in draws)
    with pytest.raises(InvalidInput):
        vault.random_bytes(0)
