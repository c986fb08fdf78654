"""Lockout that a stranger cannot turn on a citizen: who may still try a code, decided per
origin (the address or device id the relying party saw), pure.

- Each origin has its own failure counter on each subject (a token, a citizen's logins by
  codice fiscale, their login codes, their Security Card): `lock_after_failures` failures
  start a wait of `lock_seconds`, doubling up to `lock_max_seconds` (`count_failure`).
- A **known** origin (one that logged in on the subject within `known_origin_days`) is
  blocked by its own failures only.
- **Unknown** origins, and requests without an origin, share one budget per subject: at most
  `unknown_origin_failures` failures per rolling `unknown_origin_window_seconds`; once spent,
  they are LOCKED until it refills. A success refills nothing.
- A request without an origin is counted as today: on the record's own counter (the token's
  `failures`/`locked_until`, a login code's, a card's), where there is one.

The store keeps the state (`OriginAttempts`, known origins, the budget) so replicas share it.

Attempts in flight: an attempt let through is held as a reservation until its outcome is
known, and the gate counts reservations as failures (`crowded`), so requests arriving together
cannot all get past a counter or a budget with room for fewer. The outcome deletes the
reservation and, for a failure only, counts it (`failure`): nothing is ever given back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from otphsm.core.errors import InvalidInput
from otphsm.core.verification import Attempts, VerificationPolicy, count_failure

MAX_ORIGIN_LENGTH = 128
DAY_SECONDS = 86400
RESERVATION_SECONDS = 60
"""A reservation older than this is a crashed request's: the gate ignores it."""


def check_origin(origin: str) -> str:
    """An origin is optional ("" for none): at most 128 printable ASCII characters."""
    if len(origin) > MAX_ORIGIN_LENGTH or not (origin.isascii() and origin.isprintable()):
        raise InvalidInput(
            f"origin is at most {MAX_ORIGIN_LENGTH} printable ASCII characters", field="origin"
        )
    return origin


def origin_key(caller: str, origin: str) -> str:
    """How an origin is stored: per relying party (the same address or device id seen by two
    relying parties is two origins, so a stranger at one cannot pass for, or lock, the owner's
    device known at another); "" for none."""
    return f"{caller}\t{origin}" if origin else ""  # an origin holds no tab (printable)


def token_subject(serial: str) -> str:
    return f"token:{serial}"


def citizen_subject(codice_fiscale: str) -> str:
    """Logins by codice fiscale: one counter per citizen, whichever token the code was for."""
    return f"citizen:{codice_fiscale}"


def login_code_subject(codice_fiscale: str) -> str:
    return f"login-code:{codice_fiscale}"


def grid_subject(codice_fiscale: str) -> str:
    return f"grid:{codice_fiscale}"


@dataclass(frozen=True, slots=True)
class OriginAttempts:
    """One origin's failure counter on one subject, as stored."""

    subject: str
    origin: str
    """"" for requests without an origin on a subject with no record of its own to count on."""
    attempts: Attempts = field(default_factory=Attempts)
    updated_at: int = 0
    version: int = 0
    """0: not stored yet. The store writes only if the stored version is still this one."""


@dataclass(frozen=True, slots=True)
class Standing:
    """What the store holds about one origin on one subject, read at once."""

    attempts: OriginAttempts
    last_success_at: int | None = None
    """When this origin last logged in on the subject; None: never (or forgotten)."""
    budget_events: tuple[int, ...] = ()
    """When unknown origins failed on the subject (the recent ones, at most the budget)."""
    in_flight: int = 0
    """This origin's attempts on the subject let through and not settled yet."""
    budget_in_flight: int = 0
    """Unknown origins' attempts on the subject let through and not settled yet."""
    in_flight_ids: frozenset[str] = frozenset()
    """The reservations in flight on the subject (any origin): when this changes, attempts
    are settling."""


def is_known(standing: Standing, now: int, policy: VerificationPolicy) -> bool:
    seen = standing.last_success_at
    return (
        bool(standing.attempts.origin)
        and seen is not None
        and seen > now - policy.known_origin_days * DAY_SECONDS
    )


