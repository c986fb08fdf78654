"""The devices around the service in tests: the station's card step, the citizen's token app,
and simulated card readers attached to the server (a kiosk)."""

from __future__ import annotations

import contextlib
import hmac
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from otphsm.client.results import otp_parameters
from otphsm.core.otp import hotp, totp
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.card.inprocess import InProcessConnection
from otphsm.simulators.card.vpcd import VirtualCard
from otphsm.simulators.token.mobile_app import derive_seed, public_point
from otphsm.smartcard.dialogue import sign_challenge_with_card
from otphsm.smartcard.errors import NoCard, NoReader
from otphsm.smartcard.pcsc import CardEvent, CardEventKind
from otphsm.smartcard.readers import ReaderStatus
from otphsm.smartcard.transport import CardTransport
from otphsm.v1 import device_pb2
from support.card_fixtures import CARD_PIN

KIOSK_READER = "Kiosk Reader 00"


@dataclass(frozen=True)
class _Nonce:
    nonce: bytes


# --- the client side ---------------------------------------------------------------------


def card_signature(
    card: CnsCard, nonce: bytes, pin: str = CARD_PIN, transport: CardTransport | None = None
) -> dict[str, Any]:
    """What a station does with the citizen's card: read it, verify the PIN, sign the nonce.
    `transport` is the reader (a PC/SC connection through pcscd); in process by default.
    Returns the AuthoriseWithCardRequest fields (without the challenge id)."""
    with contextlib.ExitStack() as stack:
        if transport is None:
            transport = stack.enter_context(InProcessConnection(card))
        evidence = sign_challenge_with_card(transport, pin, lambda: _Nonce(nonce)).evidence
    return {
        "certificate_der": evidence.certificate_der,
        "card_id": evidence.card_id,
        "codice_fiscale": evidence.codice_fiscale,
        "signature": evidence.signature,
    }


@dataclass
class TokenApp:
    """The citizen's token app: an ephemeral P-256 key for secure activation, then codes."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    seed: bytes = b""
    serial: str = ""
    algorithm: str = "sha1"
    digits: int = 6
    period: int = 30

    @property
    def public_key(self) -> bytes:
        return public_point(self.key)

    def complete(self, response: device_pb2.ActivationResponse) -> None:
        """The phone app's own ECDH (`otphsm.simulators.token.mobile_app.derive_seed`)."""
        self.seed = derive_seed(self.key, response.server_public_key)
        self.serial = response.serial
        params = otp_parameters(response.params)
        self.algorithm = params.algorithm.hashlib_name
        self.digits = params.digits
        self.period = params.period

    def _mac(self, message: bytes) -> bytes:
        return hmac.new(self.seed, message, self.algorithm).digest()

    def code(self, at: float) -> str:
        return totp(self._mac, at, period=self.period, digits=self.digits)

    def counter_code(self, counter: int) -> str:
        return hotp(self._mac, counter, self.digits)


# --- simulated readers attached to the server (kiosk) -----------------------------------


class SimulatedReaders:
    """Implements `otphsm.smartcard.readers.LocalReaders` over simulated cards in process."""

    def __init__(self, names: tuple[str, ...] = (KIOSK_READER,)) -> None:
        self._slots: dict[str, VirtualCard | None] = dict.fromkeys(names)
        self._changed = threading.Condition()

    def insert(self, card: VirtualCard, reader: str = KIOSK_READER) -> None:
        with self._changed:
            self._slots[reader] = card
            self._changed.notify_all()

    def remove(self, reader: str = KIOSK_READER) -> None:
        with self._changed:
            self._slots[reader] = None
            self._changed.notify_all()

    def statuses(self) -> list[ReaderStatus]:
        with self._changed:
            return [ReaderStatus(name, card is not None) for name, card in self._slots.items()]

    def wait_for_card(self, reader: str, seconds: float) -> str:
        deadline = time.monotonic() + seconds
        with self._changed:
            while True:
                names = [name for name in self._slots if not reader or reader in name]
                for name in names:
                    if self._slots[name] is not None:
                        return name
                left = deadline - time.monotonic()
                if left <= 0 and not names:
                    raise NoReader(f"no reader matches {reader!r}")
                if left <= 0:
                    raise NoCard(f"no card in {', '.join(names)}")
                self._changed.wait(left)

    def connect(self, reader: str) -> InProcessConnection:
        with self._changed:
            names = [name for name in self._slots if not reader or reader in name]
            if not names:
                raise NoReader(f"no reader matches {reader!r}")
            card = self._slots[names[0]]
        if card is None:
            raise NoCard(f"no card in {names[0]}")
        return InProcessConnection(card, names[0])

    def events(
        self, reader: str, *, include_present: bool, stop: threading.Event, max_seconds: float
    ) -> Iterator[CardEvent]:
        deadline = time.monotonic() + max_seconds if max_seconds else None
        known: dict[str, bool] = {}
        first = True
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            with self._changed:
                state = {
                    name: card for name, card in self._slots.items() if not reader or reader in name
                }
            for name, card in state.items():
                present = card is not None
                before = known.get(name)
                known[name] = present
                if (
                    present
                    and card is not None
                    and (before is False or (first and include_present))
                ):
                    yield CardEvent(CardEventKind.INSERTED, name, card.atr)
                elif not present and before:
                    yield CardEvent(CardEventKind.REMOVED, name)
            first = False
            with self._changed:
                self._changed.wait(0.05)
