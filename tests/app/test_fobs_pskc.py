"""Hardware tokens end to end on real parts (SoftHSM2, SQLite, the test CNS PKI): a vendor's
PSKC file round-trips into inventory, a fob is assigned to a card-authorised citizen, and its
codes (button presses, display) verify through the use cases."""

from __future__ import annotations

from dataclasses import replace

import pytest
from support.app_fixtures import OPERATOR, PHONE_GATEWAY, PORTAL, STATION, Phone, card_evidence
from support.fobs import PASSWORD, PSK, TOTP_SHA256, batch

from otphsm.core.app import activation, enrolment, issuance, lifecycle, validation
from otphsm.core.app.context import App
from otphsm.core.app.fobs import UNASSIGNED, assign_fob, fob_inventory
from otphsm.core.audit import verify_chain
from otphsm.core.clock import ManualClock
from otphsm.core.errors import FailedPrecondition, NotFound
from otphsm.core.records import ActivationMethod
from otphsm.core.tokens import OtpParameters, TokenKind, TokenState
from otphsm.core.verification import VerifyResult
from otphsm.pskc import import_pskc
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.token.keyfob import KeyFob
from otphsm.simulators.token.pskc_factory import pskc_document

pytestmark = pytest.mark.softhsm
CF_MARIO = "RSSMRA80A01L378S"


def authorise(app: App, card: CnsCard) -> str:
    challenge = enrolment.new_challenge(app, STATION)
    authorisation, _ = enrolment.authorise_with_card(
        app, STATION, challenge.challenge_id, card_evidence(card, challenge.nonce)
    )
    return authorisation.authorisation_id


def by_serial(fobs: list[KeyFob]) -> dict[str, KeyFob]:
    return {fob.serial: fob for fob in fobs}


# --- round trips -------------------------------------------------------------------------


def test_hotp_batch_round_trip_assign_and_login(app: App, cns_card_1024: CnsCard) -> None:
    fobs = batch(3)
    tokens = import_pskc(app, OPERATOR, pskc_document(fobs, psk=PSK), psk=PSK)
    assert [t.serial for t in tokens] == ["FOB-00001234", "FOB-00001235", "FOB-00001236"]
    assert {(t.kind, t.state, t.codice_fiscale) for t in tokens} == {
        (TokenKind.PHYSICAL, TokenState.SUSPENDED, UNASSIGNED)
    }
    assert [t.serial for t in fob_inventory(app)] == [t.serial for t in tokens]
    fob = by_serial(fobs)["FOB-00001235"]

    # In inventory a fob's codes open nothing, not even a proof of possession.
    code = fob.press()
    assert validation.prove_possession(app, PHONE_GATEWAY, fob.serial, code).result is (
        VerifyResult.NOT_ACTIVE
    )
    assigned = assign_fob(app, STATION, authorise(app, cns_card_1024), fob.serial)
    assert (assigned.codice_fiscale, assigned.state) == (CF_MARIO, TokenState.PENDING)
    assert fob.serial not in [t.serial for t in fob_inventory(app)]
    with pytest.raises(NotFound):  # pending: not yet a login token
        validation.verify_citizen(app, PORTAL, CF_MARIO, fob.press())
    assert validation.prove_possession(app, STATION, fob.serial, fob.press()).ok
    assert lifecycle.get_token(app, fob.serial).state is TokenState.ACTIVE

    replayed = fob.press()
    assert validation.verify_citizen(app, PORTAL, CF_MARIO, replayed).ok
    assert validation.verify_citizen(app, PORTAL, CF_MARIO, replayed).result is (
        VerifyResult.REPLAYED
    )
    assert validation.verify_citizen(app, PORTAL, CF_MARIO, fob.press()).ok
    actions = [(e.action, e.subject) for e in app.store.audit_entries()]
    assert ("fob_assigned", fob.serial) in actions
    assert ("token_active", fob.serial) in actions
    assert verify_chain(app.store.audit_entries(), app.hsm.keyed_digest).intact


