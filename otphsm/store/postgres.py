"""PostgreSQL for replicas: psycopg 3 with a connection pool, READ COMMITTED transactions.

At-most-once comes from the statements, not the isolation level: a conditional UPDATE that
loses a race re-reads the row after the winner commits and matches nothing. Audit appends
take a table lock that only appenders contend for; `migrate()` takes an advisory lock.

A transaction is pipelined: BEGIN and the statements whose result is not read (`queue`) are
sent with the next read, and the COMMIT with the statements queued after the last read, so a
transaction costs one round trip per read that decides what comes next, plus one.
Connections are in autocommit mode, the BEGIN being ours: psycopg's own would wait for its
answer. A lone read runs without BEGIN and COMMIT.

Connections are not checked before each use (that would cost a round trip per operation).
A transaction that fails before COMMIT because its connection died (a server restart, a
failover, `pg_terminate_backend`) makes the pool check every idle connection, replacing the
dead ones, and then runs once more; so does one the server chose as a deadlock victim. A
failure during COMMIT is never retried, since its outcome is unknown: it surfaces as
`StoreUnavailable`, as does any failure of the second attempt. Waiting for a connection is
bounded by `timeout`, connecting by libpq's `connect_timeout`.

While the server is known to be down (a caller timed out waiting for a connection and the
pool's connection attempts had failed meanwhile), callers wait only `OUTAGE_WAIT` for one, so
each gets its `StoreUnavailable` at once instead of after the whole `timeout`; the first
operation that succeeds again ends the outage. A pool that is merely busy (its connections
in use, none failing) keeps the full wait.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, NoReturn, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout, TooManyRequests

from otphsm.core.errors import ConfigurationError
from otphsm.core.ports import Conflict
from otphsm.store.errors import StoreUnavailable, redact
from otphsm.store.rows import Row
from otphsm.store.schema import current_version
from otphsm.store.sql import POSTGRES, Transaction
from otphsm.store.sql_store import SqlStore

T = TypeVar("T")

Connection = psycopg.Connection[tuple[Any, ...]]

ATTEMPTS = 2
DEFAULT_CONNECT_TIMEOUT = 5
OUTAGE_WAIT = 0.25
"""Seconds a caller waits for a pooled connection while the server is known to be down."""
_RETRY_SQLSTATES = frozenset({"40001", "40P01"})
_POOL_GAVE_UP = (PoolTimeout, PoolClosed, TooManyRequests)


class _PostgresTransaction:
    """Statements on one connection. In a pipeline (`pipeline` given), a queued statement is
    only sent: it travels with the next statement whose result is read, or with the
    COMMIT."""

    def __init__(
        self,
        connection: Connection,
        translated: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
        pipeline: psycopg.Pipeline | None = None,
    ) -> None:
        self._connection = connection
        self._translated = translated
        self._pipeline = pipeline

    def execute(self, statement: str, params: Sequence[object] = ()) -> int:
        with self._translated(), self._connection.cursor() as cursor:
            cursor.execute(POSTGRES.render(statement), params or None)
            if self._pipeline is not None:
                self._pipeline.sync()  # the row count is known once the answer is in
            return cursor.rowcount

    def queue(self, statement: str, params: Sequence[object] = ()) -> None:
        with self._translated():
            self._connection.cursor().execute(POSTGRES.render(statement), params or None)

    def fetch_one(self, statement: str, params: Sequence[object] = ()) -> Row | None:
        with self._translated(), self._connection.cursor() as cursor:
            cursor.execute(POSTGRES.render(statement), params or None)
            return cursor.fetchone()

    def fetch_all(self, statement: str, params: Sequence[object] = ()) -> list[Row]:
        with self._translated(), self._connection.cursor() as cursor:
            cursor.execute(POSTGRES.render(statement), params or None)
            return cursor.fetchall()


class _CommitFailed(Exception):
    """Wraps a driver error raised by COMMIT, so it is never retried."""

    def __init__(self, cause: psycopg.Error) -> None:
        super().__init__(str(cause))
        self.cause = cause


class PostgresEngine:
    dialect = POSTGRES

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 4,
        timeout: float = 5.0,
        ping_timeout: float = 2.0,
        reconnect_timeout: float = 10.0,
    ) -> None:
        if pool_size < 1:
            raise ConfigurationError(
                f"the PostgreSQL pool needs at least 1 connection, not {pool_size}"
            )
        try:
            settings = conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as exc:
            reason = str(exc).split(":", 1)[0]
            raise ConfigurationError(
                f"the PostgreSQL DSN is malformed ({reason}): "
                "use postgresql://user@host:port/database"
            ) from None  # libpq's message quotes the DSN, password included
        self._secrets = (str(settings.get("password") or ""),)
        self._outage = False
        self._failed_connects = 0
        """The pool's failed connection attempts, as counted when a caller last timed out."""
        self._ping_timeout = ping_timeout
        defaults: dict[str, Any] = {}
        if "application_name" not in settings:
            defaults["application_name"] = "otphsm"
        if "connect_timeout" not in settings:
            defaults["connect_timeout"] = DEFAULT_CONNECT_TIMEOUT
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            dsn,
            min_size=1,
            max_size=pool_size,
            kwargs={**defaults, "autocommit": True},  # BEGIN is ours: see `_attempt`
            timeout=timeout,
            reconnect_timeout=reconnect_timeout,
            name="otphsm-store",
            open=False,
        )
        self._pool.open(wait=False)

    def run(self, work: Callable[[Transaction], T], *, write: bool, durable: bool = True) -> T:
        """`durable=False`: a transaction whose loss in a database crash is harmless; its
        COMMIT does not wait for the WAL to reach the disk (`synchronous_commit = off` for it
        alone). Other sessions see it as soon as it is committed, as any other, and the next
        durable commit flushes it too."""
        return self._run(work, timeout=None, durable=durable)

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A transaction held open across the caller's statements, committed when the block
        ends, rolled back if it raises. It starts with the audit lock (`audit_lock`), so audit
        appends inside it keep the chain's order and a transaction never waits for that lock
        while holding row locks (no deadlock with another one). Never retried: the caller's
        block cannot be run twice; a lost connection surfaces as `StoreUnavailable`."""
        try:
            with self._pool.connection(timeout=self._wait()) as connection:
                tx = _PostgresTransaction(connection, self._translated)
                tx.execute("BEGIN")
                tx.execute(POSTGRES.audit_lock or "SELECT 1")
                yield tx
                try:
                    connection.commit()
                except psycopg.Error as exc:
                    raise _CommitFailed(exc) from exc
            self._outage = False
        except PoolTimeout as exc:
            self._note_pool_timeout()
            raise self._unavailable(exc) from exc
        except _CommitFailed as failed:
            raise self._unavailable(
                failed.cause, "while committing, so the outcome is unknown"
            ) from failed.cause
        except psycopg.Error as exc:
            self._raise_translated(exc)

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except psycopg.Error as exc:
            self._raise_translated(exc)

    def _raise_translated(self, exc: psycopg.Error) -> NoReturn:
        if isinstance(exc, pg_errors.UniqueViolation):
            raise Conflict(redact(str(exc), self._secrets)) from exc
        if isinstance(exc, psycopg.OperationalError) or exc.sqlstate in _RETRY_SQLSTATES:
            raise self._unavailable(exc) from exc
        raise exc

    def _wait(self) -> float | None:
        return OUTAGE_WAIT if self._outage else None

    def fetch_one(self, statement: str, params: Row) -> Row | None:
        return self._run(lambda tx: tx.fetch_one(statement, params), timeout=None, single=True)

    def write_one(self, statement: str, params: Row) -> int:
        # In a transaction still: a failure before COMMIT is then known not to have written,
        # so it can be retried; one in autocommit could have been committed or not.
        return self.run(lambda tx: tx.execute(statement, params), write=True)

    def ping(self) -> int:
        try:
            return self._run(
                lambda tx: current_version(tx, self.dialect), timeout=self._ping_timeout
            )
        except psycopg.Error as exc:
            raise self._unavailable(exc) from exc

    def close(self) -> None:
        self._pool.close()

    def _run(
        self,
        work: Callable[[Transaction], T],
        *,
        timeout: float | None,
        single: bool = False,
        durable: bool = True,
    ) -> T:
        attempt = 1
        while True:
            wait = OUTAGE_WAIT if timeout is None and self._outage else timeout
            try:
                if single:
                    result = self._attempt_single(work, wait)
                else:
                    result = self._attempt(work, wait, durable=durable)
                self._outage = False
                return result
            except PoolTimeout as exc:
                self._note_pool_timeout()
                raise self._unavailable(exc) from exc
            except _CommitFailed as failed:
                raise self._unavailable(
                    failed.cause, "while committing, so the outcome is unknown"
                ) from failed.cause
            except pg_errors.UniqueViolation as exc:
                raise Conflict(redact(str(exc), self._secrets)) from exc
            except psycopg.Error as exc:
                if attempt < ATTEMPTS and _retryable(exc):
                    attempt += 1
                    if isinstance(exc, psycopg.OperationalError):
                        self._pool.check()
                    continue
                if isinstance(exc, psycopg.OperationalError) or exc.sqlstate in _RETRY_SQLSTATES:
                    raise self._unavailable(exc) from exc
                raise

    def _attempt(
        self, work: Callable[[Transaction], T], timeout: float | None, *, durable: bool = True
    ) -> T:
        """`work` in a pipeline: BEGIN and the statements it queues travel with its first read,
        and the COMMIT with the statements queued after its last read, in one round trip. A
        failure of those is reported as the COMMIT's (its outcome unknown: not retried)."""
        with self._pool.connection(timeout=timeout) as connection:
            stack = contextlib.ExitStack()
            with stack:
                pipeline = stack.enter_context(connection.pipeline())
                tx = _PostgresTransaction(connection, pipeline=pipeline)
                tx.queue("BEGIN")
                if not durable and POSTGRES.relaxed_commit:
                    tx.queue(POSTGRES.relaxed_commit)
                result = work(tx)
                try:
                    # psycopg may raise a queued statement's error as soon as its answer is
                    # in, so at this COMMIT's queueing too: the same failure either way
                    tx.queue("COMMIT")  # sent with the pipeline's last Sync: one round trip
                    stack.close()
                except psycopg.Error as exc:
                    raise _CommitFailed(exc) from exc
            return result

    def _attempt_single(self, read: Callable[[Transaction], T], timeout: float | None) -> T:
        """One read-only statement on its own (no BEGIN and COMMIT): one round trip."""
        with self._pool.connection(timeout=timeout) as connection:
            return read(_PostgresTransaction(connection))

    def _note_pool_timeout(self) -> None:
        failed = int(self._pool.get_stats().get("connections_errors", 0))
        self._outage = self._outage or failed > self._failed_connects  # only success ends it
        self._failed_connects = failed

    def _unavailable(self, exc: psycopg.Error, context: str = "") -> StoreUnavailable:
        message = redact(str(exc).strip(), self._secrets)
        where = f" {context}" if context else ""
        return StoreUnavailable(f"PostgreSQL is unavailable{where}: {message}", code=exc.sqlstate)


def _retryable(exc: psycopg.Error) -> bool:
    """Failed before COMMIT on a connection that died, or chosen as a deadlock victim."""
    if isinstance(exc, _POOL_GAVE_UP):
        return False
    return isinstance(exc, psycopg.OperationalError) or exc.sqlstate in _RETRY_SQLSTATES


class PostgresStore(SqlStore):
    """The `Store` on PostgreSQL, shared by every replica of the service."""

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 4,
        timeout: float = 5.0,
        ping_timeout: float = 2.0,
        reconnect_timeout: float = 10.0,
    ) -> None:
        """`timeout`: longest wait for a pooled connection; `ping_timeout` the same for `ping()`;
        `reconnect_timeout`: how long the pool retries (backing off) to replace a lost
        connection before it gives up and connects afresh on the next demand, which bounds
        how long after an outage the store comes back."""
        super().__init__(
            PostgresEngine(
                dsn,
                pool_size=pool_size,
                timeout=timeout,
                ping_timeout=ping_timeout,
                reconnect_timeout=reconnect_timeout,
            )
        )
