"""The service tier: a real gRPC server on 127.0.0.1:0 with mTLS from the dev PKI, SoftHSM2 (behind
a fault-injecting session source), a SQLite or PostgreSQL store, the test CNS PKI, simulated
card readers, and clients per role. The device side is computed with `cryptography` ECDH and
our own HOTP/TOTP, the station side with the CNS client over the in-process card transport.

Its config mapping is the deployment harness's (`otphsm.simulators.deployment.serve_config`),
the same shape the tests' `otphsm serve` processes (`start_serve`) are started from.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from otphsm.core.app.context import Role
from otphsm.core.clock import ManualClock
from otphsm.gateways.sms_outbox import OutboxSmsGateway
from otphsm.service.devpki import DevPki, client_files, write_dev_pki
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.card.pki import TestCa
from otphsm.simulators.deployment import (
    CardTrust,
    ConfigMapping,
    serve_config,
    with_sections,
    write_card_trust,
)
from otphsm.simulators.sms.inbox import read_sms_messages
from otphsm.smartcard.transport import CardTransport
from otphsm.store.urls import sqlite_url
from otphsm.v1 import (
    admin_pb2_grpc,
    device_pb2_grpc,
    enrolment_pb2,
    enrolment_pb2_grpc,
    validation_pb2_grpc,
)
from support.card_fixtures import CARD_NOW
from support.service_devices import SimulatedReaders, card_signature

SERVICE_START = CARD_NOW + dt.timedelta(days=1, hours=2, seconds=10)
"""The service's manual clock starts here: the test cards and their CRL are valid then."""
NO_ROLE = "norole"
TWO_ROLES = "verifier-and-admin"
HEALTH_INTERVAL = 0.1


# --- the server ------------------------------------------------------------------------


def authorise_at(
    station: enrolment_pb2_grpc.EnrolmentServiceStub,
    card: CnsCard,
    transport: CardTransport | None = None,
) -> enrolment_pb2.AuthorisationResponse:
    """The card-authorised enrolment, as a station does it."""
    challenge = station.GetChallenge(enrolment_pb2.GetChallengeRequest())
    fields = card_signature(card, challenge.nonce, transport=transport)
    response: enrolment_pb2.AuthorisationResponse = station.AuthoriseWithCard(
        enrolment_pb2.AuthoriseWithCardRequest(challenge_id=challenge.challenge_id, **fields)
    )
    return response


@dataclass
class ServiceUnderTest:
    running: Any  # otphsm.service.server.RunningServer
    clock: ManualClock
    pki: DevPki
    foreign_pki: DevPki
    sms: OutboxSmsGateway
    readers: SimulatedReaders
    faults: Any  # otphsm.simulators.hsm.faults.FaultPlan
    db_path: Path | None
    _channels: list[grpc.Channel] = field(default_factory=list)

    @property
    def port(self) -> int:
        port: int = self.running.port
        return port

    @property
    def store(self) -> Any:
        return self.running.assembly.store

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        snapshot: dict[str, list[tuple[Any, ...]]] = self.store.snapshot()
        return snapshot

    def channel(self, client: str = "admin", *, foreign: bool = False) -> grpc.Channel:
        """A channel with the named client certificate ("verifier", ..., NO_ROLE), from the
        service's CA or (foreign) from another CA; "" for no client certificate."""
        pki = self.foreign_pki if foreign else self.pki
        ca = self.pki.ca.read_bytes()
        if client:
            cert, key = client_files(pki.directory, client)
            credentials = grpc.ssl_channel_credentials(ca, key.read_bytes(), cert.read_bytes())
        else:
            credentials = grpc.ssl_channel_credentials(ca)
        channel = grpc.secure_channel(f"localhost:{self.port}", credentials)
        self._channels.append(channel)
        return channel

    def enrolment(
        self, client: str = Role.ENROLLER.value
    ) -> enrolment_pb2_grpc.EnrolmentServiceStub:
        return enrolment_pb2_grpc.EnrolmentServiceStub(self.channel(client))

    def device(self, client: str = Role.DEVICE.value) -> device_pb2_grpc.DeviceServiceStub:
        return device_pb2_grpc.DeviceServiceStub(self.channel(client))

    def validation(
        self, client: str = Role.VERIFIER.value
    ) -> validation_pb2_grpc.ValidationServiceStub:
        return validation_pb2_grpc.ValidationServiceStub(self.channel(client))

    def admin(self, client: str = Role.ADMIN.value) -> admin_pb2_grpc.AdminServiceStub:
        return admin_pb2_grpc.AdminServiceStub(self.channel(client))

    def wait_health_checks(self, count: int = 2) -> None:
        assert self.running.health.wait_for_checks(count, timeout=10), "health checks stalled"

    def sms_code(self, phone: str) -> str:
        messages = read_sms_messages(self.sms.outbox, phone)
        assert messages, f"no SMS sent to {phone}"
        found = re.search(r"\b(\d{6})\b", messages[-1].text)
        assert found, messages[-1].text
        return found.group(1)

    def authorise(
        self, card: CnsCard, transport: CardTransport | None = None
    ) -> enrolment_pb2.AuthorisationResponse:
        return authorise_at(self.enrolment(), card, transport)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()
        self.running.stop(0)


