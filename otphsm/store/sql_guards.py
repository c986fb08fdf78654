"""The rows that guard code checks, as `SqlStore` methods (one transaction each): rate-limit
quotas, the per-caller failed-check buckets, the lockout per origin (its SQL in
`sql_lockout`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from otphsm.core.lockout import Failure, Refusal, Reservation, Standing, Success
from otphsm.core.records import RateLimit
from otphsm.store import sql, sql_lockout
from otphsm.store.rows_grid import rate_events, rate_events_text
from otphsm.store.sql import Transaction
from otphsm.store.sql_engine import OnEngine, Refused


class GuardRows(OnEngine):
    """`SqlStore`'s methods for the rows that guard code checks."""

    # quotas
    def take_rate_slots(self, limits: Sequence[RateLimit], now: int) -> int:
        """Buckets are locked in name order (no deadlock between two multi-bucket takers); a
        refusal rolls the transaction back, so it leaves no trace."""

        def take(tx: Transaction) -> None:
            updates: list[tuple[str, str]] = []
            waits: list[int] = []
            for limit in sorted((lim for lim in limits if lim.limit > 0), key=_bucket):
                tx.execute(sql.LOCK_RATE_BUCKET, (limit.bucket,))
                row = tx.fetch_one(sql.RATE_BUCKET_EVENTS, (limit.bucket,))
                since = now - limit.window_seconds
                recent = sorted(t for t in rate_events(row[0] if row else "") if t > since)
                if len(recent) >= limit.limit:
                    waits.append(max(1, recent[-limit.limit] + limit.window_seconds - now))
                else:
                    updates.append((rate_events_text([*recent, now]), limit.bucket))
            if waits:
                raise Refused(max(waits))
            for update in updates:
                tx.execute(sql.SET_RATE_BUCKET_EVENTS, update)

        try:
            self._outside_unit_of_work().run(take, write=True)
        except Refused as refused:
            return refused.retry_after
        return 0

    def failure_bucket_full_at(self, caller: str) -> int:
        row = self._engine.fetch_one(sql.FAILURE_BUCKET_FULL_AT, (caller,))
        return int(row[0]) if row else 0

    def drain_failure_bucket(self, caller: str, now_ms: int, cost_ms: int, max_debt_ms: int) -> int:
        cap = now_ms + max_debt_ms
        params = (caller, now_ms + cost_ms, now_ms, cost_ms, cap, cap, cost_ms)
        row = self._outside_unit_of_work().run(
            lambda tx: tx.fetch_one(sql.DRAIN_FAILURE_BUCKET, params), write=True
        )
        if row is None:
            raise RuntimeError("the failed-check bucket upsert returned no row")
        return int(row[0])

    # lockout per origin
    def origin_standing(self, subject: str, origin: str, reserved_since: int = 0) -> Standing:
        return self._outside_unit_of_work().run(
            lambda tx: sql_lockout.standing(tx, subject, origin, reserved_since), write=False
        )

    def reserve_origin_attempt(
        self,
        subject: str,
        origin: str,
        reserved_since: int,
        now: int,
        admit: Callable[[Standing], Reservation | Refusal],
    ) -> Reservation | Refusal:
        def reserve(tx: Transaction) -> Reservation | Refusal:
            return sql_lockout.reserve(
                tx, self.dialect, subject, origin, reserved_since, now, admit
            )

        # An attempt in flight, ignored after RESERVATION_SECONDS anyway: lost in a crash of
        # the database, it only lets one more attempt through. The outcome's commit is durable.
        return self._outside_unit_of_work().run(reserve, write=True, durable=False)

    def settle_origin_attempt(
        self,
        subject: str,
        origin: str,
        reservation_id: str,
        budget: RateLimit,
        count: Callable[[Standing], Failure] | None,
    ) -> Failure | None:
        def settle(tx: Transaction) -> Failure | None:
            return sql_lockout.settle(
                tx, self.dialect, subject, origin, reservation_id, budget, count
            )

        return self._outside_unit_of_work().run(settle, write=True)

    def origin_succeeded(
        self,
        subject: str,
        origin: str,
        now: int,
        forget_before: int,
        reservation_id: str | None = None,
    ) -> None:
        success = Success(subject, origin, reservation_id, now, forget_before)
        self._outside_unit_of_work().run(
            lambda tx: sql_lockout.succeeded(tx, self.dialect, success), write=True
        )

    def clear_origin_lockout(self, subjects: Sequence[str]) -> None:
        self._outside_unit_of_work().run(
            lambda tx: sql_lockout.clear(tx, self.dialect, subjects), write=True
        )


def _bucket(limit: RateLimit) -> str:
    return limit.bucket
