"""Crash consistency: a real `otphsm serve` ends (`os._exit`, as a power cut would) at each
named write point of each multi-write use case, on SQLite and on PostgreSQL; the test starts
it again and checks that the database holds all of the use case or none of it, that the audit
chain verifies, and that the client's retry succeeds.

Write points (`App.transaction`): `<use case>.before_commit` (every write made, none
committed) and `<use case>.after_commit` (committed, the answer not yet sent). The hook is
`otphsm.simulators.crash`, switched on by the environment of the serve process only.
"""

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
from support.app_fixtures import OPERATOR
from support.card_fixtures import MARIO_ROSSI
from support.fobs import PSK, batch
from support.service_devices import TokenApp
from support.service_fixtures import service_config
from support.store_records import citizen

from otphsm.core.app import oob
from otphsm.core.app.activation import activate_with_code
from otphsm.core.app.context import Actor, App, Role
from otphsm.core.app.enrolment import grant_authorisation
from otphsm.core.app.grid import issue_grid_card
from otphsm.core.app.issuance import issue_token
from otphsm.core.app.validation import prove_possession
from otphsm.core.ports import Store
from otphsm.core.records import ActivationMethod, Authorisation, GridCardState, OobPurpose
from otphsm.core.tokens import OtpMode, OtpParameters, TokenState
from otphsm.pskc import import_pskc
from otphsm.service.assembly import assemble
from otphsm.service.config import load_config
from otphsm.service.devpki import DevPki
from otphsm.simulators.crash import EXIT_STATUS, crash_env
from otphsm.simulators.deployment import ServerProcess, server_env, start_serve, write_config
from otphsm.simulators.token.mobile_app import derive_seed
from otphsm.simulators.token.pskc_factory import pskc_document
from otphsm.store import open_store
from otphsm.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    common_pb2,
    device_pb2,
    device_pb2_grpc,
    enrolment_pb2,
    enrolment_pb2_grpc,
    grid_pb2,
    grid_pb2_grpc,
)

pytestmark = [pytest.mark.softhsm, pytest.mark.slow, pytest.mark.timeout(120)]

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


@STORAGES
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
    rig.check_no_orphan_seed(crashed_before_commit=point == "before_commit")
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


@STORAGES
@pytest.mark.parametrize("point", POINTS)
def test_grid_card_crash_leaves_one_active_card_and_the_authorisation_consistent(
    rig: Rig, point: str
) -> None:
    """Security Card replacement: authorisation consumed, the old card revoked, the new card,
    grid_card_revoked and grid_card_issued: one commit (the old key destroyed after it)."""
    with in_process(rig.config) as app:
        app.store.upsert_citizen(citizen(CF))
        issue_grid_card(app, TEST_ACTOR, rig.card_authorisation(app))
        crashed = rig.card_authorisation(app)
    request = grid_pb2.IssueGridCardRequest(authorisation_id=crashed)
    rig.serve(crash_at=f"grid_card_issue.{point}")
    _dies(lambda: rig.grid().IssueGridCard(request, timeout=30))
    rig.died_at_write_point()

    rig.serve()
    rig.check_no_orphan_seed(crashed_before_commit=point == "before_commit")
    committed = point == "after_commit"
    with open_store_at(rig.store_url) as store:
        found = store.get_authorisation(crashed)
        assert found is not None and (found.used_at is not None) is committed
        cards = store.grid_cards_of(CF)
        assert len(cards) == (2 if committed else 1)
        assert [c.state for c in cards].count(GridCardState.ACTIVE) == 1
        audited = [e.action for e in store.audit_entries()]
        assert audited.count("grid_card_issued") == len(cards)
        assert audited.count("grid_card_revoked") == len(cards) - 1
    if committed:
        _refused_as_used(lambda: rig.grid().IssueGridCard(request, timeout=30))
        with in_process(rig.config) as app:
            request = grid_pb2.IssueGridCardRequest(authorisation_id=rig.card_authorisation(app))
    rig.grid().IssueGridCard(request, timeout=30)
    with open_store_at(rig.store_url) as store:
        states = [c.state for c in store.grid_cards_of(CF)]
        assert states.count(GridCardState.ACTIVE) == 1
    rig.audit_intact()


@pytest.mark.parametrize("point", POINTS)
def test_fob_assignment_crash_leaves_the_fob_in_inventory_or_assigned_and_proved(
    rig: Rig, point: str
) -> None:
    """Fob assignment with its first code: authorisation consumed, the fob assigned,
    fob_assigned, the first code's proof (the fob ACTIVE, token_active): one commit."""
    (fob,) = batch(1, first=7001)
    with in_process(rig.config) as app:
        import_pskc(app, OPERATOR, pskc_document([fob], psk=PSK), psk=PSK)
    crashed = rig.grant()
    request = enrolment_pb2.AssignFobRequest(
        authorisation_id=crashed, serial=fob.serial, first_code=fob.press()
    )
    rig.serve(crash_at=f"fob_assignment.{point}")
    _dies(lambda: rig.station().AssignFob(request, timeout=30))
    rig.died_at_write_point()

    rig.serve()
    committed = point == "after_commit"
    with open_store_at(rig.store_url) as store:
        found = store.get_authorisation(crashed)
        assert found is not None and (found.used_at is not None) is committed
        token = store.get_token(fob.serial)
        assert token is not None
        expected = (CF, TokenState.ACTIVE) if committed else ("", TokenState.SUSPENDED)
        assert (token.codice_fiscale, token.state) == expected
        audited = {(e.action, e.subject) for e in store.audit_entries()}
        assert (("fob_assigned", fob.serial) in audited) is committed
        assert (("token_active", fob.serial) in audited) is committed
    if committed:  # the answer was lost: the fob is the citizen's, active
        _refused_as_used(lambda: rig.station().AssignFob(request, timeout=30))
    else:
        answer = rig.station().AssignFob(request, timeout=30)
        assert answer.proof.result == common_pb2.VERIFY_RESULT_OK
    rig.audit_intact()


