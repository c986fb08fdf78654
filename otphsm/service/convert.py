"""Proto ↔ domain: field checks at the boundary, enums both ways (the tables of
`otphsm.client.wire`, shared with the client), records to messages.

Checks here are the ones the proto documents and the use cases do not already make (id and
key sizes, codice fiscale format, enum values); they raise `InvalidInput` before any use case
runs, so a refused request changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TypeVar

from otphsm.client import wire
from otphsm.core.audit import AuditHead
from otphsm.core.codice_fiscale import validate as validate_codice_fiscale
from otphsm.core.errors import InvalidInput
from otphsm.core.records import ActivationMethod, AuditEntry, Citizen
from otphsm.core.tokens import OtpMode, OtpParameters, Token, TokenKind, TokenQuery, TokenState
from otphsm.core.verification import VerifyOutcome
from otphsm.v1 import admin_pb2, common_pb2

MAX_ID_LENGTH = 64
MAX_ACTIVATION_CODE_LENGTH = 32
P256_POINT_LENGTH = 65

E = TypeVar("E")

# --- requests → domain -------------------------------------------------------------------


def record_id(value: str, field: str) -> str:
    if not value:
        raise InvalidInput(f"{field} is required", field=field)
    if len(value) > MAX_ID_LENGTH or not value.isascii() or not value.isprintable():
        raise InvalidInput(
            f"{field} must be 1..{MAX_ID_LENGTH} printable ASCII characters", field=field
        )
    return value


def codice_fiscale(value: str, field: str = "codice_fiscale") -> str:
    if not value:
        raise InvalidInput(f"{field} is required", field=field)
    if len(value) > 16:
        raise InvalidInput(f"{field} is 16 characters", field=field)
    try:
        return validate_codice_fiscale(value).code
    except InvalidInput as exc:
        exc.field = exc.field or field
        raise


def token_query(message: admin_pb2.ListTokensRequest) -> TokenQuery:
    """The filters of a token listing: an empty field filters nothing."""
    return TokenQuery(
        codice_fiscale=codice_fiscale(message.codice_fiscale) if message.codice_fiscale else None,
        state=token_state_filter(message.state),
        kind=token_kind_filter(message.kind),
    )


def token_state_filter(value: int) -> TokenState | None:
    if value == common_pb2.TOKEN_STATE_UNSPECIFIED:
        return None
    return _enum(wire.TOKEN_STATES, value, "state")


def token_kind_filter(value: int) -> TokenKind | None:
    if value == common_pb2.TOKEN_KIND_UNSPECIFIED:
        return None
    return _enum(wire.TOKEN_KINDS, value, "kind")


def audit_head(message: admin_pb2.AuditHead) -> AuditHead:
    if message.seq < 1 or len(message.entry_hash) != 32:
        raise InvalidInput(
            "expected_head: seq from 1 and a 32-byte entry_hash", field="expected_head"
        )
    return AuditHead(message.seq, message.entry_hash)


def activation_code(value: str) -> str:
    if not value or len(value) > MAX_ACTIVATION_CODE_LENGTH:
        raise InvalidInput(
            f"activation_code is 18 digits, at most {MAX_ACTIVATION_CODE_LENGTH} characters "
            "with separators",
            field="activation_code",
        )
    return value


def device_public_key(value: bytes) -> bytes:
    if len(value) != P256_POINT_LENGTH or value[:1] != b"\x04":
        raise InvalidInput(
            "device_public_key must be an uncompressed P-256 point (65 bytes starting 0x04)",
            field="device_public_key",
        )
    return value


def otp_parameters(message: common_pb2.OtpParameters) -> OtpParameters:
    mode = _enum(wire.OTP_MODES, message.mode, "params.mode")
    algorithm = _enum(wire.HASH_ALGORITHMS, message.algorithm, "params.algorithm")
    return OtpParameters(
        mode=mode,
        algorithm=algorithm,
        digits=message.digits or 6,
        period=message.period_seconds or 30,
    )


def activation_method(value: int) -> ActivationMethod:
    return _enum(wire.ACTIVATION_METHODS, value, "method")


def _enum(table: Mapping[int, E], value: int, field: str) -> E:
    try:
        return table[value]
    except KeyError:
        raise InvalidInput(f"{field}: not a known value", field=field) from None


# --- domain → responses ------------------------------------------------------------------


def params_message(params: OtpParameters) -> common_pb2.OtpParameters:
    return common_pb2.OtpParameters(
        mode=wire.OTP_MODE_NUMBERS[params.mode],
        algorithm=wire.HASH_ALGORITHM_NUMBERS[params.algorithm],
        digits=params.digits,
        period_seconds=params.period if params.mode is OtpMode.TOTP else 0,
    )


def token_message(token: Token) -> common_pb2.Token:
    return common_pb2.Token(
        serial=token.serial,
        codice_fiscale=token.codice_fiscale,
        kind=wire.TOKEN_KIND_NUMBERS[token.kind],
        state=wire.TOKEN_STATE_NUMBERS[token.state],
        params=params_message(token.params),
        created_at=token.created_at,
        activated_at=token.activated_at or 0,
        last_used_at=token.last_used_at or 0,
        locked_until=token.locked_until,
        failures=token.failures,
        replaces_serial=token.replaces_serial or "",
    )


def audit_entry_message(entry: AuditEntry) -> admin_pb2.AuditEntry:
    return admin_pb2.AuditEntry(
        seq=entry.seq,
        at=entry.at,
        actor=entry.actor,
        action=entry.action,
        subject=entry.subject,
        details_json=json.dumps(entry.details, sort_keys=True, ensure_ascii=False),
        prev_hash=entry.prev_hash,
        entry_hash=entry.entry_hash,
        mac=entry.mac,
    )


def citizen_message(citizen: Citizen) -> common_pb2.Citizen:
    return common_pb2.Citizen(
        codice_fiscale=citizen.codice_fiscale,
        given_name=citizen.given_name,
        surname=citizen.surname,
        birth_date=citizen.birth_date,
        sex=citizen.sex,
        birth_place=citizen.birth_place,
        card_id=citizen.card_id,
        has_phone_number=bool(citizen.phone_number),
    )


def verify_response(outcome: VerifyOutcome) -> common_pb2.VerifyResponse:
    return common_pb2.VerifyResponse(
        result=wire.VERIFY_RESULT_NUMBERS[outcome.result],
        serial=outcome.serial,
        retry_after_seconds=max(0, int(outcome.retry_after)),
    )
