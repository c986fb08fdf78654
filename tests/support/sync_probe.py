"""Run by `tests/store/test_commit_durability.py` under strace: each store call between two
markers (a write of "MARK <name>" to fd 2), so the syncs the kernel saw can be told apart per
call. Usage: python -m support.sync_probe DATABASE_FILE"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
import time
from dataclasses import replace

from otphsm.core.lockout import Failure, Success
from otphsm.core.records import RateLimit
from otphsm.core.tokens import Token
from otphsm.store import SqlStore
from otphsm.store.errors import StoreUnavailable
from otphsm.store.sqlite import SqliteEngine
from support.lockout_store import reserve
from support.store_records import NOW, citizen, token

SUBJECT = "token:TOK-0001"
ORIGIN = "203.0.113.7"


def mark(name: str) -> None:
    os.write(2, f"MARK {name}\n".encode())


def main(path: str) -> None:
    # No checkpointer: its passes sync the WAL and the file whenever they find frames to copy,
    # which would be counted in whichever phase they fall (the commits' syncs are unchanged).
    engine = SqliteEngine(path, checkpoint_interval=0)
    store = SqlStore(engine)
    store.migrate()
    store.upsert_citizen(citizen())
    stored = token()
    store.insert_token(stored)
    mark("reserve")
    first = reserve(store, SUBJECT, ORIGIN, NOW)
    mark("accept")
    accepted = replace(stored, moving_factor=stored.moving_factor + 5)
    assert store.update_token_succeeded(accepted, Success(SUBJECT, ORIGIN, first, NOW, 0))
    mark("reserve-again")
    second = reserve(store, SUBJECT, ORIGIN, NOW)
    mark("fail")
    store.settle_origin_attempt(
        SUBJECT, ORIGIN, second, RateLimit(SUBJECT, 3, 60), lambda _: Failure(None, True, NOW)
    )
    queued = [token(f"TOK-01{n:02d}") for n in range(4)]
    for each in queued:
        store.insert_token(each)
    mark("group")
    grouped_writes(store, engine, queued)
    mark("radius-claim")
    claimed, _ = store.claim_radius_answer("nas|203.0.113.9|17|authenticator", NOW, NOW + 30)
    assert claimed
    mark("radius-save")
    store.save_radius_answer("nas|203.0.113.9|17|authenticator", b"answer")
    current = store.get_token(stored.serial)
    assert current is not None
    mark("accept-after-radius")
    after = replace(current, moving_factor=current.moving_factor + 5)
    assert store.update_token_succeeded(after, Success(SUBJECT, ORIGIN, None, NOW, 0))
    mark("end")
    store.close()
    refused_reservation(path, stored.serial)


def refused_reservation(path: str, serial: str) -> None:
    """A reservation refused at its BEGIN (another program, the sqlite3 shell say, holds
    SQLite's write lock), then accepted codes on the same thread's connection."""
    short = SqlStore(SqliteEngine(path, busy_timeout=0.2, checkpoint_interval=0))
    mark("refused")
    foreign = sqlite3.connect(path, isolation_level=None)
    foreign.execute("BEGIN IMMEDIATE")
    try:
        reserve(short, SUBJECT, ORIGIN, NOW)
        raise SystemExit("the reservation was not refused")
    except StoreUnavailable:
        pass
    foreign.execute("ROLLBACK")
    foreign.close()
    for phase in ("restart-after-refused", "accept-after-refused"):
        # The first commit may restart the WAL, whose new header is synced whatever the
        # setting (not its frames): the second shows what the commit itself is given.
        current = short.get_token(serial)
        assert current is not None
        accepted = replace(current, moving_factor=current.moving_factor + 5)
        mark(phase)
        assert short.update_token_succeeded(accepted, Success(SUBJECT, ORIGIN, None, NOW, 0))
    mark("after-refused-end")
    short.close()


def grouped_writes(store: SqlStore, engine: SqliteEngine, tokens: list[Token]) -> None:
    """A unit of work holds the write lock while an accepted code per token queues up."""
    success = Success(SUBJECT, ORIGIN, None, NOW, 0)
    threads = [
        threading.Thread(target=store.update_token_succeeded, args=(queued, success))
        for queued in tokens
    ]
    with store.transaction() as work:
        work.upsert_citizen(citizen())
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while engine.waiting_writes() < len(tokens):
            if time.monotonic() > deadline:
                raise SystemExit("the accepted codes never queued for a shared commit")
            time.sleep(0.005)
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main(sys.argv[1])
