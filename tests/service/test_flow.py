"""End to end over gRPC with mTLS: card-authorised enrolment → secure activation → proof of
possession → verify → replay refused → lockout and release → replacement → resync → revoke.
"""

from __future__ import annotations

import base64
import io
import subprocess
import urllib.parse
from pathlib import Path

import grpc
import pyotp
import pytest
from support.card_fixtures import CARD_PIN, MARIO_ROSSI
from support.factor_fixtures import assert_nowhere, observable_text
from support.pcsc_fixtures import InsertCard
from support.recorded_calls import RecordedCalls, assert_in_no_bytes
from support.requirements import require_tool
from support.server_models import each_server_model, on_each_server_model  # noqa: F401
from support.service_devices import TokenApp
from support.service_fixtures import ServiceUnderTest

from otphsm.core.app.issuance import otpauth_uri_for
from otphsm.core.tokens import OtpParameters
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.v1 import admin_pb2, common_pb2, device_pb2, enrolment_pb2, validation_pb2

pytestmark = pytest.mark.softhsm

PHONE = "+393331234567"
OK = common_pb2.VERIFY_RESULT_OK
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TEMPORARY_SECRET = "97531"
"""Above 65535: no port number in a log line can look like it."""

Stubs = ServiceUnderTest | RecordedCalls
"""Anything that hands out the service's stubs."""


def other(code: str) -> str:
    """A wrong code of the same shape."""
    return "0" * len(code) if code != "0" * len(code) else "1" * len(code)


def verify(service: Stubs, serial: str, code: str) -> common_pb2.VerifyResponse:
    response: common_pb2.VerifyResponse = service.validation().Verify(
        validation_pb2.VerifyRequest(serial=serial, code=code)
    )
    return response


def token_state(service: Stubs, serial: str) -> int:
    state: int = service.admin().GetToken(admin_pb2.TokenRequest(serial=serial)).token.state
    return state


def stored_bytes(service: ServiceUnderTest) -> list[bytes]:
    """Every binary cell of every table."""
    cells = [cell for rows in service.snapshot().values() for row in rows for cell in row]
    return [bytes(cell) for cell in cells if isinstance(cell, bytes | bytearray | memoryview)]


