"""Every RPC with malformed input (empty, oversized, wrong types, unknown ids, bad digits or
points, expired or reused challenges, a foreign card) answers INVALID_ARGUMENT, NOT_FOUND or
FAILED_PRECONDITION with a clear message, and the database is unchanged."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from support.card_fixtures import CARD_NOW, CARD_PIN, CARD_PUK, LAURA_BIANCHI, MARIO_ROSSI
from support.server_models import each_server_model, on_each_server_model  # noqa: F401
from support.service_devices import TokenApp, card_signature
from support.service_fixtures import ServiceUnderTest

from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.card.factory import issue_card
from otphsm.simulators.card.pki import make_test_ca
from otphsm.simulators.card.spec import CardSpec
from otphsm.simulators.token.pskc_factory import BatchSpec, make_fobs, pskc_document
from otphsm.v1 import (
    admin_pb2,
    common_pb2,
    device_pb2,
    enrolment_pb2,
    grid_pb2,
    grid_pb2_grpc,
    oob_pb2,
    oob_pb2_grpc,
    validation_pb2,
)

pytestmark = pytest.mark.softhsm

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
UNKNOWN_CF = "BNCGNN75C12F205J"  # well-formed, never enrolled
OFF_CURVE_POINT = b"\x04" + b"\x01" * 64


@dataclass
class World:
    """A service with one citizen holding an active token, a pending activation code and a
    fresh challenge: the state every refused request must leave untouched."""

    service: ServiceUnderTest
    cf: str
    serial: str
    pending_code: str
    challenge_id: str
    nonce: bytes
    phone: TokenApp
    used_code: str


@dataclass(frozen=True)
class Case:
    name: str
    call: Callable[[World], Any]
    code: grpc.StatusCode
    says: str
    """A fragment the status message must contain (case-insensitive)."""


@pytest.fixture
def world(service: ServiceUnderTest, cns_card_1024: CnsCard) -> World:
    authorised = service.authorise(cns_card_1024)
    cf = authorised.citizen.codice_fiscale
    issued = service.enrolment().IssueToken(
        enrolment_pb2.IssueTokenRequest(authorisation_id=authorised.authorisation_id)
    )
    phone = TokenApp()
    phone.complete(
        service.device().ActivateWithCode(
            device_pb2.ActivateWithCodeRequest(
                activation_code=issued.activation_code, device_public_key=phone.public_key
            )
        )
    )
    service.device().ProvePossession(
        device_pb2.ProvePossessionRequest(serial=phone.serial, code=phone.code(service.clock.now()))
    )
    pending = service.enrolment().IssueToken(
        enrolment_pb2.IssueTokenRequest(
            authorisation_id=service.authorise(cns_card_1024).authorisation_id
        )
    )
    challenge = service.enrolment().GetChallenge(enrolment_pb2.GetChallengeRequest())
    return World(
        service,
        cf,
        phone.serial,
        pending.activation_code,
        challenge.challenge_id,
        challenge.nonce,
        phone,
        issued.activation_code,
    )


@pytest.fixture(scope="module")
def foreign_card_spec() -> CardSpec:
    """Mario Rossi's card, issued by a CA the service does not trust."""
    other = make_test_ca("CA Cittadini estera (TEST)", now=CARD_NOW)
    return issue_card(other, MARIO_ROSSI, CARD_PIN, CARD_PUK, key_size=1024, now=CARD_NOW)


def check_refusals(world: World, cases: list[Case]) -> None:
    problems: list[str] = []
    for case in cases:
        before = world.service.snapshot()
        try:
            result = case.call(world)
            if hasattr(result, "__next__"):
                next(result)
            problems.append(f"{case.name}: no error")
            continue
        except grpc.RpcError as error:
            code, details = error.code(), error.details() or ""
        if code != case.code:
            problems.append(f"{case.name}: {code.name} ({details}), expected {case.code.name}")
        elif case.says.lower() not in details.lower():
            problems.append(f"{case.name}: message {details!r} lacks {case.says!r}")
        if world.service.snapshot() != before:
            problems.append(f"{case.name}: the database changed")
    assert not problems, "\n".join(problems)


