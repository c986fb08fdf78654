"""Hardware tokens (key fobs): a vendor's batch imported as inventory, then assigned by serial to
a citizen whose card (or an SMS code) authorised it.

How a fob is represented:
- in inventory: a PHYSICAL token with `codice_fiscale == UNASSIGNED` ("") in state SUSPENDED,
  so neither verification nor proof of possession accepts a code from it;
- assigned: the citizen's codice fiscale, state PENDING; the first valid code the fob shows
  (`validation.prove_possession`) turns it ACTIVE, proving the technician handed over the fob
  whose serial was typed;
- it never replaces the citizen's mobile device (`replaces_serial` stays None) and a new mobile
  device never replaces it: the two live side by side.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from otphsm.core.app.context import Actor, App
from otphsm.core.app.enrolment import consume_authorisation
from otphsm.core.app.validation import prove_possession
from otphsm.core.errors import FailedPrecondition, InvalidInput, NotFound
from otphsm.core.seeds import SeedRef
from otphsm.core.tokens import (
    OtpMode,
    OtpParameters,
    Token,
    TokenKind,
    TokenState,
    check_serial,
)
from otphsm.core.verification import VerifyOutcome, check_code_format, check_code_shape

UNASSIGNED = ""
"""The codice fiscale of a fob nobody holds yet."""
MIN_SECRET_BYTES = 16
"""RFC 4226 section 4, R6: a shared secret of at least 128 bits."""
MAX_SECRET_BYTES = 64
MAX_BATCH = 100_000
MAX_COUNTER = 2**62
"""Counters are stored as signed 64-bit integers, with room for look-ahead and resync."""
FOB_IMPORT = "fob_import"
FOB_ASSIGNMENT = "fob_assignment"
"""Units of work (`App.transaction`): their write points' prefixes."""
_NAMED = 10
"""How many serials an error message names before saying how many more."""


@dataclass(frozen=True, slots=True)
class AssignedFob:
    token: Token
    proof: VerifyOutcome | None
    """The first code's outcome, when one was given."""


@dataclass(slots=True)
class FobPackage:
    """One fob as a vendor delivered it. `secret` is wiped once it is inside the HSM."""

    serial: str
    secret: bytearray = field(repr=False)
    params: OtpParameters
    counter: int = 0
    """HOTP: the counter of the fob's next button press. TOTP: 0."""

    def wipe(self) -> None:
        self.secret[:] = bytes(len(self.secret))


def import_fobs(
    app: App, actor: Actor, packages: Sequence[FobPackage], *, source: str = "pskc"
) -> list[Token]:
    """Put a batch of fobs into inventory, all or nothing.

    Everything is checked before anything changes; then every seed goes into the HSM, and
    only then are the tokens written, all in one unit of work with the audit entry. If the
    HSM fails midway, the seeds already created are destroyed and nothing is written; if a
    write fails (a concurrent import of the same serial, the database gone), nothing of the
    file is committed and the seeds are destroyed.

    Consumes the packages: every secret is wiped when this returns, imported or not.
    """
    seeds: list[SeedRef] = []
    try:
        _check_batch(app, packages)
        with app.transaction(FOB_IMPORT, seeds) as work:  # seeds are made inside (seeds.py)
            seeds.extend(_import_seeds(app, packages))
            tokens = _inventory(app, packages, seeds)
            for token in tokens:
                work.store.insert_token(token)
            serials = [token.serial for token in tokens]
            work.audit(actor, "fobs_imported", source, count=len(tokens), serials=serials)
    finally:
        for package in packages:
            package.wipe()
    return tokens


def fob_inventory(app: App) -> list[Token]:
    """The fobs imported and not yet assigned to anybody."""
    return [
        token
        for token in app.store.tokens_of(UNASSIGNED)
        if token.kind is TokenKind.PHYSICAL and token.state is TokenState.SUSPENDED
    ]


def assign_fob(app: App, actor: Actor, authorisation_id: str, serial: str) -> Token:
    """`hand_over_fob` without a first code."""
    return hand_over_fob(app, actor, authorisation_id, serial).token


