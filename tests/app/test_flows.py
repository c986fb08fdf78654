"""The flows of docs/architecture.md through the use cases, on real parts: SoftHSM2, SQLite,
the test CNS PKI and a simulated card read by the station-side client, an emulated phone."""

from __future__ import annotations

import base64
import hmac
import re
import threading
from dataclasses import replace

import pyotp
import pytest
from support.app_fixtures import OPERATOR, PHONE_GATEWAY, PORTAL, STATION, Phone, card_evidence

from otphsm.core.app import activation, enrolment, issuance, lifecycle, validation
from otphsm.core.app.context import App
from otphsm.core.audit import verify_chain
from otphsm.core.certificates import CardCheckFailed, CardCheckFailure
from otphsm.core.clock import ManualClock
from otphsm.core.errors import AuthorisationRefused, FailedPrecondition, InvalidInput, NotFound
from otphsm.core.otp import hotp
from otphsm.core.records import ActivationMethod
from otphsm.core.tokens import OtpMode, OtpParameters, TokenState
from otphsm.core.verification import VerifyResult
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.sms.inbox import read_sms_messages

pytestmark = pytest.mark.softhsm
CF = "RSSMRA80A01L378S"


def authorise(app: App, card: CnsCard) -> str:
    challenge = enrolment.new_challenge(app, STATION)
    authorisation, _ = enrolment.authorise_with_card(
        app, STATION, challenge.challenge_id, card_evidence(card, challenge.nonce)
    )
    return authorisation.authorisation_id


def enrol_phone(app: App, card: CnsCard, phone: Phone) -> str:
    issued = issuance.issue_token(
        app, STATION, authorise(app, card), method=ActivationMethod.CODE, params=OtpParameters()
    )
    activated = activation.activate_with_code(
        app, PHONE_GATEWAY, issued.activation_code, phone.public_point
    )
    phone.complete(activated)
    serial = issued.token.serial
    proof = validation.prove_possession(app, PHONE_GATEWAY, serial, phone.code(app.clock.now()))
    assert proof.result is VerifyResult.OK
    return serial


def test_card_enrolment_secure_activation_and_login(app: App, cns_card_1024: CnsCard) -> None:
    clock: ManualClock = app.clock  # type: ignore[assignment]
    challenge = enrolment.new_challenge(app, STATION)
    evidence = card_evidence(cns_card_1024, challenge.nonce)
    authorisation, citizen = enrolment.authorise_with_card(
        app, STATION, challenge.challenge_id, evidence
    )
    assert (citizen.codice_fiscale, citizen.surname.upper(), citizen.birth_date) == (
        CF,
        "ROSSI",
        "1980-01-01",
    )
    issued = issuance.issue_token(
        app,
        STATION,
        authorisation.authorisation_id,
        method=ActivationMethod.CODE,
        params=OtpParameters(),
    )
    assert re.fullmatch(r"\d{6}-\d{6}-\d{6}", issued.activation_code)
    assert issued.token.state is TokenState.PENDING and issued.token.seed is None

    phone = Phone.new()
    activated = activation.activate_with_code(
        app, PHONE_GATEWAY, issued.activation_code, phone.public_point
    )
    phone.complete(activated)
    serial = issued.token.serial
    assert validation.verify_serial(app, PORTAL, serial, phone.code(clock.now())).result is (
        VerifyResult.NOT_ACTIVE
    )  # not before proof of possession
    assert validation.prove_possession(app, PHONE_GATEWAY, serial, phone.code(clock.now())).ok
    assert lifecycle.get_token(app, serial).state is TokenState.ACTIVE

    clock.advance(30)
    code = phone.code(clock.now())
    assert validation.verify_citizen(app, PORTAL, CF, code).ok
    assert validation.verify_serial(app, PORTAL, serial, code).result is VerifyResult.REPLAYED
    # The activation code is single-use.
    with pytest.raises(FailedPrecondition, match="already used"):
        activation.activate_with_code(
            app, PHONE_GATEWAY, issued.activation_code, phone.public_point
        )
    assert verify_chain(app.store.audit_entries(), app.hsm.keyed_digest).intact


