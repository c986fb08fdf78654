"""The use-case tier: a real App over SQLite (or PostgreSQL), SoftHSM2, the test CNS PKI, an
in-process simulated card read through the station-side CNS client, and an emulated phone."""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from otphsm.core.app.activation import ActivatedDevice
from otphsm.core.app.context import Actor, App, Role
from otphsm.core.app.enrolment import CardEvidence
from otphsm.core.certificates import TrustStore
from otphsm.core.clock import ManualClock
from otphsm.core.lockout import origin_key
from otphsm.core.otp import totp
from otphsm.gateways.sms_outbox import OutboxSmsGateway
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.card.inprocess import InProcessConnection
from otphsm.simulators.card.pki import TestCa
from otphsm.smartcard.cns import CnsClient
from support.card_fixtures import CARD_NOW, CARD_PIN

STATION = Actor("CN=station-01,OU=enroller", Role.ENROLLER)
PORTAL = Actor("CN=portal,OU=verifier", Role.VERIFIER)
PHONE_GATEWAY = Actor("CN=app-gateway,OU=device", Role.DEVICE)
OPERATOR = Actor("CN=operator,OU=admin", Role.ADMIN)


def at_portal(origin: str) -> str:
    """An origin as the lockout stores it when PORTAL sent it (`lockout.origin_key`)."""
    return origin_key(PORTAL.name, origin)


APP_START = CARD_NOW + dt.timedelta(days=1, hours=2, seconds=10)


def card_evidence(card: CnsCard, nonce: bytes, pin: str = CARD_PIN) -> CardEvidence:
    """What a station does: read the card, verify the PIN, sign the challenge."""
    connection = InProcessConnection(card)
    try:
        client = CnsClient(connection)
        contents = client.read_card()
        client.verify_pin(pin)
        signature = client.sign_challenge(nonce)
    finally:
        connection.close()
    return CardEvidence(
        certificate_der=contents.certificate,
        card_id=contents.card_id,
        codice_fiscale=contents.personal_data.codice_fiscale,
        signature=signature,
    )


@dataclass
class Phone:
    """The token app's secure activation, with a clock that may be wrong."""

    key: ec.EllipticCurvePrivateKey
    skew_seconds: float = 0.0
    seed: bytes = b""
    digits: int = 6
    algorithm: str = "sha1"

    @classmethod
    def new(cls, skew_seconds: float = 0.0) -> Phone:
        return cls(ec.generate_private_key(ec.SECP256R1()), skew_seconds)

    @property
    def public_point(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    def complete(self, activated: ActivatedDevice) -> None:
        server = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), activated.server_public_point
        )
        self.seed = self.key.exchange(ec.ECDH(), server)
        self.digits = activated.token.params.digits
        self.algorithm = activated.token.params.algorithm.hashlib_name

    def code(self, now: float) -> str:
        fn = lambda m: hmac.new(self.seed, m, self.algorithm).digest()  # noqa: E731
        return totp(fn, now + self.skew_seconds, digits=self.digits)


@pytest.fixture
def app_clock() -> ManualClock:
    return ManualClock(APP_START.timestamp())


@pytest.fixture
def trust(card_ca: TestCa) -> TrustStore:
    return TrustStore((card_ca.certificate,), (card_ca.crl(now=CARD_NOW),))


@pytest.fixture
def app(softhsm, trust: TrustStore, app_clock: ManualClock, tmp_path: Path) -> Iterator[App]:  # type: ignore[no-untyped-def]
    from otphsm.hsm import open_vault
    from otphsm.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'otphsm.db'}")
    store.migrate()
    vault = open_vault(softhsm.hsm_config())
    sms = OutboxSmsGateway(tmp_path / "sms-outbox.jsonl", app_clock)
    yield App(store=store, hsm=vault, clock=app_clock, trust=trust, sms=sms)
    vault.close()
    store.close()
