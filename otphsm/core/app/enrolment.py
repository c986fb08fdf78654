"""Card-authorised enrolment: challenge → the card signs it → checks → the citizen on record →
an authorisation that lets exactly one token be created."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from otphsm.core.app.context import Actor, App
from otphsm.core.certificates import CardCheckFailed, CardCheckFailure, check_card_authorisation
from otphsm.core.codice_fiscale import validate as validate_codice_fiscale
from otphsm.core.errors import FailedPrecondition, InvalidInput, NotFound
from otphsm.core.records import Authorisation, Challenge, Citizen

CARD_AUTHORISATION = "card_authorisation"
PHONE_NUMBER = "phone_number"
"""Units of work (`App.transaction`): their write points' prefixes."""
MAX_CERTIFICATE_BYTES = 8192
MAX_SIGNATURE_BYTES = 1024


@dataclass(frozen=True, slots=True)
class CardEvidence:
    """What a station sends after the card signed the challenge."""

    certificate_der: bytes
    card_id: str
    """EF_IDCarta as read from the card."""
    codice_fiscale: str
    """From EF_DatiPersonali; must equal the certificate's."""
    signature: bytes


def new_challenge(app: App, actor: Actor) -> Challenge:
    now = app.now()
    challenge = Challenge(
        challenge_id=app.new_id("ch"),
        nonce=app.hsm.random_bytes(32),
        created_at=now,
        expires_at=now + app.policy.challenge_seconds,
    )
    app.store.insert_challenge(challenge)
    return challenge


def authorise_with_card(
    app: App, actor: Actor, challenge_id: str, evidence: CardEvidence
) -> tuple[Authorisation, Citizen]:
    _check_evidence_shape(evidence)
    now = app.now()
    challenge = app.store.get_challenge(challenge_id)
    if challenge is None:
        raise NotFound("unknown challenge: ask for a new one")
    _refuse_unusable_challenge(challenge, now)
    holder = check_card_authorisation(
        app.trust.for_certificate(evidence.certificate_der),
        certificate_der=evidence.certificate_der,
        card_id=evidence.card_id,
        codice_fiscale=evidence.codice_fiscale,
        challenge=challenge.nonce,
        signature=evidence.signature,
        now=datetime.fromtimestamp(now, UTC),
    )
    with app.transaction(CARD_AUTHORISATION) as work:
        if work.store.consume_challenge(challenge_id, now) is None:
            raise CardCheckFailed(CardCheckFailure.CHALLENGE_REUSED, "the challenge was just used")
        codice_fiscale = validate_codice_fiscale(holder.codice_fiscale)
        existing = work.store.get_citizen(holder.codice_fiscale)
        citizen = Citizen(
            codice_fiscale=holder.codice_fiscale,
            given_name=holder.given_name or "",
            surname=holder.surname or "",
            birth_date=codice_fiscale.birth_date(
                today=datetime.fromtimestamp(now, UTC).date()
            ).isoformat(),
            sex=codice_fiscale.sex.value,
            birth_place=codice_fiscale.birthplace,
            card_id=holder.card_id,
            certificate_serial=format(holder.certificate_serial, "x"),
            certificate_issuer=holder.issuer,
            enrolled_at=existing.enrolled_at if existing else now,
            updated_at=now,
            phone_number=existing.phone_number if existing else None,
            code_prefix_mac=existing.code_prefix_mac if existing else None,
        )
        work.store.upsert_citizen(citizen)
        authorisation = Authorisation(
            authorisation_id=app.new_id("au"),
            codice_fiscale=citizen.codice_fiscale,
            card_id=holder.card_id,
            created_at=now,
            expires_at=now + app.policy.authorisation_seconds,
        )
        work.store.insert_authorisation(authorisation)
        work.audit(
            actor,
            "card_authorised",
            citizen.codice_fiscale,
            card_id=holder.card_id,
            certificate_serial=citizen.certificate_serial,
            authorisation=authorisation.authorisation_id,
        )
    return authorisation, citizen


def grant_authorisation(app: App, actor: Actor, codice_fiscale: str, reason: str) -> Authorisation:
    """An authorisation earned some other way than a card (an out-of-band code). Two writes:
    the caller runs it inside its unit of work (`lifecycle.authorise_with_sms_code`)."""
    now = app.now()
    authorisation = Authorisation(
        authorisation_id=app.new_id("au"),
        codice_fiscale=codice_fiscale,
        card_id="",
        created_at=now,
        expires_at=now + app.policy.authorisation_seconds,
    )
    app.store.insert_authorisation(authorisation)
    app.audit(
        actor, "authorised", codice_fiscale, by=reason, authorisation=authorisation.authorisation_id
    )
    return authorisation


def consume_authorisation(
    app: App, authorisation_id: str, *, by_card_only: str = ""
) -> Authorisation:
    """Use up an authorisation. With `by_card_only` (what is being issued), one earned by an
    out-of-band code is refused, and left unused."""
    now = app.now()
    found = app.store.get_authorisation(authorisation_id)
    if found is None:
        raise NotFound("unknown authorisation")
    if by_card_only and not found.card_id:
        raise FailedPrecondition(
            f"{by_card_only} is issued only after the citizen's card authorised it, "
            "not after an SMS code"
        )
    if found.used_at is not None:
        raise FailedPrecondition("this authorisation was already used: authorise again")
    if found.expires_at <= now:
        raise FailedPrecondition("this authorisation has expired: authorise again")
    consumed = app.store.consume_authorisation(authorisation_id, now)
    if consumed is None:
        raise FailedPrecondition("this authorisation was already used: authorise again")
    return consumed


def set_phone_number(app: App, actor: Actor, codice_fiscale: str, phone_number: str) -> Citizen:
    digits = phone_number.removeprefix("+")
    if not (8 <= len(digits) <= 15 and digits.isascii() and digits.isdigit()):
        raise InvalidInput("a phone number is + and 8..15 digits (E.164)")
    citizen = app.store.get_citizen(validate_codice_fiscale(codice_fiscale).code)
    if citizen is None:
        raise NotFound("no enrolled citizen with that codice fiscale")
    updated = replace(citizen, phone_number="+" + digits, updated_at=app.now())
    with app.transaction(PHONE_NUMBER) as work:
        work.store.upsert_citizen(updated)
        work.audit(actor, "phone_number_set", codice_fiscale)
    return updated


def _refuse_unusable_challenge(challenge: Challenge, now: int) -> None:
    if challenge.used_at is not None:
        raise CardCheckFailed(CardCheckFailure.CHALLENGE_REUSED, "the challenge was already used")
    if challenge.expires_at <= now:
        raise CardCheckFailed(CardCheckFailure.CHALLENGE_EXPIRED, "the challenge has expired")


def _check_evidence_shape(evidence: CardEvidence) -> None:
    if not evidence.certificate_der or len(evidence.certificate_der) > MAX_CERTIFICATE_BYTES:
        raise InvalidInput(f"the certificate must be 1..{MAX_CERTIFICATE_BYTES} bytes of DER")
    if not evidence.signature or len(evidence.signature) > MAX_SIGNATURE_BYTES:
        raise InvalidInput(f"the signature must be 1..{MAX_SIGNATURE_BYTES} bytes")
    if (
        len(evidence.card_id) != 16
        or not evidence.card_id.isascii()
        or not evidence.card_id.isalnum()
    ):
        raise InvalidInput("the card id is 16 letters or digits (EF_IDCarta)")