def test_totp_batch_with_a_password_round_trips(app: App, cns_card_1024: CnsCard) -> None:
    clock: ManualClock = app.clock  # type: ignore[assignment]
    fobs = batch(2, first=77, params=TOTP_SHA256)
    document = pskc_document(fobs, password=PASSWORD, pbkdf2_iterations=20_000)
    tokens = import_pskc(app, OPERATOR, document, password=PASSWORD)
    assert {(t.params, t.moving_factor) for t in tokens} == {(TOTP_SHA256, 0)}
    fob = fobs[1]
    fob.clock_skew = 20  # the fob's clock runs 20 s fast: within the window
    assign_fob(app, STATION, authorise(app, cns_card_1024), fob.serial)
    assert validation.prove_possession(app, STATION, fob.serial, fob.code(clock.now())).ok
    clock.advance(30)
    code = fob.code(clock.now())
    assert len(code) == 8
    assert validation.verify_citizen(app, PORTAL, CF_MARIO, code).ok
    assert validation.verify_citizen(app, PORTAL, CF_MARIO, code).result is VerifyResult.REPLAYED


def test_the_delivered_counter_is_where_the_server_starts(app: App, cns_card_1024: CnsCard) -> None:
    fobs = batch(1, start_counter=500)
    (token,) = import_pskc(app, OPERATOR, pskc_document(fobs, psk=PSK), psk=PSK)
    assert token.moving_factor == 500
    fob = fobs[0]
    assign_fob(app, STATION, authorise(app, cns_card_1024), fob.serial)
    stale = replace(fob, counter=0).press()  # a code from before delivery
    assert validation.prove_possession(app, STATION, fob.serial, stale).result is (
        VerifyResult.WRONG_CODE
    )
    assert validation.prove_possession(app, STATION, fob.serial, fob.press()).ok


def test_hotp_look_ahead_across_unseen_presses_then_resync(
    app: App, cns_card_1024: CnsCard
) -> None:
    fobs = batch(1)
    import_pskc(app, OPERATOR, pskc_document(fobs, psk=PSK), psk=PSK)
    fob = fobs[0]
    assign_fob(app, STATION, authorise(app, cns_card_1024), fob.serial)
    assert validation.prove_possession(app, STATION, fob.serial, fob.press()).ok
    for _ in range(10):  # pressed in a pocket: ten codes nobody sent
        fob.press()
    assert validation.verify_serial(app, PORTAL, fob.serial, fob.press()).ok  # 10 ahead
    assert lifecycle.get_token(app, fob.serial).moving_factor == fob.counter

    for _ in range(11):  # one press too many for the look-ahead of 10
        fob.press()
    beyond = fob.press()
    assert validation.verify_serial(app, PORTAL, fob.serial, beyond).result is (
        VerifyResult.WRONG_CODE
    )
    first, second = fob.press(), fob.press()
    assert validation.resync_serial(app, OPERATOR, fob.serial, first, second).ok
    assert validation.verify_citizen(app, PORTAL, CF_MARIO, fob.press()).ok


def test_a_fob_lives_beside_the_phone(app: App, cns_card_1024: CnsCard) -> None:
    """A fob never replaces the mobile device, nor a new phone the fob; either logs in."""
    clock: ManualClock = app.clock  # type: ignore[assignment]
    phone = Phone.new()
    issued = issuance.issue_token(
        app,
        STATION,
        authorise(app, cns_card_1024),
        method=ActivationMethod.CODE,
        params=OtpParameters(),
    )
    activated = activation.activate_with_code(
        app, PHONE_GATEWAY, issued.activation_code, phone.public_point
    )
    phone.complete(activated)
    assert validation.prove_possession(
        app, PHONE_GATEWAY, issued.token.serial, phone.code(clock.now())
    ).ok
    fobs = batch(1)
    import_pskc(app, OPERATOR, pskc_document(fobs, psk=PSK), psk=PSK)
    fob = fobs[0]
    assign_fob(app, STATION, authorise(app, cns_card_1024), fob.serial)
    assert validation.prove_possession(app, STATION, fob.serial, fob.press()).ok
    assert lifecycle.get_token(app, issued.token.serial).state is TokenState.ACTIVE

    clock.advance(30)
    assert validation.verify_citizen(app, PORTAL, CF_MARIO, fob.press()).ok
    clock.advance(30)
    assert validation.verify_citizen(app, PORTAL, CF_MARIO, phone.code(clock.now())).ok
    # A new phone replaces the old phone only.
    new_phone = Phone.new()
    reissued = issuance.issue_token(
        app,
        STATION,
        authorise(app, cns_card_1024),
        method=ActivationMethod.CODE,
        params=OtpParameters(),
    )
    new_phone.complete(
        activation.activate_with_code(
            app, PHONE_GATEWAY, reissued.activation_code, new_phone.public_point
        )
    )
    clock.advance(30)
    assert validation.prove_possession(
        app, PHONE_GATEWAY, reissued.token.serial, new_phone.code(clock.now())
    ).ok
    states = {t.serial: t.state for t in app.store.tokens_of(CF_MARIO)}
    assert states == {
        issued.token.serial: TokenState.REVOKED,
        reissued.token.serial: TokenState.ACTIVE,
        fob.serial: TokenState.ACTIVE,
    }
    assert validation.verify_citizen(app, PORTAL, CF_MARIO, fob.press()).ok


