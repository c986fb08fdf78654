"""Key attribute sets as data. Every key is made from a full template (SoftHSM's defaults are
not safe: secret keys default to SENSITIVE=false with encrypt/decrypt/wrap/unwrap on)."""

from __future__ import annotations

from typing import Any

from pkcs11 import Attribute, KeyType, ObjectClass

Template = dict[Attribute, Any]

_NO_OTHER_USES: Template = {
    Attribute.ENCRYPT: False,
    Attribute.DECRYPT: False,
    Attribute.VERIFY: False,
    Attribute.WRAP: False,
    Attribute.UNWRAP: False,
    Attribute.DERIVE: False,
}

PEPPER: Template = {
    **_NO_OTHER_USES,
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.MODIFIABLE: False,
    Attribute.SIGN: True,
}

_SEED_BASE: Template = {
    **_NO_OTHER_USES,
    Attribute.CLASS: ObjectClass.SECRET_KEY,
    Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.SIGN: True,
}

SEED_TO_WRAP: Template = {
    **_SEED_BASE,
    Attribute.TOKEN: False,
    Attribute.EXTRACTABLE: True,  # only so it can be wrapped, and only under a trusted key
    Attribute.WRAP_WITH_TRUSTED: True,
}
"""A transient session object that exists only to be wrapped under the KEK."""

SEED_RESIDENT: Template = {
    **_SEED_BASE,
    Attribute.TOKEN: True,
    Attribute.EXTRACTABLE: False,
    Attribute.MODIFIABLE: False,
    Attribute.LABEL: "otphsm-seed",
}

SEED_UNWRAPPED: Template = {
    **_SEED_BASE,
    Attribute.TOKEN: False,
    Attribute.EXTRACTABLE: False,
}
"""What an unwrapped seed becomes: a session object that can only sign."""


KEK: Template = {
    **_NO_OTHER_USES,
    Attribute.TOKEN: True,
    Attribute.PRIVATE: False,  # the SO creates it; user sessions must find it
    Attribute.TRUSTED: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.MODIFIABLE: False,
    Attribute.WRAP: True,
    Attribute.UNWRAP: True,
    Attribute.SIGN: False,
    # The HSM unwraps a seed into nothing but this: a user-PIN holder cannot unwrap a stored
    # blob into a readable or re-wrappable key.
    Attribute.UNWRAP_TEMPLATE: SEED_UNWRAPPED,
}

PROBE_UNWRAP_READABLE: Template = {
    Attribute.TOKEN: False,
    Attribute.SENSITIVE: False,
    Attribute.EXTRACTABLE: True,
    Attribute.SIGN: True,
}
"""What the start-up check asks the KEK for, and must be refused."""


def without_class_and_type(template: Template) -> Template:
    """python-pkcs11's generate/unwrap/derive set CLASS and KEY_TYPE themselves."""
    return {k: v for k, v in template.items() if k not in (Attribute.CLASS, Attribute.KEY_TYPE)}