def test_lockout_and_release(app: App, cns_card_1024: CnsCard) -> None:
    clock: ManualClock = app.clock  # type: ignore[assignment]
    phone = Phone.new()
    serial = enrol_phone(app, cns_card_1024, phone)
    clock.advance(30)
    results = [validation.verify_serial(app, PORTAL, serial, "000000") for _ in range(3)]
    assert [r.result for r in results] == [VerifyResult.WRONG_CODE] * 3
    assert results[-1].retry_after == 60
    locked = validation.verify_serial(app, PORTAL, serial, phone.code(clock.now()))
    assert (locked.result, locked.retry_after) == (VerifyResult.LOCKED, 60)
    clock.advance(61)
    assert validation.verify_serial(app, PORTAL, serial, phone.code(clock.now())).ok
    for _ in range(3):
        validation.verify_serial(app, PORTAL, serial, "000000")
    lifecycle.change_state(app, OPERATOR, serial, "unlock")
    clock.advance(30)
    assert validation.verify_serial(app, PORTAL, serial, phone.code(clock.now())).ok
    actions = [e.action for e in app.store.audit_entries()]
    assert actions.count("token_locked") == 2 and "token_unlocked" in actions


def test_phone_40_seconds_fast_logs_in_and_5_minutes_off_needs_resync(
    app: App, cns_card_1024: CnsCard
) -> None:
    clock: ManualClock = app.clock  # type: ignore[assignment]
    phone = Phone.new(skew_seconds=40)
    serial = enrol_phone(app, cns_card_1024, phone)
    for _ in range(6):
        clock.advance(37)
        assert validation.verify_serial(app, PORTAL, serial, phone.code(clock.now())).ok
    phone.skew_seconds = 300
    clock.advance(30)
    assert validation.verify_serial(app, PORTAL, serial, phone.code(clock.now())).result is (
        VerifyResult.WRONG_CODE
    )
    first = phone.code(clock.now())
    clock.advance(30)
    second = phone.code(clock.now())
    assert validation.resync_serial(app, PORTAL, serial, first, second).ok
    clock.advance(30)
    assert validation.verify_serial(app, PORTAL, serial, phone.code(clock.now())).ok


def test_replacement_after_an_sms_code(app: App, cns_card_1024: CnsCard) -> None:
    clock: ManualClock = app.clock  # type: ignore[assignment]
    old_phone = Phone.new()
    old_serial = enrol_phone(app, cns_card_1024, old_phone)
    enrolment.set_phone_number(app, STATION, CF, "+393331234567")

    lifecycle.send_replacement_code(app, STATION, CF)
    lifecycle.send_replacement_code(app, STATION, CF)  # supersedes the first
    messages = read_sms_messages(app.sms.outbox, "+393331234567")  # type: ignore[attr-defined]
    first_code, code = (re.search(r"\b(\d{6})\b", m.text).group(1) for m in messages)  # type: ignore[union-attr]
    if first_code != code:
        with pytest.raises(AuthorisationRefused, match="2 tries"):
            lifecycle.authorise_with_sms_code(app, STATION, CF, first_code)
    authorisation = lifecycle.authorise_with_sms_code(app, STATION, CF, code)
    with pytest.raises(FailedPrecondition, match="already used"):
        lifecycle.authorise_with_sms_code(app, STATION, CF, code)

    new_phone = Phone.new()
    issued = issuance.issue_token(
        app,
        STATION,
        authorisation.authorisation_id,
        method=ActivationMethod.CODE,
        params=OtpParameters(),
    )
    assert issued.token.replaces_serial == old_serial
    new_phone.complete(
        activation.activate_with_code(
            app, PHONE_GATEWAY, issued.activation_code, new_phone.public_point
        )
    )
    # The old phone works until the new one proves possession.
    clock.advance(30)
    assert validation.verify_serial(app, PORTAL, old_serial, old_phone.code(clock.now())).ok
    assert validation.prove_possession(
        app, PHONE_GATEWAY, issued.token.serial, new_phone.code(clock.now())
    ).ok
    assert lifecycle.get_token(app, old_serial).state is TokenState.REVOKED
    clock.advance(30)
    assert validation.verify_citizen(app, PORTAL, CF, new_phone.code(clock.now())).ok
    assert validation.verify_serial(
        app, PORTAL, old_serial, old_phone.code(clock.now())
    ).result is (VerifyResult.REVOKED)