def test_the_whole_life_of_a_mobile_token(
    any_store_service: ServiceUnderTest,
    cns_card_1024: CnsCard,
    insert_card: InsertCard,
    captured_logs: io.StringIO,
) -> None:
    service = any_store_service
    calls = RecordedCalls(service)  # every response and error of the flow, for the grep below
    clock = service.clock
    cf = MARIO_ROSSI.codice_fiscale

    # card-authorised enrolment: the station reads the card through a real pcscd (vpcd)
    inserted = insert_card(cns_card_1024)
    with inserted.connect() as reader:
        authorised = calls.authorise(cns_card_1024, transport=reader)
    assert authorised.citizen.codice_fiscale == cf
    citizen = authorised.citizen
    assert (citizen.given_name.upper(), citizen.surname.upper()) == ("MARIO", "ROSSI")
    assert (citizen.birth_date, citizen.sex, citizen.birth_place) == ("1980-01-01", "M", "L378")

    # a token with an 18-digit activation code and its QR
    issued = calls.enrolment().IssueToken(
        enrolment_pb2.IssueTokenRequest(
            authorisation_id=authorised.authorisation_id,
            method=enrolment_pb2.ACTIVATION_METHOD_CODE,
        )
    )
    digits = issued.activation_code.replace("-", "")
    assert len(digits) == 18 and digits.isdigit()
    assert issued.qr_png.startswith(PNG_MAGIC) and "█" in issued.qr_text
    assert issued.otpauth_uri == ""
    assert issued.token.state == common_pb2.TOKEN_STATE_PENDING
    serial = issued.token.serial

    # secure activation: the device and the HSM derive the same seed; none travels
    phone = TokenApp()
    activated = calls.device().ActivateWithCode(
        device_pb2.ActivateWithCodeRequest(
            activation_code=issued.activation_code, device_public_key=phone.public_key
        )
    )
    phone.complete(activated)
    assert activated.serial == serial and len(activated.server_public_key) == 65
    assert phone.seed not in activated.SerializeToString()
    assert verify(calls, serial, phone.code(clock.now())).result == (
        common_pb2.VERIFY_RESULT_NOT_ACTIVE
    )

    # proof of possession turns it active
    proved = calls.device().ProvePossession(
        device_pb2.ProvePossessionRequest(serial=serial, code=phone.code(clock.now()))
    )
    assert proved.result == OK
    assert token_state(calls, serial) == common_pb2.TOKEN_STATE_ACTIVE

    # verify, then the same code again is a replay
    clock.advance(30)
    code = phone.code(clock.now())
    assert verify(calls, serial, code).result == OK
    replayed = verify(calls, serial, code)
    assert replayed.result == common_pb2.VERIFY_RESULT_REPLAYED  # counts as no failure

    # three failures lock it; while locked even the right code is refused
    wrong = other(code)
    for _ in range(2):
        assert verify(calls, serial, wrong).result == common_pb2.VERIFY_RESULT_WRONG_CODE
    third = verify(calls, serial, wrong)
    assert third.result == common_pb2.VERIFY_RESULT_WRONG_CODE and third.retry_after_seconds == 60
    clock.advance(30)
    locked = verify(calls, serial, phone.code(clock.now()))
    assert locked.result == common_pb2.VERIFY_RESULT_LOCKED
    assert 0 < locked.retry_after_seconds <= 30

    # an operator releases it
    unlocked = calls.admin().Unlock(admin_pb2.TokenRequest(serial=serial))
    assert unlocked.token.failures == 0 and unlocked.token.locked_until == 0
    assert verify(calls, serial, phone.code(clock.now())).result == OK

    # the citizen tests the device, by serial and then by codice fiscale
    clock.advance(30)
    tested = calls.validation().TestDevice(
        validation_pb2.TestDeviceRequest(serial=serial, code=phone.code(clock.now()))
    )
    assert tested.result == OK
    clock.advance(30)
    by_cf = calls.validation().Verify(
        validation_pb2.VerifyRequest(codice_fiscale=cf, code=phone.code(clock.now()))
    )
    assert (by_cf.result, by_cf.serial) == (OK, serial)

    # lost phone: replacement after an SMS code (the citizen mistypes it once); the new phone
    # activates with a temporary secret (mistyped once too); the old device is revoked once
    # the new one proves possession
    station = calls.enrolment()
    station.SetPhoneNumber(
        enrolment_pb2.SetPhoneNumberRequest(codice_fiscale=cf, phone_number=PHONE)
    )
    station.SendReplacementCode(enrolment_pb2.SendReplacementCodeRequest(codice_fiscale=cf))
    sms_code = service.sms_code(PHONE)
    with pytest.raises(grpc.RpcError) as wrong_sms:
        station.AuthoriseWithSmsCode(
            enrolment_pb2.AuthoriseWithSmsCodeRequest(codice_fiscale=cf, code=other(sms_code))
        )
    assert wrong_sms.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "wrong code" in wrong_sms.value.details()
    by_sms = station.AuthoriseWithSmsCode(
        enrolment_pb2.AuthoriseWithSmsCodeRequest(codice_fiscale=cf, code=sms_code)
    )
    reissued = station.IssueToken(
        enrolment_pb2.IssueTokenRequest(
            authorisation_id=by_sms.authorisation_id,
            method=enrolment_pb2.ACTIVATION_METHOD_TEMPORARY_SECRET,
            temporary_secret=TEMPORARY_SECRET,
        )
    )
    assert reissued.token.replaces_serial == serial
    assert reissued.activation_code == "" and reissued.qr_png == b""
    new_phone = TokenApp()

    def activate_new_phone(secret: str) -> device_pb2.ActivationResponse:
        response: device_pb2.ActivationResponse = calls.device().ActivateWithTemporarySecret(
            device_pb2.ActivateWithTemporarySecretRequest(
                codice_fiscale=cf, temporary_secret=secret, device_public_key=new_phone.public_key
            )
        )
        return response

    with pytest.raises(grpc.RpcError) as wrong_secret:
        activate_new_phone(other(TEMPORARY_SECRET))
    assert wrong_secret.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "wrong temporary secret" in wrong_secret.value.details()
    new_phone.complete(activate_new_phone(TEMPORARY_SECRET))
    assert new_phone.serial == reissued.token.serial
    assert token_state(calls, serial) == common_pb2.TOKEN_STATE_ACTIVE
    clock.advance(30)
    proof = calls.device().ProvePossession(
        device_pb2.ProvePossessionRequest(serial=new_phone.serial, code=new_phone.code(clock.now()))
    )
    assert proof.result == OK
    assert token_state(calls, serial) == common_pb2.TOKEN_STATE_REVOKED
    clock.advance(30)
    assert verify(calls, serial, phone.code(clock.now())).result == (
        common_pb2.VERIFY_RESULT_REVOKED
    )

    # the new phone's clock runs 5 minutes fast: beyond the window until a resync
    skew = 300
    clock.advance(30)
    assert verify(calls, new_phone.serial, new_phone.code(clock.now() + skew)).result == (
        common_pb2.VERIFY_RESULT_WRONG_CODE
    )
    step = new_phone.period
    resynced = calls.validation().Resync(
        validation_pb2.ResyncRequest(
            serial=new_phone.serial,
            first_code=new_phone.code(clock.now() + skew),
            second_code=new_phone.code(clock.now() + skew + step),
        )
    )
    assert resynced.result == OK
    clock.advance(2 * step)
    assert verify(calls, new_phone.serial, new_phone.code(clock.now() + skew)).result == OK

    # revoke: every later code is refused as revoked
    revoked = calls.admin().Revoke(admin_pb2.TokenRequest(serial=new_phone.serial))
    assert revoked.token.state == common_pb2.TOKEN_STATE_REVOKED
    clock.advance(30)
    assert verify(calls, new_phone.serial, new_phone.code(clock.now() + skew)).result == (
        common_pb2.VERIFY_RESULT_REVOKED
    )

    listed = calls.admin().ListTokens(admin_pb2.ListTokensRequest(codice_fiscale=cf)).tokens
    assert {t.serial: t.state for t in listed} == {
        serial: common_pb2.TOKEN_STATE_REVOKED,
        new_phone.serial: common_pb2.TOKEN_STATE_REVOKED,
    }
    assert all(t.kind == common_pb2.TOKEN_KIND_MOBILE and t.last_used_at for t in listed)

    audit = calls.admin().VerifyAudit(admin_pb2.VerifyAuditRequest())
    assert audit.intact and audit.entries >= 10

    # No secret used on the way reached the logs, the audit chain, the metrics, the errors
    # callers saw (details and trailing metadata), the database, or any response but the one
    # that handed the activation code out.
    assert '"rpc": "/otphsm.v1.ValidationService/Verify"' in captured_logs.getvalue()
    assert calls.errors == [wrong_sms.value, wrong_secret.value]
    assert issued.activation_code in calls.response_text()  # what the grep would catch
    seeds = [phone.seed, new_phone.seed]
    secrets = [
        digits,
        issued.activation_code,
        sms_code,
        TEMPORARY_SECRET,
        CARD_PIN,
        *(seed.hex() for seed in seeds),
        *(base64.b32encode(seed).decode().rstrip("=") for seed in seeds),
    ]
    texts = observable_text(service, captured_logs, calls.errors)
    texts["store"] = repr(service.snapshot())
    texts["responses"] = calls.response_text(excluding=[issued])
    assert_nowhere(texts, secrets)
    wire = calls.response_bytes(excluding=[issued])
    assert len(wire) >= 30
    binary_secrets = [*seeds, *(s.encode() for s in secrets)]
    stored = stored_bytes(service)
    assert stored  # MACs, wrapped seeds, the audit chain's digests
    assert_in_no_bytes([*wire, *stored], binary_secrets)