def _authorise(w: World, **fields: Any) -> Any:
    request = {"challenge_id": w.challenge_id, **fields}
    return w.service.enrolment().AuthoriseWithCard(
        enrolment_pb2.AuthoriseWithCardRequest(**request)
    )


def _good_card_fields(w: World, card: CnsCard) -> dict[str, Any]:
    return card_signature(card, w.nonce)


def test_enrolment_refusals(
    world: World, cns_card_1024: CnsCard, foreign_card_spec: CardSpec
) -> None:
    good = _good_card_fields(world, cns_card_1024)
    foreign = card_signature(CnsCard(foreign_card_spec), world.nonce)
    other_nonce = card_signature(cns_card_1024, b"another nonce")
    station = world.service.enrolment
    issue = lambda w, **f: station().IssueToken(enrolment_pb2.IssueTokenRequest(**f))  # noqa: E731
    cases = [
        Case(
            "authorise: empty",
            lambda w: station().AuthoriseWithCard(enrolment_pb2.AuthoriseWithCardRequest()),
            INVALID,
            "codice_fiscale is required",
        ),
        Case(
            "authorise: bad codice fiscale",
            lambda w: _authorise(w, **{**good, "codice_fiscale": "RSSMRA80A01L378X"}),
            INVALID,
            "codice fiscale",
        ),
        Case(
            "authorise: oversized certificate",
            lambda w: _authorise(w, **{**good, "certificate_der": b"\x30" * 9000}),
            INVALID,
            "8192",
        ),
        Case(
            "authorise: empty signature",
            lambda w: _authorise(w, **{**good, "signature": b""}),
            INVALID,
            "signature",
        ),
        Case(
            "authorise: bad card id",
            lambda w: _authorise(w, **{**good, "card_id": "12-34"}),
            INVALID,
            "card id",
        ),
        Case(
            "authorise: oversized challenge id",
            lambda w: _authorise(w, **{**good, "challenge_id": "c" * 65}),
            INVALID,
            "challenge_id",
        ),
        Case(
            "authorise: unknown challenge",
            lambda w: _authorise(w, **{**good, "challenge_id": "ch-000000000000000000000000"}),
            NOT_FOUND,
            "challenge",
        ),
        Case(
            "authorise: garbage certificate",
            lambda w: _authorise(w, **{**good, "certificate_der": b"\x30\x03\x02\x01\x01"}),
            PRECONDITION,
            "malformed certificate",
        ),
        Case(
            "authorise: foreign certificate",
            lambda w: _authorise(w, **foreign),
            PRECONDITION,
            "untrusted issuer",
        ),
        Case(
            "authorise: signature over another nonce",
            lambda w: _authorise(w, **other_nonce),
            PRECONDITION,
            "signature",
        ),
        Case(
            "authorise: card of someone else",
            lambda w: _authorise(w, **{**good, "codice_fiscale": LAURA_BIANCHI.codice_fiscale}),
            PRECONDITION,
            "codice fiscale differs",
        ),
        Case(
            "local card: PIN not digits",
            lambda w: station().AuthoriseWithLocalCard(
                enrolment_pb2.AuthoriseWithLocalCardRequest(pin="12ab5")
            ),
            INVALID,
            "PIN",
        ),
        Case(
            "local card: oversized reader",
            lambda w: station().AuthoriseWithLocalCard(
                enrolment_pb2.AuthoriseWithLocalCardRequest(reader="r" * 200, pin=CARD_PIN)
            ),
            INVALID,
            "reader",
        ),
        Case(
            "watch: too long",
            lambda w: station().WatchCards(enrolment_pb2.WatchCardsRequest(max_seconds=100000)),
            INVALID,
            "max_seconds",
        ),
        Case(
            "phone: empty",
            lambda w: station().SetPhoneNumber(enrolment_pb2.SetPhoneNumberRequest()),
            INVALID,
            "codice_fiscale is required",
        ),
        Case(
            "phone: not E.164",
            lambda w: station().SetPhoneNumber(
                enrolment_pb2.SetPhoneNumberRequest(codice_fiscale=w.cf, phone_number="call me")
            ),
            INVALID,
            "E.164",
        ),
        Case(
            "phone: unknown citizen",
            lambda w: station().SetPhoneNumber(
                enrolment_pb2.SetPhoneNumberRequest(
                    codice_fiscale=UNKNOWN_CF, phone_number="+393331112222"
                )
            ),
            NOT_FOUND,
            "citizen",
        ),
        Case("issue: empty", issue, INVALID, "authorisation_id is required"),
        Case(
            "issue: unknown authorisation",
            lambda w: issue(w, authorisation_id="au-000000000000000000000000"),
            NOT_FOUND,
            "authorisation",
        ),
        Case(
            "issue: 9 digits",
            lambda w: issue(w, authorisation_id="au-1", params=common_pb2.OtpParameters(digits=9)),
            INVALID,
            "digits",
        ),
        Case(
            "issue: unknown method",
            lambda w: issue(w, authorisation_id="au-1", method=77),
            INVALID,
            "method",
        ),
        Case(
            "issue: unknown algorithm",
            lambda w: issue(
                w, authorisation_id="au-1", params=common_pb2.OtpParameters(algorithm=9)
            ),
            INVALID,
            "algorithm",
        ),
        Case(
            "issue: secret with a code",
            lambda w: issue(w, authorisation_id="au-1", temporary_secret="12345"),
            INVALID,
            "temporary secret",
        ),
        Case(
            "issue: bad temporary secret",
            lambda w: issue(
                w,
                authorisation_id="au-1",
                method=enrolment_pb2.ACTIVATION_METHOD_TEMPORARY_SECRET,
                temporary_secret="12a45",
            ),
            INVALID,
            "5 digits",
        ),
        Case(
            "issue: SHA512 with secure activation",
            lambda w: issue(
                w,
                authorisation_id="au-1",
                params=common_pb2.OtpParameters(algorithm=common_pb2.HASH_ALGORITHM_SHA512),
            ),
            INVALID,
            "SHA1 and SHA256",
        ),
        Case(
            "replacement code: bad codice fiscale",
            lambda w: station().SendReplacementCode(
                enrolment_pb2.SendReplacementCodeRequest(codice_fiscale="X" * 40)
            ),
            INVALID,
            "16 characters",
        ),
        Case(
            "replacement code: unknown citizen",
            lambda w: station().SendReplacementCode(
                enrolment_pb2.SendReplacementCodeRequest(codice_fiscale=UNKNOWN_CF)
            ),
            NOT_FOUND,
            "citizen",
        ),
        Case(
            "replacement code: no phone on record",
            lambda w: station().SendReplacementCode(
                enrolment_pb2.SendReplacementCodeRequest(codice_fiscale=w.cf)
            ),
            PRECONDITION,
            "phone",
        ),
        Case(
            "sms code: not digits",
            lambda w: station().AuthoriseWithSmsCode(
                enrolment_pb2.AuthoriseWithSmsCodeRequest(codice_fiscale=w.cf, code="12")
            ),
            INVALID,
            "6 digits",
        ),
        Case(
            "sms code: none sent",
            lambda w: station().AuthoriseWithSmsCode(
                enrolment_pb2.AuthoriseWithSmsCodeRequest(codice_fiscale=w.cf, code="123456")
            ),
            NOT_FOUND,
            "no replacement code",
        ),
    ]
    check_refusals(world, cases)