def test_sms_code_three_wrong_then_wait(app: App, cns_card_1024: CnsCard) -> None:
    clock: ManualClock = app.clock  # type: ignore[assignment]
    enrol_phone(app, cns_card_1024, Phone.new())
    enrolment.set_phone_number(app, STATION, CF, "+393331234567")
    lifecycle.send_replacement_code(app, STATION, CF)
    code = re.search(r"\b(\d{6})\b", read_sms_messages(app.sms.outbox)[-1].text).group(1)  # type: ignore[attr-defined,union-attr]
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(3):
        with pytest.raises(AuthorisationRefused):
            lifecycle.authorise_with_sms_code(app, STATION, CF, wrong)
    with pytest.raises(FailedPrecondition) as waiting:
        lifecycle.authorise_with_sms_code(app, STATION, CF, code)
    assert waiting.value.retry_after == 60
    clock.advance(61)
    assert lifecycle.authorise_with_sms_code(app, STATION, CF, code).codice_fiscale == CF


def test_temporary_secret_activation(app: App, cns_card_1024: CnsCard) -> None:
    clock: ManualClock = app.clock  # type: ignore[assignment]
    issued = issuance.issue_token(
        app,
        STATION,
        authorise(app, cns_card_1024),
        method=ActivationMethod.TEMPORARY_SECRET,
        params=OtpParameters(),
        temporary_secret="48151",
    )
    phone = Phone.new()
    for left in ("2 tries", "1 tries", "wait 60 s"):
        with pytest.raises(AuthorisationRefused, match=left):
            activation.activate_with_temporary_secret(
                app, PHONE_GATEWAY, CF, "11111", phone.public_point
            )
    with pytest.raises(FailedPrecondition):
        activation.activate_with_temporary_secret(
            app, PHONE_GATEWAY, CF, "48151", phone.public_point
        )
    clock.advance(61)
    phone.complete(
        activation.activate_with_temporary_secret(
            app, PHONE_GATEWAY, CF, "48151", phone.public_point
        )
    )
    assert validation.prove_possession(
        app, PHONE_GATEWAY, issued.token.serial, phone.code(clock.now())
    ).ok


def test_temporary_secret_expires_after_five_minutes(app: App, cns_card_1024: CnsCard) -> None:
    clock: ManualClock = app.clock  # type: ignore[assignment]
    issuance.issue_token(
        app,
        STATION,
        authorise(app, cns_card_1024),
        method=ActivationMethod.TEMPORARY_SECRET,
        params=OtpParameters(),
        temporary_secret="48151",
    )
    clock.advance(301)
    with pytest.raises(FailedPrecondition, match="expired"):
        activation.activate_with_temporary_secret(
            app, PHONE_GATEWAY, CF, "48151", Phone.new().public_point
        )


def test_otpauth_compatibility_mode_with_pyotp_as_the_app(app: App, cns_card_1024: CnsCard) -> None:
    clock: ManualClock = app.clock  # type: ignore[assignment]
    issued = issuance.issue_token(
        app,
        STATION,
        authorise(app, cns_card_1024),
        method=ActivationMethod.OTPAUTH,
        params=OtpParameters(),
    )
    totp = pyotp.parse_uri(issued.otpauth_uri)
    assert isinstance(totp, pyotp.TOTP) and totp.issuer == "otphsm"
    assert len(base64.b32decode(totp.secret + "=" * (-len(totp.secret) % 8))) == 20
    serial = issued.token.serial
    assert validation.prove_possession(app, PHONE_GATEWAY, serial, totp.at(clock.now())).ok
    clock.advance(30)
    assert validation.verify_serial(app, PORTAL, serial, totp.at(clock.now())).ok


