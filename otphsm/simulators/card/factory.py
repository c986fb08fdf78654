"""Issue simulated CNS cards for given people: key, personal data, certificate, files, ATR."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from otphsm.simulators.card.pki import (
    CNS_CERTIFICATE_LIFETIME,
    CertProfile,
    TestCa,
    issue_cns_certificate,
)
from otphsm.simulators.card.spec import CardSpec
from otphsm.smartcard.cns_files import (
    EF_C_CARTA,
    EF_DATI_PERSONALI,
    EF_DATI_PROCESSORE,
    EF_ID_CARTA,
    EF_KEY_PUB,
    ID_CARTA_LENGTH,
    PersonalData,
    encode_dati_personali,
    encode_id_carta,
    format_card_date,
)

ATR_CNS_1_0 = bytes.fromhex("3BFF1800FFC10A31FE55006B0508C80C011101434E5310318005")
"""Trentino CPS, Infineon/Siemens, CNS 1.0: RSA-1024, short APDUs, PIN reference 0x10."""
ATR_CNS_1_1 = bytes.fromhex("3BFF1800FF8131FE55006B02091617011101434E531131808D")
"""TS-CNS "ST 2021", ST/STIncard, CNS 1.1: RSA-2048, extended APDUs, PIN reference 0x90."""

ATR_BY_KEY_SIZE = MappingProxyType({1024: ATR_CNS_1_0, 2048: ATR_CNS_1_1})
DEFAULT_ISSUER_CODE = "TEST"
PUBLIC_EXPONENT = 65537
_DATI_PROCESSORE_LENGTH = 16


@dataclass(frozen=True)
class Person:
    """A card holder. Municipalities are Belfiore codes (`L378` = Trento). The codice fiscale
    is taken as given, so tests can issue cards with a wrong one."""

    given_name: str
    surname: str
    birth_date: dt.date
    sex: str
    codice_fiscale: str
    birth_municipality: str = ""
    residence_municipality: str = ""
    residence_address: str = ""
    citizenship: str = ""

    def __post_init__(self) -> None:
        if self.sex not in ("M", "F"):
            raise ValueError(f"sex is 'M' or 'F', got {self.sex!r}")

    @property
    def label(self) -> str:
        """The token label OpenSC shows: `<first name> <surname>`."""
        return f"{self.given_name.upper()} {self.surname.upper()}"


def personal_data_for(
    person: Person, *, issued: dt.date, expires: dt.date, issuer_code: str = DEFAULT_ISSUER_CODE
) -> PersonalData:
    return PersonalData(
        issuer_code=issuer_code,
        issue_date=format_card_date(issued),
        expiry_date=format_card_date(expires),
        surname=person.surname.upper(),
        given_name=person.given_name.upper(),
        birth_date=format_card_date(person.birth_date),
        sex=person.sex,
        codice_fiscale=person.codice_fiscale.upper(),
        citizenship=person.citizenship,
        birth_municipality=person.birth_municipality.upper(),
        residence_municipality=(person.residence_municipality or person.birth_municipality).upper(),
        residence_address=person.residence_address.upper(),
    )


def random_card_id(random_bytes: Callable[[int], bytes] = os.urandom) -> str:
    number = int.from_bytes(random_bytes(8), "big") % 10**ID_CARTA_LENGTH
    return f"{number:0{ID_CARTA_LENGTH}d}"


def rsa_public_key_der(public_key: rsa.RSAPublicKey) -> bytes:
    """PKCS#1 `RSAPublicKey` DER, the form OpenSC decodes from EF 3F01."""
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)


def card_files(
    *,
    card_id: str,
    dati_personali: bytes,
    certificate: x509.Certificate,
    dati_processore: bytes,
) -> dict[bytes, bytes]:
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ValueError("a CNS certificate holds an RSA key")
    return {
        EF_ID_CARTA: encode_id_carta(card_id),
        EF_DATI_PROCESSORE: dati_processore,
        EF_DATI_PERSONALI: dati_personali,
        EF_C_CARTA: certificate.public_bytes(serialization.Encoding.DER),
        EF_KEY_PUB: rsa_public_key_der(public_key),
    }


def issue_card(
    ca: TestCa,
    person: Person,
    pin: str,
    puk: str,
    *,
    key_size: int = 2048,
    card_id: str | None = None,
    now: dt.datetime,
    private_key: rsa.RSAPrivateKey | None = None,
    profile: CertProfile | None = None,
    issuer_code: str = DEFAULT_ISSUER_CODE,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> CardSpec:
    """A new card for `person`: RSA-1024 with the CNS 1.0 ATR or RSA-2048 with the 1.1 ATR.

    Pass `private_key` to reuse one (tests save key generation); `profile` bends the
    certificate out of the CNS profile.
    """
    if key_size not in ATR_BY_KEY_SIZE:
        raise ValueError(f"key size is one of {sorted(ATR_BY_KEY_SIZE)}, got {key_size}")
    key = private_key or rsa.generate_private_key(PUBLIC_EXPONENT, key_size)
    if key.key_size != key_size:
        raise ValueError(f"the given key has {key.key_size} bits, not {key_size}")
    card_id = card_id if card_id is not None else random_card_id(random_bytes)
    encode_id_carta(card_id)
    dati_personali = encode_dati_personali(
        personal_data_for(
            person,
            issued=now.date(),
            expires=(now + CNS_CERTIFICATE_LIFETIME).date(),
            issuer_code=issuer_code,
        )
    )
    certificate = issue_cns_certificate(
        ca,
        public_key=key.public_key(),
        codice_fiscale=person.codice_fiscale.upper(),
        card_id=card_id,
        given_name=person.given_name.upper(),
        surname=person.surname.upper(),
        dati_personali=dati_personali,
        now=now,
        profile=profile,
    )
    files = card_files(
        card_id=card_id,
        dati_personali=dati_personali,
        certificate=certificate,
        dati_processore=random_bytes(_DATI_PROCESSORE_LENGTH),
    )
    return CardSpec(
        atr=ATR_BY_KEY_SIZE[key_size],
        files=files,
        pin=pin,
        puk=puk,
        private_key=key,
        label=person.label,
        extra={
            "card_id": card_id,
            "codice_fiscale": person.codice_fiscale.upper(),
            "certificate_serial": f"{certificate.serial_number:X}",
            "issued_at": now.isoformat(),
        },
    )
