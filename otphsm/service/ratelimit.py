"""Per-caller limits on failed code checks, so a lockout cannot be farmed.

A caller (a relying party, keyed by its certificate subject) that floods wrong codes can lock
any citizen's token for a while; the lock expires (`verification.lock_max_seconds` bounds it),
but the flood must not go on at line rate. Each caller has a token bucket that only *failed*
checks drain (a wrong, replayed or expired code, a locked or inactive token, or a refused
call such as an unknown serial); a busy portal whose citizens type right codes is never
slowed. While a caller's bucket is empty its code checks are refused before anything is read
or written: RESOURCE_EXHAUSTED with `retry-after-seconds`.

    [ratelimit]  enabled, failures_per_second, burst (`otphsm.service.config.RateLimitSection`)
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from otphsm.core.errors import RateLimited
from otphsm.service.config import RateLimitSection
from otphsm.service.rpcs import RPCS

MAX_CALLERS = 10_000
"""Buckets kept (least recently used dropped first): callers come from the client CA."""


class _Bucket:
    __slots__ = ("level", "updated")

    def __init__(self, level: float, updated: float) -> None:
        self.level = level
        self.updated = updated


class FailureRateLimiter:
    """Thread-safe token buckets of failed code checks, one per caller."""

    def __init__(
        self,
        section: RateLimitSection,
        clock: Callable[[], float] = time.monotonic,
        max_callers: int = MAX_CALLERS,
    ) -> None:
        self._rate = section.failures_per_second
        self._burst = float(section.burst)
        self._enabled = section.enabled
        self._clock = clock
        self._max_callers = max_callers
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, method: str, caller: str) -> None:
        """Raise `RateLimited` if `caller` may not check a code now."""
        if not self._enabled or not _checks_code(method):
            return
        with self._lock:
            bucket = self._refilled(caller)
            if bucket.level >= 1:
                return
            wait = math.ceil((1 - bucket.level) / self._rate)
        raise RateLimited(
            f"too many failed code checks from this caller; retry in {wait} s", retry_after=wait
        )

    def record(self, method: str, caller: str, response: object | None) -> None:
        """Charge one failure unless `response` accepted the code (None: the call failed)."""
        spec = RPCS.get(method)
        if not self._enabled or spec is None or not spec.checks_code:
            return
        if spec.checks.accepted(response):
            return
        with self._lock:
            bucket = self._refilled(caller)
            bucket.level = max(-self._burst, bucket.level - 1)

    def _refilled(self, caller: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(caller)
        if bucket is None:
            bucket = self._buckets[caller] = _Bucket(self._burst, now)
            while len(self._buckets) > self._max_callers:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(caller)
            bucket.level = min(self._burst, bucket.level + (now - bucket.updated) * self._rate)
            bucket.updated = now
        return bucket


def _checks_code(method: str) -> bool:
    spec = RPCS.get(method)
    return spec is not None and spec.checks_code