def test_challenges_are_single_use_and_expire(app: App, cns_card_1024: CnsCard) -> None:
    clock: ManualClock = app.clock  # type: ignore[assignment]
    challenge = enrolment.new_challenge(app, STATION)
    evidence = card_evidence(cns_card_1024, challenge.nonce)
    enrolment.authorise_with_card(app, STATION, challenge.challenge_id, evidence)
    with pytest.raises(CardCheckFailed) as reused:
        enrolment.authorise_with_card(app, STATION, challenge.challenge_id, evidence)
    assert reused.value.reason is CardCheckFailure.CHALLENGE_REUSED

    late = enrolment.new_challenge(app, STATION)
    late_evidence = card_evidence(cns_card_1024, late.nonce)
    clock.advance(61)
    before = app.store.snapshot()
    with pytest.raises(CardCheckFailed) as expired:
        enrolment.authorise_with_card(app, STATION, late.challenge_id, late_evidence)
    assert expired.value.reason is CardCheckFailure.CHALLENGE_EXPIRED
    assert app.store.snapshot() == before


def test_a_signature_over_another_challenge_is_refused(app: App, cns_card_1024: CnsCard) -> None:
    one = enrolment.new_challenge(app, STATION)
    other = enrolment.new_challenge(app, STATION)
    before = app.store.snapshot()
    with pytest.raises(CardCheckFailed) as refused:
        enrolment.authorise_with_card(
            app, STATION, one.challenge_id, card_evidence(cns_card_1024, other.nonce)
        )
    assert refused.value.reason is CardCheckFailure.BAD_SIGNATURE
    assert app.store.snapshot() == before


def test_an_authorisation_creates_one_token(app: App, cns_card_1024: CnsCard) -> None:
    authorisation_id = authorise(app, cns_card_1024)
    issuance.issue_token(
        app, STATION, authorisation_id, method=ActivationMethod.CODE, params=OtpParameters()
    )
    with pytest.raises(FailedPrecondition, match="already used"):
        issuance.issue_token(
            app, STATION, authorisation_id, method=ActivationMethod.CODE, params=OtpParameters()
        )
    with pytest.raises(NotFound):
        issuance.issue_token(
            app, STATION, "au-nope", method=ActivationMethod.CODE, params=OtpParameters()
        )


def test_lifecycle_transitions(app: App, cns_card_1024: CnsCard) -> None:
    clock: ManualClock = app.clock  # type: ignore[assignment]
    phone = Phone.new()
    serial = enrol_phone(app, cns_card_1024, phone)
    lifecycle.change_state(app, OPERATOR, serial, "suspend")
    clock.advance(30)
    assert validation.verify_serial(app, PORTAL, serial, phone.code(clock.now())).result is (
        VerifyResult.NOT_ACTIVE
    )
    with pytest.raises(FailedPrecondition, match="cannot suspend"):
        lifecycle.change_state(app, OPERATOR, serial, "suspend")
    lifecycle.change_state(app, OPERATOR, serial, "resume")
    assert validation.verify_serial(app, PORTAL, serial, phone.code(clock.now())).ok
    lifecycle.change_state(app, OPERATOR, serial, "revoke")
    with pytest.raises(FailedPrecondition):
        lifecycle.change_state(app, OPERATOR, serial, "resume")
    [listed] = app.store.tokens_of(CF)
    assert (listed.serial, listed.state, listed.kind.value) == (
        serial,
        TokenState.REVOKED,
        "mobile",
    )
    assert listed.last_used_at == int(clock.now())


def test_malformed_input_changes_nothing(app: App, cns_card_1024: CnsCard) -> None:
    phone = Phone.new()
    serial = enrol_phone(app, cns_card_1024, phone)
    before = app.store.snapshot()
    for call in (
        lambda: validation.verify_serial(app, PORTAL, serial, "12345"),
        lambda: validation.verify_serial(app, PORTAL, "bad serial!", "123456"),
        lambda: activation.activate_with_code(app, PHONE_GATEWAY, "123", phone.public_point),
        lambda: activation.activate_with_code(
            app, PHONE_GATEWAY, "123456789012345678", phone.public_point
        ),
        lambda: issuance.issue_token(
            app,
            STATION,
            "au-x",
            method=ActivationMethod.TEMPORARY_SECRET,
            params=OtpParameters(),
            temporary_secret="12",
        ),
        lambda: enrolment.set_phone_number(app, STATION, CF, "call me"),
    ):
        with pytest.raises(InvalidInput):
            call()
    with pytest.raises(NotFound):
        validation.verify_serial(app, PORTAL, "MOB-0000000000", "123456")
    assert app.store.snapshot() == before


