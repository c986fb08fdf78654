"""Security Cards (OTP PAT's grid card): issued after a card-authorised enrolment, printed once,
and asked two cells at each login.

A card's key is generated inside the HSM and stored as a token seed is (wrapped under the
KEK, or resident); the cell values are HMACs under it, computed to print the card and to
check an answer, and never stored. One card is active per citizen: issuing a new one revokes
the old one in the same transaction.

A pending challenge is kept until it is answered or expires: asking again returns the same
two cells, so a caller cannot draw pairs until one it has seen comes up. Any answer ends the
challenge; the next one never asks the same pair again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace

from otphsm.core.app import lockout, login
from otphsm.core.app.context import Actor, App
from otphsm.core.app.enrolment import consume_authorisation
from otphsm.core.app.revocation import check_reason
from otphsm.core.app.writes import LOST_RACE, LostRace, with_retries
from otphsm.core.codice_fiscale import validate as validate_codice_fiscale
from otphsm.core.errors import FailedPrecondition, NotFound
from otphsm.core.grid_card import (
    GridVerdict,
    all_cells,
    answer_challenge,
    check_answer_shape,
    choose_pair,
)
from otphsm.core.lockout import grid_subject
from otphsm.core.otp import HashAlgorithm, HmacFn
from otphsm.core.records import Citizen, GridCard, GridCardState
from otphsm.core.seeds import SeedRef
from otphsm.core.tokens import check_serial
from otphsm.core.verification import VerifyOutcome, VerifyResult

GRID_CARD_ISSUE = "grid_card_issue"
"""The unit of work's name, and so its write points' prefix (`App.transaction`)."""
KEY_ALGORITHM = HashAlgorithm.SHA256
SERIAL_PREFIX = "GRID-"


@dataclass(frozen=True, slots=True)
class IssuedGridCard:
    """Returned once, at issue. `values` are the secret: printed, never stored or returned
    again."""

    card: GridCard
    holder: Citizen
    values: list[str]
    """Cell n is values[n - 1]."""
    replaced: list[str]
    """Serials of the cards this one revoked."""


@dataclass(frozen=True, slots=True)
class GridChallenge:
    serial: str
    cells: tuple[int, int]
    expires_at: int


def issue_grid_card(app: App, actor: Actor, authorisation_id: str) -> IssuedGridCard:
    """A new card for the authorised citizen (consuming the authorisation); the citizen's
    active card, if any, is revoked in the same unit of work, and its key destroyed once that
    is committed."""
    new_seeds: list[SeedRef] = []
    with app.transaction(GRID_CARD_ISSUE, new_seeds) as work:
        authorisation = consume_authorisation(
            work, authorisation_id, by_card_only="a Security Card"
        )
        cf = authorisation.codice_fiscale
        holder = work.store.get_citizen(cf)
        if holder is None:
            raise NotFound("no enrolled citizen for this authorisation")
        policy = app.policy
        key = app.hsm.generate_seed(KEY_ALGORITHM)
        new_seeds.append(key)
        card = GridCard(
            serial=SERIAL_PREFIX + app.hsm.random_bytes(5).hex().upper(),
            codice_fiscale=cf,
            key=key,
            cells=policy.grid_cells,
            cell_digits=policy.grid_cell_digits,
            state=GridCardState.ACTIVE,
            created_at=app.now(),
        )
        values = all_cells(_hmac(app, card), card.cells, card.cell_digits)
        revoked = work.store.insert_grid_card(card)
        for old in revoked:
            work.audit(actor, "grid_card_revoked", old.serial, codice_fiscale=cf, reason="reissued")
        work.audit(
            actor,
            "grid_card_issued",
            card.serial,
            codice_fiscale=cf,
            cells=card.cells,
            cell_digits=card.cell_digits,
            replaces=[old.serial for old in revoked] or None,
        )
    for old in revoked:  # only once their revocation is committed
        app.hsm.destroy_seed(old.key)
    return IssuedGridCard(card, holder, values, [old.serial for old in revoked])


def grid_challenge(app: App, actor: Actor, codice_fiscale: str, origin: str = "") -> GridChallenge:
    """The two cells to ask: the pending challenge while it lasts, else a new pair (never the
    previous one). Refused while the card is locked (without an origin) or the origin is (with
    one, see `core/app/lockout.py`)."""
    gate = _gate(app, actor, codice_fiscale, origin)
    wait = lockout.peek(app, gate)
    if wait:
        raise FailedPrecondition(
            "too many wrong answers: wait before asking again", retry_after=wait
        )

    def ask(card: GridCard) -> GridCard:
        now = app.now()
        if gate.own_counter and card.locked_until > now:
            raise FailedPrecondition(
                "too many wrong answers: wait before asking again",
                retry_after=card.locked_until - now,
            )
        if card.challenge is not None and card.challenge_expires_at > now:
            return card
        pair = choose_pair(app.hsm.random_bytes, card.cells, card.last_pair)
        expires_at = now + app.policy.grid_challenge_seconds
        return replace(card, challenge=pair, challenge_expires_at=expires_at, last_pair=pair)

    card = _write(app, lambda: _active_card(app, codice_fiscale), ask)
    if card.challenge is None:  # `ask` always leaves one
        raise RuntimeError("no challenge after asking for one")
    return GridChallenge(card.serial, card.challenge, card.challenge_expires_at)


def verify_grid_answer(
    app: App,
    actor: Actor,
    codice_fiscale: str,
    first: str,
    second: str,
    origin: str = "",
    personal_part: str | None = None,
) -> VerifyOutcome:
    """OK, WRONG_CODE (counted; the third in a row locks: the card without an origin, the
    origin with one; from an origin the owner has not logged in from it leaves the challenge
    pending), LOCKED (with retry_after) or EXPIRED (the challenge timed out: ask for a
    new one). Answering with no pending challenge (never asked, or already answered) is
    refused as FailedPrecondition. `personal_part`: as for `validation.verify_citizen`."""
    check_answer_shape(first)
    check_answer_shape(second)
    gate = _gate(app, actor, codice_fiscale, origin)
    wait = lockout.check(app, gate)
    if wait:
        return VerifyOutcome(VerifyResult.LOCKED, _active_card(app, codice_fiscale).serial, wait)
    with lockout.cancelled_on_error(app, gate):
        cf = validate_codice_fiscale(codice_fiscale).code
        refused = login.wrong_personal_part(app, actor, gate, cf, personal_part)
    if refused is not None:
        return refused
    verdicts: list[GridVerdict] = []

    def answer(card: GridCard) -> GridCard:
        verdict = answer_challenge(
            card,
            first,
            second,
            app.now(),
            _hmac(app, card),
            app.policy.verification,
            own_counter=gate.own_counter,
            wrong_ends_challenge=not gate.origin or gate.known,
        )
        verdicts.append(verdict)
        return verdict.card

    with lockout.cancelled_on_error(app, gate):
        card = _write(app, lambda: _active_card(app, codice_fiscale), answer)
    verdict = verdicts[-1]
    # settled before anything else may fail, so the attempt is never left in flight
    started = lockout.report(app, actor, gate, verdict.result, counted=(VerifyResult.WRONG_CODE,))
    if verdict.result is VerifyResult.WRONG_CODE and verdict.retry_after:
        app.audit(
            actor, "grid_card_locked", card.serial, until=card.locked_until, level=card.lock_level
        )
    return VerifyOutcome(verdict.result, card.serial, verdict.retry_after or started)


def revoke_grid_card(app: App, actor: Actor, serial: str, reason: str = "") -> GridCard:
    check_serial(serial)
    why = check_reason(reason)

    def load() -> GridCard:
        card = app.store.get_grid_card(serial)
        if card is None:
            raise NotFound("serial: no Security Card with that serial")
        return card

    def revoke(card: GridCard) -> GridCard:
        if card.state is GridCardState.REVOKED:
            raise FailedPrecondition("that Security Card is already revoked")
        return replace(
            card,
            state=GridCardState.REVOKED,
            revoked_at=app.now(),
            challenge=None,
            challenge_expires_at=0,
        )

    revoked = _write(app, load, revoke)
    app.hsm.destroy_seed(revoked.key)
    app.audit(actor, "grid_card_revoked", serial, codice_fiscale=revoked.codice_fiscale, **why)
    return revoked


def _gate(app: App, actor: Actor, codice_fiscale: str, origin: str) -> lockout.Gate:
    subject = grid_subject(validate_codice_fiscale(codice_fiscale).code)
    return lockout.open_gate(app, actor, subject, origin, own_record=True)


def _active_card(app: App, codice_fiscale: str) -> GridCard:
    cf = validate_codice_fiscale(codice_fiscale).code
    active = [c for c in app.store.grid_cards_of(cf) if c.state is GridCardState.ACTIVE]
    if not active:
        raise NotFound("the citizen has no active Security Card")
    return active[-1]


def _write(
    app: App, load: Callable[[], GridCard], decide: Callable[[GridCard], GridCard]
) -> GridCard:
    """Read, decide, write conditionally; on a lost race read again and decide again. Returns
    the card as decided (unchanged when the decision changed nothing)."""

    def attempt() -> GridCard | LostRace:
        card = load()
        decided = decide(card)
        if decided is card or app.store.update_grid_card(decided):
            return decided
        return LOST_RACE

    return with_retries(app, attempt)


def _hmac(app: App, card: GridCard) -> HmacFn:
    return functools.partial(app.hsm.hmac, card.key, KEY_ALGORITHM)
