"""Provisioning a token: the Security Officer makes the trusted KEK, the user the pepper key.

Idempotent: keys that exist are checked and kept, never replaced (replacing the KEK would
orphan every wrapped seed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pkcs11
import pkcs11.exceptions as p11e
from pkcs11 import Attribute, KeyType, ObjectClass

from otphsm.hsm import templates
from otphsm.hsm.errors import HsmKeyMissing
from otphsm.hsm.session import HsmSessionOwner, SessionContext


@dataclass(frozen=True)
class ProvisionReport:
    kek_created: bool
    pepper_created: bool


def provision(owner: HsmSessionOwner, so_pin: str) -> ProvisionReport:
    config = owner.config

    def make_kek(session: pkcs11.Session) -> bool:
        existing = _find_one(session, config.kek_label, KeyType.AES)
        if existing is not None:
            if not existing[Attribute.TRUSTED] or not existing[Attribute.WRAP]:
                raise HsmKeyMissing(
                    f"key {config.kek_label!r} exists but is not a trusted wrapping key: "
                    "remove it or choose another hsm.kek_label"
                )
            return False
        session.generate_key(
            KeyType.AES, 256, label=config.kek_label, store=True, template=templates.KEK
        )
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
    pepper_created = owner.run("creating the pepper key", make_pepper)
    return ProvisionReport(kek_created=kek_created, pepper_created=pepper_created)


def _find_one(session: pkcs11.Session, label: str, key_type: KeyType) -> Any:
    try:
        return session.get_key(object_class=ObjectClass.SECRET_KEY, key_type=key_type, label=label)
    except p11e.NoSuchKey:
        return None
    except p11e.MultipleObjectsReturned:
        raise HsmKeyMissing(f"several keys labelled {label!r}: keep exactly one") from None
