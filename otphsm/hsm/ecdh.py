"""A seed agreed by ECDH with a device (secure activation): an ephemeral P-256 key pair made in
the HSM, the device's public point derived with its private half into the seed (ECDH1_DERIVE,
no KDF), the pair destroyed whatever happens. The seed object is made from the caller's
template (`templates.SEED_TO_WRAP`, or `SEED_RESIDENT` with an id)."""

from __future__ import annotations

from typing import Any

import pkcs11
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import KDF, Attribute, KeyType, Mechanism
from pkcs11.util.ec import encode_named_curve_parameters

from otphsm.core.errors import InvalidInput
from otphsm.hsm import templates

SECRET_LENGTH = 32
"""Bytes of the agreed secret, the seed: P-256's x coordinate."""
P256_POINT_LENGTH = 65

Key = Any
"""A python-pkcs11 key object (its methods are mixed in at run time)."""

_EPHEMERAL_PRIVATE: templates.Template = {
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.DERIVE: True,
    Attribute.SIGN: False,
    Attribute.DECRYPT: False,
    Attribute.UNWRAP: False,
}


def check_p256_point(point: bytes) -> None:
    message = "the device public key must be an uncompressed P-256 point (65 bytes)"
    if len(point) != P256_POINT_LENGTH or point[0] != 0x04:
        raise InvalidInput(message)
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise InvalidInput(message + " on the curve") from None


def derive(
    session: pkcs11.Session,
    device_point: bytes,
    seed_template: templates.Template,
    object_id: bytes | None,
) -> tuple[Key, bytes]:
    """The seed object agreed with `device_point` (stored on the token under `object_id` if
    given, else a session object) and the server's public point for the device."""
    params = session.create_domain_parameters(
        KeyType.EC,
        {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
        local=True,
    )
    keypair: tuple[Key, Key] = params.generate_keypair(
        store=False, private_template=_EPHEMERAL_PRIVATE
    )
    public, private = keypair
    try:
        server_point = _unwrap_der_octet_string(public[Attribute.EC_POINT])
        derived = private.derive_key(
            KeyType.GENERIC_SECRET,
            SECRET_LENGTH * 8,
            id=object_id,
            store=object_id is not None,
            mechanism=Mechanism.ECDH1_DERIVE,
            mechanism_param=(KDF.NULL, None, device_point),
            template=templates.without_class_and_type(seed_template),
        )
    finally:
        private.destroy()
        public.destroy()
    return derived, server_point


def _unwrap_der_octet_string(value: bytes) -> bytes:
    """SoftHSM returns CKA_EC_POINT as a DER OCTET STRING; some modules return the raw point."""
    if len(value) == P256_POINT_LENGTH + 2 and value[0] == 0x04 and value[1] == P256_POINT_LENGTH:
        return bytes(value[2:])
    return bytes(value)
