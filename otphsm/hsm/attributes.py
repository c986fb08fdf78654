"""python-pkcs11's attribute mapper, taught the one array attribute we set: the KEK's
CKA_UNWRAP_TEMPLATE, which makes the HSM refuse to unwrap a seed into anything but a
sensitive, locked session object wrappable only under a trusted key
(`templates.KEK_UNWRAP_TEMPLATE`).

An array attribute's value is an array of CK_ATTRIBUTE structs whose pointers must stay valid
while the module reads them, so packed templates are kept for the life of the process (there
is one, so the cache stays tiny)."""

from __future__ import annotations

import ctypes
import functools
from typing import Any

from pkcs11 import Attribute
from pkcs11.attributes import AttributeMapper


class _CkAttribute(ctypes.Structure):
    _fields_ = (
        ("type", ctypes.c_ulong),
        ("pValue", ctypes.c_void_p),
        ("ulValueLen", ctypes.c_ulong),
    )


_SCALARS = AttributeMapper()


@functools.lru_cache(maxsize=8)
def _packed(items: tuple[tuple[Attribute, Any], ...]) -> tuple[bytes, tuple[Any, ...]]:
    array = (_CkAttribute * len(items))()
    buffers = []
    for slot, (attribute, value) in zip(array, items, strict=True):
        raw = _SCALARS.pack_attribute(attribute, value)
        buffer = ctypes.create_string_buffer(raw, len(raw))
        buffers.append(buffer)
        slot.type = int(attribute)
        slot.pValue = ctypes.cast(buffer, ctypes.c_void_p)
        slot.ulValueLen = len(raw)
    packed = ctypes.string_at(ctypes.addressof(array), ctypes.sizeof(array))
    return packed, (array, *buffers)  # the array and buffers live as long as the cache entry


def pack_template(template: dict[Attribute, Any]) -> bytes:
    """CKA_MODIFIABLE goes last: SoftHSM applies attributes in order and refuses any after it."""
    return _packed(tuple(sorted(template.items(), key=_modifiable_last)))[0]


def _modifiable_last(item: tuple[Attribute, Any]) -> tuple[bool, int]:
    return item[0] is Attribute.MODIFIABLE, int(item[0])


def _unreadable(raw: bytes) -> bytes:
    return raw  # never read back: the HSM answers only the array's length


ATTRIBUTE_MAPPER = AttributeMapper()
ATTRIBUTE_MAPPER.register_handler(Attribute.UNWRAP_TEMPLATE, pack_template, _unreadable)
