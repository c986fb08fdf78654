"""Sample records for storage tests: each builder gives a complete record, changed by keyword."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from otphsm.core.otp import HashAlgorithm
from otphsm.core.records import (
    Activation,
    ActivationMethod,
    Authorisation,
    Challenge,
    Citizen,
    OobCode,
    OobPurpose,
)
from otphsm.core.seeds import SeedRef, SeedStorage
from otphsm.core.tokens import OtpMode, OtpParameters, Token, TokenKind, TokenState

NOW = 1_772_000_000
MARIO = "RSSMRA80A01L378S"
LAURA = "BNCLRA90L55L378U"


def citizen(codice_fiscale: str = MARIO, **changes: Any) -> Citizen:
    base = Citizen(
        codice_fiscale=codice_fiscale,
        given_name="Mario",
        surname="Rossi",
        birth_date="1980-01-01",
        sex="M",
        birth_place="L378",
        card_id="7430010024925855",
        certificate_serial="0a1b2c",
        certificate_issuer="CN=Test CNS CA",
        enrolled_at=NOW,
        updated_at=NOW,
        phone_number="+393331234567",
    )
    return replace(base, **changes)


def token(serial: str = "TOK-0001", codice_fiscale: str = MARIO, **changes: Any) -> Token:
    base = Token(
        serial=serial,
        codice_fiscale=codice_fiscale,
        kind=TokenKind.MOBILE,
        params=OtpParameters(OtpMode.TOTP, HashAlgorithm.SHA256, 8, 60),
        seed=SeedRef(SeedStorage.WRAPPED, b"\x00wrapped\xffseed"),
        state=TokenState.PENDING,
        created_at=NOW,
    )
    return replace(base, **changes)


def challenge(challenge_id: str = "ch-1", **changes: Any) -> Challenge:
    return replace(Challenge(challenge_id, b"\x01" * 32, NOW, NOW + 60), **changes)


def authorisation(authorisation_id: str = "au-1", **changes: Any) -> Authorisation:
    base = Authorisation(authorisation_id, MARIO, "7430010024925855", NOW, NOW + 300)
    return replace(base, **changes)


def activation(activation_id: str = "ac-1", **changes: Any) -> Activation:
    base = Activation(
        activation_id=activation_id,
        token_serial="TOK-0001",
        codice_fiscale=MARIO,
        method=ActivationMethod.CODE,
        secret_mac=b"mac-" + activation_id.encode(),
        created_at=NOW,
        expires_at=NOW + 1800,
    )
    return replace(base, **changes)


def oob_code(oob_id: str = "oob-1", **changes: Any) -> OobCode:
    base = OobCode(
        oob_id=oob_id,
        codice_fiscale=MARIO,
        purpose=OobPurpose.DEVICE_REPLACEMENT,
        code_mac=b"mac-" + oob_id.encode(),
        created_at=NOW,
        expires_at=NOW + 600,
    )
    return replace(base, **changes)
