"""Crash consistency of the smaller units of work (`docs/architecture.md`, "Units of work and
their write points"): a token's state change, a card authorisation, a phone number and a wrong
temporary secret. As in test_crash_points.py: a real `otphsm serve` ends at the write point,
on SQLite and on PostgreSQL, is started again, and the test checks that the unit's writes are
all there or none, that the audit chain verifies and that the client's retry succeeds.

The card authorisation needs a card that serve, on the real clock, accepts: here the test CA,
its CRL and the card are made for the current time (as the demo does), and serve trusts that
CA (`card_ca_files` below replaces the fixed-date one for this module).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

import grpc
import pytest
from support.card_fixtures import CARD_PIN, CARD_PUK, MARIO_ROSSI
from support.crash_rig import (
    CF,
    DEVICE,
    HOTP,
    POINTS,
    TEST_ACTOR,
    Rig,
    activated_phone,
    dies,
    in_process,
    open_store_at,
    refused_as_used,
)
from support.service_devices import TokenApp, card_signature
from support.store_records import citizen

from otphsm.core.app.issuance import issue_token
from otphsm.core.app.lifecycle import change_state
from otphsm.core.app.validation import prove_possession
from otphsm.core.ports import Store
from otphsm.core.records import ActivationMethod
from otphsm.core.tokens import Token, TokenState
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.card.factory import issue_card
from otphsm.simulators.card.spec import CardSpec
from otphsm.simulators.deployment import CardTrust, card_ca, write_card_trust
from otphsm.v1 import (
    admin_pb2,
    common_pb2,
    device_pb2,
    enrolment_pb2,
    validation_pb2,
    validation_pb2_grpc,
)

pytestmark = [pytest.mark.softhsm, pytest.mark.slow, pytest.mark.timeout(120)]

RIGHT_SECRET = "48151"
WRONG_SECRET = "62342"
NEW_NUMBER = "+393339876543"


@pytest.fixture(scope="module")
def card_issued_now(tmp_path_factory: pytest.TempPathFactory) -> tuple[CardSpec, CardTrust]:
    """Mario Rossi's card, its CA and CRL, made five minutes ago (serve checks them against
    the real clock)."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca = card_ca(now)
    spec = issue_card(ca, MARIO_ROSSI, CARD_PIN, CARD_PUK, key_size=1024, now=now)
    return spec, write_card_trust(ca, tmp_path_factory.mktemp("cns-trust-now"), now)


@pytest.fixture
def card_ca_files(card_issued_now: tuple[CardSpec, CardTrust]) -> CardTrust:
    """The trust serve is configured with (`support.crash_rig.rig`): the CA made now."""
    return card_issued_now[1]


@pytest.fixture
def card(card_issued_now: tuple[CardSpec, CardTrust]) -> CnsCard:
    inserted = CnsCard(card_issued_now[0])
    inserted.power_on()
    return inserted


def audited(store: Store) -> list[tuple[str, str]]:
    return [(e.action, e.subject) for e in store.audit_entries()]


# --- state change ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StateChange:
    """An admin operation on an ACTIVE phone (`before` put it where the operation applies):
    what the token becomes and the audit entry that says so."""

    before: str
    after: TokenState
    action: str


STATE_CHANGES = {
    "suspend": StateChange("", TokenState.SUSPENDED, "token_suspended"),
    "resume": StateChange("suspend", TokenState.ACTIVE, "token_active"),
    "revoke": StateChange("", TokenState.REVOKED, "token_revoked"),
    "unlock": StateChange("lock", TokenState.ACTIVE, "token_unlocked"),
}


def _prepare(rig: Rig, serial: str, before: str) -> None:
    with in_process(rig.config) as app:
        if before == "suspend":
            change_state(app, TEST_ACTOR, serial, "suspend")
        elif before == "lock":
            token = app.store.get_token(serial)
            assert token is not None
            locked = replace(token, failures=3, lock_level=1, locked_until=int(app.now()) + 900)
            assert app.store.update_token(locked)


def _unlocked(token: Token) -> bool:
    return (token.failures, token.lock_level, token.locked_until) == (0, 0, 0)


