"""SQLite's WAL copied back into the database file by a background thread, off the request path.

In WAL mode every commit appends pages to the `-wal` file, and by default the commit that takes
the WAL past 1,000 pages copies them all back into the database file and syncs it, inline,
while it still holds the write lock: every writer behind it waits. Over a large table the
updates touch distinct pages (about one per verified token), so that copy is hundreds of
scattered page writes plus an fsync of the database file, 4-8 ms at 10⁶ tokens against under
1 ms at 10³ (README, Benchmarks): the requests queued behind it are the tail.

This thread runs `PRAGMA wal_checkpoint(PASSIVE)` on its own connection every `interval`
seconds: the pages committed since its last pass are written back and the database file synced
while writers go on (a PASSIVE checkpoint takes no write lock and waits for no one). Once the
WAL holds `restart_frames` frames, it runs one more pass inside the process's writer turn
(`hold_writers`): only the frames committed during the pass before are left to copy, and with
no commit after it the next writer restarts the WAL from its beginning, so the WAL stays
about that size. That held pass costs its two fsyncs, whatever the fleet's size, once per
`restart_frames` instead of once per 1,000. SQLite's own automatic checkpoint stays on the
request connections, at a larger size (the engine's `AUTOCHECKPOINT_FRAMES`), as the bound if
this thread cannot keep up (other processes' writers keep the WAL from restarting, say): it
then finds nearly every page already written back. Durability is
unchanged: each commit is still synced in the WAL before its answer (`synchronous` is not
touched). A pass that fails (busy, another process's checkpoint running) is counted and tried
again at the next interval.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass


@dataclass
class CheckpointStats:
    passes: int = 0
    """Passes run (whether or not there was anything to copy)."""
    restarts: int = 0
    """Passes inside the writer turn that left the WAL complete (to restart at the next write)."""
    failures: int = 0
    """Passes that did not finish (busy, an I/O error): tried again at the next interval."""
    held: float = 0.0
    """The time writers waited on passes inside the writer turn, in all (seconds)."""
    longest_hold: float = 0.0
    """The longest time writers waited on a pass inside the writer turn (seconds)."""
    wal_frames: int = 0
    """The WAL's frames at the last pass (counted from its last restart)."""


class Checkpointer:
    """A daemon thread checkpointing one SQLite database in WAL mode until stopped."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        hold_writers: Callable[[], AbstractContextManager[object]],
        *,
        interval: float,
        restart_frames: int,
    ) -> None:
        self.interval = interval
        self.restart_frames = restart_frames
        self.stats = CheckpointStats()
        self._connect = connect
        self._hold_writers = hold_writers
        self._connection: sqlite3.Connection | None = None
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="sqlite-checkpointer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def checkpoint(self) -> None:
        """One pass now, and one inside the writer turn if the WAL has grown to restart it."""
        with self._lock:
            if self._stopped.is_set():
                return
            frames = self._pass()
            if frames is None or frames < self.restart_frames:
                return
            # Once more before holding the writers: this pass copies only the pages committed
            # during the first, the held one only those committed during this one.
            if self._pass() is None:
                return
            try:
                with self._hold_writers():
                    started = time.perf_counter()
                    complete = self._pass(want_complete=True) is not None
                    held = time.perf_counter() - started
            except Exception:  # no writer turn in time: the next interval tries again
                self.stats.failures += 1
                return
            self.stats.held += held
            self.stats.longest_hold = max(self.stats.longest_hold, held)
            self.stats.restarts += complete

    def _pass(self, *, want_complete: bool = False) -> int | None:
        """A PASSIVE checkpoint; the WAL's frames, or None if it did not finish (or, with
        `want_complete`, left frames behind for a reader still using them)."""
        try:
            if self._connection is None:
                self._connection = self._connect()
            busy, frames, copied = self._connection.execute(
                "PRAGMA wal_checkpoint(PASSIVE)"
            ).fetchone()
        except sqlite3.Error:
            self.stats.failures += 1
            return None
        self.stats.passes += 1
        if busy or (want_complete and copied < frames):
            self.stats.failures += 1
            return None
        self.stats.wal_frames = max(0, frames)
        return self.stats.wal_frames

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval):
            self.checkpoint()
