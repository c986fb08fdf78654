"""A real `otphsm serve` with the HTTP/JSON API on, started by the deployment harness, holding
Mario Rossi's activated HOTP token app and phone number; curl as a caller with the dev PKI."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from otphsm.core.app.context import Actor, Role
from otphsm.core.app.enrolment import grant_authorisation
from otphsm.core.records import Citizen
from otphsm.service.assembly import assemble
from otphsm.service.config import load_config
from otphsm.service.devpki import DevPki, client_files
from otphsm.simulators.deployment import ServerProcess, start_serve, write_config
from otphsm.store.urls import sqlite_url
from otphsm.v1 import (
    common_pb2,
    device_pb2,
    device_pb2_grpc,
    enrolment_pb2,
    enrolment_pb2_grpc,
)
from support.card_fixtures import MARIO_ROSSI
from support.service_devices import TokenApp
from support.service_fixtures import service_config

PHONE = "+393331234567"
CF = MARIO_ROSSI.codice_fiscale


@dataclass
class HttpDeployment:
    server: ServerProcess
    pki: DevPki
    outbox: Path
    phone: TokenApp

    def curl(
        self, role: str | None, verb: str, path: str, body: object = None
    ) -> tuple[int, dict[str, Any], str]:
        """(HTTP status, JSON answer, response headers) of curl's call as `role`."""
        args = ["curl", "-sS", "-D", "-", "--cacert", str(self.pki.ca), "-X", verb]
        if role is not None:
            cert, key = client_files(self.pki.directory, role)
            args += ["--cert", str(cert), "--key", str(key)]
        if body is not None:
            args += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
        url = f"https://localhost:{self.server.http_port}{path}"
        done = subprocess.run([*args, url], capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        head, _, text = done.stdout.partition("\n\n")
        assert text, done.stdout
        status = int(head.split()[1])
        return status, json.loads(text), head

    def verify(self, code: str) -> dict[str, Any]:
        status, answer, _ = self.curl(
            "verifier", "POST", "/v1/codes:verify", {"serial": self.phone.serial, "code": code}
        )
        assert status == 200, answer
        return answer


def citizen(now: int) -> Citizen:
    person = MARIO_ROSSI
    return Citizen(
        CF,
        person.given_name,
        person.surname,
        person.birth_date.isoformat(),
        person.sex,
        person.birth_municipality,
        "card",
        "1",
        "test CA",
        now,
        now,
        phone_number=PHONE,
    )


def _channel(pki: DevPki, port: int, role: str) -> grpc.Channel:
    cert, key = client_files(pki.directory, role)
    credentials = grpc.ssl_channel_credentials(
        pki.ca.read_bytes(), key.read_bytes(), cert.read_bytes()
    )
    return grpc.secure_channel(f"localhost:{port}", credentials)


@pytest.fixture
def http_deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HttpDeployment]:
    """`otphsm serve` with [http] on, and Mario Rossi's HOTP token app, activated and proved
    (counter 0 used), his phone number recorded."""
    softhsm = request.getfixturevalue("serve_softhsm")
    pki: DevPki = request.getfixturevalue("dev_pki")
    card_ca = request.getfixturevalue("card_ca_files")
    raw = service_config(tmp_path, softhsm, pki, card_ca, sqlite_url(tmp_path / "db"))
    raw["metrics"]["enabled"] = False
    raw["http"] = {"enabled": True, "port": 0}
    config = write_config(tmp_path / "serve.toml", raw)
    server = start_serve(config, softhsm)
    try:
        port = server.wait_serving()
        assembly = assemble(load_config(config, env={}))
        try:  # the citizen and an authorisation, as a card would record them
            assembly.store.upsert_citizen(citizen(assembly.app.now()))
            granted = grant_authorisation(assembly.app, Actor("test", Role.ENROLLER), CF, "test")
        finally:
            assembly.close()
        station = enrolment_pb2_grpc.EnrolmentServiceStub(_channel(pki, port, "enroller"))
        issued = station.IssueToken(
            enrolment_pb2.IssueTokenRequest(
                authorisation_id=granted.authorisation_id,
                params=common_pb2.OtpParameters(mode=common_pb2.OTP_MODE_HOTP),
            )
        )
        device = device_pb2_grpc.DeviceServiceStub(_channel(pki, port, "device"))
        phone = TokenApp()
        phone.complete(
            device.ActivateWithCode(
                device_pb2.ActivateWithCodeRequest(
                    activation_code=issued.activation_code, device_public_key=phone.public_key
                )
            )
        )
        device.ProvePossession(
            device_pb2.ProvePossessionRequest(serial=phone.serial, code=phone.counter_code(0))
        )
        yield HttpDeployment(server, pki, tmp_path / "sms-outbox.jsonl", phone)
    finally:
        server.stop()
