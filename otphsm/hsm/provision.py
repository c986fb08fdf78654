"""Provisioning a token: the Security Officer makes the trusted KEK, the user the pepper key.

Idempotent: keys that exist are checked and kept, never replaced (replacing the KEK would
orphan every wrapped seed). On an HSM that cannot keep seeds confined, provisioning names the
guarantee it lacks and leaves nothing behind: keys it created are destroyed again.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import pkcs11
import pkcs11.exceptions as p11e
from pkcs11 import Attribute, KeyType, ObjectClass

from otphsm.hsm import templates
from otphsm.hsm.confinement import first_refused
from otphsm.hsm.errors import RECOVERABLE, HsmError, HsmKeyMissing, HsmKeyUnsafe, ckr_of
from otphsm.hsm.keks import kek_labels
from otphsm.hsm.session import HsmSessionOwner, SessionContext
from otphsm.hsm.vault import HsmSeedVault


@dataclass(frozen=True)
class ProvisionReport:
    kek_created: bool
    pepper_created: bool


_KEK_GUARANTEES: tuple[tuple[str, templates.Template], ...] = (
    ("a trusted wrapping key (CKA_TRUSTED)", {Attribute.TRUSTED: True}),
    (
        "an unwrap template that confines unwrapped seeds (CKA_UNWRAP_TEMPLATE)",
        {Attribute.UNWRAP_TEMPLATE: templates.KEK_UNWRAP_TEMPLATE},
    ),
)


def provision(owner: HsmSessionOwner, so_pin: str) -> ProvisionReport:
    config = owner.config

    def make_kek(session: pkcs11.Session) -> bool:
        generations = kek_labels(session, config.kek_label)  # after a rotation: `<label>-N`
        newest = generations[-1] if generations else config.kek_label
        existing = _find_one(session, newest, KeyType.AES)
        if existing is not None:
            if not existing[Attribute.TRUSTED] or not existing[Attribute.WRAP]:
                raise HsmKeyMissing(
                    f"key {newest!r} exists but is not a trusted wrapping key: "
                    "remove it or choose another hsm.kek_label"
                )
            return False
        try:
            session.generate_key(
                KeyType.AES, 256, label=config.kek_label, store=True, template=templates.KEK
            )
        except RECOVERABLE:
            raise
        except p11e.PKCS11Error as exc:
            raise _missing_kek_guarantee(session, config.token_label, exc) from exc
        return True

    def make_pepper(ctx: SessionContext) -> bool:
        if _find_one(ctx.session, config.pepper_label, KeyType.GENERIC_SECRET) is not None:
            return False
        ctx.session.generate_key(
            KeyType.GENERIC_SECRET,
            256,
            label=config.pepper_label,
            store=True,
            template=templates.PEPPER,
        )
        return True

    kek_created = owner.run_as_security_officer(so_pin, "creating the KEK", make_kek)
    pepper_created = False
    try:
        pepper_created = owner.run("creating the pepper key", make_pepper)
        HsmSeedVault(owner).check_keys()
    except HsmError:
        _remove_created(owner, so_pin, kek=kek_created, pepper=pepper_created)
        raise
    return ProvisionReport(kek_created=kek_created, pepper_created=pepper_created)


def _missing_kek_guarantee(
    session: pkcs11.Session, token_label: str, refused: p11e.PKCS11Error
) -> HsmError:
    """Name the first KEK attribute this HSM refuses, trying each on a throw-away session key."""
    base: templates.Template = {
        k: v
        for k, v in templates.KEK.items()
        if k not in (Attribute.TRUSTED, Attribute.UNWRAP_TEMPLATE)
    }
    base[Attribute.TOKEN] = False
    missing = first_refused(
        lambda template: session.generate_key(KeyType.AES, 256, template=template),
        base,
        _KEK_GUARANTEES,
    )
    what = f"make {missing[0]}" if missing else "make the KEK"
    code, name = ckr_of(missing[1] if missing else refused)
    return HsmKeyUnsafe(
        f"the HSM of token {token_label!r} cannot {what}, so it cannot keep seeds confined: "
        "otphsm will not provision it (nothing was created)",
        ckr=code,
        ckr_name=name,
    )


def _remove_created(owner: HsmSessionOwner, so_pin: str, *, kek: bool, pepper: bool) -> None:
    config = owner.config

    def destroy(session: pkcs11.Session, label: str, key_type: KeyType) -> None:
        key = _find_one(session, label, key_type)
        if key is not None:
            key.destroy()

    with contextlib.suppress(HsmError):
        if pepper:
            owner.run(
                "removing the pepper key just made",
                lambda ctx: destroy(ctx.session, config.pepper_label, KeyType.GENERIC_SECRET),
            )
        if kek:
            owner.run_as_security_officer(
                so_pin,
                "removing the KEK just made",
                lambda session: destroy(session, config.kek_label, KeyType.AES),
            )


def _find_one(session: pkcs11.Session, label: str, key_type: KeyType) -> Any:
    try:
        return session.get_key(object_class=ObjectClass.SECRET_KEY, key_type=key_type, label=label)
    except p11e.NoSuchKey:
        return None
    except p11e.MultipleObjectsReturned:
        raise HsmKeyMissing(f"several keys labelled {label!r}: keep exactly one") from None