TEST_SECTIONS: dict[str, dict[str, Any]] = {
    "server": {
        "max_workers": 24,
        "health_interval_seconds": HEALTH_INTERVAL,
        "model": os.environ.get("OTPHSM_TEST_SERVER_MODEL", "auto"),
    },
    "metrics": {"enabled": True, "address": "127.0.0.1", "port": 0},
}
"""What the tests' servers set beyond the dev deployment's shape."""


def service_config(
    tmp_path: Path, softhsm: Any, pki: DevPki, ca_files: tuple[Path, Path], store_url: str
) -> ConfigMapping:
    """The deployment harness's config mapping, for the in-process server and `otphsm serve`
    processes of the tests alike (the SMS outbox in `tmp_path`)."""
    outbox = tmp_path / "sms-outbox.jsonl"
    return serve_config(softhsm, pki, CardTrust(*ca_files), store_url, outbox, **TEST_SECTIONS)


@pytest.fixture(scope="session")
def dev_pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return write_dev_pki(
        tmp_path_factory.mktemp("dev-pki"),
        extra_clients={NO_ROLE: (), TWO_ROLES: (Role.VERIFIER, Role.ADMIN)},
    )


@pytest.fixture(scope="session")
def foreign_pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    """Another CA's certificates, with the same role URIs: the server must not accept them."""
    return write_dev_pki(tmp_path_factory.mktemp("foreign-pki"))


@pytest.fixture(scope="session")
def card_ca_files(card_ca: TestCa, tmp_path_factory: pytest.TempPathFactory) -> CardTrust:
    return write_card_trust(card_ca, tmp_path_factory.mktemp("cns-trust"), CARD_NOW)


def start_service(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    store_url: str,
    db_path: Path | None,
    overrides: dict[str, dict[str, Any]] | None = None,
    readers: Any = None,
) -> ServiceUnderTest:
    from otphsm.hsm import ModuleSessionSource
    from otphsm.service.assembly import assemble
    from otphsm.service.config import config_from_mapping
    from otphsm.service.server import start_server
    from otphsm.simulators.hsm.faults import FaultInjectingSource

    softhsm = request.getfixturevalue("softhsm")
    pki: DevPki = request.getfixturevalue("dev_pki")
    raw = service_config(
        tmp_path, softhsm, pki, request.getfixturevalue("card_ca_files"), store_url
    )
    model = {"server": {"model": request.getfixturevalue("server_model")}}
    raw = with_sections(with_sections(raw, model), overrides or {})
    config = config_from_mapping(raw, base=tmp_path, env={})
    clock = ManualClock(SERVICE_START.timestamp())
    source = FaultInjectingSource(ModuleSessionSource.for_module(softhsm.module))
    sms = OutboxSmsGateway(tmp_path / "sms-outbox.jsonl", clock)
    simulated = SimulatedReaders()
    assembly = assemble(
        config, clock=clock, hsm_source=source, sms=sms, readers=readers or simulated
    )
    running = start_server(config, assembly)
    return ServiceUnderTest(
        running,
        clock,
        pki,
        request.getfixturevalue("foreign_pki"),
        sms,
        simulated,
        source.plan,
        db_path,
    )


@pytest.fixture(scope="session")
def server_model() -> str:
    """`server.model` of the services the tests start ("auto", or OTPHSM_TEST_SERVER_MODEL's);
    a module that imports `support.server_models.each_server_model` runs its tests on each
    model instead."""
    return str(TEST_SECTIONS["server"]["model"])


@pytest.fixture
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServiceUnderTest]:
    """A running service on a SQLite file."""
    db_path = tmp_path / "otphsm.db"
    running = start_service(request, tmp_path, sqlite_url(db_path), db_path)
    yield running
    running.close()


@pytest.fixture(
    params=[pytest.param("sqlite", id="sqlite"), pytest.param("postgres", id="postgres")]
)
def any_store_service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServiceUnderTest]:
    """A running service on SQLite, then on PostgreSQL (skipped if it cannot be reached)."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_store_url")
        running = start_service(request, tmp_path, url, None)
    else:
        db_path = tmp_path / "otphsm.db"
        running = start_service(request, tmp_path, sqlite_url(db_path), db_path)
    yield running
    running.close()
