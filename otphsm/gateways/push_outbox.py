"""A push gateway that appends each notification to a per-device outbox: one JSON-lines file
per token serial ({"at", "serial", "text"} a line) in a spool directory, the delivery for
development and for an external sender. The emulated token app (and `otphsm sim push show`)
reads its own file through `otphsm.simulators.sms.inbox`. `fail_next` makes it fail like a push
service does."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from otphsm.core.clock import Clock, SystemClock
from otphsm.core.errors import DeviceUnavailable
from otphsm.core.tokens import check_serial


class PushServiceDown(DeviceUnavailable):
    pass


def device_outbox(directory: Path, serial: str) -> Path:
    """The file of one device; the serial is checked, so it cannot name another path."""
    return directory / f"{check_serial(serial)}.jsonl"


class PushOutbox:
    def __init__(self, directory: Path, clock: Clock | None = None) -> None:
        self.directory = directory
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._fail_next = 0

    def fail_next(self, count: int) -> None:
        with self._lock:
            self._fail_next = count

    def push(self, device_serial: str, text: str) -> None:
        path = device_outbox(self.directory, device_serial)
        with self._lock:
            if self._fail_next:
                self._fail_next -= 1
                raise PushServiceDown("the push service is not answering; try again later")
            record = {"at": self._clock.now(), "serial": device_serial, "text": text}
            self.directory.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")
