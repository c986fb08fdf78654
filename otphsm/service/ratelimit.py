"""Per-caller limits on failed code checks, so a lockout cannot be farmed, across replicas.

A caller (a relying party, keyed by its certificate subject) that floods wrong codes can lock
any citizen's token for a while; the lock expires (`verification.lock_max_seconds` bounds it),
but the flood must not go on at line rate. Each caller has a token bucket that only *failed*
checks drain (a wrong or expired code, an inactive token, or a refused call such as an
unknown serial; not a replay of an accepted code, nor a LOCKED answer, which looked at no
code); a busy portal whose citizens type right codes is never
slowed. While a caller's bucket is empty its code checks are refused before anything is read
or written: RESOURCE_EXHAUSTED with `retry-after-seconds`. Which RPCs check a code, and what
answer means the code was right, comes from the RPC table (`otphsm.service.rpcs.RPCS`).

The buckets live in the database the replicas share (table `failure_buckets`, one row per
caller that ever failed a check), so N replicas allow what one allows, not N times that. A
row holds the instant its bucket is full again (the generic cell rate algorithm, which is a
token bucket of `burst` tokens refilled at `failures_per_second`). What a check costs the store:

- every code check, right or wrong: one primary-key read before it runs; a right code
  writes nothing;
- a failed check: one more statement, an upsert of the caller's one row (one row touched,
  one short transaction; the row never grows);
- a refused check: nothing. The refusal is remembered in this process until the bucket
  admits again (other replicas' failures can only postpone that), so a flood past the budget
  costs no read either, beyond one per replica per refused spell.

So a flood of failures costs the store at most `burst + failures_per_second * t` single-row
writes per caller over t seconds, all replicas together; `tests/faults/test_lockout.py`
counts them. Checks from one caller that run at the same time are each admitted on what the
bucket held when they started. A failure that cannot be charged (the database unreachable)
is logged and not counted: the check has already answered.

    [ratelimit]  enabled, failures_per_second, burst (`otphsm.service.config.RateLimitSection`)
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from typing import Protocol

from otphsm.core.clock import Clock
from otphsm.core.errors import DeviceUnavailable, RateLimited
from otphsm.service.config import RateLimitSection
from otphsm.service.rpcs import RPCS, checks_code

log = logging.getLogger(__name__)

MAX_REMEMBERED = 10_000
"""Refusals remembered in process (least recently used dropped first): a cache, nothing more."""


class FailureBuckets(Protocol):
    """The part of the `Store` port this limiter uses (see `otphsm.core.ports.Store`)."""

    def failure_bucket_full_at(self, caller: str) -> int: ...

    def drain_failure_bucket(
        self, caller: str, now_ms: int, cost_ms: int, max_debt_ms: int
    ) -> int: ...


class FailureRateLimiter:
    """Admits a caller's code checks while its shared bucket holds a token; charges failures."""

    def __init__(
        self,
        section: RateLimitSection,
        buckets: FailureBuckets,
        clock: Clock,
        max_remembered: int = MAX_REMEMBERED,
    ) -> None:
        self._enabled = section.enabled
        self._buckets = buckets
        self._clock = clock
        self._cost_ms = max(1, round(1000 / section.failures_per_second))
        """One failure: the bucket is full again this much later."""
        self._tolerance_ms = (section.burst - 1) * self._cost_ms
        """A check is admitted while the bucket is full again within this (one token left)."""
        self._max_debt_ms = 2 * section.burst * self._cost_ms
        """However long a flood, a bucket is full again within twice the burst's refill."""
        self._max_remembered = max_remembered
        self._refused_until: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, method: str, caller: str) -> None:
        """Raise `RateLimited` if `caller` may not check a code now."""
        if not self._enabled or not checks_code(method):
            return
        self.admit_caller(caller)

    def admit_caller(self, caller: str) -> None:
        """Raise `RateLimited` if `caller`'s bucket is empty (a code check of any front end)."""
        now = self._now_ms()
        with self._lock:
            remembered = self._refused_until.get(caller, 0)
        opens_at = remembered
        if remembered <= now:
            opens_at = self._buckets.failure_bucket_full_at(caller) - self._tolerance_ms
            self._remember(caller, opens_at, now)
        if opens_at > now:
            wait = math.ceil((opens_at - now) / 1000)
            raise RateLimited(
                f"too many failed code checks from this caller; retry in {wait} s",
                retry_after=wait,
            )

    def record(self, method: str, caller: str, response: object | None) -> None:
        """Charge one failure unless `response` accepted the code (None: the call failed)."""
        spec = RPCS.get(method)
        if not self._enabled or spec is None or not spec.checks_code:
            return
        if spec.checks.accepted(response):
            return
        self.charge(caller)

    def charge(self, caller: str) -> None:
        """Charge `caller` one failed code check."""
        if not self._enabled:
            return
        now = self._now_ms()
        try:
            full_at = self._buckets.drain_failure_bucket(
                caller, now, self._cost_ms, self._max_debt_ms
            )
        except DeviceUnavailable as exc:
            log.warning(
                "a failed code check was not counted: the store is unavailable",
                extra={"fields": {"caller": caller, "error": type(exc).__name__}},
            )
            return
        self._remember(caller, full_at - self._tolerance_ms, now)

    def _remember(self, caller: str, opens_at: int, now: int) -> None:
        with self._lock:
            if opens_at <= now:
                self._refused_until.pop(caller, None)
                return
            self._refused_until[caller] = opens_at
            self._refused_until.move_to_end(caller)
            while len(self._refused_until) > self._max_remembered:
                self._refused_until.popitem(last=False)

    def _now_ms(self) -> int:
        return int(self._clock.now() * 1000)
