"""End to end over gRPC with mTLS: card-authorised enrolment → secure activation → proof of
possession → verify → replay refused → lockout and release → replacement → resync → revoke.
"""

from __future__ import annotations

import base64
import io
import urllib.parse

import grpc
import pyotp
import pytest
from support.card_fixtures import CARD_PIN, MARIO_ROSSI
from support.pcsc_fixtures import InsertCard
from support.service_devices import TokenApp
from support.service_fixtures import ServiceUnderTest
from test_service_health import scrape

from otphsm.simulators.card.cns_card import CnsCard
from otphsm.v1 import admin_pb2, common_pb2, device_pb2, enrolment_pb2, validation_pb2

pytestmark = pytest.mark.softhsm

PHONE = "+393331234567"
OK = common_pb2.VERIFY_RESULT_OK
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def issue_and_activate(
    service: ServiceUnderTest, authorisation_id: str
) -> tuple[TokenApp, enrolment_pb2.IssueTokenResponse]:
    issued = service.enrolment().IssueToken(
        enrolment_pb2.IssueTokenRequest(
            authorisation_id=authorisation_id, method=enrolment_pb2.ACTIVATION_METHOD_CODE
        )
    )
    phone = TokenApp()
    activated = service.device().ActivateWithCode(
        device_pb2.ActivateWithCodeRequest(
            activation_code=issued.activation_code, device_public_key=phone.public_key
        )
    )
    phone.complete(activated)
    assert activated.serial == issued.token.serial
    return phone, issued


def verify(service: ServiceUnderTest, serial: str, code: str) -> common_pb2.VerifyResponse:
    response: common_pb2.VerifyResponse = service.validation().Verify(
        validation_pb2.VerifyRequest(serial=serial, code=code)
    )
    return response


def token_state(service: ServiceUnderTest, serial: str) -> int:
    state: int = service.admin().GetToken(admin_pb2.TokenRequest(serial=serial)).token.state
    return state


