"""Records ↔ rows: one column tuple per table, and the two functions that map each record.

Enums are stored by value, booleans as 0/1 (SQLite) or BOOLEAN (PostgreSQL), audit details as
canonical JSON text. Column order here is the order of every statement in `sql`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from otphsm.core.otp import HashAlgorithm
from otphsm.core.records import (
    Activation,
    ActivationMethod,
    AuditEntry,
    Authorisation,
    Challenge,
    Citizen,
    OobCode,
    OobPurpose,
)
from otphsm.core.seeds import SeedRef, SeedStorage
from otphsm.core.tokens import OtpMode, OtpParameters, Token, TokenKind, TokenState

Row = tuple[Any, ...]

CITIZEN_COLUMNS = (
    "codice_fiscale",
    "given_name",
    "surname",
    "birth_date",
    "sex",
    "birth_place",
    "card_id",
    "certificate_serial",
    "certificate_issuer",
    "enrolled_at",
    "updated_at",
    "phone_number",
    "code_prefix_mac",
)

TOKEN_COLUMNS = (
    "serial",
    "codice_fiscale",
    "kind",
    "mode",
    "algorithm",
    "digits",
    "period",
    "seed_storage",
    "seed_data",
    "seed_kek",
    "state",
    "created_at",
    "moving_factor",
    "drift_steps",
    "failures",
    "lock_level",
    "locked_until",
    "activated_at",
    "last_used_at",
    "replaces_serial",
    "version",
)

CHALLENGE_COLUMNS = ("challenge_id", "nonce", "created_at", "expires_at", "used_at")

AUTHORISATION_COLUMNS = (
    "authorisation_id",
    "codice_fiscale",
    "card_id",
    "created_at",
    "expires_at",
    "used_at",
)

ACTIVATION_COLUMNS = (
    "activation_id",
    "token_serial",
    "codice_fiscale",
    "method",
    "secret_mac",
    "created_at",
    "expires_at",
    "failures",
    "locked_until",
    "used_at",
    "version",
)

OOB_CODE_COLUMNS = (
    "oob_id",
    "codice_fiscale",
    "purpose",
    "code_mac",
    "created_at",
    "expires_at",
    "failures",
    "locked_until",
    "used_at",
    "superseded",
    "version",
)

AUDIT_COLUMNS = (
    "seq",
    "at",
    "actor",
    "action",
    "subject",
    "details",
    "prev_hash",
    "entry_hash",
    "mac",
)


def citizen_row(citizen: Citizen) -> Row:
    return (
        citizen.codice_fiscale,
        citizen.given_name,
        citizen.surname,
        citizen.birth_date,
        citizen.sex,
        citizen.birth_place,
        citizen.card_id,
        citizen.certificate_serial,
        citizen.certificate_issuer,
        citizen.enrolled_at,
        citizen.updated_at,
        citizen.phone_number,
        citizen.code_prefix_mac,
    )


def citizen_from_row(row: Sequence[Any]) -> Citizen:
    (
        codice_fiscale,
        given_name,
        surname,
        birth_date,
        sex,
        birth_place,
        card_id,
        certificate_serial,
        certificate_issuer,
        enrolled_at,
        updated_at,
        phone_number,
        code_prefix_mac,
    ) = row
    return Citizen(
        codice_fiscale=codice_fiscale,
        given_name=given_name,
        surname=surname,
        birth_date=birth_date,
        sex=sex,
        birth_place=birth_place,
        card_id=card_id,
        certificate_serial=certificate_serial,
        certificate_issuer=certificate_issuer,
        enrolled_at=enrolled_at,
        updated_at=updated_at,
        phone_number=phone_number,
        code_prefix_mac=bytes(code_prefix_mac) if code_prefix_mac is not None else None,
    )


def token_row(token: Token) -> Row:
    params = token.params
    return (
        token.serial,
        token.codice_fiscale,
        token.kind.value,
        params.mode.value,
        params.algorithm.value,
        params.digits,
        params.period,
        token.seed.storage.value if token.seed else None,
        token.seed.data if token.seed else None,
        token.seed.kek if token.seed else None,
        token.state.value,
        token.created_at,
        token.moving_factor,
        token.drift_steps,
        token.failures,
        token.lock_level,
        token.locked_until,
        token.activated_at,
        token.last_used_at,
        token.replaces_serial,
        token.version,
    )


def token_from_row(row: Sequence[Any]) -> Token:
    (
        serial,
        codice_fiscale,
        kind,
        mode,
        algorithm,
        digits,
        period,
        seed_storage,
        seed_data,
        seed_kek,
        state,
        created_at,
        moving_factor,
        drift_steps,
        failures,
        lock_level,
        locked_until,
        activated_at,
        last_used_at,
        replaces_serial,
        version,
    ) = row
    return Token(
        serial=serial,
        codice_fiscale=codice_fiscale,
        kind=TokenKind(kind),
        params=OtpParameters(
            mode=OtpMode(mode),
            algorithm=HashAlgorithm(algorithm),
            digits=digits,
            period=period,
        ),
        seed=SeedRef(SeedStorage(seed_storage), bytes(seed_data), seed_kek)
        if seed_storage
        else None,
        state=TokenState(state),
        created_at=created_at,
        moving_factor=moving_factor,
        drift_steps=drift_steps,
        failures=failures,
        lock_level=lock_level,
        locked_until=locked_until,
        activated_at=activated_at,
        last_used_at=last_used_at,
        replaces_serial=replaces_serial,
        version=version,
    )


def challenge_row(challenge: Challenge) -> Row:
    return (
        challenge.challenge_id,
        challenge.nonce,
        challenge.created_at,
        challenge.expires_at,
        challenge.used_at,
    )


def challenge_from_row(row: Sequence[Any]) -> Challenge:
    challenge_id, nonce, created_at, expires_at, used_at = row
    return Challenge(challenge_id, bytes(nonce), created_at, expires_at, used_at)


def authorisation_row(authorisation: Authorisation) -> Row:
    return (
        authorisation.authorisation_id,
        authorisation.codice_fiscale,
        authorisation.card_id,
        authorisation.created_at,
        authorisation.expires_at,
        authorisation.used_at,
    )


def authorisation_from_row(row: Sequence[Any]) -> Authorisation:
    return Authorisation(*row)


def activation_row(activation: Activation) -> Row:
    return (
        activation.activation_id,
        activation.token_serial,
        activation.codice_fiscale,
        activation.method.value,
        activation.secret_mac,
        activation.created_at,
        activation.expires_at,
        activation.failures,
        activation.locked_until,
        activation.used_at,
        activation.version,
    )


def activation_from_row(row: Sequence[Any]) -> Activation:
    (
        activation_id,
        token_serial,
        codice_fiscale,
        method,
        secret_mac,
        created_at,
        expires_at,
        failures,
        locked_until,
        used_at,
        version,
    ) = row
    return Activation(
        activation_id=activation_id,
        token_serial=token_serial,
        codice_fiscale=codice_fiscale,
        method=ActivationMethod(method),
        secret_mac=bytes(secret_mac),
        created_at=created_at,
        expires_at=expires_at,
        failures=failures,
        locked_until=locked_until,
        used_at=used_at,
        version=version,
    )


def oob_code_row(code: OobCode) -> Row:
    return (
        code.oob_id,
        code.codice_fiscale,
        code.purpose.value,
        code.code_mac,
        code.created_at,
        code.expires_at,
        code.failures,
        code.locked_until,
        code.used_at,
        code.superseded,
        code.version,
    )


def oob_code_from_row(row: Sequence[Any]) -> OobCode:
    (
        oob_id,
        codice_fiscale,
        purpose,
        code_mac,
        created_at,
        expires_at,
        failures,
        locked_until,
        used_at,
        superseded,
        version,
    ) = row
    return OobCode(
        oob_id=oob_id,
        codice_fiscale=codice_fiscale,
        purpose=OobPurpose(purpose),
        code_mac=bytes(code_mac),
        created_at=created_at,
        expires_at=expires_at,
        failures=failures,
        locked_until=locked_until,
        used_at=used_at,
        superseded=bool(superseded),
        version=version,
    )


def audit_row(entry: AuditEntry) -> Row:
    return (
        entry.seq,
        entry.at,
        entry.actor,
        entry.action,
        entry.subject,
        json.dumps(entry.details, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
        entry.prev_hash,
        entry.entry_hash,
        entry.mac,
    )


def audit_from_row(row: Sequence[Any]) -> AuditEntry:
    seq, at, actor, action, subject, details, prev_hash, entry_hash, mac = row
    return AuditEntry(
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        subject=subject,
        details=json.loads(details),
        prev_hash=bytes(prev_hash),
        entry_hash=bytes(entry_hash),
        mac=bytes(mac),
    )
