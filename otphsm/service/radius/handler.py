"""An Access-Request translated to the use cases `Verify` and the second factors run, and
their outcome to Access-Accept, Access-Reject or Access-Challenge. Nothing is decided here that
the use cases decide (codes, lockout, audit); only what RADIUS itself needs: which use case a
request means, the challenge's State, and the NAS's own budget of failed checks.

- User-Name is a codice fiscale (any of the citizen's active tokens) or a token serial;
  User-Password the code, after the citizen's personal part if the NAS requires it.
- An empty password asks for a challenge (a citizen by codice fiscale only): two cells of the
  citizen's Security Card if there is one, else a login code by SMS or push if the NAS allows
  it. The answer comes back with the State given, from the same NAS, for the same citizen; a
  State is used up by its answer, right or wrong.
- The NAS is the caller (`radius:<name>`, role verifier) with its own failed-check budget
  (`FailureRateLimiter`); the end user's device is the origin of the lockout's per-origin
  rule.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from otphsm.core.app import grid, login, validation
from otphsm.core.app.context import Actor, App, Role
from otphsm.core.app.login import PREFIX_LENGTH, Channel
from otphsm.core.codice_fiscale import validate as validate_codice_fiscale
from otphsm.core.errors import (
    FailedPrecondition,
    InvalidInput,
    NotFound,
    OtpHsmError,
    RateLimited,
)
from otphsm.core.records import RadiusChallengeKind, RadiusState
from otphsm.core.verification import VerifyOutcome, VerifyResult
from otphsm.service.config import OobChallenge, RadiusClientSection
from otphsm.service.radius.packets import AccessRequest, Answer, AnswerKind
from otphsm.service.ratelimit import FailureRateLimiter

log = logging.getLogger(__name__)

STATE_BYTES = 16

ACCEPTED = "Access granted."
_RESULT_MESSAGES = {
    VerifyResult.WRONG_CODE: "Wrong code.",
    VerifyResult.REPLAYED: "This code was already used: wait for the next one.",
    VerifyResult.EXPIRED: "The code has expired.",
    VerifyResult.NOT_ACTIVE: "The token is not active.",
    VerifyResult.REVOKED: "The token is not active.",
}
_NOT_CHARGED = (VerifyResult.OK, VerifyResult.REPLAYED, VerifyResult.LOCKED)
"""As for gRPC callers (`otphsm.service.ratelimit`): a replay or a LOCKED answer looked at no
new code; everything else that is not OK is a failed check of the NAS."""


@dataclass(frozen=True)
class Client:
    """A declared NAS, its secret read, its budget of failed checks."""

    section: RadiusClientSection
    secret: bytes
    limiter: FailureRateLimiter

    @property
    def actor(self) -> Actor:
        return Actor(f"radius:{self.section.name}", Role.VERIFIER)


def answer(app: App, client: Client, request: AccessRequest) -> Answer:
    """The answer to one Access-Request (domain errors become Access-Reject)."""
    actor = client.actor
    try:
        client.limiter.admit_caller(actor.name)
    except RateLimited as refused:
        return _reject(
            f"Too many failed attempts from this access server: "
            f"try again in {refused.retry_after} seconds."
        )
    try:
        result, outcome = _dispatch(app, client, request)
    except RateLimited as refused:  # a quota, not a failed check
        return _reject(_refusal(refused))
    except (InvalidInput, NotFound, FailedPrecondition) as refused:
        client.limiter.charge(actor.name)
        return _reject(_refusal(refused))
    if outcome is not None and outcome.result not in _NOT_CHARGED:
        client.limiter.charge(actor.name)
    return result


def asks_for_a_challenge(request: AccessRequest) -> bool:
    """An empty password without a State: the one request that may send a login code (an SMS
    carrier's round trip); every other one checks a code or is refused from what it holds."""
    return request.pap and request.state is None and not request.password


def _dispatch(
    app: App, client: Client, request: AccessRequest
) -> tuple[Answer, VerifyOutcome | None]:
    if not request.pap:
        return _reject("Only PAP is supported: send the code as the password."), None
    if request.state is not None:
        return _answer_challenge(app, client, request, request.state)
    codice_fiscale = _codice_fiscale(request.user_name)
    if asks_for_a_challenge(request):
        if codice_fiscale is None:
            return _reject("Type the code your token shows."), None
        return _challenge(app, client, request, codice_fiscale), None
    personal_part, code = _split(client, request.password)
    if codice_fiscale is not None:
        outcome = validation.verify_citizen(
            app, client.actor, codice_fiscale, code, request.origin, personal_part
        )
    else:
        outcome = validation.verify_serial(
            app, client.actor, request.user_name, code, request.origin, personal_part
        )
    return _from_outcome(outcome), outcome


def _challenge(app: App, client: Client, request: AccessRequest, codice_fiscale: str) -> Answer:
    """A Security Card challenge if the citizen has a card, else a login code if allowed."""
    try:
        asked = grid.grid_challenge(app, client.actor, codice_fiscale, request.origin)
    except NotFound:
        asked = None
    if asked is not None:
        first, second = asked.cells
        state = _keep(app, client, codice_fiscale, RadiusChallengeKind.GRID, asked.expires_at)
        part = "your personal part, then " if client.section.require_prefix else ""
        return Answer(
            AnswerKind.CHALLENGE,
            f"Security Card: type {part}the values of cells {first} and {second}, "
            "separated by a space.",
            state,
        )
    channel = {OobChallenge.SMS: Channel.SMS, OobChallenge.PUSH: Channel.PUSH}.get(
        client.section.oob_challenge
    )
    if channel is None:
        return _reject("Type the code your token shows.")
    sent = login.request_login_code(app, client.actor, codice_fiscale, channel)
    state = _keep(app, client, codice_fiscale, RadiusChallengeKind.LOGIN_CODE, sent.expires_at)
    where = "by SMS" if channel is Channel.SMS else "to your token app"
    then = "your personal part, then the code" if sent.prefix_required else "the code"
    return Answer(AnswerKind.CHALLENGE, f"A code was sent {where}: type {then}.", state)


def _answer_challenge(
    app: App, client: Client, request: AccessRequest, state: bytes
) -> tuple[Answer, VerifyOutcome | None]:
    pending = app.store.take_radius_state(state, client.section.name, app.now())
    codice_fiscale = _codice_fiscale(request.user_name)
    if pending is None or pending.codice_fiscale != codice_fiscale:
        return _reject("The challenge has expired or is unknown: log in again."), None
    codice_fiscale = pending.codice_fiscale
    typed = request.password
    if pending.kind is RadiusChallengeKind.LOGIN_CODE:
        outcome = login.verify_login_code(app, client.actor, codice_fiscale, typed, request.origin)
    else:
        personal_part, cells = _split(client, typed)
        first, second = _cells(cells)
        outcome = grid.verify_grid_answer(
            app, client.actor, codice_fiscale, first, second, request.origin, personal_part
        )
    return _from_outcome(outcome), outcome


def _keep(
    app: App, client: Client, codice_fiscale: str, kind: RadiusChallengeKind, expires_at: int
) -> bytes:
    state = app.hsm.random_bytes(STATE_BYTES)
    pending = RadiusState(state, client.section.name, codice_fiscale, kind, app.now(), expires_at)
    app.store.insert_radius_state(pending)
    return state


def _from_outcome(outcome: VerifyOutcome) -> Answer:
    if outcome.result is VerifyResult.OK:
        return Answer(AnswerKind.ACCEPT, ACCEPTED)
    if outcome.result is VerifyResult.LOCKED:
        return _reject(f"Too many failures: try again in {outcome.retry_after} seconds.")
    message = _RESULT_MESSAGES.get(outcome.result, "Access denied.")
    if outcome.retry_after:
        message += f" Too many failures: try again in {outcome.retry_after} seconds."
    return _reject(message)


def _split(client: Client, typed: str) -> tuple[str | None, str]:
    """(personal part, the rest) if the NAS requires one, else (None, typed)."""
    if not client.section.require_prefix:
        return None, typed
    return typed[:PREFIX_LENGTH], typed[PREFIX_LENGTH:]


_SEPARATORS = re.compile(r"[\s,;/-]+")


def _cells(typed: str) -> tuple[str, str]:
    """Two cell values: separated by a space (or , ; / -), or typed together (halves)."""
    parts = [part for part in _SEPARATORS.split(typed.strip()) if part]
    if len(parts) == 1 and len(parts[0]) % 2 == 0:
        half = len(parts[0]) // 2
        parts = [parts[0][:half], parts[0][half:]]
    if len(parts) != 2:
        raise InvalidInput("answer: two cell values")
    return parts[0], parts[1]


def _codice_fiscale(user_name: str) -> str | None:
    """The normalised codice fiscale if User-Name is one; None for a serial."""
    try:
        return validate_codice_fiscale(user_name).code
    except InvalidInput:
        return None


_REFUSALS: tuple[tuple[type[OtpHsmError], str], ...] = (
    (NotFound, "Unknown user, or no active token: ask your help desk."),
    (FailedPrecondition, "This login is not possible now: ask your help desk."),
    (RateLimited, "Too many requests."),
    (InvalidInput, "The request is not valid: check the user name and the code."),
)
"""Core's categories of refusal → Access-Reject's Reply-Message (first match wins): the kind of
problem in plain words, never a value; a refusal with a wait says the wait instead."""


def _refusal(error: OtpHsmError) -> str:
    wait = getattr(error, "retry_after", 0)
    if wait:  # a lock (FailedPrecondition) or a quota (RateLimited) running
        kind = "requests" if isinstance(error, RateLimited) else "failures"
        return f"Too many {kind}: try again in {wait} seconds."
    return next(text for kind, text in _REFUSALS if isinstance(error, kind))


def _reject(message: str) -> Answer:
    return Answer(AnswerKind.REJECT, message)