def test_device_refusals(world: World) -> None:
    device = world.service.device
    phone = TokenApp()

    def activate(code: str, key: bytes = phone.public_key) -> Any:
        return device().ActivateWithCode(
            device_pb2.ActivateWithCodeRequest(activation_code=code, device_public_key=key)
        )

    digits = world.pending_code.replace("-", "")
    typo = digits[:5] + str((int(digits[5]) + 1) % 10) + digits[6:]
    swapped = digits[:3] + digits[4] + digits[3] + digits[5:]
    cases = [
        Case(
            "activate: empty",
            lambda w: device().ActivateWithCode(device_pb2.ActivateWithCodeRequest()),
            INVALID,
            "activation_code",
        ),
        Case("activate: 17 digits", lambda w: activate(digits[:17]), INVALID, "18 digits"),
        Case("activate: oversized", lambda w: activate("1" * 5000), INVALID, "activation_code"),
        Case("activate: one digit wrong", lambda w: activate(typo), INVALID, "check digit"),
        Case("activate: no key", lambda w: activate(w.pending_code, b""), INVALID, "P-256"),
        Case(
            "activate: code already used",
            lambda w: activate(w.used_code),
            PRECONDITION,
            "already used",
        ),
        Case(
            "activate: compressed key",
            lambda w: activate(w.pending_code, b"\x02" + b"\x11" * 32),
            INVALID,
            "P-256",
        ),
        Case(
            "activate: point off the curve",
            lambda w: activate(w.pending_code, OFF_CURVE_POINT),
            INVALID,
            "P-256",
        ),
        Case(
            "secret: 4 digits",
            lambda w: device().ActivateWithTemporarySecret(
                device_pb2.ActivateWithTemporarySecretRequest(
                    codice_fiscale=w.cf, temporary_secret="1234", device_public_key=phone.public_key
                )
            ),
            INVALID,
            "5 digits",
        ),
        Case(
            "secret: bad codice fiscale",
            lambda w: device().ActivateWithTemporarySecret(
                device_pb2.ActivateWithTemporarySecretRequest(
                    codice_fiscale="nope",
                    temporary_secret="12345",
                    device_public_key=phone.public_key,
                )
            ),
            INVALID,
            "codice fiscale",
        ),
        Case(
            "secret: none waiting",
            lambda w: device().ActivateWithTemporarySecret(
                device_pb2.ActivateWithTemporarySecretRequest(
                    codice_fiscale=w.cf,
                    temporary_secret="12345",
                    device_public_key=phone.public_key,
                )
            ),
            NOT_FOUND,
            "temporary-secret",
        ),
        Case(
            "prove: bad serial",
            lambda w: device().ProvePossession(
                device_pb2.ProvePossessionRequest(serial="x", code="123456")
            ),
            INVALID,
            "serial",
        ),
        Case(
            "prove: unknown serial",
            lambda w: device().ProvePossession(
                device_pb2.ProvePossessionRequest(serial="MOB-0000000000", code="123456")
            ),
            NOT_FOUND,
            "serial: no ",  # the field, never the value sent
        ),
        Case(
            "prove: code with letters",
            lambda w: device().ProvePossession(
                device_pb2.ProvePossessionRequest(serial=w.serial, code="12ab56")
            ),
            INVALID,
            "6 digits",
        ),
    ]
    if swapped != digits:
        cases.append(
            Case(
                "activate: two digits swapped", lambda w: activate(swapped), INVALID, "check digit"
            )
        )
    check_refusals(world, cases)


