"""A verify rewrites its token's row. On PostgreSQL the new version stays on the row's page and
touches none of the table's indexes (a HOT update), even on a table loaded in bulk, whose pages
the load filled: what keeps a verify's write as cheap in a fleet of millions, each token used
once in a while, as in a small one whose pages churn."""

from __future__ import annotations

import time
from dataclasses import replace

import psycopg
import pytest
from support.store_records import token

from otphsm.core.tokens import TokenKind, TokenState
from otphsm.store import PostgresStore
from otphsm.store.postgres import PostgresEngine
from otphsm.store.sql import TOKENS, Transaction

pytestmark = pytest.mark.postgres

FLEET = 3000
WRITTEN = 100


def _counts(url: str) -> tuple[int, int]:
    """Updates and HOT updates of the schema's `tokens` table, as the statistics hold them."""
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
            "WHERE relname = 'tokens' AND schemaname = current_schema()"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_a_tokens_write_on_a_bulk_loaded_table_touches_no_index(postgres_store_url: str) -> None:
    store = PostgresStore(postgres_store_url, pool_size=1)
    store.migrate()
    fleet = [
        token(f"TOK-{index:05d}", kind=TokenKind.PHYSICAL, state=TokenState.ACTIVE)
        for index in range(FLEET)
    ]

    def load(tx: Transaction) -> None:
        for each in fleet:
            tx.queue(TOKENS.insert, TOKENS.to_row(each))

    engine = store._engine
    assert isinstance(engine, PostgresEngine)
    engine.run(load, write=True)
    for each in fleet[:: FLEET // WRITTEN]:  # one row on each of the table's pages, or so
        assert store.update_token(replace(each, moving_factor=each.moving_factor + 1))
    store.close()  # a backend leaving hands its statistics over

    deadline = time.monotonic() + 10
    updates, hot = _counts(postgres_store_url)
    while updates < WRITTEN and time.monotonic() < deadline:
        time.sleep(0.1)
        updates, hot = _counts(postgres_store_url)
    assert updates == WRITTEN
    assert hot == WRITTEN, f"{WRITTEN - hot} of {WRITTEN} writes moved their row and its indexes"