def test_the_whole_life_of_a_mobile_token(
    any_store_service: ServiceUnderTest,
    cns_card_1024: CnsCard,
    insert_card: InsertCard,
    captured_logs: io.StringIO,
) -> None:
    service = any_store_service
    clock = service.clock
    cf = MARIO_ROSSI.codice_fiscale

    # card-authorised enrolment: the station reads the card through a real pcscd (vpcd)
    inserted = insert_card(cns_card_1024)
    with inserted.connect() as reader:
        authorised = service.authorise(cns_card_1024, transport=reader)
    assert authorised.citizen.codice_fiscale == cf
    citizen = authorised.citizen
    assert (citizen.given_name.upper(), citizen.surname.upper()) == ("MARIO", "ROSSI")
    assert (citizen.birth_date, citizen.sex, citizen.birth_place) == ("1980-01-01", "M", "L378")

    # a token with an 18-digit activation code and its QR
    issued = service.enrolment().IssueToken(
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
    activated = service.device().ActivateWithCode(
        device_pb2.ActivateWithCodeRequest(
            activation_code=issued.activation_code, device_public_key=phone.public_key
        )
    )
    phone.complete(activated)
    assert activated.serial == serial and len(activated.server_public_key) == 65
    assert phone.seed not in activated.SerializeToString()
    assert verify(service, serial, phone.code(clock.now())).result == (
        common_pb2.VERIFY_RESULT_NOT_ACTIVE
    )

    # proof of possession turns it active
    proved = service.device().ProvePossession(
        device_pb2.ProvePossessionRequest(serial=serial, code=phone.code(clock.now()))
    )
    assert proved.result == OK
    assert token_state(service, serial) == common_pb2.TOKEN_STATE_ACTIVE

    # verify, then the same code again is a replay
    clock.advance(30)
    code = phone.code(clock.now())
    assert verify(service, serial, code).result == OK
    replayed = verify(service, serial, code)
    assert replayed.result == common_pb2.VERIFY_RESULT_REPLAYED  # failure 1

    # two more failures lock it; while locked even the right code is refused
    wrong = "000000" if code != "000000" else "111111"
    assert verify(service, serial, wrong).result == common_pb2.VERIFY_RESULT_WRONG_CODE
    third = verify(service, serial, wrong)
    assert third.result == common_pb2.VERIFY_RESULT_WRONG_CODE and third.retry_after_seconds == 60
    clock.advance(30)
    locked = verify(service, serial, phone.code(clock.now()))
    assert locked.result == common_pb2.VERIFY_RESULT_LOCKED
    assert 0 < locked.retry_after_seconds <= 30

    # an operator releases it
    unlocked = service.admin().Unlock(admin_pb2.TokenRequest(serial=serial))
    assert unlocked.token.failures == 0 and unlocked.token.locked_until == 0
    assert verify(service, serial, phone.code(clock.now())).result == OK

    # the citizen tests the device, by serial and then by codice fiscale
    clock.advance(30)
    tested = service.validation().TestDevice(
        validation_pb2.TestDeviceRequest(serial=serial, code=phone.code(clock.now()))
    )
    assert tested.result == OK
    clock.advance(30)
    by_cf = service.validation().Verify(
        validation_pb2.VerifyRequest(codice_fiscale=cf, code=phone.code(clock.now()))
    )
    assert (by_cf.result, by_cf.serial) == (OK, serial)

    # lost phone: replacement after an SMS code; the old device is revoked once the new one
    # proves possession
    station = service.enrolment()
    station.SetPhoneNumber(
        enrolment_pb2.SetPhoneNumberRequest(codice_fiscale=cf, phone_number=PHONE)
    )
    station.SendReplacementCode(enrolment_pb2.SendReplacementCodeRequest(codice_fiscale=cf))
    sms_code = service.sms_code(PHONE)
    by_sms = station.AuthoriseWithSmsCode(
        enrolment_pb2.AuthoriseWithSmsCodeRequest(codice_fiscale=cf, code=sms_code)
    )
    new_phone, reissued = issue_and_activate(service, by_sms.authorisation_id)
    assert reissued.token.replaces_serial == serial
    assert token_state(service, serial) == common_pb2.TOKEN_STATE_ACTIVE
    clock.advance(30)
    proof = service.device().ProvePossession(
        device_pb2.ProvePossessionRequest(serial=new_phone.serial, code=new_phone.code(clock.now()))
    )
    assert proof.result == OK
    assert token_state(service, serial) == common_pb2.TOKEN_STATE_REVOKED
    clock.advance(30)
    assert verify(service, serial, phone.code(clock.now())).result == (
        common_pb2.VERIFY_RESULT_REVOKED
    )

    # the new phone's clock runs 5 minutes fast: beyond the window until a resync
    skew = 300
    clock.advance(30)
    assert verify(service, new_phone.serial, new_phone.code(clock.now() + skew)).result == (
        common_pb2.VERIFY_RESULT_WRONG_CODE
    )
    step = new_phone.period
    resynced = service.validation().Resync(
        validation_pb2.ResyncRequest(
            serial=new_phone.serial,
            first_code=new_phone.code(clock.now() + skew),
            second_code=new_phone.code(clock.now() + skew + step),
        )
    )
    assert resynced.result == OK
    clock.advance(2 * step)
    assert verify(service, new_phone.serial, new_phone.code(clock.now() + skew)).result == OK

    # revoke: every later code is refused as revoked
    revoked = service.admin().Revoke(admin_pb2.TokenRequest(serial=new_phone.serial))
    assert revoked.token.state == common_pb2.TOKEN_STATE_REVOKED
    clock.advance(30)
    assert verify(service, new_phone.serial, new_phone.code(clock.now() + skew)).result == (
        common_pb2.VERIFY_RESULT_REVOKED
    )

    listed = service.admin().ListTokens(admin_pb2.ListTokensRequest(codice_fiscale=cf)).tokens
    assert {t.serial: t.state for t in listed} == {
        serial: common_pb2.TOKEN_STATE_REVOKED,
        new_phone.serial: common_pb2.TOKEN_STATE_REVOKED,
    }
    assert all(t.kind == common_pb2.TOKEN_KIND_MOBILE and t.last_used_at for t in listed)

    audit = service.admin().VerifyAudit(admin_pb2.VerifyAuditRequest())
    assert audit.intact and audit.entries >= 10

    # no secret reached the log
    logs = captured_logs.getvalue()
    assert '"rpc": "/otphsm.v1.ValidationService/Verify"' in logs
    secrets = [
        digits,
        issued.activation_code,
        reissued.activation_code,
        sms_code,
        CARD_PIN,
        phone.seed.hex(),
        new_phone.seed.hex(),
        base64.b32encode(phone.seed).decode().rstrip("="),
    ]
    leaked = [s for s in secrets if s in logs]
    assert not leaked
    # … nor the database, the audit chain or the metrics
    stored = repr(service.snapshot())
    assert not [s for s in secrets if s in stored]
    audit_text = repr(list(service.store.audit_entries()))
    assert not [s for s in secrets if s in audit_text]
    metrics = scrape(service)
    assert "otphsm" in metrics
    assert not [s for s in secrets if s in metrics]


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


def test_compatibility_mode_works_with_a_standard_authenticator_app(
    service: ServiceUnderTest, cns_card_1024: CnsCard
) -> None:
    authorised = service.authorise(cns_card_1024)
    issued = service.enrolment().IssueToken(
        enrolment_pb2.IssueTokenRequest(
            authorisation_id=authorised.authorisation_id,
            method=enrolment_pb2.ACTIVATION_METHOD_OTPAUTH,
            params=common_pb2.OtpParameters(algorithm=common_pb2.HASH_ALGORITHM_SHA256),
        )
    )
    assert issued.otpauth_uri.startswith("otpauth://totp/")
    assert issued.qr_png.startswith(PNG_MAGIC) and issued.qr_text
    app = pyotp.parse_uri(issued.otpauth_uri)
    assert isinstance(app, pyotp.TOTP)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(issued.otpauth_uri).query)
    assert query["algorithm"] == ["SHA256"]

    serial = issued.token.serial
    now = service.clock.now()
    proved = service.device().ProvePossession(
        device_pb2.ProvePossessionRequest(serial=serial, code=app.at(now))
    )
    assert proved.result == OK
    service.clock.advance(30)
    assert verify(service, serial, app.at(service.clock.now())).result == OK
    assert verify(service, serial, app.at(service.clock.now())).result == (
        common_pb2.VERIFY_RESULT_REPLAYED
    )
    # the seed was shown once, in the URI; no later response carries it
    token = service.admin().GetToken(admin_pb2.TokenRequest(serial=serial))
    assert query["secret"][0].encode() not in token.SerializeToString()


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