def test_temporary_secret_activation_with_a_wait_after_three_wrong_secrets(
    service: ServiceUnderTest, cns_card_2048: CnsCard
) -> None:
    authorised = service.authorise(cns_card_2048)
    cf = authorised.citizen.codice_fiscale
    issued = service.enrolment().IssueToken(
        enrolment_pb2.IssueTokenRequest(
            authorisation_id=authorised.authorisation_id,
            method=enrolment_pb2.ACTIVATION_METHOD_TEMPORARY_SECRET,
            temporary_secret="24680",
            params=common_pb2.OtpParameters(
                mode=common_pb2.OTP_MODE_HOTP,
                algorithm=common_pb2.HASH_ALGORITHM_SHA256,
                digits=8,
            ),
        )
    )
    assert issued.activation_code == "" and issued.qr_png == b""
    phone = TokenApp()
    device = service.device()

    def activate(secret: str) -> device_pb2.ActivationResponse:
        response: device_pb2.ActivationResponse = device.ActivateWithTemporarySecret(
            device_pb2.ActivateWithTemporarySecretRequest(
                codice_fiscale=cf, temporary_secret=secret, device_public_key=phone.public_key
            )
        )
        return response

    for _ in range(3):
        with pytest.raises(grpc.RpcError) as wrong:
            activate("13579")
        assert wrong.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "wrong temporary secret" in wrong.value.details()
    with pytest.raises(grpc.RpcError) as waiting:
        activate("24680")
    assert waiting.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    trailing = dict(waiting.value.trailing_metadata() or ())
    assert trailing["retry-after-seconds"] == "60"

    service.clock.advance(61)
    phone.complete(activate("24680"))
    assert phone.algorithm == "sha256" and phone.digits == 8
    proved = device.ProvePossession(
        device_pb2.ProvePossessionRequest(serial=phone.serial, code=phone.counter_code(0))
    )
    assert proved.result == OK
    # HOTP: the next counters verify once each, in the look-ahead window
    assert verify(service, phone.serial, phone.counter_code(3)).result == OK
    assert verify(service, phone.serial, phone.counter_code(2)).result == (
        common_pb2.VERIFY_RESULT_REPLAYED
    )


