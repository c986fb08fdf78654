"""The RADIUS front end's shared state (migration 8): challenge states waiting for their
answer, and the recent answers a retransmitted request gets again (RFC 5080 §2.2.2). Both are
short-lived rows, purged once expired; replicas share them, so a NAS failing over to another
replica can answer a challenge, and its retransmission is not verified a second time.

The answers are a cache written twice per request: their commits do not wait for the disk
(`durable=False`). A database crash may lose the last ones: a retransmission of such
a request is then verified again and answered REPLAYED (the code was used), never accepted
twice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from otphsm.core.records import RadiusChallengeKind, RadiusState
from otphsm.store import sql
from otphsm.store.sql import Transaction

T = TypeVar("T")


class _Engine(Protocol):
    def run(self, work: Callable[[Transaction], T], *, write: bool, durable: bool = True) -> T: ...


def insert_state(engine: _Engine, state: RadiusState) -> None:
    row = (
        state.state,
        state.client,
        state.codice_fiscale,
        state.kind.value,
        state.created_at,
        state.expires_at,
    )
    engine.run(lambda tx: tx.execute(sql.INSERT_RADIUS_STATE, row), write=True)


def take_state(engine: _Engine, state: bytes, client: str, now: int) -> RadiusState | None:
    row = engine.run(lambda tx: tx.fetch_one(sql.TAKE_RADIUS_STATE, (state, client)), write=True)
    if row is None or int(row[5]) <= now:
        return None
    return _state(row)


def claim_answer(engine: _Engine, key: str, now: int, expires_at: int) -> tuple[bool, bytes | None]:
    def claim(tx: Transaction) -> tuple[bool, bytes | None]:
        tx.execute(sql.DROP_EXPIRED_RADIUS_ANSWER, (key, now))
        if tx.execute(sql.CLAIM_RADIUS_ANSWER, (key, expires_at)) == 1:
            return True, None
        row = tx.fetch_one(sql.RADIUS_ANSWER, (key,))
        return False, (bytes(row[0]) if row is not None and row[0] is not None else None)

    return engine.run(claim, write=True, durable=False)


def save_answer(engine: _Engine, key: str, answer: bytes) -> None:
    engine.run(
        lambda tx: tx.execute(sql.SAVE_RADIUS_ANSWER, (answer, key)), write=True, durable=False
    )


def drop_answer(engine: _Engine, key: str) -> None:
    engine.run(lambda tx: tx.execute(sql.DROP_RADIUS_ANSWER, (key,)), write=True)


def purge(engine: _Engine, now: int) -> int:
    def delete(tx: Transaction) -> int:
        return tx.execute(sql.PURGE_RADIUS_ANSWERS, (now,)) + tx.execute(
            sql.PURGE_RADIUS_STATES, (now,)
        )

    return engine.run(delete, write=True)


def _state(row: Any) -> RadiusState:
    return RadiusState(
        state=bytes(row[0]),
        client=str(row[1]),
        codice_fiscale=str(row[2]),
        kind=RadiusChallengeKind(row[3]),
        created_at=int(row[4]),
        expires_at=int(row[5]),
    )