@pytest.mark.parametrize("point", POINTS)
def test_sms_replacement_crash_uses_the_code_only_with_the_authorisation_granted(
    rig: Rig, point: str
) -> None:
    """SMS replacement: the code marked used, the authorisation granted and audited: one
    commit."""
    with in_process(rig.config) as app:
        _, text = oob.new_code(app, CF, OobPurpose.DEVICE_REPLACEMENT)
    request = enrolment_pb2.AuthoriseWithSmsCodeRequest(codice_fiscale=CF, code=text)
    rig.serve(crash_at=f"sms_replacement.{point}")
    _dies(lambda: rig.station().AuthoriseWithSmsCode(request, timeout=30))
    rig.died_at_write_point()

    rig.serve()
    committed = point == "after_commit"
    with open_store_at(rig.store_url) as store:
        code = store.current_oob_code(CF, OobPurpose.DEVICE_REPLACEMENT)
        assert code is not None and (code.used_at is not None) is committed
        granted = [e for e in store.audit_entries() if e.action == "authorised"]
        assert len(granted) == int(committed)
        for entry in granted:
            assert store.get_authorisation(str(entry.details["authorisation"])) is not None
    if committed:  # the code is spent: a new one is asked for
        _refused_as_used(lambda: rig.station().AuthoriseWithSmsCode(request, timeout=30))
        with in_process(rig.config) as app:
            _, text = oob.new_code(app, CF, OobPurpose.DEVICE_REPLACEMENT)
        request = enrolment_pb2.AuthoriseWithSmsCodeRequest(codice_fiscale=CF, code=text)
    assert rig.station().AuthoriseWithSmsCode(request, timeout=30).authorisation_id
    rig.audit_intact()


@STORAGES
@pytest.mark.parametrize("point", POINTS)
def test_pskc_import_crash_leaves_the_file_wholly_in_or_wholly_out(rig: Rig, point: str) -> None:
    """A PSKC file: every fob and fobs_imported: one commit."""
    fobs = batch(5, first=8001)
    request = admin_pb2.ImportPskcRequest(pskc=pskc_document(fobs, psk=PSK), pre_shared_key=PSK)
    rig.serve(crash_at=f"fob_import.{point}")
    _dies(lambda: rig.admin().ImportPskc(request, timeout=30))
    rig.died_at_write_point()

    rig.serve()
    rig.check_no_orphan_seed(crashed_before_commit=point == "before_commit")
    committed = point == "after_commit"
    with open_store_at(rig.store_url) as store:
        found = [store.get_token(f.serial) is not None for f in fobs]
        assert found == [committed] * len(fobs)
        audited = [e.action for e in store.audit_entries()]
        assert audited.count("fobs_imported") == int(committed)
    if committed:  # the file is in: importing it again is refused, nothing doubles
        with pytest.raises(grpc.RpcError) as refused:
            rig.admin().ImportPskc(request, timeout=30)
        assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    else:
        assert len(rig.admin().ImportPskc(request, timeout=30).tokens) == len(fobs)
    rig.audit_intact()


def _activated_phone(rig: Rig) -> TokenApp:
    """A phone issued and activated in process, its token still PENDING."""
    activation_code = rig.issue_with_code()
    phone = TokenApp()
    with in_process(rig.config) as app:
        device = activate_with_code(app, DEVICE, activation_code, phone.public_key)
    phone.seed = derive_seed(phone.key, device.server_public_point)
    phone.serial = device.token.serial
    return phone


@pytest.mark.parametrize("point", POINTS)
def test_proof_crash_turns_the_new_phone_active_only_with_the_old_one_revoked(
    rig: Rig, point: str
) -> None:
    """Proof of possession: the new phone ACTIVE and the citizen's old phone REVOKED (one
    conditional write of both), token_active and token_revoked: one commit."""
    old = _activated_phone(rig)
    with in_process(rig.config) as app:
        assert prove_possession(app, DEVICE, old.serial, old.counter_code(0)).ok
    new = _activated_phone(rig)
    request = device_pb2.ProvePossessionRequest(serial=new.serial, code=new.counter_code(0))
    rig.serve(crash_at=f"proof_of_possession.{point}")
    _dies(lambda: rig.device().ProvePossession(request, timeout=30))
    rig.died_at_write_point()

    rig.serve()
    committed = point == "after_commit"
    with open_store_at(rig.store_url) as store:
        states = [store.get_token(s) for s in (old.serial, new.serial)]
        expected = (
            [TokenState.REVOKED, TokenState.ACTIVE]
            if committed
            else [TokenState.ACTIVE, TokenState.PENDING]
        )
        assert [t.state if t else None for t in states] == expected
        audited = {(e.action, e.subject) for e in store.audit_entries()}
        assert (("token_active", new.serial) in audited) is committed
        assert (("token_revoked", old.serial) in audited) is committed
        check_invariants(store, rig.authorisations)
    again = rig.device().ProvePossession(request, timeout=30).result
    assert again == (
        common_pb2.VERIFY_RESULT_REPLAYED if committed else common_pb2.VERIFY_RESULT_OK
    )
    rig.audit_intact()
