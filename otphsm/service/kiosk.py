"""The card step run by the server itself, on a card in one of its own readers (a kiosk).

Read the card, verify the PIN the station passed, and only then draw a challenge, have the card
sign it and authorise exactly as a station's AuthoriseWithCard would. A wrong PIN or a card
that cannot be read changes nothing in the store.
"""

from __future__ import annotations

from otphsm.core.app.context import Actor, App
from otphsm.core.app.enrolment import authorise_with_card, new_challenge
from otphsm.core.errors import FailedPrecondition, InvalidInput
from otphsm.core.records import Authorisation, Citizen
from otphsm.smartcard.cns_files import PIN_MAX_LENGTH
from otphsm.smartcard.dialogue import sign_challenge_with_card
from otphsm.smartcard.readers import LocalReaders

MAX_READER_NAME = 128
PIN_MIN_LENGTH = 5


class NoLocalReaders(FailedPrecondition):
    """This server has no readers configured (card.readers = "none")."""


def check_pin_format(pin: str) -> None:
    if not (PIN_MIN_LENGTH <= len(pin) <= PIN_MAX_LENGTH and pin.isascii() and pin.isdigit()):
        raise InvalidInput(f"a CNS PIN is {PIN_MIN_LENGTH} to {PIN_MAX_LENGTH} digits")


def check_reader_name(reader: str) -> None:
    if len(reader) > MAX_READER_NAME or not reader.isprintable():
        raise InvalidInput(f"a reader name is at most {MAX_READER_NAME} printable characters")


def authorise_with_local_card(
    app: App, actor: Actor, readers: LocalReaders | None, reader: str, pin: str
) -> tuple[Authorisation, Citizen]:
    check_reader_name(reader)
    check_pin_format(pin)
    if readers is None:
        raise NoLocalReaders("this server has no card readers (card.readers = none)")
    with readers.connect(reader) as transport:
        signed = sign_challenge_with_card(transport, pin, lambda: new_challenge(app, actor))
    return authorise_with_card(app, actor, signed.challenge.challenge_id, signed.evidence)