def test_validation_and_admin_refusals(world: World) -> None:
    verifier = world.service.validation
    admin = world.service.admin

    def verify(**fields: Any) -> Any:
        return verifier().Verify(validation_pb2.VerifyRequest(**fields))

    cases = [
        Case("verify: empty", lambda w: verify(), INVALID, "serial or codice_fiscale"),
        Case("verify: no code", lambda w: verify(serial=w.serial), INVALID, "6 digits"),
        Case(
            "verify: 5 digits", lambda w: verify(serial=w.serial, code="12345"), INVALID, "6 digits"
        ),
        Case(
            "verify: oversized code",
            lambda w: verify(serial=w.serial, code="1" * 10000),
            INVALID,
            "6 digits",
        ),
        Case(
            "verify: bad serial", lambda w: verify(serial="mob 1", code="123456"), INVALID, "serial"
        ),
        Case(
            "verify: unknown serial",
            lambda w: verify(serial="MOB-FFFFFFFFFF", code="123456"),
            NOT_FOUND,
            "serial: no ",  # the field, never the value sent
        ),
        Case(
            "verify: bad codice fiscale",
            lambda w: verify(codice_fiscale="RSS", code="123456"),
            INVALID,
            "codice fiscale",
        ),
        Case(
            "verify: citizen without tokens",
            lambda w: verify(codice_fiscale=UNKNOWN_CF, code="123456"),
            NOT_FOUND,
            "no active token",
        ),
        Case(
            "verify: oversized origin",
            lambda w: verify(serial=w.serial, code="123456", origin="a" * 129),
            INVALID,
            "origin",
        ),
        Case(
            "verify by codice fiscale: origin with a line break",
            lambda w: verify(codice_fiscale=w.cf, code="123456", origin="10.0.0.1\nx"),
            INVALID,
            "origin",
        ),
        Case(
            "test device: empty",
            lambda w: verifier().TestDevice(validation_pb2.TestDeviceRequest()),
            INVALID,
            "serial",
        ),
        Case(
            "test device: origin not ASCII",
            lambda w: verifier().TestDevice(
                validation_pb2.TestDeviceRequest(serial=w.serial, code="123456", origin="città")
            ),
            INVALID,
            "origin",
        ),
        Case(
            "resync: origin with a control character",
            lambda w: verifier().Resync(
                validation_pb2.ResyncRequest(
                    serial=w.serial, first_code="123456", second_code="123457", origin="\x00"
                )
            ),
            INVALID,
            "origin",
        ),
        Case(
            "resync: second code malformed",
            lambda w: verifier().Resync(
                validation_pb2.ResyncRequest(serial=w.serial, first_code="123456", second_code="1")
            ),
            INVALID,
            "6 digits",
        ),
        Case(
            "resync: unknown serial",
            lambda w: verifier().Resync(
                validation_pb2.ResyncRequest(
                    serial="MOB-0123456789", first_code="123456", second_code="654321"
                )
            ),
            NOT_FOUND,
            "serial: no ",  # the field, never the value sent
        ),
        Case(
            "suspend: empty", lambda w: admin().Suspend(admin_pb2.TokenRequest()), INVALID, "serial"
        ),
        Case(
            "revoke: unknown",
            lambda w: admin().Revoke(admin_pb2.TokenRequest(serial="MOB-AAAAAAAAAA")),
            NOT_FOUND,
            "serial: no ",  # the field, never the value sent
        ),
        Case(
            "resume: an active token",
            lambda w: admin().Resume(admin_pb2.TokenRequest(serial=w.serial)),
            PRECONDITION,
            "cannot resume",
        ),
        Case(
            "unlock: oversized serial",
            lambda w: admin().Unlock(admin_pb2.TokenRequest(serial="A" * 100)),
            INVALID,
            "serial",
        ),
        Case(
            "get: lower case",
            lambda w: admin().GetToken(admin_pb2.TokenRequest(serial=w.serial.lower())),
            INVALID,
            "serial",
        ),
        Case(
            "list: bad codice fiscale",
            lambda w: admin().ListTokens(
                admin_pb2.ListTokensRequest(codice_fiscale="RSSMRA80A01L378")
            ),
            INVALID,
            "codice fiscale",
        ),
        Case(
            "list: unknown state",
            lambda w: admin().ListTokens(admin_pb2.ListTokensRequest(state=99)),  # type: ignore[arg-type]
            INVALID,
            "state",
        ),
        Case(
            "list: unknown kind",
            lambda w: admin().ListTokens(admin_pb2.ListTokensRequest(kind=7)),  # type: ignore[arg-type]
            INVALID,
            "kind",
        ),
        Case(
            "list: a page token it never made",
            lambda w: admin().ListTokens(admin_pb2.ListTokensRequest(page_token="bm90IGpzb24")),
            INVALID,
            "page_token",
        ),
        Case(
            "list: an oversized page token",
            lambda w: admin().ListTokens(admin_pb2.ListTokensRequest(page_token="A" * 5000)),
            INVALID,
            "page_token",
        ),
        Case(
            "fobs: a page token of another listing",
            lambda w: admin().ListFobs(
                admin_pb2.ListFobsRequest(page_token=_first_page_token(admin()))
            ),
            INVALID,
            "other filters",
        ),
        Case(
            "audit: a page token of another start",
            lambda w: admin().ListAuditEntries(
                admin_pb2.ListAuditEntriesRequest(
                    from_seq=2,
                    page_token=admin()
                    .ListAuditEntries(admin_pb2.ListAuditEntriesRequest(page_size=1))
                    .next_page_token,
                )
            ),
            INVALID,
            "other filters",
        ),
        Case(
            "revoke: a reason with a control character",
            lambda w: admin().Revoke(admin_pb2.TokenRequest(serial=w.serial, reason="lost\n")),
            INVALID,
            "reason",
        ),
        Case(
            "suspend: an oversized reason",
            lambda w: admin().Suspend(admin_pb2.TokenRequest(serial=w.serial, reason="x" * 201)),
            INVALID,
            "reason",
        ),
    ]
    check_refusals(world, cases)


