"""Crash consistency: a real `otphsm serve` ends (`os._exit`, as a power cut would) at each
named write point of each multi-write use case, on SQLite and on PostgreSQL; the test starts
it again and checks that the database holds all of the use case or none of it, that the audit
chain verifies, and that the client's retry succeeds.

Write points (`App.transaction`): `<use case>.before_commit` (every write made, none
committed) and `<use case>.after_commit` (committed, the answer not yet sent). The hook is
`otphsm.simulators.crash`, switched on by the environment of the serve process only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from support.card_fixtures import MARIO_ROSSI
from support.service_devices import TokenApp
from support.service_fixtures import service_config

from otphsm.core.app.context import Actor, App, Role
from otphsm.core.app.enrolment import grant_authorisation
from otphsm.core.app.issuance import issue_token
from otphsm.core.ports import Store
from otphsm.core.records import ActivationMethod
from otphsm.core.tokens import OtpMode, OtpParameters, TokenState
from otphsm.service.assembly import assemble
from otphsm.service.config import load_config
from otphsm.service.devpki import DevPki
from otphsm.simulators.crash import EXIT_STATUS, crash_env
from otphsm.simulators.deployment import ServerProcess, start_serve, write_config
from otphsm.store import open_store
from otphsm.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    common_pb2,
    device_pb2,
    device_pb2_grpc,
    enrolment_pb2,
    enrolment_pb2_grpc,
)

pytestmark = [pytest.mark.softhsm, pytest.mark.slow, pytest.mark.timeout(120)]

CF = MARIO_ROSSI.codice_fiscale
ENGINES = [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]
POINTS = ["before_commit", "after_commit"]
TEST_ACTOR = Actor("crash-test", Role.ENROLLER)
HOTP = OtpParameters(mode=OtpMode.HOTP)


@dataclass
class Rig:
    """One deployment: a config file, the serve processes' SoftHSM clone, the dev PKI."""

    config: Path
    softhsm: Any
    pki: DevPki
    store_url: str
    server: ServerProcess | None = None
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

    def audit_intact(self) -> None:
        admin = admin_pb2_grpc.AdminServiceStub(self.channel("admin"))
        report = admin.VerifyAudit(admin_pb2.VerifyAuditRequest(), timeout=30)
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


@pytest.fixture(params=ENGINES)
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_store_url")
    else:
        url = f"sqlite:///{tmp_path / 'otphsm.db'}"
    softhsm = request.getfixturevalue("serve_softhsm")
    pki: DevPki = request.getfixturevalue("dev_pki")
    raw = service_config(tmp_path, softhsm, pki, request.getfixturevalue("card_ca_files"), url)
    raw["metrics"]["enabled"] = False
    rig = Rig(write_config(tmp_path / "serve.toml", raw), softhsm, pki, url)
    try:
        yield rig
    finally:
        if rig.server is not None:
            rig.server.stop()


# --- the invariants ------------------------------------------------------------------------


def check_invariants(store: Store, authorisations: list[str]) -> None:
    """`authorisations`: every one granted to the citizen. Every token of the citizen has
    its activation and its creation entry; an activation is used only with its token's seed
    written (and audited); the citizen's tokens number the authorisations used, so none was
    used without a complete token."""
    tokens = store.tokens_of(CF)
    activations = {a.token_serial: a for a in store.activations_of(CF)}
    audited = {(e.action, e.subject) for e in store.audit_entries()}
    used = [a for a in authorisations if (found := store.get_authorisation(a)) and found.used_at]
    assert len(tokens) == len(used), (tokens, used)
    for token in tokens:
        assert token.serial in activations, f"token {token.serial} without its activation"
        assert ("token_created", token.serial) in audited, f"{token.serial} not audited"
        activation = activations[token.serial]
        if activation.used_at is not None:
            assert token.seed is not None, f"activation of {token.serial} used, no seed"
            assert ("device_activated", token.serial) in audited
        elif token.state is TokenState.PENDING:
            assert token.seed is None, f"{token.serial} has a seed, its activation unused"


