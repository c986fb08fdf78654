"""The service tier: a real gRPC server on 127.0.0.1:0 with mTLS from the dev PKI, SoftHSM2 (behind
a fault-injecting session source), a SQLite or PostgreSQL store, the test CNS PKI, simulated
card readers, and clients per role. The device side is computed with `cryptography` ECDH and
our own HOTP/TOTP, the station side with the CNS client over the in-process card transport.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization

from otphsm.core.app.context import Role
from otphsm.core.clock import ManualClock
from otphsm.gateways.sms_outbox import OutboxSmsGateway
from otphsm.service.devpki import DevPki, client_files, write_dev_pki
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.card.pki import TestCa
from otphsm.simulators.sms.inbox import read_sms_messages
from otphsm.smartcard.transport import CardTransport
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


def service_config(
    tmp_path: Path, softhsm: Any, pki: DevPki, ca_files: tuple[Path, Path], store_url: str
) -> dict[str, Any]:
    return {
        "server": {
            "address": "127.0.0.1",
            "port": 0,
            "tls_cert": str(pki.server_cert),
            "tls_key": str(pki.server_key),
            "tls_client_ca": str(pki.ca),
            "max_workers": 24,
            "grace_seconds": 2.0,
            "health_interval_seconds": HEALTH_INTERVAL,
        },
        "hsm": {
            "module": softhsm.module,
            "token_label": softhsm.token_label,
            "user_pin": softhsm.user_pin,
        },
        "store": {"url": store_url},
        "card": {"trusted_ca": [str(ca_files[0])], "crls": [str(ca_files[1])]},
        "sms": {"outbox": str(tmp_path / "sms-outbox.jsonl")},
        "metrics": {"enabled": True, "address": "127.0.0.1", "port": 0},
    }


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
def card_ca_files(card_ca: TestCa, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("cns-trust")
    ca = directory / "cns-ca.pem"
    crl = directory / "cns-ca.crl.pem"
    ca.write_bytes(card_ca.certificate.public_bytes(serialization.Encoding.PEM))
    crl.write_bytes(card_ca.crl(now=CARD_NOW).public_bytes(serialization.Encoding.PEM))
    return ca, crl


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
    for section, values in (overrides or {}).items():
        raw[section] = {**raw.get(section, {}), **values}
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


@pytest.fixture
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServiceUnderTest]:
    """A running service on a SQLite file."""
    db_path = tmp_path / "otphsm.db"
    running = start_service(request, tmp_path, f"sqlite://{db_path}", db_path)
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
        running = start_service(request, tmp_path, f"sqlite://{db_path}", db_path)
    yield running
    running.close()


# --- `otphsm serve` as a separate process -------------------------------------------------


def write_config(path: Path, raw: dict[str, Any]) -> Path:
    """Write a config mapping as TOML (flat sections of strings, numbers, booleans, lists)."""
    lines: list[str] = []
    for section, values in raw.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items())
    path.write_text("\n".join(lines) + "\n")
    return path


class ServeProcess:
    """`python -m otphsm.cli.main serve --config FILE`, its JSON log records, and its port."""

    def __init__(self, config: Path, softhsm: Any) -> None:
        # The config file alone decides: OTPHSM_* overrides from the developer's shell are left out.
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTPHSM_")}
        env["SOFTHSM2_CONF"] = str(softhsm.conf_path)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "otphsm.cli.main", "serve", "--config", str(config)],
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        self.records: list[dict[str, Any]] = []
        self._started = threading.Event()
        self._reader = threading.Thread(target=self._read_logs, daemon=True)
        self._reader.start()

    def _read_logs(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            try:
                self.records.append(json.loads(line))
            except json.JSONDecodeError:
                self.records.append({"raw": line})
            if self.records[-1].get("msg") == "serving":
                self._started.set()

    def wait_started(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while not self._started.wait(0.1):
            exited = self.process.poll()
            assert exited is None, f"otphsm serve exited with {exited}: {self.records}"
            assert time.monotonic() < deadline, f"otphsm serve did not start: {self.records}"
        port: int = next(r["port"] for r in self.records if r.get("msg") == "serving")
        return port

    def close(self) -> None:
        """Stop it as an operator would (SIGTERM: graceful); SIGKILL only if it does not stop."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._reader.join(5)