def _first_page_token(admin: Any) -> str:
    """A token listing's page token (the world holds more than one token)."""
    page = admin.ListTokens(admin_pb2.ListTokensRequest(page_size=1))
    assert page.next_page_token
    token: str = page.next_page_token
    return token


def test_fob_pskc_login_code_and_grid_refusals(world: World) -> None:
    channel = world.service.channel
    station, admin = world.service.enrolment, world.service.admin
    oob = lambda: oob_pb2_grpc.OobServiceStub(channel("verifier"))  # noqa: E731
    oob_station = lambda: oob_pb2_grpc.OobServiceStub(channel("enroller"))  # noqa: E731
    grid = lambda role="verifier": grid_pb2_grpc.GridCardServiceStub(channel(role))  # noqa: E731
    pskc = lambda **f: admin().ImportPskc(admin_pb2.ImportPskcRequest(**f))  # noqa: E731
    psk = bytes(range(16))
    fob_file = pskc_document(make_fobs(BatchSpec(2, 1)), psk=psk)
    cases = [
        Case(
            "assign fob: empty",
            lambda w: station().AssignFob(enrolment_pb2.AssignFobRequest()),
            INVALID,
            "authorisation_id is required",
        ),
        Case(
            "assign fob: bad serial",
            lambda w: station().AssignFob(
                enrolment_pb2.AssignFobRequest(authorisation_id="au-1", serial="fob 1")
            ),
            INVALID,
            "serial",
        ),
        Case(
            "assign fob: unknown fob",
            lambda w: station().AssignFob(
                enrolment_pb2.AssignFobRequest(
                    authorisation_id="au-000000000000000000000000", serial="FOB-00000001"
                )
            ),
            NOT_FOUND,
            "no key fob",
        ),
        Case(
            "assign fob: first code with letters",
            lambda w: station().AssignFob(
                enrolment_pb2.AssignFobRequest(
                    authorisation_id="au-1", serial="FOB-00000001", first_code="12ab56"
                )
            ),
            INVALID,
            "digits",
        ),
        Case("pskc: empty", lambda w: pskc(), INVALID, "pskc"),
        Case(
            "pskc: no key or password",
            lambda w: pskc(pskc=b"<KeyContainer/>"),
            INVALID,
            "pre-shared key or the password",
        ),
        Case(
            "pskc: key of 8 bytes",
            lambda w: pskc(pskc=fob_file, pre_shared_key=psk[:8]),
            INVALID,
            "needs a key of 16 bytes",
        ),
        Case(
            "pskc: wrong key",
            lambda w: pskc(pskc=fob_file, pre_shared_key=psk[::-1]),
            INVALID,
            "password is wrong",
        ),
        Case(
            "pskc: not XML",
            lambda w: pskc(pskc=b"\x00garbage", pre_shared_key=b"k" * 16),
            INVALID,
            "PSKC",
        ),
        Case(
            "login code: empty",
            lambda w: oob().RequestLoginCode(oob_pb2.RequestLoginCodeRequest()),
            INVALID,
            "codice_fiscale is required",
        ),
        Case(
            "login code: unknown channel",
            lambda w: oob().RequestLoginCode(
                oob_pb2.RequestLoginCodeRequest(codice_fiscale=w.cf, channel=9)
            ),
            INVALID,
            "channel",
        ),
        Case(
            "login code: unknown citizen",
            lambda w: oob().RequestLoginCode(
                oob_pb2.RequestLoginCodeRequest(
                    codice_fiscale=UNKNOWN_CF, channel=oob_pb2.DELIVERY_CHANNEL_SMS
                )
            ),
            NOT_FOUND,
            "citizen",
        ),
        Case(
            "login code: no phone number",
            lambda w: oob().RequestLoginCode(
                oob_pb2.RequestLoginCodeRequest(
                    codice_fiscale=w.cf, channel=oob_pb2.DELIVERY_CHANNEL_SMS
                )
            ),
            PRECONDITION,
            "phone",
        ),
        Case(
            "verify login code: oversized",
            lambda w: oob().VerifyLoginCode(
                oob_pb2.VerifyLoginCodeRequest(codice_fiscale=w.cf, code="1" * 33)
            ),
            INVALID,
            "32",
        ),
        Case(
            "verify login code: oversized origin",
            lambda w: oob().VerifyLoginCode(
                oob_pb2.VerifyLoginCodeRequest(codice_fiscale=w.cf, code="123456", origin="o" * 200)
            ),
            INVALID,
            "origin",
        ),
        Case(
            "verify login code: none requested",
            lambda w: oob().VerifyLoginCode(
                oob_pb2.VerifyLoginCodeRequest(codice_fiscale=w.cf, code="123456")
            ),
            NOT_FOUND,
            "no login code",
        ),
        Case(
            "prefix: 3 characters",
            lambda w: oob_station().SetCodePrefix(
                oob_pb2.SetCodePrefixRequest(codice_fiscale=w.cf, prefix="AB1")
            ),
            INVALID,
            "4",
        ),
        Case(
            "prefix: punctuation",
            lambda w: oob_station().SetCodePrefix(
                oob_pb2.SetCodePrefixRequest(codice_fiscale=w.cf, prefix="AB-1")
            ),
            INVALID,
            "A-Z",
        ),
        Case(
            "prefix: unknown citizen",
            lambda w: oob_station().SetCodePrefix(
                oob_pb2.SetCodePrefixRequest(codice_fiscale=UNKNOWN_CF, prefix="AB12")
            ),
            NOT_FOUND,
            "citizen",
        ),
        Case(
            "grid: issue without authorisation",
            lambda w: grid("enroller").IssueGridCard(grid_pb2.IssueGridCardRequest()),
            INVALID,
            "authorisation_id is required",
        ),
        Case(
            "grid: issue, unknown authorisation",
            lambda w: grid("enroller").IssueGridCard(
                grid_pb2.IssueGridCardRequest(authorisation_id="au-000000000000000000000000")
            ),
            NOT_FOUND,
            "authorisation",
        ),
        Case(
            "grid: challenge, bad codice fiscale",
            lambda w: grid().GridChallenge(grid_pb2.GridChallengeRequest(codice_fiscale="RSS")),
            INVALID,
            "codice fiscale",
        ),
        Case(
            "grid: challenge, no card",
            lambda w: grid().GridChallenge(grid_pb2.GridChallengeRequest(codice_fiscale=w.cf)),
            NOT_FOUND,
            "Security Card",
        ),
        Case(
            "grid: challenge, origin with a tab",
            lambda w: grid().GridChallenge(
                grid_pb2.GridChallengeRequest(codice_fiscale=w.cf, origin="a\tb")
            ),
            INVALID,
            "origin",
        ),
        Case(
            "grid: answer, oversized origin",
            lambda w: grid().VerifyGridAnswer(
                grid_pb2.VerifyGridAnswerRequest(
                    codice_fiscale=w.cf, first_value="123", second_value="123", origin="o" * 129
                )
            ),
            INVALID,
            "origin",
        ),
        Case(
            "grid: answer with letters",
            lambda w: grid().VerifyGridAnswer(
                grid_pb2.VerifyGridAnswerRequest(
                    codice_fiscale=w.cf, first_value="12a", second_value="123"
                )
            ),
            INVALID,
            "digits",
        ),
        Case(
            "grid: revoke, bad serial",
            lambda w: grid("admin").RevokeGridCard(grid_pb2.RevokeGridCardRequest(serial="grid 1")),
            INVALID,
            "serial",
        ),
        Case(
            "grid: revoke, unknown",
            lambda w: grid("admin").RevokeGridCard(
                grid_pb2.RevokeGridCardRequest(serial="GRID-FFFFFFFFFF")
            ),
            NOT_FOUND,
            "serial: no ",  # the field, never the value sent
        ),
    ]
    check_refusals(world, cases)