@pytest.mark.parametrize("operation", list(STATE_CHANGES))
@pytest.mark.parametrize("point", POINTS)
def test_state_change_crash_changes_the_token_only_with_its_audit_entry(
    rig: Rig, point: str, operation: str
) -> None:
    """Suspend, resume, revoke, unlock: the token and its `token_<state>` (or token_unlocked)
    entry: one commit."""
    change = STATE_CHANGES[operation]
    phone = activated_phone(rig)
    with in_process(rig.config) as app:
        assert prove_possession(app, DEVICE, phone.serial, phone.counter_code(0)).ok
    _prepare(rig, phone.serial, change.before)
    with open_store_at(rig.store_url) as store:
        before = store.get_token(phone.serial)
        entries_before = audited(store).count((change.action, phone.serial))
    assert before is not None
    request = admin_pb2.TokenRequest(serial=phone.serial)
    rig.serve(crash_at=f"state_change.{point}")
    dies(lambda: getattr(rig.admin(), operation.capitalize())(request, timeout=30))
    rig.died_at_write_point()

    rig.serve()
    committed = point == "after_commit"
    with open_store_at(rig.store_url) as store:
        token = store.get_token(phone.serial)
        assert token is not None
        assert token.state is (change.after if committed else before.state)
        assert _unlocked(token) is (committed or _unlocked(before))
        entries = audited(store).count((change.action, phone.serial))
        assert entries == entries_before + int(committed)
    retry = getattr(rig.admin(), operation.capitalize())
    if committed and operation != "unlock":  # the answer was lost: asking again is refused
        refused_as_used(lambda: retry(request, timeout=30))
    else:
        assert retry(request, timeout=30).token.serial == phone.serial
    with open_store_at(rig.store_url) as store:
        token = store.get_token(phone.serial)
        assert token is not None and token.state is change.after
        if operation == "unlock":
            assert _unlocked(token)
    rig.audit_intact()


# --- card authorisation ---------------------------------------------------------------------


def _authorise_with_card(rig: Rig, card: CnsCard) -> enrolment_pb2.AuthoriseWithCardRequest:
    challenge = rig.station().GetChallenge(enrolment_pb2.GetChallengeRequest(), timeout=30)
    return enrolment_pb2.AuthoriseWithCardRequest(
        challenge_id=challenge.challenge_id, **card_signature(card, challenge.nonce)
    )


def _card_authorisations(store: Store) -> list[str]:
    """The authorisations the audit says the card earned; each must exist, unused."""
    found = []
    for entry in store.audit_entries():
        if entry.action == "card_authorised":
            granted = store.get_authorisation(str(entry.details["authorisation"]))
            assert granted is not None and granted.codice_fiscale == CF, entry
            assert granted.used_at is None
            found.append(granted.authorisation_id)
    return found


@pytest.mark.parametrize("point", POINTS)
def test_card_authorisation_crash_consumes_the_challenge_only_with_the_authorisation(
    rig: Rig, card: CnsCard, point: str
) -> None:
    """The card's answer: the challenge consumed, the citizen recorded, the authorisation and
    card_authorised: one commit."""
    rig.serve(crash_at=f"card_authorisation.{point}")
    request = _authorise_with_card(rig, card)
    dies(lambda: rig.station().AuthoriseWithCard(request, timeout=30))
    rig.died_at_write_point()

    rig.serve()
    committed = point == "after_commit"
    with open_store_at(rig.store_url) as store:
        challenge = store.get_challenge(request.challenge_id)
        assert challenge is not None and (challenge.used_at is not None) is committed
        assert len(_card_authorisations(store)) == int(committed)
        recorded = store.get_citizen(CF)
        assert (recorded is not None) is committed
        if recorded is not None:
            assert recorded.card_id == request.card_id
    if committed:  # the challenge is spent: the station asks for a new one
        refused_as_used(lambda: rig.station().AuthoriseWithCard(request, timeout=30))
        request = _authorise_with_card(rig, card)
    granted = rig.station().AuthoriseWithCard(request, timeout=30)
    with open_store_at(rig.store_url) as store:
        authorisations = _card_authorisations(store)
        assert len(authorisations) == 1 + int(committed)
        assert authorisations[-1] == granted.authorisation_id
    rig.audit_intact()


# --- phone number ---------------------------------------------------------------------------


@pytest.mark.parametrize("point", POINTS)
def test_phone_number_crash_changes_the_number_only_with_its_audit_entry(
    rig: Rig, point: str
) -> None:
    """SetPhoneNumber: the citizen's number and phone_number_set: one commit."""
    with in_process(rig.config) as app:
        app.store.upsert_citizen(citizen(CF))
    request = enrolment_pb2.SetPhoneNumberRequest(codice_fiscale=CF, phone_number=NEW_NUMBER)
    rig.serve(crash_at=f"phone_number.{point}")
    dies(lambda: rig.station().SetPhoneNumber(request, timeout=30))
    rig.died_at_write_point()

    rig.serve()
    committed = point == "after_commit"
    with open_store_at(rig.store_url) as store:
        recorded = store.get_citizen(CF)
        assert recorded is not None
        assert (recorded.phone_number == NEW_NUMBER) is committed
        assert (("phone_number_set", CF) in audited(store)) is committed
    answer = rig.station().SetPhoneNumber(request, timeout=30)
    assert answer.citizen.codice_fiscale == CF and answer.citizen.has_phone_number
    with open_store_at(rig.store_url) as store:
        recorded = store.get_citizen(CF)
        assert recorded is not None and recorded.phone_number == NEW_NUMBER
        assert audited(store).count(("phone_number_set", CF)) == 1 + int(committed)
    rig.audit_intact()


