"""VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER, MSE, PSO and GET CHALLENGE."""

from __future__ import annotations

from enum import IntEnum

from cryptography.hazmat.primitives.asymmetric import rsa

from otphsm.simulators.card.spec import check_pin_format
from otphsm.simulators.card.state import CardContext, MseOperation, VerifyOutcome
from otphsm.smartcard.apdu import CommandApdu, ResponseApdu
from otphsm.smartcard.cns_files import (
    PIN_MAX_LENGTH,
    PIN_PAD,
    KeyReference,
    SecurityEnvironment,
)
from otphsm.smartcard.status_words import StatusWord

_PIN_BLOCK = PIN_MAX_LENGTH
_KEY_REFERENCE_TAGS = frozenset((0x83, 0x84))
_PKCS1_OVERHEAD = 11


class MseP1(IntEnum):
    RESTORE = 0xF3
    SET_CNS = 0xF1
    SET_ISO = 0x41


class PsoP1P2(IntEnum):
    COMPUTE_DIGITAL_SIGNATURE = 0x9E9A
    DECIPHER = 0x8086


_PSO_OPERATION = {
    PsoP1P2.COMPUTE_DIGITAL_SIGNATURE: MseOperation.SIGNATURE,
    PsoP1P2.DECIPHER: MseOperation.DECIPHER,
}
_PADDING_INDICATOR = 0x00


def _sw(sw: int, data: bytes = b"") -> ResponseApdu:
    return ResponseApdu.of(sw, data)