def decode_qr(png: bytes, directory: Path) -> str:
    """What a phone's camera reads from the PNG (zbarimg, as another QR reader would)."""
    zbarimg = require_tool("zbarimg", "zbar-tools")
    image = directory / "qr.png"
    image.write_bytes(png)
    decoded = subprocess.run(
        [zbarimg, "--nodbus", "--quiet", "--raw", str(image)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return decoded.stdout.strip()


def test_compatibility_mode_works_with_a_standard_authenticator_app(
    any_store_service: ServiceUnderTest, cns_card_1024: CnsCard, tmp_path: Path
) -> None:
    service = any_store_service
    authorised = service.authorise(cns_card_1024)
    issued = service.enrolment().IssueToken(
        enrolment_pb2.IssueTokenRequest(
            authorisation_id=authorised.authorisation_id,
            method=enrolment_pb2.ACTIVATION_METHOD_OTPAUTH,
            params=common_pb2.OtpParameters(algorithm=common_pb2.HASH_ALGORITHM_SHA256),
        )
    )
    assert issued.otpauth_uri.startswith("otpauth://totp/")
    assert issued.qr_text and issued.activation_code == ""
    # the app scans the QR: it holds the very URI the station was given
    scanned = decode_qr(issued.qr_png, tmp_path)
    assert scanned == issued.otpauth_uri
    app = pyotp.parse_uri(scanned)
    assert isinstance(app, pyotp.TOTP)
    # the label names the issuer and the citizen (Key URI format: "issuer:account")
    label = urllib.parse.unquote(urllib.parse.urlsplit(scanned).path)
    assert label == f"/otphsm:{MARIO_ROSSI.codice_fiscale}"
    assert (app.issuer, app.digits, app.interval) == ("otphsm", 6, 30)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(scanned).query)
    assert query["algorithm"] == ["SHA256"]
    assert len(base64.b32decode(app.secret + "=" * (-len(app.secret) % 8))) == 32

    serial = issued.token.serial
    now = service.clock.now()
    proved = service.device().ProvePossession(
        device_pb2.ProvePossessionRequest(serial=serial, code=app.at(now))
    )
    assert proved.result == OK
    assert token_state(service, serial) == common_pb2.TOKEN_STATE_ACTIVE
    service.clock.advance(30)
    assert verify(service, serial, app.at(service.clock.now())).result == OK
    assert verify(service, serial, app.at(service.clock.now())).result == (
        common_pb2.VERIFY_RESULT_REPLAYED
    )
    # the seed was shown once, in the URI; no later response carries it
    token = service.admin().GetToken(admin_pb2.TokenRequest(serial=serial))
    assert query["secret"][0].encode() not in token.SerializeToString()


def test_pyotp_shows_the_codice_fiscale_as_the_account() -> None:
    uri = otpauth_uri_for("otphsm", MARIO_ROSSI.codice_fiscale, bytes(20), OtpParameters())
    app = pyotp.parse_uri(uri)
    assert (app.issuer, app.name) == ("otphsm", MARIO_ROSSI.codice_fiscale)


def test_a_kiosk_reads_the_card_in_its_own_reader(
    service: ServiceUnderTest, cns_card_1024: CnsCard
) -> None:
    station = service.enrolment()
    # include_present: the card may go in before or after the watch starts; either way it is
    # reported once as inserted
    watch = station.WatchCards(
        enrolment_pb2.WatchCardsRequest(max_seconds=20, include_present=True), timeout=20
    )
    service.readers.insert(cns_card_1024)
    inserted = next(watch)
    assert inserted.kind == enrolment_pb2.CardEvent.KIND_INSERTED
    assert inserted.reader and inserted.atr == cns_card_1024.atr

    with pytest.raises(grpc.RpcError) as wrong_pin:
        station.AuthoriseWithLocalCard(
            enrolment_pb2.AuthoriseWithLocalCardRequest(reader="Kiosk", pin="00000000")
        )
    assert wrong_pin.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "tries" in wrong_pin.value.details().lower()

    before = service.snapshot()
    authorised = station.AuthoriseWithLocalCard(
        enrolment_pb2.AuthoriseWithLocalCardRequest(reader="Kiosk", pin=CARD_PIN)
    )
    assert authorised.citizen.codice_fiscale == MARIO_ROSSI.codice_fiscale
    assert service.snapshot() != before

    service.readers.remove()
    removed = next(watch)
    assert removed.kind == enrolment_pb2.CardEvent.KIND_REMOVED
    watch.cancel()

    with pytest.raises(grpc.RpcError) as no_card:
        station.AuthoriseWithLocalCard(
            enrolment_pb2.AuthoriseWithLocalCardRequest(reader="Kiosk", pin=CARD_PIN)
        )
    assert no_card.value.code() == grpc.StatusCode.UNAVAILABLE