def test_concurrent_verifies_of_one_code_accept_it_once(app: App, cns_card_1024: CnsCard) -> None:
    clock: ManualClock = app.clock  # type: ignore[assignment]
    phone = Phone.new()
    serial = enrol_phone(app, cns_card_1024, phone)
    clock.advance(30)
    code = phone.code(clock.now())
    results: list[VerifyResult] = []
    barrier = threading.Barrier(16)

    def attempt() -> None:
        barrier.wait()
        results.append(validation.verify_serial(app, PORTAL, serial, code).result)

    threads = [threading.Thread(target=attempt) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(VerifyResult.OK) == 1


def test_a_second_unfinished_enrolment_supersedes_the_first(
    app: App, cns_card_1024: CnsCard
) -> None:
    params = OtpParameters()
    first = issuance.issue_token(
        app, STATION, authorise(app, cns_card_1024), method=ActivationMethod.CODE, params=params
    )
    second = issuance.issue_token(
        app, STATION, authorise(app, cns_card_1024), method=ActivationMethod.CODE, params=params
    )
    assert lifecycle.get_token(app, first.token.serial).state is TokenState.REVOKED
    assert lifecycle.get_token(app, second.token.serial).state is TokenState.PENDING
    with pytest.raises(FailedPrecondition, match="no longer applies"):
        activation.activate_with_code(
            app, PHONE_GATEWAY, first.activation_code, Phone.new().public_point
        )
    revoked = [e for e in app.store.audit_entries() if e.action == "token_revoked"]
    assert [(e.subject, e.details.get("via")) for e in revoked] == [
        (first.token.serial, "superseded")
    ]


def test_a_suspended_phone_is_replaced_too_and_never_comes_back(
    app: App, cns_card_1024: CnsCard
) -> None:
    clock: ManualClock = app.clock  # type: ignore[assignment]
    old_phone, new_phone = Phone.new(), Phone.new()
    old = enrol_phone(app, cns_card_1024, old_phone)
    lifecycle.change_state(app, OPERATOR, old, "suspend")
    clock.advance(30)
    new = enrol_phone(app, cns_card_1024, new_phone)
    assert lifecycle.get_token(app, new).replaces_serial == old
    assert lifecycle.get_token(app, old).state is TokenState.REVOKED
    with pytest.raises(FailedPrecondition, match="cannot resume"):
        lifecycle.change_state(app, OPERATOR, old, "resume")
    states = {t.serial: t.state for t in app.store.tokens_of(CF)}
    assert states == {old: TokenState.REVOKED, new: TokenState.ACTIVE}
    revoked = [e for e in app.store.audit_entries() if e.action == "token_revoked"]
    assert [(e.subject, e.details.get("via")) for e in revoked] == [(old, f"replaced_by:{new}")]


def test_resuming_a_phone_beside_an_active_one_is_refused(app: App, cns_card_1024: CnsCard) -> None:
    active = enrol_phone(app, cns_card_1024, Phone.new())
    app.clock.advance(30)  # type: ignore[attr-defined]
    suspended = replace(
        lifecycle.get_token(app, active), serial="MOB-0000000002", state=TokenState.SUSPENDED
    )
    app.store.insert_token(replace(suspended, version=0))  # as a database from before the rule
    before = app.store.snapshot()
    with pytest.raises(FailedPrecondition, match="another active phone"):
        lifecycle.change_state(app, OPERATOR, suspended.serial, "resume")
    assert app.store.snapshot() == before


def test_racing_proofs_of_two_phones_leave_one_active(app: App, cns_card_1024: CnsCard) -> None:
    """Two phones activated for one citizen (as two concurrent enrolments at two counters
    can leave them) prove possession at the same moment: exactly one phone ends up active."""
    clock: ManualClock = app.clock  # type: ignore[assignment]
    for _ in range(4):
        phones: dict[str, Phone] = {}
        for _ in range(2):
            issued = issuance.issue_token(
                app,
                STATION,
                authorise(app, cns_card_1024),
                method=ActivationMethod.CODE,
                params=OtpParameters(),
            )
            phone = Phone.new()
            phone.complete(
                activation.activate_with_code(
                    app, PHONE_GATEWAY, issued.activation_code, phone.public_point
                )
            )
            phones[issued.token.serial] = phone
        first = lifecycle.get_token(app, next(iter(phones)))  # superseded by the second issue
        app.store.update_token(replace(first, state=TokenState.PENDING))
        barrier = threading.Barrier(2)
        results: list[VerifyResult] = []

        def prove(
            serial: str, phone: Phone, barrier: threading.Barrier, results: list[VerifyResult]
        ) -> None:
            barrier.wait()
            proof = validation.prove_possession(app, PHONE_GATEWAY, serial, phone.code(clock.now()))
            results.append(proof.result)

        threads = [
            threading.Thread(target=prove, args=(*item, barrier, results))
            for item in phones.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert VerifyResult.OK in results
        active = [t for t in app.store.tokens_of(CF) if t.state is TokenState.ACTIVE]
        assert len(active) == 1 and active[0].serial in phones
        clock.advance(30)


# --- the limits, just inside and just outside ----------------------------------------------
# Each deadline is `created_at + limit` in whole seconds, and a use at the deadline is late
# (`expires_at <= now` refuses): valid through +limit-1 s, refused from +limit s.


def code_at(phone: Phone, factor: int) -> str:
    """The phone's code for a counter (HOTP) or a time step (TOTP)."""
    return hotp(lambda m: hmac.new(phone.seed, m, phone.algorithm).digest(), factor, phone.digits)


@pytest.mark.parametrize(
    ("elapsed", "usable"), [(59, True), (60, False), (61, False)], ids=["59s", "60s", "61s"]
)
def test_a_challenge_is_valid_for_60_seconds(
    app: App, cns_card_1024: CnsCard, elapsed: int, usable: bool
) -> None:
    clock: ManualClock = app.clock  # type: ignore[assignment]
    challenge = enrolment.new_challenge(app, STATION)
    evidence = card_evidence(cns_card_1024, challenge.nonce)
    clock.advance(elapsed)
    if usable:
        _, citizen = enrolment.authorise_with_card(app, STATION, challenge.challenge_id, evidence)
        assert citizen.codice_fiscale == CF
        return
    before = app.store.snapshot()
    with pytest.raises(CardCheckFailed) as late:
        enrolment.authorise_with_card(app, STATION, challenge.challenge_id, evidence)
    assert late.value.reason is CardCheckFailure.CHALLENGE_EXPIRED
    assert app.store.snapshot() == before


@pytest.mark.parametrize(
    ("elapsed", "usable"),
    [(1799, True), (1800, False), (1801, False)],
    ids=["1799s", "1800s", "1801s"],
)
def test_an_activation_code_is_valid_for_30_minutes(
    app: App, cns_card_1024: CnsCard, elapsed: int, usable: bool
) -> None:
    clock: ManualClock = app.clock  # type: ignore[assignment]
    issued = issuance.issue_token(
        app,
        STATION,
        authorise(app, cns_card_1024),
        method=ActivationMethod.CODE,
        params=OtpParameters(),
    )
    clock.advance(elapsed)
    phone = Phone.new()
    if usable:
        phone.complete(
            activation.activate_with_code(
                app, PHONE_GATEWAY, issued.activation_code, phone.public_point
            )
        )
        serial = issued.token.serial
        assert validation.prove_possession(app, PHONE_GATEWAY, serial, phone.code(clock.now())).ok
        return
    before = app.store.snapshot()
    with pytest.raises(FailedPrecondition, match="expired"):
        activation.activate_with_code(
            app, PHONE_GATEWAY, issued.activation_code, phone.public_point
        )
    assert app.store.snapshot() == before
    token = lifecycle.get_token(app, issued.token.serial)
    assert token.state is TokenState.PENDING and token.seed is None


@pytest.mark.parametrize(
    ("elapsed", "usable"), [(299, True), (300, False), (301, False)], ids=["299s", "300s", "301s"]
)
def test_a_temporary_secret_is_valid_for_5_minutes(
    app: App, cns_card_1024: CnsCard, elapsed: int, usable: bool
) -> None:
    clock: ManualClock = app.clock  # type: ignore[assignment]
    issued = issuance.issue_token(
        app,
        STATION,
        authorise(app, cns_card_1024),
        method=ActivationMethod.TEMPORARY_SECRET,
        params=OtpParameters(),
        temporary_secret="48151",
    )
    clock.advance(elapsed)
    phone = Phone.new()
    if usable:
        phone.complete(
            activation.activate_with_temporary_secret(
                app, PHONE_GATEWAY, CF, "48151", phone.public_point
            )
        )
        serial = issued.token.serial
        assert validation.prove_possession(app, PHONE_GATEWAY, serial, phone.code(clock.now())).ok
        return
    before = app.store.snapshot()
    with pytest.raises(FailedPrecondition, match="expired"):
        activation.activate_with_temporary_secret(
            app, PHONE_GATEWAY, CF, "48151", phone.public_point
        )
    assert app.store.snapshot() == before


@pytest.mark.parametrize(
    ("outside", "inside", "later"),
    [(20, 19, 21), (-22, -21, -19)],
    ids=["phone-fast", "phone-slow"],
)
def test_totp_resync_reaches_ten_minutes_either_way(
    app: App, cns_card_1024: CnsCard, outside: int, inside: int, later: int
) -> None:
    """The second code must lie within ±20 steps (±10 min at 30 s) of the server's current
    step, the first one step before it (it was shown a step earlier, so a phone 10 min slow
    fares like one 10 min fast): a pair one step further out is refused; one step nearer,
    accepted, and the phone then logs in at its own time. Steps are relative to the server's
    step at the resync."""
    clock: ManualClock = app.clock  # type: ignore[assignment]
    phone = Phone.new()
    serial = enrol_phone(app, cns_card_1024, phone)
    clock.advance(3600)  # the last used step is far behind every pair tried below
    now = int(clock.now()) // 30

    def resync(first: int) -> VerifyResult:
        pair = (code_at(phone, now + first), code_at(phone, now + first + 1))
        return validation.resync_serial(app, PORTAL, serial, *pair).result

    before = lifecycle.get_token(app, serial)
    assert resync(outside) is VerifyResult.WRONG_CODE
    after = lifecycle.get_token(app, serial)
    assert (after.moving_factor, after.drift_steps) == (before.moving_factor, before.drift_steps)

    assert resync(inside) is VerifyResult.OK
    resynced = lifecycle.get_token(app, serial)
    assert (resynced.moving_factor, resynced.drift_steps) == (now + inside + 2, inside + 1)
    assert validation.verify_serial(app, PORTAL, serial, code_at(phone, now + later)).ok


def test_hotp_resync_reaches_1000_counters_ahead(app: App, cns_card_1024: CnsCard) -> None:
    """Both codes must lie in the 1,000 counters from the one the server expects next
    (`next` .. `next`+999)."""
    issued = issuance.issue_token(
        app,
        STATION,
        authorise(app, cns_card_1024),
        method=ActivationMethod.CODE,
        params=OtpParameters(mode=OtpMode.HOTP),
    )
    phone = Phone.new()
    phone.complete(
        activation.activate_with_code(
            app, PHONE_GATEWAY, issued.activation_code, phone.public_point
        )
    )
    serial = issued.token.serial
    assert validation.prove_possession(app, PHONE_GATEWAY, serial, code_at(phone, 0)).ok
    expected = lifecycle.get_token(app, serial).moving_factor
    assert expected == 1

    def resync(first: int) -> VerifyResult:
        pair = (code_at(phone, expected + first), code_at(phone, expected + first + 1))
        return validation.resync_serial(app, PORTAL, serial, *pair).result

    assert resync(1000) is VerifyResult.WRONG_CODE  # second code at +1001
    assert resync(999) is VerifyResult.WRONG_CODE  # second code at +1000
    assert lifecycle.get_token(app, serial).moving_factor == expected
    assert resync(998) is VerifyResult.OK  # second code at +999
    assert lifecycle.get_token(app, serial).moving_factor == expected + 1000
    # the code just past the accepted pair (the refused pair's second) now logs in
    assert validation.verify_serial(app, PORTAL, serial, code_at(phone, expected + 1000)).ok
