"""The write turn of the processes sharing one SQLite file: an exclusive `flock` on a lock file
beside the database (`<file>-writer.lock`), held around each write transaction.

SQLite's own write lock still decides (BEGIN IMMEDIATE); this only orders the processes before
they ask for it. Without it, a writer that finds the lock taken by another process sleeps in
SQLite's busy handler for 1, 2, 5, 10 … ms at a time, long after the lock is free; here it
asks again every `POLL_SECONDS`, within the same busy timeout. A program that does not take
this turn (the sqlite3 shell, an older otphsm) is still kept out by SQLite's lock.

The lock file is usable by whoever may write the database, as SQLite makes its `-wal` and
`-shm` files: the database's owner and group (when created by root, an administrator's command
say), read and write for its owner, and for its group if the group may write the database;
never for others (anyone who can open the file can hold the turn).
"""

from __future__ import annotations

import fcntl
import os
import stat
import time

POLL_SECONDS = 0.0005


class ProcessTurn:
    def __init__(self, database_path: str) -> None:
        self.path = f"{database_path}-writer.lock"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            _like_the_database(self._fd, database_path)
        except OSError:
            self.close()
            raise

    def acquire(self, deadline: float) -> bool:
        """Wait for the turn until `deadline` (`time.monotonic()`); False if it did not come.
        Once closed, always True: the closed store refuses the write itself."""
        while self._fd >= 0:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                time.sleep(min(POLL_SECONDS, left))
        return True

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


def _like_the_database(fd: int, database_path: str) -> None:
    """The owner and permissions of the lock file `fd` as the module says, if it is ours."""
    mine, database = os.fstat(fd), os.stat(database_path)
    if mine.st_uid != os.geteuid():
        return  # the database's owner's (or another writer's) file, set when it was created
    if os.geteuid() == 0 and (mine.st_uid, mine.st_gid) != (database.st_uid, database.st_gid):
        os.fchown(fd, database.st_uid, database.st_gid)
    mode = 0o600 | (0o060 if database.st_mode & stat.S_IWGRP else 0)
    if stat.S_IMODE(mine.st_mode) != mode:
        os.fchmod(fd, mode)
