"""The start-up check that a KEK confines what it unwraps, without trusting a refusal alone.

An HSM may refuse a readable unwrap template and still make every unwrapped secret readable
(opencryptoki 3.8 does: ../shared/reference/softhsm.md). So the check wraps a throw-away seed,
asks for the shapes that must be refused, then unwraps it with each allowed template and reads
back what the HSM actually made. The first guarantee that does not hold is named in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pkcs11
import pkcs11.exceptions as p11e
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from otphsm.hsm import templates
from otphsm.hsm.errors import RECOVERABLE, HsmKeyUnsafe, ckr_of

Key = Any
"""A python-pkcs11 key object (its methods are mixed in at run time)."""

PROBE_BITS = 160

_REFUSED: tuple[tuple[str, templates.Template], ...] = (
    ("a readable key", templates.PROBE_UNWRAP_READABLE),
    ("a key wrappable under an untrusted key", templates.PROBE_UNWRAP_WRAPPABLE_ANYWHERE),
    ("a copyable key", templates.PROBE_UNWRAP_COPYABLE),
    ("a modifiable key", templates.PROBE_UNWRAP_MODIFIABLE),
)


@dataclass(frozen=True)
class _Expect:
    attribute: Attribute
    value: bool
    broken: str
    """What it means when the read-back differs ("is modifiable")."""


_SEED_GUARANTEES: tuple[tuple[str, templates.Template], ...] = (
    (
        "a seed wrappable only under a trusted key (CKA_WRAP_WITH_TRUSTED)",
        {Attribute.WRAP_WITH_TRUSTED: True},
    ),
    ("a seed that cannot be copied (CKA_COPYABLE false)", {Attribute.COPYABLE: False}),
    ("a seed that cannot be modified (CKA_MODIFIABLE false)", {Attribute.MODIFIABLE: False}),
)
_SEED_LOCKS = (Attribute.WRAP_WITH_TRUSTED, Attribute.COPYABLE, Attribute.MODIFIABLE)

_SENSITIVE = _Expect(Attribute.SENSITIVE, True, "is readable (CKA_SENSITIVE false)")
_LOCKED_DOWN = (
    _Expect(Attribute.TOKEN, False, "persists on the token (CKA_TOKEN true)"),
    _Expect(Attribute.MODIFIABLE, False, "is modifiable (CKA_MODIFIABLE true)"),
    _Expect(Attribute.COPYABLE, False, "is copyable (CKA_COPYABLE true)"),
)
_ALLOWED: tuple[tuple[str, templates.Template, tuple[_Expect, ...]], ...] = (
    (
        "a seed to sign with",
        templates.SEED_UNWRAPPED,
        (
            _SENSITIVE,
            _Expect(Attribute.EXTRACTABLE, False, "is extractable (CKA_EXTRACTABLE true)"),
            *_LOCKED_DOWN,
        ),
    ),
    (
        "a seed to re-wrap",
        templates.SEED_REWRAPPABLE,
        (
            _SENSITIVE,
            _Expect(
                Attribute.WRAP_WITH_TRUSTED,
                True,
                "can be wrapped under any key (CKA_WRAP_WITH_TRUSTED false)",
            ),
            *_LOCKED_DOWN,
        ),
    ),
)


def check_unwrap_is_confined(
    session: pkcs11.Session,
    kek: Key,
    wrap: Callable[[Key], bytes],
    unwrap_mechanism: tuple[Mechanism, bytes | None],
    kek_name: str,
) -> None:
    """Raise `HsmKeyUnsafe` naming the first guarantee `kek` does not give; `wrap` wraps a key
    under it (and destroys the key)."""

    def unsafe(what: str, exc: BaseException | None = None) -> HsmKeyUnsafe:
        code, name = ckr_of(exc) if exc is not None else (None, None)
        return HsmKeyUnsafe(
            f"the KEK {kek_name} does not keep seeds confined: {what}; otphsm will not use it: "
            "provision a new token with this version of otphsm (on an HSM that enforces "
            "CKA_UNWRAP_TEMPLATE) and re-issue its tokens",
            ckr=code,
            ckr_name=name,
        )

    def make_seed(template: templates.Template) -> Key:
        return session.generate_key(
            KeyType.GENERIC_SECRET, PROBE_BITS, template=templates.without_class_and_type(template)
        )

    try:
        probe = make_seed(templates.SEED_TO_WRAP)
    except RECOVERABLE:
        raise
    except p11e.PKCS11Error as exc:
        base = {k: v for k, v in templates.SEED_TO_WRAP.items() if k not in _SEED_LOCKS}
        missing = first_refused(make_seed, base, _SEED_GUARANTEES)
        what = missing[0] if missing else "a seed to wrap (SEED_TO_WRAP)"
        raise unsafe(f"the HSM cannot make {what}", missing[1] if missing else exc) from exc
    try:
        blob = wrap(probe)
    except RECOVERABLE:
        raise
    except p11e.PKCS11Error as exc:
        raise unsafe("it cannot wrap a seed made wrappable only under trusted keys", exc) from exc

    mechanism, param = unwrap_mechanism

    def unwrap(template: templates.Template) -> Key:
        return kek.unwrap_key(
            ObjectClass.SECRET_KEY,
            KeyType.GENERIC_SECRET,
            blob,
            mechanism=mechanism,
            mechanism_param=param,
            template=templates.without_class_and_type(template),
        )

    for shape, template in _REFUSED:
        try:
            key = unwrap(template)
        except RECOVERABLE:
            raise
        except p11e.PKCS11Error:
            continue
        _destroy(key)
        raise unsafe(
            f"it unwraps a seed into {shape} (it has no CKA_UNWRAP_TEMPLATE, or the HSM ignores it)"
        )

    for shape, template, expectations in _ALLOWED:
        try:
            key = unwrap(template)
        except RECOVERABLE:
            raise
        except p11e.PKCS11Error as exc:
            refused = f"it refuses to unwrap {shape} into a locked-down session key"
            raise unsafe(refused, exc) from exc
        try:
            broken = _first_broken(key, expectations)
        finally:
            _destroy(key)
        if broken:
            raise unsafe(f"what it unwraps as {shape} {broken}")


def first_refused(
    make: Callable[[templates.Template], Key],
    base: templates.Template,
    guarantees: tuple[tuple[str, templates.Template], ...],
) -> tuple[str, p11e.PKCS11Error] | None:
    """The first guarantee whose attributes, added to `base`, the HSM refuses to make a
    throw-away session key with; None when it makes every one."""
    for guarantee, attributes in guarantees:
        try:
            key = make(templates.extended(base, attributes))
        except RECOVERABLE:
            raise
        except p11e.PKCS11Error as exc:
            return guarantee, exc
        _destroy(key)
    return None


def _first_broken(key: Key, expectations: tuple[_Expect, ...]) -> str | None:
    try:
        key[Attribute.VALUE]
    except p11e.AttributeSensitive:
        pass
    except RECOVERABLE:
        raise
    except p11e.PKCS11Error as exc:
        return f"gives no clear refusal to read its value ({ckr_of(exc)[1]})"
    else:
        return "gives its value (CKA_VALUE)"
    for expect in expectations:
        try:
            value = key[expect.attribute]
        except RECOVERABLE:
            raise
        except p11e.PKCS11Error as exc:
            return f"has a {expect.attribute.name} the HSM does not report ({ckr_of(exc)[1]})"
        if bool(value) is not expect.value:
            return expect.broken
    return None


def _destroy(key: Key) -> None:
    try:
        key.destroy()
    except RECOVERABLE:
        raise
    except p11e.PKCS11Error:
        pass
