"""The common name of a CNS authentication certificate: `<codice fiscale>/<card id>.<digest>`.

The codice fiscale is the first 16 characters, the card id (EF_IDCarta, 16 characters) runs
to the first `.`, and the rest is the base64 SHA-1 digest of EF_DatiPersonali (28 characters).
The digest itself may contain `/` and `+`, so the name is split on the first `/` and then on
the first `.` after it.

Only the shape is checked here: whether the codice fiscale is valid is for
`otphsm.core.codice_fiscale`, and whether the card id matches the card for the caller.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from otphsm.core.errors import InvalidInput

CODICE_FISCALE_LENGTH = 16
CARD_ID_LENGTH = 16


class MalformedCommonName(InvalidInput):
    """A certificate common name that is not `CF/CARDID.digest`."""


@dataclass(frozen=True)
class CnsCommonName:
    codice_fiscale: str
    card_id: str
    personal_data_digest: str
    """Base64 text, kept as written in the certificate."""


def personal_data_digest(dati_personali: bytes) -> str:
    """The base64 SHA-1 digest of EF_DatiPersonali, as the simulator writes it into the CN.

    Which bytes real issuers hash (with or without the zero padding) is not documented, so
    the certificate checks do not compare this value with the card's EF.
    """
    return base64.b64encode(hashlib.sha1(dati_personali).digest()).decode("ascii")  # noqa: S324


def format_common_name(codice_fiscale: str, card_id: str, digest: str) -> str:
    common_name = f"{codice_fiscale}/{card_id}.{digest}"
    parse_common_name(common_name)
    return common_name


def parse_common_name(common_name: str) -> CnsCommonName:
    codice_fiscale, slash, rest = common_name.partition("/")
    if not slash:
        raise MalformedCommonName("no '/' after the codice fiscale")
    if len(codice_fiscale) != CODICE_FISCALE_LENGTH or not _is_ascii_alnum(codice_fiscale):
        raise MalformedCommonName(
            f"the part before '/' must be {CODICE_FISCALE_LENGTH} letters or digits"
        )
    card_id, dot, digest = rest.partition(".")
    if not dot:
        raise MalformedCommonName("no '.' after the card id")
    if len(card_id) != CARD_ID_LENGTH or not _is_ascii_alnum(card_id):
        raise MalformedCommonName(f"the card id must be {CARD_ID_LENGTH} letters or digits")
    if not digest or not _is_base64(digest):
        raise MalformedCommonName("the part after the card id is not base64")
    return CnsCommonName(
        codice_fiscale=codice_fiscale, card_id=card_id, personal_data_digest=digest
    )


def _is_ascii_alnum(text: str) -> bool:
    return text.isascii() and text.isalnum()


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True
