"""A push gateway that writes each notification to a per-device outbox: one JSON-lines file per
token serial in a directory. The emulated token app (and `otphsm sim push show`) reads its own
file. Knobs make it fail like a push service does."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from otphsm.core.clock import Clock, SystemClock
from otphsm.core.errors import DeviceUnavailable
from otphsm.core.tokens import check_serial

PUSH_OUTBOX_ENV = "OTPHSM_PUSH_OUTBOX"
"""Where the commands that read the simulated push service's outbox look by default."""


class PushServiceDown(DeviceUnavailable):
    pass


@dataclass(frozen=True, slots=True)
class PushMessage:
    at: float
    serial: str
    text: str


def device_outbox(directory: Path, serial: str) -> Path:
    """The file of one device; the serial is checked, so it cannot name another path."""
    return directory / f"{check_serial(serial)}.jsonl"


def read_push_messages(directory: Path, serial: str) -> list[PushMessage]:
    """Every notification pushed to `serial`, oldest first."""
    path = device_outbox(directory, serial)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [PushMessage(**json.loads(line)) for line in lines if line.strip()]


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

    def messages(self, device_serial: str) -> list[PushMessage]:
        return read_push_messages(self.directory, device_serial)
