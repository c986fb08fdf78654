"""RADIUS test support: `otphsm serve` with its [radius] front end (from the deployment
harness's config), the citizen and tokens set up in process on the same store and HSM, and two
clients: radclient (freeradius-utils, an independent implementation) and raw datagrams built
with pyrad for what radclient cannot do (resend one packet byte for byte, tamper with it)."""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pyrad import packet as radius

from otphsm.core.app.context import App
from otphsm.core.records import Authorisation
from otphsm.service.assembly import Assembly, assemble
from otphsm.service.config import load_config
from otphsm.service.radius.packets import load_dictionary
from otphsm.simulators.deployment import (
    ServerProcess,
    radius_section,
    start_serve,
    with_sections,
    write_config,
)
from otphsm.store.urls import sqlite_url
from support.fault_support import CITIZEN, HotpToken, add_hotp_tokens
from support.service_fixtures import service_config
from support.store_records import citizen

SECRET = "radius-test-shared-secret-0123456789"
PHONE = "+393331234567"
RADCLIENT_TIMEOUT = 3


@dataclass
class Reply:
    """What radclient received: the answer's name ("Access-Accept", ...; None: no answer)
    and its attributes as radclient prints them."""

    code: str | None
    attributes: dict[str, str]
    output: str

    @property
    def message(self) -> str:
        return self.attributes.get("Reply-Message", "").strip('"')


def radclient(
    port: int,
    attributes: dict[str, str],
    *,
    secret: str = SECRET,
    message_authenticator: bool = True,
    timeout: float = RADCLIENT_TIMEOUT,
    command: str = "auth",
) -> Reply:
    """One Access-Request by radclient (no retry; `command="status"`: a Status-Server);
    `attributes` as radclient reads them (strings quoted by this function, `0x...` values
    left as they are)."""
    pairs = [f"{k} = {v if v.startswith('0x') else quote(v)}" for k, v in attributes.items()]
    if message_authenticator:
        pairs.append("Message-Authenticator = 0x00")  # radclient computes it
    run = subprocess.run(
        ["radclient", "-x", "-r", "1", "-t", str(timeout), f"127.0.0.1:{port}", command, secret],
        input=", ".join(pairs) + "\n",
        capture_output=True,
        text=True,
        timeout=timeout + 20,
        check=False,
    )
    output = run.stdout + run.stderr
    found = re.search(r"Received (Access-\w+) Id", output)
    if found is None:
        return Reply(None, {}, output)
    received = output[found.start() :]
    pairs_found = re.findall(r"^\s+([\w-]+) = (.*)$", received, re.MULTILINE)
    return Reply(found.group(1), dict(pairs_found), output)


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class RadiusDeployment:
    """One or more `otphsm serve` replicas with RADIUS, and the app in process on their store."""

    servers: list[ServerProcess]
    assembly: Assembly
    config: Path
    tokens: list[HotpToken] = field(default_factory=list)

    @property
    def app(self) -> App:
        return self.assembly.app

    @property
    def port(self) -> int:
        return self.servers[0].radius_port

    def log_text(self) -> str:
        return "\n".join(server.log.read_text(encoding="utf-8") for server in self.servers)

    def failures(self, serial: str) -> tuple[int, int]:
        """The token's moving factor and failure count as stored."""
        token = self.app.store.get_token(serial)
        assert token is not None
        return token.moving_factor, token.failures


StartRadius = Callable[..., RadiusDeployment]


@pytest.fixture
def start_radius(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StartRadius]:
    """Starts `replicas` `otphsm serve` processes on `store_url` (a SQLite file by default)
    with RADIUS for one NAS at 127.0.0.1 (`client`: its further keys; `sections`: further
    config keys by section); the citizen CITIZEN (with a phone number) and `tokens` active
    HOTP tokens are made first."""
    started: list[RadiusDeployment] = []

    def start(
        *,
        store_url: str = "",
        replicas: int = 1,
        tokens: int = 1,
        sections: Mapping[str, Mapping[str, Any]] | None = None,
        **client: Any,
    ) -> RadiusDeployment:
        secret_file = tmp_path / "nas.secret"
        secret_file.write_text(SECRET + "\n", encoding="utf-8")
        url = store_url or sqlite_url(tmp_path / "otphsm.db")
        raw = service_config(
            tmp_path,
            request.getfixturevalue("softhsm"),
            request.getfixturevalue("dev_pki"),
            request.getfixturevalue("card_ca_files"),
            url,
        )
        raw = with_sections(raw, {"radius": radius_section(secret_file, **client)})
        raw = with_sections(raw, sections or {})
        assembly = assemble(load_config(write_config(tmp_path / "otphsm.toml", raw), env={}))
        app = assembly.app
        app.store.upsert_citizen(citizen(CITIZEN, phone_number=PHONE))
        made = add_hotp_tokens(app, tokens) if tokens else []
        servers = []
        for index in range(replicas):
            config = write_config(tmp_path / f"replica-{index}.toml", raw)
            servers.append(start_serve(config, request.getfixturevalue("softhsm")))
        deployment = RadiusDeployment(servers, assembly, tmp_path / "otphsm.toml", made)
        started.append(deployment)
        for server in servers:
            server.wait_serving()
        return deployment

    yield start
    for deployment in started:
        for server in deployment.servers:
            server.stop()
        deployment.assembly.close()


def card_authorisation(app: App) -> str:
    """An authorisation as the citizen's card would grant it (a Security Card needs one)."""
    now = app.now()
    granted = Authorisation(app.new_id("au"), CITIZEN, citizen(CITIZEN).card_id, now, now + 600)
    app.store.insert_authorisation(granted)
    return granted.authorisation_id


def access_request(
    attributes: dict[str, Any], *, secret: str = SECRET, identifier: int = 1
) -> bytes:
    """An Access-Request as a NAS encodes it (pyrad), with a Message-Authenticator."""
    packet = radius.AuthPacket(
        code=radius.AccessRequest,
        id=identifier,
        secret=secret.encode(),
        dict=load_dictionary(),
    )
    for key, value in attributes.items():
        packet.AddAttribute(key, packet.PwCrypt(value) if key == "User-Password" else value)
    packet.add_message_authenticator()
    raw: bytes = packet.RequestPacket()
    return raw


def answer_code(raw: bytes) -> int:
    return raw[0]


class Nas:
    """A NAS's UDP socket: one source port for every datagram it sends."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))

    def send(self, port: int, data: bytes) -> None:
        self.socket.sendto(data, ("127.0.0.1", port))

    def ask(self, port: int, data: bytes, timeout: float = 5.0) -> bytes | None:
        """Send, and the answer (None if none came within `timeout`)."""
        self.send(port, data)
        return self.receive(timeout)

    def receive(self, timeout: float) -> bytes | None:
        self.socket.settimeout(timeout)
        try:
            answer, _ = self.socket.recvfrom(4096)
        except TimeoutError:
            return None
        return answer

    def close(self) -> None:
        self.socket.close()
