"""Run by `tests/store/test_commit_durability.py` under strace: each store call between two
markers (a write of "MARK <name>" to fd 2), so the syncs the kernel saw can be told apart per
call. Usage: python -m support.sync_probe DATABASE_FILE"""

from __future__ import annotations

import os
import sys
from dataclasses import replace

from otphsm.core.lockout import Failure, Success
from otphsm.core.records import RateLimit
from otphsm.store import SqlStore, open_store, sqlite_url
from support.lockout_store import reserve
from support.store_records import NOW, citizen, token

SUBJECT = "token:TOK-0001"
ORIGIN = "203.0.113.7"


def mark(name: str) -> None:
    os.write(2, f"MARK {name}\n".encode())


def main(path: str) -> None:
    store = open_store(sqlite_url(path))
    assert isinstance(store, SqlStore)
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
    mark("end")
    store.close()


if __name__ == "__main__":
    main(sys.argv[1])
