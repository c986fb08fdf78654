"""What every use case needs: the ports, the policy, and who is asking."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated

from otphsm.core.audit import seal
from otphsm.core.bounds import at_least, between, check_bounds
from otphsm.core.clock import Clock
from otphsm.core.grid_card import MAX_CELL_DIGITS
from otphsm.core.ports import OtpHsm, PushGateway, SmsGateway, Store, TrustSource
from otphsm.core.records import AuditEntry
from otphsm.core.seeds import SeedRef
from otphsm.core.verification import VerificationPolicy

BEFORE_COMMIT = "before_commit"
AFTER_COMMIT = "after_commit"


class Role(enum.StrEnum):
    VERIFIER = "verifier"
    """A relying party: verifies codes, asks for out-of-band codes."""
    ENROLLER = "enroller"
    """A technician's station: card authorisation, token creation, replacement."""
    DEVICE = "device"
    """The token app's gateway: activation and proof of possession."""
    ADMIN = "admin"
    """An operator: lifecycle, audit, imports."""


@dataclass(frozen=True, slots=True)
class Actor:
    name: str
    """The caller's certificate subject (or 'cli:<user>'); recorded in the audit chain."""
    role: Role


@dataclass(frozen=True, slots=True)
class AppPolicy:
    issuer: str = "otphsm"
    """The issuer shown in authenticator apps (otpauth:// label)."""
    challenge_seconds: Annotated[int, at_least(1)] = 60
    authorisation_seconds: Annotated[int, at_least(1)] = 600
    activation_code_seconds: Annotated[int, at_least(1)] = 1800
    temporary_secret_seconds: Annotated[int, at_least(1)] = 300
    secret_failures_before_wait: Annotated[int, at_least(1)] = 3
    secret_wait_seconds: Annotated[int, at_least(1)] = 60
    sms_code_seconds: Annotated[int, at_least(1)] = 600
    sms_code_digits: Annotated[int, at_least(1)] = 6
    write_attempts: Annotated[int, at_least(1)] = 8
    """Conditional writes retried (re-read, re-decide) this many times under contention."""
    login_codes_per_citizen: Annotated[int, at_least(0)] = 3
    """Out-of-band login codes sent to one citizen per `login_code_citizen_window_seconds`
    (0: no limit)."""
    login_code_citizen_window_seconds: Annotated[int, at_least(1)] = 600
    login_codes_per_caller: Annotated[int, at_least(0)] = 30
    """Out-of-band login codes one relying party may have sent per
    `login_code_caller_window_seconds` (0: no limit)."""
    login_code_caller_window_seconds: Annotated[int, at_least(1)] = 60
    grid_cells: Annotated[int, between(10, 100)] = 50
    """Cells on a new Security Card (10..100)."""
    grid_cell_digits: Annotated[int, between(2, MAX_CELL_DIGITS)] = 3
    """Digits per cell (2..`MAX_CELL_DIGITS`)."""
    grid_challenge_seconds: Annotated[int, at_least(1)] = 300
    """How long a Security Card challenge (two cells) may be answered."""
    verification: VerificationPolicy = field(default_factory=VerificationPolicy)

    def __post_init__(self) -> None:
        check_bounds(self)  # a core object holds them whoever builds it, not only the config


@dataclass
class App:
    store: Store
    hsm: OtpHsm
    clock: Clock
    trust: TrustSource
    """The trusted CNS CAs and their CRLs (a `TrustStore` is one, fixed)."""
    sms: SmsGateway
    policy: AppPolicy = field(default_factory=AppPolicy)
    push: PushGateway | None = None
    """Notifications to the token app (out-of-band codes by push); None: not offered."""
    in_unit_of_work: bool = False
    """True in the `App` a unit of work yields (`transaction`): a nested one joins it."""
    handle_random: Callable[[int], bytes] = os.urandom
    """Random bytes for ids that must be unique but guard nothing (`handle_id`): the host's
    source, no HSM call. Everything a caller could gain by guessing comes from the HSM."""
    write_point_hook: Callable[[str], None] | None = None
    """Test only (crash tests): called with the name of each write point a unit of work
    reaches (`transaction`). None in production: then a write point costs one comparison."""

    def now(self) -> int:
        return int(self.clock.now())

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{self.hsm.random_bytes(12).hex()}"

    def handle_id(self, prefix: str) -> str:
        """`new_id` for a record no caller ever names (a lockout reservation): 96 random bits
        keep it unique; it needs no HSM round trip, being no secret and no capability."""
        return f"{prefix}-{self.handle_random(12).hex()}"

    @contextmanager
    def transaction(self, use_case: str, new_seeds: Sequence[SeedRef] = ()) -> Iterator[App]:
        """The use case's unit of work: an `App` whose store (and so `audit`) writes into one
        transaction, committed once when the block ends, or not at all if it raises. Its write
        points are `<use_case>.before_commit` (everything written, nothing committed) and
        `<use_case>.after_commit` (committed, the answer not yet given).

        `new_seeds`, a list the block may append to, holds the HSM seeds it created: they are
        destroyed if the block raises (nothing refers to them), kept if the commit itself
        failed (its outcome is unknown: a stored token may refer to them). Called on the
        `App` a unit of work yielded, it joins that one: no commit, no write points of its own.
        """
        if self.in_unit_of_work:
            try:
                yield self
            except BaseException:
                self._destroy(new_seeds)
                raise
            return
        written = False
        try:
            with self.store.transaction() as store:
                yield dataclasses.replace(self, store=store, in_unit_of_work=True)
                written = True
                self.reached(f"{use_case}.{BEFORE_COMMIT}")
        except BaseException:
            if not written:
                self._destroy(new_seeds)
            raise
        self.reached(f"{use_case}.{AFTER_COMMIT}")

    def _destroy(self, seeds: Sequence[SeedRef]) -> None:
        for seed in seeds:
            with contextlib.suppress(Exception):  # the original error says more
                self.hsm.destroy_seed(seed)

    def reached(self, write_point: str) -> None:
        if self.write_point_hook is not None:
            self.write_point_hook(write_point)

    def audit(self, actor: Actor | str, action: str, subject: str, **details: object) -> None:
        """Append to the chain. Callers pass identifiers and outcomes, never secrets."""
        name = actor.name if isinstance(actor, Actor) else actor
        entry = AuditEntry(0, self.now(), name, action, subject, dict(details))
        self.store.append_audit(lambda last: seal(entry, last, self.hsm.keyed_digest))