def _valid_new_pin(block: bytes) -> bool:
    pin = block.rstrip(bytes((PIN_PAD,)))
    try:
        check_pin_format(pin.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return False
    return True


def _pin_reference_error(
    ctx: CardContext, apdu: CommandApdu, p1_allowed: tuple[int, ...]
) -> ResponseApdu | None:
    if apdu.p1 not in p1_allowed:
        return _sw(StatusWord.INCORRECT_P1_P2)
    if apdu.p2 != ctx.pin_reference:
        return _sw(StatusWord.REFERENCED_DATA_NOT_FOUND)
    return None


def verify(ctx: CardContext, apdu: CommandApdu) -> ResponseApdu:
    """VERIFY with the FF-padded PIN; without data, report the state (`90 00`/`63 Cx`/`69 83`)."""
    error = _pin_reference_error(ctx, apdu, (0x00,))
    if error is not None:
        return error
    session, pin = ctx.session, ctx.pin
    if not apdu.data:
        if pin.blocked:
            return _sw(StatusWord.AUTH_METHOD_BLOCKED)
        return _sw(StatusWord.OK if session.pin_verified else pin.status_word(VerifyOutcome.WRONG))
    if len(apdu.data) != _PIN_BLOCK:
        return _sw(StatusWord.WRONG_LENGTH)
    outcome = pin.verify(apdu.data)
    session.pin_verified = outcome is VerifyOutcome.OK
    return _sw(pin.status_word(outcome))


def change_reference_data(ctx: CardContext, apdu: CommandApdu) -> ResponseApdu:
    """`00 24 00 <ref>` with old‖new PIN, each 8 bytes FF-padded."""
    error = _pin_reference_error(ctx, apdu, (0x00,))
    if error is not None:
        return error
    if len(apdu.data) != 2 * _PIN_BLOCK:
        return _sw(StatusWord.WRONG_LENGTH)
    old, new = apdu.data[:_PIN_BLOCK], apdu.data[_PIN_BLOCK:]
    if not _valid_new_pin(new):
        return _sw(StatusWord.WRONG_DATA)
    outcome = ctx.pin.verify(old)
    ctx.session.pin_verified = outcome is VerifyOutcome.OK
    if outcome is VerifyOutcome.OK:
        ctx.pin.replace(new)
    return _sw(ctx.pin.status_word(outcome))


def reset_retry_counter(ctx: CardContext, apdu: CommandApdu) -> ResponseApdu:
    """`00 2C 00 <PIN ref>` with PUK‖new PIN, or `00 2C 01 <PIN ref>` with the PUK alone."""
    error = _pin_reference_error(ctx, apdu, (0x00, 0x01))
    if error is not None:
        return error
    expected = 2 * _PIN_BLOCK if apdu.p1 == 0x00 else _PIN_BLOCK
    if len(apdu.data) != expected:
        return _sw(StatusWord.WRONG_LENGTH)
    puk, new = apdu.data[:_PIN_BLOCK], apdu.data[_PIN_BLOCK:]
    if new and not _valid_new_pin(new):
        return _sw(StatusWord.WRONG_DATA)
    outcome = ctx.puk.verify(puk)
    if outcome is VerifyOutcome.OK:
        ctx.pin.replace(new or ctx.pin.value)
    return _sw(ctx.puk.status_word(outcome))


def _key_reference(data: bytes) -> int | None:
    """The key reference from the simple-TLV control reference template, or None if malformed."""
    pos, found = 0, None
    while pos < len(data):
        if pos + 2 > len(data):
            return None
        tag, length = data[pos], data[pos + 1]
        value = data[pos + 2 : pos + 2 + length]
        if len(value) != length:
            return None
        if tag in _KEY_REFERENCE_TAGS and length == 1:
            found = value[0]
        pos += 2 + length
    return found


def _restore(ctx: CardContext, apdu: CommandApdu) -> ResponseApdu:
    if apdu.data:
        return _sw(StatusWord.WRONG_LENGTH)
    if apdu.p2 != SecurityEnvironment.CNS:
        return _sw(StatusWord.REFERENCED_DATA_NOT_FOUND)
    ctx.session.mse.clear()
    return _sw(StatusWord.OK)


def _set(ctx: CardContext, apdu: CommandApdu) -> ResponseApdu:
    try:
        operation = MseOperation(apdu.p2)
    except ValueError:
        return _sw(StatusWord.INCORRECT_P1_P2)
    key_ref = _key_reference(apdu.data)
    if key_ref is None:
        return _sw(StatusWord.WRONG_DATA)
    if key_ref != KeyReference.CNS0:
        return _sw(StatusWord.REFERENCED_DATA_NOT_FOUND)
    ctx.session.mse[operation] = key_ref
    return _sw(StatusWord.OK)


def manage_security_environment(ctx: CardContext, apdu: CommandApdu) -> ResponseApdu:
    """RESTORE SE 3 (`22 F3 03`, optional trailing `00`) or SET (`22 F1 B6|B8 03 83 01 01`)."""
    if apdu.p1 == MseP1.RESTORE:
        return _restore(ctx, apdu)
    if apdu.p1 in (MseP1.SET_CNS, MseP1.SET_ISO):
        return _set(ctx, apdu)
    return _sw(StatusWord.INCORRECT_P1_P2)


def raw_rsa_private(key: rsa.RSAPrivateKey, block: bytes) -> bytes:
    """m^d mod n by CRT, as k big-endian bytes; the caller checks m < n."""
    numbers = key.private_numbers()
    m = int.from_bytes(block, "big")
    p, q = numbers.p, numbers.q
    m1 = pow(m, numbers.dmp1, p)
    m2 = pow(m, numbers.dmq1, q)
    result = m2 + (numbers.iqmp * (m1 - m2) % p) * q
    return result.to_bytes((key.key_size + 7) // 8, "big")


def _signature_block(data: bytes, k: int) -> bytes | None:
    """A full k-byte block as is; a shorter DigestInfo gets PKCS#1 v1.5 type 1 padding."""
    if len(data) == k:
        return data
    if 0 < len(data) <= k - _PKCS1_OVERHEAD:
        return b"\x00\x01" + b"\xff" * (k - 3 - len(data)) + b"\x00" + data
    return None


def _input_block(p1p2: PsoP1P2, data: bytes, n: int, k: int) -> bytes | StatusWord:
    block: bytes | None
    if p1p2 is PsoP1P2.DECIPHER:
        block = data[1:] if len(data) == k + 1 else None
        if block is not None and data[0] != _PADDING_INDICATOR:
            return StatusWord.WRONG_DATA
    else:
        block = _signature_block(data, k)
    if block is None:
        return StatusWord.WRONG_LENGTH
    return block if int.from_bytes(block, "big") < n else StatusWord.WRONG_DATA


def perform_security_operation(ctx: CardContext, apdu: CommandApdu) -> ResponseApdu:
    """COMPUTE DIGITAL SIGNATURE (`2A 9E 9A`) and DECIPHER (`2A 80 86`, leading `00`):
    the raw RSA private-key operation on the modulus-size block; always k bytes back."""
    try:
        p1p2 = PsoP1P2((apdu.p1 << 8) | apdu.p2)
    except ValueError:
        return _sw(StatusWord.INCORRECT_P1_P2)
    session, key = ctx.session, ctx.private_key
    if not session.pin_verified:
        return _sw(StatusWord.SECURITY_STATUS_NOT_SATISFIED)
    if _PSO_OPERATION[p1p2] not in session.mse:
        return _sw(StatusWord.CONDITIONS_NOT_SATISFIED)
    n = key.public_key().public_numbers().n
    block = _input_block(p1p2, apdu.data, n, (key.key_size + 7) // 8)
    if isinstance(block, StatusWord):
        return _sw(block)
    return _sw(StatusWord.OK, raw_rsa_private(key, block))


def get_challenge(ctx: CardContext, apdu: CommandApdu) -> ResponseApdu:
    if apdu.p1 or apdu.p2:
        return _sw(StatusWord.INCORRECT_P1_P2)
    if apdu.data or apdu.le is None:
        return _sw(StatusWord.WRONG_LENGTH)
    return _sw(StatusWord.OK, ctx.random_bytes(apdu.le))