# --- assignment rules --------------------------------------------------------------------


def test_assignment_rules(app: App, cns_card_1024: CnsCard) -> None:
    fobs = batch(3)
    import_pskc(app, OPERATOR, pskc_document(fobs, psk=PSK), psk=PSK)
    authorisation = authorise(app, cns_card_1024)
    with pytest.raises(NotFound):
        assign_fob(app, STATION, authorisation, "FOB-99999999")
    with pytest.raises(NotFound):
        assign_fob(app, STATION, "au-unknown", fobs[0].serial)
    # A refused assignment does not spend the authorisation.
    assign_fob(app, STATION, authorisation, fobs[0].serial)
    with pytest.raises(FailedPrecondition, match="already holds key fob FOB-00001234"):
        assign_fob(app, STATION, authorise(app, cns_card_1024), fobs[1].serial)
    with pytest.raises(FailedPrecondition, match="already assigned"):
        assign_fob(app, STATION, authorise(app, cns_card_1024), fobs[0].serial)
    # A lost fob is revoked; then another may be given, with a fresh authorisation.
    lifecycle.change_state(app, OPERATOR, fobs[0].serial, "revoke")
    with pytest.raises(FailedPrecondition, match="already used"):
        assign_fob(app, STATION, authorisation, fobs[1].serial)
    assert assign_fob(app, STATION, authorise(app, cns_card_1024), fobs[1].serial).state is (
        TokenState.PENDING
    )
    lifecycle.change_state(app, OPERATOR, fobs[2].serial, "revoke")  # scrapped in inventory
    with pytest.raises(FailedPrecondition, match="is revoked, not in inventory"):
        assign_fob(app, STATION, authorise(app, cns_card_1024), fobs[2].serial)


def test_the_audit_names_serials_never_seeds(app: App) -> None:
    fobs = batch(2, first=5000)
    document = pskc_document(fobs, psk=PSK)
    import_pskc(app, OPERATOR, document, psk=PSK)
    (entry,) = [e for e in app.store.audit_entries() if e.action == "fobs_imported"]
    assert entry.details == {"count": 2, "serials": ["FOB-00005000", "FOB-00005001"]}
    assert entry.subject.startswith("pskc:")
    dump = repr(app.store.snapshot())
    for fob in fobs:
        assert fob.secret.hex() not in dump and repr(fob.secret) not in dump


def test_fob_logins_do_not_lock_the_phone(app: App, cns_card_1024: CnsCard) -> None:
    clock: ManualClock = app.clock  # type: ignore[assignment]
    phone = Phone.new()
    issued = issuance.issue_token(
        app,
        STATION,
        authorise(app, cns_card_1024),
        method=ActivationMethod.CODE,
        params=OtpParameters(),
    )
    phone.complete(
        activation.activate_with_code(
            app, PHONE_GATEWAY, issued.activation_code, phone.public_point
        )
    )
    phone_serial = issued.token.serial
    assert validation.prove_possession(app, PHONE_GATEWAY, phone_serial, phone.code(clock.now())).ok
    fobs = batch(1)
    import_pskc(app, OPERATOR, pskc_document(fobs, psk=PSK), psk=PSK)
    fob = fobs[0]
    assign_fob(app, STATION, authorise(app, cns_card_1024), fob.serial)
    assert validation.prove_possession(app, STATION, fob.serial, fob.press()).ok
    for _ in range(3):
        clock.advance(30)
        assert validation.verify_citizen(app, PORTAL, CF_MARIO, fob.press()).ok
    assert lifecycle.get_token(app, phone_serial).locked_until == 0
    clock.advance(30)
    assert validation.verify_citizen(app, PORTAL, CF_MARIO, phone.code(clock.now())).ok


def test_an_unassigned_fob_cannot_be_resumed_into_use(app: App) -> None:
    fobs = batch(1, first=7000)
    import_pskc(app, OPERATOR, pskc_document(fobs, psk=PSK), psk=PSK)
    with pytest.raises(FailedPrecondition, match="unassigned"):
        lifecycle.change_state(app, OPERATOR, fobs[0].serial, "resume")
