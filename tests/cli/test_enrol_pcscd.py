"""`otphsm enrol …` end to end: the card in a reader of a real private pcscd (vpcd), the
station's CLI in process, the real server over mTLS; the phone then activates with what the
station handed out."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.card_fixtures import CARD_PIN
from support.cli_support import APP_PIN, CF, client, connection_args, run_cli
from support.pcsc_fixtures import InsertCard, WrappedCard
from support.service_fixtures import ServiceUnderTest

from otphsm.client import Client
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.card.vpcd import VpcdLink
from otphsm.simulators.token.grpc_gateway import GrpcDeviceGateway
from otphsm.simulators.token.mobile_app import AppStore, MobileApp
from otphsm.v1 import admin_pb2, admin_pb2_grpc, common_pb2

pytestmark = [pytest.mark.softhsm, pytest.mark.pcscd, pytest.mark.timeout(120)]

PHONE = "+393331234567"
WRONG_CARD_PIN = "99999999"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
INS_MSE = 0x22
ACTIVATION = re.compile(r"Activation code: (\d{6}-\d{6}-\d{6})")


class PulledOutWhileSigning(WrappedCard):
    """The citizen pulls the card out as the station starts the signature (MSE)."""

    def __init__(self, inner: CnsCard) -> None:
        super().__init__(inner)
        self.link: VpcdLink | None = None

    def process(self, apdu: bytes) -> bytes:
        if apdu[1] == INS_MSE and self.link is not None:
            self.link.remove()
        return super().process(apdu)


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The station writes activation-SERIAL.png into its working directory."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def device(service: ServiceUnderTest) -> Iterator[Client]:
    each = client(service, "device")
    yield each
    each.close()


@pytest.fixture
def admin(service: ServiceUnderTest) -> Iterator[tuple[Client, admin_pb2_grpc.AdminServiceStub]]:
    each = client(service, "admin")
    yield each, admin_pb2_grpc.AdminServiceStub(each.channel)
    each.close()


def enrol(service: ServiceUnderTest, *extra: str) -> list[str]:
    return ["enrol", *extra, "--pin-from-stdin", "--timeout", "5", *connection_args(service)]


def tokens_of(admin: tuple[Client, admin_pb2_grpc.AdminServiceStub]) -> list[common_pb2.Token]:
    caller, stub = admin
    request = admin_pb2.ListTokensRequest(codice_fiscale=CF)
    return list(caller.call(stub.ListTokens, request).tokens)


def activate(service: ServiceUnderTest, device: Client, tmp_path: Path, code: str) -> MobileApp:
    app = MobileApp(service.clock, AppStore(tmp_path / f"phone-{code[:6]}.json"))
    activated = app.activate_with_code(GrpcDeviceGateway(device), code, new_pin=APP_PIN)
    assert activated.proof.ok
    return app


def test_enrol_new_after_a_wrong_pin_hands_out_an_activation_code_and_qr(
    service: ServiceUnderTest,
    device: Client,
    cns_card_1024: CnsCard,
    insert_card: InsertCard,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    insert_card(cns_card_1024)
    png = tmp_path / "qr.png"
    run = run_cli(
        capsys, monkeypatch, [*enrol(service, "new", "--png", str(png))], [WRONG_CARD_PIN, CARD_PIN]
    )
    assert run.code == 0, run.err
    out = " ".join(run.out.split())
    assert "Wrong PIN: 2 tries left" in out
    assert f"Codice fiscale {CF}" in out and "Card 7430010024925855" in out
    assert f"Authorised: {CF} (MARIO ROSSI)" in out
    code = ACTIVATION.search(out)
    assert code, out
    assert "█" in run.out and png.read_bytes().startswith(PNG_MAGIC)
    assert png.stat().st_mode & 0o777 == 0o600
    assert CARD_PIN not in run.out + run.err and WRONG_CARD_PIN not in run.out + run.err
    app = activate(service, device, tmp_path, code.group(1))
    assert app.find().account == CF


def test_a_card_pulled_out_halfway_is_a_clear_error_and_creates_nothing(
    service: ServiceUnderTest,
    cns_card_1024: CnsCard,
    insert_card: InsertCard,
    admin: tuple[Client, admin_pb2_grpc.AdminServiceStub],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    card = PulledOutWhileSigning(cns_card_1024)
    card.link = insert_card(card).link
    run = run_cli(capsys, monkeypatch, enrol(service, "new"), [CARD_PIN])
    assert run.code == 3, (run.out, run.err)
    assert len(run.err.strip().splitlines()) == 1, run.err
    assert "removed" in run.err or "left" in run.err, run.err
    assert "Activation code" not in run.out
    assert any(a[1] == INS_MSE for a in card.apdus)  # it did get that far
    snapshot = service.snapshot()
    assert snapshot["tokens"] == [] and snapshot["authorisations"] == []
    assert snapshot["citizens"] == [] and snapshot["activations"] == []
    assert tokens_of(admin) == []


def test_three_wrong_pins_block_the_card_and_stop(
    service: ServiceUnderTest,
    cns_card_1024: CnsCard,
    insert_card: InsertCard,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    insert_card(cns_card_1024)
    run = run_cli(capsys, monkeypatch, enrol(service, "new"), [WRONG_CARD_PIN] * 3 + [CARD_PIN])
    assert run.code == 3 and "the PIN is blocked; unblock it with the PUK" in run.err
    out = " ".join(run.out.split())
    assert "2 tries left" in out and "1 try left (the last one before the card blocks)" in out
    assert service.snapshot()["authorisations"] == []


def test_no_card_in_the_reader_times_out_clearly(
    service: ServiceUnderTest,
    insert_card: InsertCard,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = run_cli(capsys, monkeypatch, [*enrol(service, "new"), "--timeout", "1"], [CARD_PIN])
    assert run.code == 3 and "no card was inserted" in run.err, run.err
    assert "Waiting for the citizen's card" in run.out


def test_readers_are_listed_with_their_card(
    cns_card_1024: CnsCard,
    insert_card: InsertCard,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inserted = insert_card(cns_card_1024)
    run = run_cli(capsys, monkeypatch, ["enrol", "readers"])
    assert run.code == 0
    assert re.search(rf"{inserted.reader}\s+card inserted", run.out), run.out
    assert re.search(r"Virtual PCD 00 01\s+empty", run.out), run.out


def test_a_temporary_secret_session_then_the_app_activates_with_it(
    service: ServiceUnderTest,
    device: Client,
    cns_card_1024: CnsCard,
    insert_card: InsertCard,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    insert_card(cns_card_1024)
    run = run_cli(
        capsys, monkeypatch, enrol(service, "new", "--temporary-secret"), [CARD_PIN, "24680"]
    )
    assert run.code == 0, run.err
    assert "Temporary-secret session open until" in " ".join(run.out.split())
    assert "24680" not in run.out and "Activation code" not in run.out
    app = MobileApp(service.clock, AppStore(tmp_path / "phone.json"))
    activated = app.activate_with_temporary_secret(
        GrpcDeviceGateway(device), CF, "24680", new_pin=APP_PIN
    )
    assert activated.proof.ok


def test_a_lost_phone_is_replaced_after_an_sms_code(
    service: ServiceUnderTest,
    device: Client,
    cns_card_1024: CnsCard,
    insert_card: InsertCard,
    admin: tuple[Client, admin_pb2_grpc.AdminServiceStub],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    insert_card(cns_card_1024)
    first = run_cli(capsys, monkeypatch, enrol(service, "new", "--phone", PHONE), [CARD_PIN])
    assert first.code == 0 and "Phone number recorded" in first.out
    assert len(list(tmp_path.glob("activation-MOB-*.png"))) == 1
    code = ACTIVATION.search(" ".join(first.out.split()))
    assert code
    lost = activate(service, device, tmp_path, code.group(1)).find().serial

    def sms_code() -> str:
        return service.sms_code(PHONE)

    replaced = run_cli(
        capsys,
        monkeypatch,
        enrol(service, "replace", "--sms", "--codice-fiscale", CF),
        [lambda: _wrong(sms_code()), sms_code],
    )
    assert replaced.code == 0, replaced.err
    out = " ".join(replaced.out.split())
    assert "wrong code: 2 tries before a wait" in out
    assert f"Authorised by SMS code: {CF}" in out and f"It replaces {lost}" in out
    new_code = ACTIVATION.search(out)
    assert new_code
    service.clock.advance(30)
    activate(service, device, tmp_path, new_code.group(1))
    states = {t.serial: t.state for t in tokens_of(admin)}
    assert states[lost] == common_pb2.TOKEN_STATE_REVOKED
    assert sorted(states.values()) == [
        common_pb2.TOKEN_STATE_ACTIVE,
        common_pb2.TOKEN_STATE_REVOKED,
    ]
    assert sms_code() not in replaced.out + replaced.err


def test_replace_with_a_fresh_card_authorisation(
    service: ServiceUnderTest,
    device: Client,
    cns_card_1024: CnsCard,
    insert_card: InsertCard,
    admin: tuple[Client, admin_pb2_grpc.AdminServiceStub],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    insert_card(cns_card_1024)
    first = run_cli(capsys, monkeypatch, enrol(service, "new"), [CARD_PIN])
    code = ACTIVATION.search(" ".join(first.out.split()))
    assert code
    lost = activate(service, device, tmp_path, code.group(1)).find().serial
    again = run_cli(capsys, monkeypatch, enrol(service, "replace", "--card"), [CARD_PIN])
    assert again.code == 0, again.err
    out = " ".join(again.out.split())
    new_code = ACTIVATION.search(out)
    assert f"It replaces {lost}" in out and new_code
    # until the new phone proves possession the old one still works
    states = {t.serial: t.state for t in tokens_of(admin)}
    assert states.pop(lost) == common_pb2.TOKEN_STATE_ACTIVE
    assert list(states.values()) == [common_pb2.TOKEN_STATE_PENDING]
    [new] = states
    service.clock.advance(30)
    replacement = activate(service, device, tmp_path, new_code.group(1))  # activates and proves
    assert replacement.find().serial == new
    assert {t.serial: t.state for t in tokens_of(admin)} == {
        lost: common_pb2.TOKEN_STATE_REVOKED,
        new: common_pb2.TOKEN_STATE_ACTIVE,
    }
    needs_cf = run_cli(capsys, monkeypatch, enrol(service, "replace", "--sms"))
    assert needs_cf.code == 2 and "--sms needs --codice-fiscale" in needs_cf.err


def test_compatibility_mode_hands_out_an_otpauth_qr(
    service: ServiceUnderTest,
    device: Client,
    cns_card_1024: CnsCard,
    insert_card: InsertCard,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    insert_card(cns_card_1024)
    png = tmp_path / "compat.png"
    run = run_cli(
        capsys,
        monkeypatch,
        enrol(service, "new", "--otpauth", "--show-uri", "--png", str(png)),
        [CARD_PIN],
    )
    assert run.code == 0, run.err
    uri = re.search(r"otpauth://totp/\S+", run.out)
    assert uri and png.read_bytes().startswith(PNG_MAGIC)
    state = ["--state", str(tmp_path / "app.json"), "--pin-from-stdin"]
    added = run_cli(capsys, monkeypatch, ["token", "add-uri", uri.group(0), *state], [APP_PIN])
    assert added.code == 0 and f"otphsm:{CF}" in added.out
    # the seed in the QR is the one in the HSM: the app's code proves possession
    app = MobileApp(service.clock, AppStore(tmp_path / "app.json"))
    app.unlock(APP_PIN)
    serial = re.search(r"Token (MOB-[0-9A-F]+)", run.out)
    assert serial
    proof = GrpcDeviceGateway(device).prove_possession(serial.group(1), app.code().code)
    assert proof.ok


def test_otpauth_enrolment_ends_active_with_the_first_code_typed_at_the_station(
    service: ServiceUnderTest,
    admin: tuple[Client, admin_pb2_grpc.AdminServiceStub],
    cns_card_1024: CnsCard,
    insert_card: InsertCard,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An ordinary authenticator app cannot call ProvePossession: the station asks for the
    code it shows after the scan (here pyotp, from the URI the station printed, at the
    service's time); a mistyped one is asked again; the token ends ACTIVE."""
    import pyotp

    insert_card(cns_card_1024)
    printed: list[str] = []

    def code_from_the_printed_uri() -> str:
        printed.append(capsys.readouterr().out)
        uri = re.search(r"otpauth://totp/\S+", "".join(printed))
        assert uri, printed
        return str(pyotp.parse_uri(uri.group(0)).at(service.clock.now()))

    run = run_cli(
        capsys,
        monkeypatch,
        enrol(service, "new", "--otpauth", "--show-uri"),
        [CARD_PIN, lambda: _wrong(code_from_the_printed_uri()), code_from_the_printed_uri],
    )
    out = "".join(printed) + run.out
    assert run.code == 0, run.err
    assert "Not accepted (wrong_code): type the code the app shows now" in out
    assert "First code accepted: the token is active." in out
    [token] = tokens_of(admin)
    assert token.state == common_pb2.TOKEN_STATE_ACTIVE


def test_otpauth_with_a_wrong_code_given_stays_pending_and_exits_1(
    service: ServiceUnderTest,
    admin: tuple[Client, admin_pb2_grpc.AdminServiceStub],
    cns_card_1024: CnsCard,
    insert_card: InsertCard,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    insert_card(cns_card_1024)
    argv = enrol(service, "new", "--otpauth", "--code", "000000")
    run = run_cli(capsys, monkeypatch, argv, [CARD_PIN])
    assert run.code == 1, run.err
    assert "The first code was not accepted (wrong_code)" in run.out
    [token] = tokens_of(admin)
    assert token.state == common_pb2.TOKEN_STATE_PENDING
    misused = run_cli(capsys, monkeypatch, enrol(service, "new", "--code", "123456"), [CARD_PIN])
    assert misused.code == 2 and "--code goes with --otpauth" in misused.err


def _wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"