def _raw(world: World, method: str, payload: bytes) -> Any:
    call = world.service.channel("verifier").unary_unary(method)
    return call(payload)


def test_wrong_wire_types_are_invalid_argument(world: World) -> None:
    verify = "/otphsm.v1.ValidationService/Verify"
    cases = [
        # field 1 (serial, a string) carrying bytes that are not UTF-8
        Case(
            "verify: serial not UTF-8",
            lambda w: _raw(w, verify, b"\x0a\x02\xff\xfe"),
            INVALID,
            "does not decode",
        ),
        # truncated message
        Case(
            "verify: truncated",
            lambda w: _raw(w, verify, b"\x0a\x10abc"),
            INVALID,
            "does not decode",
        ),
        # field 1 sent as a varint: parsed as an unknown field, so the subject is missing
        Case(
            "verify: serial as a number",
            lambda w: _raw(w, verify, b"\x08\x05"),
            INVALID,
            "serial or codice_fiscale",
        ),
    ]
    check_refusals(world, cases)


def test_expired_and_reused_challenges_are_refused(world: World, cns_card_1024: CnsCard) -> None:
    station = world.service.enrolment()
    fields = card_signature(cns_card_1024, world.nonce)
    station.AuthoriseWithCard(
        enrolment_pb2.AuthoriseWithCardRequest(challenge_id=world.challenge_id, **fields)
    )
    late = station.GetChallenge(enrolment_pb2.GetChallengeRequest())
    late_fields = card_signature(cns_card_1024, late.nonce)
    world.service.clock.advance(61)
    cases = [
        Case("challenge reused", lambda w: _authorise(w, **fields), PRECONDITION, "already used"),
        Case(
            "challenge expired",
            lambda w: _authorise(w, **{**late_fields, "challenge_id": late.challenge_id}),
            PRECONDITION,
            "expired",
        ),
    ]
    check_refusals(world, cases)
    with pytest.raises(grpc.RpcError) as refused:
        _authorise(world, **fields)
    assert dict(refused.value.trailing_metadata() or ())["otphsm-reason"] == "CHALLENGE_REUSED"


