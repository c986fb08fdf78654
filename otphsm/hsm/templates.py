"""Key attribute sets as data. Every key is made from a full template (SoftHSM's defaults are
not safe: secret keys default to SENSITIVE=false with encrypt/decrypt/wrap/unwrap on).

Every seed object is locked: `COPYABLE=false` (C_CopyObject could make a persistent or looser
copy) and `MODIFIABLE=false` (C_SetAttributeValue could loosen it). SoftHSM applies a
template's attributes in order and refuses any after `MODIFIABLE=false` (AttributeReadOnly),
so `_LOCKED` always comes last."""

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

_LOCKED: Template = {
    Attribute.COPYABLE: False,
    Attribute.MODIFIABLE: False,
}
"""Last in every seed template (see the module docstring)."""

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
}

SEED_TO_WRAP: Template = {
    **_SEED_BASE,
    Attribute.SIGN: True,
    Attribute.TOKEN: False,
    Attribute.EXTRACTABLE: True,  # only so it can be wrapped, and only under a trusted key
    Attribute.WRAP_WITH_TRUSTED: True,
    **_LOCKED,
}
"""A transient session object that exists only to be wrapped under the KEK."""

SEED_RESIDENT: Template = {
    **_SEED_BASE,
    Attribute.SIGN: True,
    Attribute.TOKEN: True,
    Attribute.EXTRACTABLE: False,
    Attribute.LABEL: "otphsm-seed",
    **_LOCKED,
}

_UNWRAPPED_BASE: Template = {
    **_SEED_BASE,
    Attribute.TOKEN: False,
    Attribute.WRAP_WITH_TRUSTED: True,
}

SEED_UNWRAPPED: Template = {
    **_UNWRAPPED_BASE,
    Attribute.SIGN: True,
    Attribute.EXTRACTABLE: False,
    **_LOCKED,
}
"""What an unwrapped seed in use becomes: a session object that can only sign."""

SEED_REWRAPPABLE: Template = {
    **_UNWRAPPED_BASE,
    Attribute.SIGN: False,
    Attribute.EXTRACTABLE: True,
    **_LOCKED,
}
"""What KEK rotation unwraps a seed into: never readable (SENSITIVE), usable for nothing but
being wrapped again, and only under a trusted key (WRAP_WITH_TRUSTED): under another KEK."""

KEK_UNWRAP_TEMPLATE: Template = {
    **_UNWRAPPED_BASE,
    **_LOCKED,
}
"""What the KEK unwraps a blob into, whatever the caller asks: `SEED_UNWRAPPED` or
`SEED_REWRAPPABLE` and nothing else that could matter. SIGN and EXTRACTABLE are left to the
caller; an extractable result can still only be wrapped under a trusted key."""

KEK: Template = {
    **_NO_OTHER_USES,
    Attribute.TOKEN: True,
    Attribute.PRIVATE: False,  # the SO creates it; user sessions must find it
    Attribute.TRUSTED: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.WRAP: True,
    Attribute.UNWRAP: True,
    Attribute.SIGN: False,
    # A user-PIN holder cannot unwrap a stored blob into a readable key, a key wrappable under
    # an untrusted key, a persistent key, or one whose attributes can still change.
    Attribute.UNWRAP_TEMPLATE: KEK_UNWRAP_TEMPLATE,
    Attribute.MODIFIABLE: False,
}

PROBE_UNWRAP_READABLE: Template = {
    Attribute.TOKEN: False,
    Attribute.SENSITIVE: False,
    Attribute.EXTRACTABLE: True,
    Attribute.SIGN: True,
}
"""What the start-up check asks the KEK for, and must be refused."""

PROBE_UNWRAP_WRAPPABLE_ANYWHERE: Template = {**SEED_REWRAPPABLE, Attribute.WRAP_WITH_TRUSTED: False}
"""Also asked by the start-up check, and must be refused: a seed wrappable under any key."""

PROBE_UNWRAP_COPYABLE: Template = {**SEED_UNWRAPPED, Attribute.COPYABLE: True}
PROBE_UNWRAP_MODIFIABLE: Template = {**SEED_UNWRAPPED, Attribute.MODIFIABLE: True}
"""Must be refused too: C_CopyObject or C_SetAttributeValue could loosen such a key."""


def extended(template: Template, extra: Template) -> Template:
    """`template` with `extra` (a value, an id) added before the locking attributes."""
    head = {k: v for k, v in template.items() if k not in _LOCKED}
    tail = {k: v for k, v in template.items() if k in _LOCKED}
    return {**head, **extra, **tail}


def without_class_and_type(template: Template) -> Template:
    """python-pkcs11's generate/unwrap/derive set CLASS and KEY_TYPE themselves."""
    return {k: v for k, v in template.items() if k not in (Attribute.CLASS, Attribute.KEY_TYPE)}
