"""The emulated phone against the real server (gRPC, mTLS): secure activation by code and by
temporary secret, a clock 40 s fast (drift learned), one 5 minutes off (resync), a second
activation replacing the first, `otphsm token activate/code` through the service, and a login
code pushed to the phone's inbox (`otphsm token inbox`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli_support import APP_PIN, CF, client, connection_args, phone_skew, run_cli
from support.factor_fixtures import StartService, code_in, oob_stub, push_outbox
from support.service_fixtures import ServiceUnderTest

from otphsm.client import Client, ServiceRefused
from otphsm.client.station import Station
from otphsm.core.records import ActivationMethod
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.token.grpc_gateway import GrpcDeviceGateway
from otphsm.simulators.token.mobile_app import AppStore, MobileApp
from otphsm.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    common_pb2,
    oob_pb2,
    validation_pb2,
    validation_pb2_grpc,
)

pytestmark = pytest.mark.softhsm

PERIOD = 30
OK = common_pb2.VERIFY_RESULT_OK
WRONG = common_pb2.VERIFY_RESULT_WRONG_CODE


class Counter:
    """The station, the phone's gateway, a relying party and an operator, over mTLS."""

    def __init__(self, service: ServiceUnderTest, card: CnsCard) -> None:
        self.service = service
        self.card = card
        self.clients: list[Client] = [
            client(service, role) for role in ("enroller", "device", "verifier", "admin")
        ]
        enroller, device, verifier, admin = self.clients
        self.station = Station(enroller)
        self.gateway = GrpcDeviceGateway(device)
        self.verifier = verifier
        self.validation = validation_pb2_grpc.ValidationServiceStub(verifier.channel)
        self.operator = admin
        self.admin = admin_pb2_grpc.AdminServiceStub(admin.channel)

    def issue(self, method: ActivationMethod = ActivationMethod.CODE, secret: str = "") -> str:
        authorised = self.service.authorise(self.card)
        issued = self.station.issue_token(
            authorised.authorisation_id, method, temporary_secret=secret
        )
        return issued.activation_code

    def verify(self, serial: str, code: str) -> common_pb2.VerifyResponse:
        request = validation_pb2.VerifyRequest(serial=serial, code=code)
        return self.verifier.call(self.validation.Verify, request)

    def token(self, serial: str) -> common_pb2.Token:
        request = admin_pb2.TokenRequest(serial=serial)
        return self.operator.call(self.admin.GetToken, request).token

    def close(self) -> None:
        for each in self.clients:
            each.close()


@pytest.fixture
def counter(service: ServiceUnderTest, cns_card_1024: CnsCard) -> Iterator[Counter]:
    desk = Counter(service, cns_card_1024)
    yield desk
    desk.close()


def phone(service: ServiceUnderTest, tmp_path: Path, name: str = "phone") -> MobileApp:
    """A phone whose true time is the service's clock (its own clock: plus its skew)."""
    return MobileApp(service.clock, AppStore(tmp_path / f"{name}.json"))