def test_used_and_expired_authorisations_and_activation_codes(
    world: World, cns_card_1024: CnsCard
) -> None:
    station = world.service.enrolment()
    used = world.service.authorise(cns_card_1024).authorisation_id
    station.IssueToken(enrolment_pb2.IssueTokenRequest(authorisation_id=used))
    stale = world.service.authorise(cns_card_1024).authorisation_id
    world.service.clock.advance(601)
    phone = TokenApp()
    cases = [
        Case(
            "authorisation used",
            lambda w: station.IssueToken(enrolment_pb2.IssueTokenRequest(authorisation_id=used)),
            PRECONDITION,
            "already used",
        ),
        Case(
            "authorisation expired",
            lambda w: station.IssueToken(enrolment_pb2.IssueTokenRequest(authorisation_id=stale)),
            PRECONDITION,
            "expired",
        ),
    ]
    check_refusals(world, cases)

    world.service.clock.advance(1800)
    cases = [
        Case(
            "activation code expired",
            lambda w: w.service.device().ActivateWithCode(
                device_pb2.ActivateWithCodeRequest(
                    activation_code=w.pending_code, device_public_key=phone.public_key
                )
            ),
            PRECONDITION,
            "expired",
        ),
    ]
    check_refusals(world, cases)


def test_messages_are_protobuf(world: World) -> None:
    """Sanity: the refusal helper really sees protobuf requests (not a vacuous pass)."""
    request = validation_pb2.VerifyRequest(serial=world.serial, code="000000")
    assert isinstance(request, Message)
    response = world.service.validation().Verify(request)
    assert response.result in (
        common_pb2.VERIFY_RESULT_WRONG_CODE,
        common_pb2.VERIFY_RESULT_OK,
    )
