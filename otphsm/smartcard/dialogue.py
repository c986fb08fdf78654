"""The card dialogue of a card authorisation, written once for the station, the kiosk RPC and
the tests: read the card, verify the PIN, and only then obtain a challenge and have the card
sign it.

The challenge is asked for only after the PIN is right, so a wrong PIN (or a card that cannot
be read) never draws one. The caller owns the connection: it closes it (a card reset, so the
verified PIN does not outlive it) before it tells the service anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from otphsm.core.app.enrolment import CardEvidence
from otphsm.smartcard.cns import CardContents, CnsClient
from otphsm.smartcard.errors import SmartcardError, WrongPin
from otphsm.smartcard.transport import CardTransport

PinSource = Callable[[int | None], str]
"""Asks for the PIN; its argument is the tries left after a wrong one (None the first time).
An empty answer cancels."""


class Challenge(Protocol):
    @property
    def nonce(self) -> bytes: ...


C = TypeVar("C", bound=Challenge)


class PinEntryCancelled(SmartcardError):
    """No PIN was given: the card was not used."""


@dataclass(frozen=True, slots=True)
class SignedChallenge(Generic[C]):
    """The challenge the card signed, what was read from the card, and the signature."""

    challenge: C
    contents: CardContents
    signature: bytes

    @property
    def evidence(self) -> CardEvidence:
        return CardEvidence(
            certificate_der=self.contents.certificate,
            card_id=self.contents.card_id,
            codice_fiscale=self.contents.personal_data.codice_fiscale,
            signature=self.signature,
        )


def sign_challenge_with_card(
    transport: CardTransport,
    pin: str | PinSource,
    challenge: Callable[[], C],
    *,
    card_read: Callable[[CardContents], None] | None = None,
    signing: Callable[[], None] | None = None,
) -> SignedChallenge[C]:
    """Read the card, verify the PIN, then sign `challenge()`'s nonce.

    A fixed `pin` is tried once (a wrong one raises `WrongPin`); a `PinSource` is asked again
    with the tries left until the PIN is right, it cancels (`PinEntryCancelled`) or the card
    blocks (`PinBlocked`). `card_read` and `signing` are told as those steps start."""
    card = CnsClient(transport)
    contents = card.read_card()
    if card_read is not None:
        card_read(contents)
    if isinstance(pin, str):
        card.verify_pin(pin)
    else:
        _verify_asked_pin(card, pin)
    drawn = challenge()
    if signing is not None:
        signing()
    signature = card.sign_challenge(drawn.nonce)
    return SignedChallenge(drawn, contents, signature)


def _verify_asked_pin(card: CnsClient, ask: PinSource) -> None:
    tries_left: int | None = None
    while True:
        pin = ask(tries_left)
        if not pin:
            raise PinEntryCancelled("no PIN was given: the card was not used")
        try:
            card.verify_pin(pin)
            return
        except WrongPin as exc:  # PinBlocked (no try left) goes up to the caller
            tries_left = exc.tries_left