def at_phase(service: ServiceUnderTest, phase: int) -> None:
    """Move the service's clock forward to the next moment `phase` seconds into a step."""
    now = service.clock.now()
    target = (int(now) // PERIOD) * PERIOD + phase
    while target <= now:
        target += PERIOD
    service.clock.set(target)


def test_secure_activation_by_code_proves_possession_and_logs_in(
    service: ServiceUnderTest, counter: Counter, tmp_path: Path
) -> None:
    app = phone(service, tmp_path)
    activated = app.activate_with_code(counter.gateway, counter.issue(), new_pin=APP_PIN)
    account = activated.account
    assert activated.proof.ok and account.confirmed and not activated.replaced
    assert (account.issuer, account.account, len(account.secret)) == ("otphsm", CF, 32)
    assert counter.token(account.serial).state == common_pb2.TOKEN_STATE_ACTIVE
    service.clock.advance(PERIOD)
    assert counter.verify(account.serial, app.code().code).result == OK


def test_activation_by_temporary_secret_and_codice_fiscale(
    service: ServiceUnderTest, counter: Counter, tmp_path: Path
) -> None:
    counter.issue(ActivationMethod.TEMPORARY_SECRET, "24680")
    app = phone(service, tmp_path)
    with pytest.raises(ServiceRefused, match="wrong temporary secret: 2 tries") as wrong:
        app.activate_with_temporary_secret(counter.gateway, CF, "13579", new_pin=APP_PIN)
    assert wrong.value.code == "FAILED_PRECONDITION" and app.accounts == []
    assert not app.has_pin
    activated = app.activate_with_temporary_secret(counter.gateway, CF, "24680", new_pin=APP_PIN)
    assert activated.proof.ok
    assert counter.token(activated.account.serial).state == common_pb2.TOKEN_STATE_ACTIVE


def test_a_phone_40_seconds_fast_logs_in_and_the_service_learns_its_drift(
    service: ServiceUnderTest, counter: Counter, tmp_path: Path
) -> None:
    app = phone(service, tmp_path)
    app.configure(skew=40)
    at_phase(service, 5)  # 40 s ahead = one step ahead here: inside the ±1 step window
    activated = app.activate_with_code(counter.gateway, counter.issue(), new_pin=APP_PIN)
    assert activated.proof.ok
    serial = activated.account.serial
    # At phases 20..29 the phone is two steps ahead: outside the ±1 window, accepted only
    # because the service learned the drift from the first code. (Each login is at a later
    # step of the phone's clock: the same code twice would rightly be a replay.)
    base = (int(service.clock.now()) // PERIOD + 1) * PERIOD
    for steps, phase in ((0, 25), (1, 29), (2, 20), (4, 0), (5, 10), (6, 19)):
        service.clock.set(base + steps * PERIOD + phase)
        response = counter.verify(serial, app.code().code)
        assert response.result == OK, (steps, phase, response)
    assert counter.token(serial).failures == 0


def test_at_first_contact_a_phone_40_seconds_fast_is_accepted_at_any_moment(
    service: ServiceUnderTest, counter: Counter, tmp_path: Path
) -> None:
    """Before any drift is learned, 40 s fast at phase 25 is two steps ahead: proof of
    possession allows ±2 steps once, and the drift learned then carries the next logins."""
    app = phone(service, tmp_path)
    app.configure(skew=40)
    at_phase(service, 25)
    activated = app.activate_with_code(counter.gateway, counter.issue(), new_pin=APP_PIN)
    assert activated.proof.result.value == "ok" and activated.account.confirmed
    serial = activated.account.serial
    assert counter.token(serial).state == common_pb2.TOKEN_STATE_ACTIVE
    for phase in (5, 15, 25):
        service.clock.advance(PERIOD)  # each login a step after the last: none is a replay
        at_phase(service, phase)
        assert counter.verify(serial, app.code().code).result == OK


def test_a_phone_5_minutes_off_needs_a_resync(
    service: ServiceUnderTest, counter: Counter, tmp_path: Path
) -> None:
    app = phone(service, tmp_path)
    activated = app.activate_with_code(counter.gateway, counter.issue(), new_pin=APP_PIN)
    serial = activated.account.serial
    app.configure(skew=300)  # the phone's clock jumps 5 minutes ahead
    for _ in range(2):
        service.clock.advance(PERIOD)
        assert counter.verify(serial, app.code().code).result == WRONG
    assert counter.token(serial).failures == 2
    service.clock.advance(PERIOD)
    first = app.code().code
    service.clock.advance(PERIOD)
    second = app.code().code
    resync = validation_pb2.ResyncRequest(serial=serial, first_code=first, second_code=second)
    assert counter.verifier.call(counter.validation.Resync, resync).result == OK
    assert counter.token(serial).failures == 0
    for _ in range(3):
        service.clock.advance(PERIOD)
        assert counter.verify(serial, app.code().code).result == OK


def test_a_second_activation_of_the_same_account_replaces_the_first(
    service: ServiceUnderTest, counter: Counter, tmp_path: Path
) -> None:
    app = phone(service, tmp_path)
    first = app.activate_with_code(counter.gateway, counter.issue(), new_pin=APP_PIN).account
    service.clock.advance(PERIOD)
    second = app.activate_with_code(counter.gateway, counter.issue())
    assert second.replaced and second.proof.ok
    assert [a.serial for a in app.accounts] == [second.account.serial] != [first.serial]
    assert counter.token(first.serial).state == common_pb2.TOKEN_STATE_REVOKED
    assert counter.token(second.account.serial).replaces_serial == first.serial
    service.clock.advance(PERIOD)
    assert counter.verify(second.account.serial, app.code().code).result == OK


def test_the_token_cli_activates_through_the_service(
    service: ServiceUnderTest,
    counter: Counter,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code = counter.issue()
    state = ["--state", str(tmp_path / "phone.json")]
    activated = run_cli(
        capsys,
        monkeypatch,
        [
            "token",
            "activate",
            "--code",
            code,
            *state,
            "--pin-from-stdin",
            "--skew",
            phone_skew(service),
            *connection_args(service),
        ],
        [APP_PIN],
    )
    assert activated.code == 0, activated.err
    assert "First code accepted" in activated.out
    serial = re.search(r"token (MOB-[0-9A-F]+)", activated.out)
    assert serial, activated.out
    service.clock.advance(PERIOD)
    shown = run_cli(capsys, monkeypatch, ["token", "code", *state, "--skew", phone_skew(service)])
    found = re.search(rf"otphsm:{CF}\s+(\d{{6}})", shown.out)
    assert found, shown.out
    assert counter.verify(serial.group(1), found.group(1)).result == OK
    for output in (activated, shown):
        assert code not in output.out + output.err and APP_PIN not in output.out + output.err


def test_the_token_cli_says_when_the_service_cannot_be_reached(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    service: ServiceUnderTest,
) -> None:
    args = [
        "token",
        "activate",
        "--code",
        "000000-000000-000000",
        "--state",
        str(tmp_path / "p.json"),
        "--pin-from-stdin",
        "--pki",
        str(service.pki.directory),
        "--server",
        "localhost:1",
        "--rpc-timeout",
        "3",
    ]
    down = run_cli(capsys, monkeypatch, args, [APP_PIN])
    assert down.code == 5 and "cannot be reached" in down.err, down.err
    typo = run_cli(capsys, monkeypatch, [*args[:3], "000000-000000-000001", *args[4:]], [APP_PIN])
    assert typo.code == 2 and "check digit" in typo.err


def test_a_pushed_login_code_reaches_the_phones_inbox_and_logs_in(
    start_factor_service: StartService,
    cns_card_1024: CnsCard,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    service = start_factor_service()  # its push outbox in tmp_path
    counter = Counter(service, cns_card_1024)
    request.addfinalizer(counter.close)
    app = phone(service, tmp_path)
    activated = app.activate_with_code(counter.gateway, counter.issue(), new_pin=APP_PIN)
    serial = activated.account.serial
    portal = oob_stub(service)
    push = oob_pb2.DELIVERY_CHANNEL_PUSH
    for _ in range(2):  # the second request supersedes the first code
        sent = portal.RequestLoginCode(
            oob_pb2.RequestLoginCodeRequest(codice_fiscale=CF, channel=push)
        )
        assert (sent.channel, sent.device_serial) == (push, serial)
        service.clock.advance(5)
    inbox = [
        "token",
        "inbox",
        "--state",
        str(tmp_path / "phone.json"),
        "--pin-from-stdin",
        "--push-outbox",
        str(push_outbox(service).directory),
    ]
    shown = run_cli(capsys, monkeypatch, inbox, [APP_PIN])
    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    assert len(lines) == 2 and all(f"  {serial}  " in line for line in lines), shown.out
    newest, older = (code_in(line) for line in lines)

    def login(code: str) -> int:
        typed = oob_pb2.VerifyLoginCodeRequest(codice_fiscale=CF, code=code)
        result: int = portal.VerifyLoginCode(typed).result
        return result

    if older != newest:
        assert login(older) == WRONG  # superseded: the inbox shows the one that works first
    assert login(newest) == OK
