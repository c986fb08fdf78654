"""The crash tests' deployment (tests/faults/test_crash_points*.py): a real `otphsm serve`
on SQLite or PostgreSQL, started with the write point it must end at, started again, and
looked into (its store, its audit chain, the use cases in process with the same keys)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from otphsm.core.app.activation import activate_with_code
from otphsm.core.app.context import Actor, App, Role
from otphsm.core.app.enrolment import grant_authorisation
from otphsm.core.app.issuance import issue_token
from otphsm.core.ports import Store
from otphsm.core.records import ActivationMethod, Authorisation
from otphsm.core.tokens import OtpMode, OtpParameters
from otphsm.service.assembly import assemble
from otphsm.service.config import load_config
from otphsm.service.devpki import DevPki
from otphsm.simulators.crash import EXIT_STATUS, crash_env
from otphsm.simulators.deployment import ServerProcess, server_env, start_serve, write_config
from otphsm.simulators.token.mobile_app import derive_seed
from otphsm.store import open_store
from otphsm.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    device_pb2_grpc,
    enrolment_pb2_grpc,
    grid_pb2_grpc,
)
from support.card_fixtures import MARIO_ROSSI
from support.service_devices import TokenApp
from support.service_fixtures import service_config
from support.store_records import citizen

CF = MARIO_ROSSI.codice_fiscale
ENGINES = [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]
POINTS = ["before_commit", "after_commit"]
TEST_ACTOR = Actor("crash-test", Role.ENROLLER)
DEVICE = Actor("crash-test-device", Role.DEVICE)
STORAGES = pytest.mark.parametrize("seed_storage", ["wrapped", "resident"])
_ORPHAN_SEEDS = """
import sys
from otphsm.service.assembly import assemble
from otphsm.service.config import load_config
assembly = assemble(load_config(sys.argv[1], env={}))
try:
    print(len(assembly.app.hsm.resident_seed_ids() - assembly.app.store.resident_seed_ids()))
finally:
    assembly.close()
"""
HOTP = OtpParameters(mode=OtpMode.HOTP)


@dataclass
class Rig:
    """One deployment: a config file, the serve processes' SoftHSM clone, the dev PKI."""

    config: Path
    softhsm: Any
    pki: DevPki
    store_url: str
    server: ServerProcess | None = None
    resident: bool = False
    authorisations: list[str] = field(default_factory=list)
    """Every authorisation granted, in order."""

    def serve(self, crash_at: str | None = None) -> ServerProcess:
        extra = crash_env(crash_at) if crash_at else None
        self.server = start_serve(self.config, self.softhsm, extra_env=extra)
        self.server.wait_serving()
        return self.server

    def died_at_write_point(self) -> None:
        assert self.server is not None
        assert self.server.process.wait(30) == EXIT_STATUS, self.server.log_tail()

    def channel(self, role: str) -> grpc.Channel:
        assert self.server is not None
        credentials = grpc.ssl_channel_credentials(
            self.pki.ca.read_bytes(),
            (self.pki.directory / f"{role}-key.pem").read_bytes(),
            (self.pki.directory / f"{role}.pem").read_bytes(),
        )
        return grpc.secure_channel(f"localhost:{self.server.port}", credentials)

    def station(self) -> Any:
        return enrolment_pb2_grpc.EnrolmentServiceStub(self.channel("enroller"))

    def device(self) -> Any:
        return device_pb2_grpc.DeviceServiceStub(self.channel("device"))

    def grid(self) -> Any:
        return grid_pb2_grpc.GridCardServiceStub(self.channel("enroller"))

    def admin(self) -> Any:
        return admin_pb2_grpc.AdminServiceStub(self.channel("admin"))

    def card_authorisation(self, app: App) -> str:
        """An authorisation as the citizen's card would grant it (a Security Card needs one)."""
        now = app.now()
        granted = Authorisation(app.new_id("au"), CF, citizen(CF).card_id, now, now + 600)
        app.store.insert_authorisation(granted)
        self.authorisations.append(granted.authorisation_id)
        return granted.authorisation_id

    def grant(self) -> str:
        """An authorisation as an SMS code would grant it (the card step is tested elsewhere)."""
        with in_process(self.config) as app:
            granted = grant_authorisation(app, TEST_ACTOR, CF, "test").authorisation_id
        self.authorisations.append(granted)
        return granted

    def issue_with_code(self) -> str:
        """A pending token issued in process; its activation code."""
        authorisation_id = self.grant()
        with in_process(self.config) as app:
            issued = issue_token(
                app, TEST_ACTOR, authorisation_id, method=ActivationMethod.CODE, params=HOTP
            )
            return issued.activation_code

    def check_no_orphan_seed(self, crashed_before_commit: bool) -> None:
        """Resident mode: no seed object on the HSM token that the database does not hold
        (the restarted serve swept what the crash left: it says so in its log)."""
        if not self.resident:
            return
        found = subprocess.run(
            [sys.executable, "-c", _ORPHAN_SEEDS, str(self.config)],
            env=server_env(self.softhsm),
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        assert found.stdout.split()[-1] == "0", found.stdout
        assert self.server is not None
        swept = [
            r for r in self.server.records if r.get("msg") == "orphan resident seeds destroyed"
        ]
        assert bool(swept) is crashed_before_commit, swept

    def audit_intact(self) -> None:
        report = self.admin().VerifyAudit(admin_pb2.VerifyAuditRequest(), timeout=30)
        assert report.intact, report.findings
        assert report.entries > 0


@contextmanager
def in_process(config: Path) -> Iterator[App]:
    """The deployment's use cases in this process (the run's SoftHSM token, same keys)."""
    assembly = assemble(load_config(config, env={}))
    try:
        yield assembly.app
    finally:
        assembly.close()


@contextmanager
def open_store_at(url: str) -> Iterator[Store]:
    store = open_store(url)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def seed_storage() -> str:
    """Wrapped seeds; the tests of use cases that make seeds run resident too."""
    return "wrapped"


@pytest.fixture(params=ENGINES)
def rig(request: pytest.FixtureRequest, tmp_path: Path, seed_storage: str) -> Iterator[Rig]:
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_store_url")
    else:
        url = f"sqlite:///{tmp_path / 'otphsm.db'}"
    softhsm = request.getfixturevalue("serve_softhsm")
    pki: DevPki = request.getfixturevalue("dev_pki")
    raw = service_config(tmp_path, softhsm, pki, request.getfixturevalue("card_ca_files"), url)
    raw["metrics"]["enabled"] = False
    raw["hsm"]["seed_storage"] = seed_storage
    rig = Rig(
        write_config(tmp_path / "serve.toml", raw), softhsm, pki, url, seed_storage == "resident"
    )
    try:
        yield rig
    finally:
        if rig.server is not None:
            rig.server.stop()


# --- the client's view -----------------------------------------------------------------


def dies(call: Any) -> None:
    with pytest.raises(grpc.RpcError) as died:
        call()
    assert died.value.code() is grpc.StatusCode.UNAVAILABLE, died.value


def refused_as_used(call: Any) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION, refused.value


def activated_phone(rig: Rig) -> TokenApp:
    """A phone issued and activated in process, its token still PENDING."""
    activation_code = rig.issue_with_code()
    phone = TokenApp()
    with in_process(rig.config) as app:
        device = activate_with_code(app, DEVICE, activation_code, phone.public_key)
    phone.seed = derive_seed(phone.key, device.server_public_point)
    phone.serial = device.token.serial
    return phone