def hand_over_fob(
    app: App, actor: Actor, authorisation_id: str, serial: str, first_code: str = ""
) -> AssignedFob:
    """Give an inventory fob to the citizen an authorisation (card or SMS code) names and,
    with the code the fob shows (`first_code`), prove possession: one unit of work.

    The fob is PENDING until its first valid code (`validation.prove_possession`). A citizen
    holds at most one fob that is not revoked: a lost one is revoked before a new one is given.
    A malformed first code is refused before anything changes; a wrong one is an answer
    (`proof`), the fob stays assigned and PENDING.
    """
    check_serial(serial)
    with app.transaction(FOB_ASSIGNMENT) as work:
        fob = work.store.get_token(serial)
        if fob is None or fob.kind is not TokenKind.PHYSICAL:
            if first_code:  # a malformed code is the first thing said wrong
                check_code_shape(first_code)
            raise NotFound("serial: no key fob with that serial")
        if first_code:
            check_code_format(first_code, fob.params.digits)
        _check_in_inventory(fob)
        pending = work.store.get_authorisation(authorisation_id)
        if pending is None:
            raise NotFound("unknown authorisation")
        _check_no_other_fob(work, pending.codice_fiscale)
        authorisation = consume_authorisation(work, authorisation_id)
        cf = authorisation.codice_fiscale
        assigned = replace(fob, codice_fiscale=cf, state=TokenState.PENDING)
        if not work.store.update_token(assigned):
            raise FailedPrecondition(
                "that key fob was changed meanwhile (assigned by someone else?): "
                "look it up and authorise again"
            )
        work.audit(actor, "fob_assigned", serial, codice_fiscale=cf, authorisation=authorisation_id)
        proof = prove_possession(work, actor, serial, first_code) if first_code else None
        stored = work.store.get_token(serial)
    return AssignedFob(stored if stored is not None else assigned, proof)


# --- checks -----------------------------------------------------------------------------


def _check_batch(app: App, packages: Sequence[FobPackage]) -> None:
    if not packages:
        raise InvalidInput("the batch holds no key fob")
    if len(packages) > MAX_BATCH:
        raise InvalidInput(f"a batch holds at most {MAX_BATCH} key fobs, got {len(packages)}")
    seen: set[str] = set()
    duplicates: list[str] = []
    for index, package in enumerate(packages, 1):
        _check_package(index, package)
        if package.serial in seen:
            duplicates.append(package.serial)
        seen.add(package.serial)
    if duplicates:
        raise InvalidInput(f"serials appear more than once in the batch: {_names(duplicates)}")
    existing = [p.serial for p in packages if app.store.get_token(p.serial) is not None]
    if existing:
        raise FailedPrecondition(f"serials already imported: {_names(existing)}")


def _check_package(index: int, package: FobPackage) -> None:
    where = f"key fob #{index}"
    try:
        check_serial(package.serial)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: bad serial {package.serial!r}: {exc}") from None
    where = f"{where} ({package.serial})"
    if not MIN_SECRET_BYTES <= len(package.secret) <= MAX_SECRET_BYTES:
        raise InvalidInput(
            f"{where}: a seed must be {MIN_SECRET_BYTES}..{MAX_SECRET_BYTES} bytes, "
            f"got {len(package.secret)}"
        )
    if package.params.mode is OtpMode.TOTP and package.counter != 0:
        raise InvalidInput(f"{where}: a TOTP fob has no counter")
    if not 0 <= package.counter <= MAX_COUNTER:
        raise InvalidInput(f"{where}: the counter must be 0..{MAX_COUNTER}")


def _check_in_inventory(fob: Token) -> None:
    if fob.codice_fiscale != UNASSIGNED:
        raise FailedPrecondition("that key fob is already assigned")
    if fob.state is not TokenState.SUSPENDED:
        raise FailedPrecondition(f"that key fob is {fob.state.value}, not in inventory")


def _check_no_other_fob(app: App, codice_fiscale: str) -> None:
    held = [
        token.serial
        for token in app.store.tokens_of(codice_fiscale)
        if token.kind is TokenKind.PHYSICAL and token.state is not TokenState.REVOKED
    ]
    if held:
        raise FailedPrecondition(
            f"the citizen already holds key fob {held[0]}: revoke it before assigning another"
        )


def _names(serials: Sequence[str]) -> str:
    named = ", ".join(serials[:_NAMED])
    more = len(serials) - _NAMED
    return f"{named} and {more} more" if more > 0 else named


# --- the all-or-nothing writes ----------------------------------------------------------


def _import_seeds(app: App, packages: Sequence[FobPackage]) -> list[SeedRef]:
    seeds: list[SeedRef] = []
    try:
        for package in packages:
            seeds.append(app.hsm.import_seed(package.secret, package.params.algorithm))
    except BaseException:
        _destroy_all(app, seeds)
        raise
    return seeds


def _inventory(app: App, packages: Sequence[FobPackage], seeds: Sequence[SeedRef]) -> list[Token]:
    now = app.now()
    return [
        Token(
            serial=package.serial,
            codice_fiscale=UNASSIGNED,
            kind=TokenKind.PHYSICAL,
            params=package.params,
            seed=seed,
            state=TokenState.SUSPENDED,
            created_at=now,
            moving_factor=package.counter,
        )
        for package, seed in zip(packages, seeds, strict=True)
    ]


def _destroy_all(app: App, seeds: Sequence[SeedRef]) -> None:
    for seed in seeds:
        with contextlib.suppress(Exception):
            app.hsm.destroy_seed(seed)