# --- a wrong temporary secret ---------------------------------------------------------------


def _activate_with_secret(rig: Rig, secret: str, phone: TokenApp) -> device_pb2.ActivationResponse:
    request = device_pb2.ActivateWithTemporarySecretRequest(
        codice_fiscale=CF, temporary_secret=secret, device_public_key=phone.public_key
    )
    answer: device_pb2.ActivationResponse = rig.device().ActivateWithTemporarySecret(
        request, timeout=30
    )
    return answer


def _failures_counted(store: Store, serial: str) -> int:
    """The activation's failure count, which must equal its activation_secret_wrong entries."""
    (activation,) = store.activations_of(CF)
    assert activation.token_serial == serial
    assert activation.failures == audited(store).count(("activation_secret_wrong", serial))
    return activation.failures


@pytest.mark.parametrize("point", POINTS)
def test_wrong_secret_crash_counts_the_failure_only_with_its_audit_entry(
    rig: Rig, point: str
) -> None:
    """A wrong temporary secret: the activation's failure count and activation_secret_wrong:
    one commit."""
    with in_process(rig.config) as app:
        issued = issue_token(
            app,
            TEST_ACTOR,
            rig.grant(),
            method=ActivationMethod.TEMPORARY_SECRET,
            params=HOTP,
            temporary_secret=RIGHT_SECRET,
        )
    serial = issued.token.serial
    phone = TokenApp()
    rig.serve(crash_at=f"activation_failure.{point}")
    dies(lambda: _activate_with_secret(rig, WRONG_SECRET, phone))
    rig.died_at_write_point()

    rig.serve()
    committed = point == "after_commit"
    with open_store_at(rig.store_url) as store:
        assert _failures_counted(store, serial) == int(committed)
    with pytest.raises(grpc.RpcError) as refused:  # the retry is refused and counted
        _activate_with_secret(rig, WRONG_SECRET, phone)
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION, refused.value
    with open_store_at(rig.store_url) as store:
        assert _failures_counted(store, serial) == 1 + int(committed)
    assert _activate_with_secret(rig, RIGHT_SECRET, phone).serial == serial
    rig.audit_intact()


# --- a check that locks the token -----------------------------------------------------------


@pytest.mark.parametrize("point", POINTS)
def test_a_lock_is_written_only_with_its_audit_entry(rig: Rig, point: str) -> None:
    """The wrong code that locks a token (no origin: the token's own counter) writes the lock
    and its `token_locked` entry in one commit (`token_transition`)."""
    phone = activated_phone(rig)
    with in_process(rig.config) as app:
        assert prove_possession(app, DEVICE, phone.serial, phone.counter_code(0)).ok
        token = app.store.get_token(phone.serial)
        assert token is not None
        assert app.store.update_token(replace(token, failures=2))  # the next failure locks
    window = {phone.counter_code(counter) for counter in range(40)}
    wrong = next(f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in window)
    with open_store_at(rig.store_url) as store:
        locks_before = audited(store).count(("token_locked", phone.serial))
    request = validation_pb2.VerifyRequest(serial=phone.serial, code=wrong)
    rig.serve(crash_at=f"token_transition.{point}")
    verifier = validation_pb2_grpc.ValidationServiceStub(rig.channel("verifier"))
    dies(lambda: verifier.Verify(request, timeout=30))
    rig.died_at_write_point()

    rig.serve()
    committed = point == "after_commit"
    with open_store_at(rig.store_url) as store:
        token = store.get_token(phone.serial)
        assert token is not None
        assert (token.locked_until > 0) is committed
        assert (token.lock_level, token.failures) == ((1, 0) if committed else (0, 2))
        assert audited(store).count(("token_locked", phone.serial)) == locks_before + committed
    verifier = validation_pb2_grpc.ValidationServiceStub(rig.channel("verifier"))
    retried = verifier.Verify(request, timeout=30)
    expected = common_pb2.VERIFY_RESULT_LOCKED if committed else common_pb2.VERIFY_RESULT_WRONG_CODE
    assert retried.result == expected
    with open_store_at(rig.store_url) as store:
        token = store.get_token(phone.serial)
        assert token is not None and token.locked_until > 0
        assert audited(store).count(("token_locked", phone.serial)) == locks_before + 1
    rig.audit_intact()