def _dies(call: Any) -> None:
    with pytest.raises(grpc.RpcError) as died:
        call()
    assert died.value.code() is grpc.StatusCode.UNAVAILABLE, died.value


def _issue(rig: Rig, authorisation_id: str) -> Any:
    return rig.station().IssueToken(
        enrolment_pb2.IssueTokenRequest(
            authorisation_id=authorisation_id,
            params=common_pb2.OtpParameters(mode=common_pb2.OTP_MODE_HOTP),
        ),
        timeout=30,
    )


def _activate_and_prove(rig: Rig, activation_code: str) -> None:
    phone = TokenApp()
    phone.complete(
        rig.device().ActivateWithCode(
            device_pb2.ActivateWithCodeRequest(
                activation_code=activation_code, device_public_key=phone.public_key
            ),
            timeout=30,
        )
    )
    proved = rig.device().ProvePossession(
        device_pb2.ProvePossessionRequest(serial=phone.serial, code=phone.counter_code(0)),
        timeout=30,
    )
    assert proved.result == common_pb2.VERIFY_RESULT_OK


def _refused_as_used(call: Any) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION, refused.value


# --- the use cases -------------------------------------------------------------------------


@pytest.mark.parametrize("point", POINTS)
def test_issuance_crash_leaves_the_authorisation_unused_or_used_by_a_complete_token(
    rig: Rig, point: str
) -> None:
    """Issuance: authorisation consumed, superseded pending tokens revoked (audited), token,
    activation, token_created: one commit."""
    rig.issue_with_code()  # a pending token the new one supersedes
    crashed = rig.grant()
    rig.serve(crash_at=f"issuance.{point}")
    _dies(lambda: _issue(rig, crashed))
    rig.died_at_write_point()

    rig.serve()
    store = open_store(rig.store_url)
    try:
        pending = [t for t in store.tokens_of(CF) if t.state is TokenState.PENDING]
        assert len(pending) == 1  # the earlier one, or the new one that superseded it
        committed = point == "after_commit"
        found = store.get_authorisation(crashed)
        assert found is not None and (found.used_at is not None) is committed
        if committed:  # the answer was lost: the same request is refused, a new one succeeds
            _refused_as_used(lambda: _issue(rig, crashed))
            rig.grant()
        issued = _issue(rig, rig.authorisations[-1])
        _activate_and_prove(rig, issued.activation_code)
        check_invariants(store, rig.authorisations)
        assert [t for t in store.tokens_of(CF) if t.state is TokenState.PENDING] == []
    finally:
        store.close()
    rig.audit_intact()


@pytest.mark.parametrize("point", POINTS)
def test_activation_crash_leaves_the_activation_unused_or_the_token_with_its_seed(
    rig: Rig, point: str
) -> None:
    """Activation: the activation marked used, the token's seed written, device_activated:
    one commit; the derived seed is destroyed when the commit does not happen."""
    activation_code = rig.issue_with_code()
    rig.serve(crash_at=f"activation.{point}")
    phone = TokenApp()
    request = device_pb2.ActivateWithCodeRequest(
        activation_code=activation_code, device_public_key=phone.public_key
    )
    _dies(lambda: rig.device().ActivateWithCode(request, timeout=30))
    rig.died_at_write_point()

    rig.serve()
    store = open_store(rig.store_url)
    try:
        (activation,) = store.activations_of(CF)
        (token,) = store.tokens_of(CF)
        committed = point == "after_commit"
        assert (activation.used_at is not None) is committed
        assert (token.seed is not None) is committed
        if committed:  # the phone lost the HSM's point: it starts again with a new token
            _refused_as_used(lambda: rig.device().ActivateWithCode(request, timeout=30))
            activation_code = _issue(rig, rig.grant()).activation_code
        _activate_and_prove(rig, activation_code)
        check_invariants(store, rig.authorisations)
    finally:
        store.close()
    rig.audit_intact()
