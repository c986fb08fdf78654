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

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from otphsm.core.otp import hotp, totp
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.card.inprocess import InProcessConnection
from otphsm.simulators.card.vpcd import VirtualCard
from otphsm.smartcard.cns import CnsClient
from otphsm.smartcard.errors import NoCard, NoReader
from otphsm.smartcard.pcsc import CardEvent, CardEventKind
from otphsm.smartcard.transport import CardTransport
from otphsm.v1 import common_pb2, device_pb2
from support.card_fixtures import CARD_PIN

KIOSK_READER = "Kiosk Reader 00"

_ALGORITHMS = {
    common_pb2.HASH_ALGORITHM_SHA1: "sha1",
    common_pb2.HASH_ALGORITHM_SHA256: "sha256",
    common_pb2.HASH_ALGORITHM_SHA512: "sha512",
}


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
        client = CnsClient(transport)
        contents = client.read_card()
        client.verify_pin(pin)
        signature = client.sign_challenge(nonce)
    return {
        "certificate_der": contents.certificate,
        "card_id": contents.card_id,
        "codice_fiscale": contents.personal_data.codice_fiscale,
        "signature": signature,
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
        return self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    def complete(self, response: device_pb2.ActivationResponse) -> None:
        server = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), response.server_public_key
        )
        self.seed = self.key.exchange(ec.ECDH(), server)
        self.serial = response.serial
        self.algorithm = _ALGORITHMS[response.params.algorithm]
        self.digits = response.params.digits
        self.period = response.params.period_seconds or 30

    def _mac(self, message: bytes) -> bytes:
        return hmac.new(self.seed, message, self.algorithm).digest()

    def code(self, at: float) -> str:
        return totp(self._mac, at, period=self.period, digits=self.digits)

    def counter_code(self, counter: int) -> str:
        return hotp(self._mac, counter, self.digits)


# --- simulated readers attached to the server (kiosk) -----------------------------------


class SimulatedReaders:
    """Implements `otphsm.service.readers.LocalReaders` over simulated cards in process."""

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