def budget_wait(events: tuple[int, ...], now: int, policy: VerificationPolicy) -> int:
    """Seconds until the unknown origins' budget has room again; 0 if it has room now."""
    since = now - policy.unknown_origin_window_seconds
    recent = sorted(t for t in events if t > since)
    limit = policy.unknown_origin_failures
    if len(recent) < limit:
        return 0
    return max(1, recent[-limit] + policy.unknown_origin_window_seconds - now)


def refusal(standing: Standing, now: int, policy: VerificationPolicy, *, own_counter: bool) -> int:
    """Seconds the origin must wait before its code is even looked at (answer LOCKED); 0 if
    it may try now. `own_counter`: the origin's counter is the record's own (checked by the
    record's policy), not `standing.attempts`."""
    own_wait = 0 if own_counter else standing.attempts.attempts.wait(now)
    if own_wait or is_known(standing, now, policy):
        return own_wait
    return budget_wait(standing.budget_events, now, policy)


def crowded(standing: Standing, now: int, policy: VerificationPolicy, *, own_counter: bool) -> bool:
    """Whether the attempts in flight, were they all failures, would leave no room for this
    one (on the origin's counter or in the unknown origins' budget). Not a refusal of its
    own: those attempts may yet succeed or be replays; the caller asks again in a moment."""
    if not own_counter and standing.in_flight:
        counter = standing.attempts.attempts
        for _ in range(standing.in_flight):
            counter, _started = count_failure(counter, now, policy)
        if counter.wait(now):
            return True
    if is_known(standing, now, policy) or not standing.budget_in_flight:
        return False
    events = standing.budget_events + (now,) * standing.budget_in_flight
    return budget_wait(events, now, policy) > 0


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an attempt was not let through."""

    wait: int
    """Seconds to wait (the answer's retry-after)."""
    in_flight: bool = False
    """Only attempts in flight stand in the way (`crowded`): worth asking again soon."""


@dataclass(frozen=True, slots=True)
class Reservation:
    """An attempt let through: counted as a failure by the gate until it is settled."""

    id: str
    charges_budget: bool
    """The origin was unknown when it was let through."""


def admit(
    standing: Standing,
    now: int,
    policy: VerificationPolicy,
    *,
    own_counter: bool,
    reservation_id: str,
) -> Reservation | Refusal:
    """The gate's decision on one attempt, over the standing read under the subject's lock."""
    wait = refusal(standing, now, policy, own_counter=own_counter)
    if wait:
        return Refusal(wait)
    if crowded(standing, now, policy, own_counter=own_counter):
        return Refusal(1, in_flight=True)
    return Reservation(reservation_id, not is_known(standing, now, policy))


@dataclass(frozen=True, slots=True)
class Failure:
    """What one failure writes."""

    attempts: OriginAttempts | None
    """The origin's counter after it; None when the record's own counter took it."""
    charge_budget: bool
    """An unknown origin: one event in the subject's budget."""
    at: int
    """When it failed."""
    retry_after: int = 0
    """The wait this failure started for the origin (0 for none)."""


def failure(
    standing: Standing, now: int, policy: VerificationPolicy, *, own_counter: bool
) -> Failure:
    """A settled failure, counted over the standing read under the subject's lock."""
    charge = not is_known(standing, now, policy)
    if own_counter:
        return Failure(None, charge, now)
    current = standing.attempts
    counted, seconds = count_failure(current.attempts, now, policy)
    updated = OriginAttempts(current.subject, current.origin, counted, now, current.version)
    return Failure(updated, charge, now, seconds)


@dataclass(frozen=True, slots=True)
class Success:
    """What a success writes in the lockout, so the store can write it with the token that
    accepted the code (one commit): the reservation deleted and, for an origin, the origin
    known on the subject (its counter deleted, origins last seen before `forget_before`
    forgotten)."""

    subject: str
    origin: str
    """"" for none: only the reservation goes."""
    reservation_id: str | None
    now: int
    forget_before: int


def forget_before(now: int, policy: VerificationPolicy) -> int:
    """Known origins last seen before this are forgotten (their rows deleted)."""
    return now - policy.known_origin_days * DAY_SECONDS
