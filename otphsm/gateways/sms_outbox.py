"""An SMS gateway that appends each message to an outbox file (JSON lines, one
{"at", "to", "text"} object a line) instead of a carrier: the delivery for development, and a
spool an external sender can drain. `otphsm.simulators.sms.inbox` reads it as the phones would.
`fail_next` makes it fail like a carrier does."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from otphsm.core.clock import Clock, SystemClock
from otphsm.core.errors import DeviceUnavailable


class SmsGatewayDown(DeviceUnavailable):
    pass


class OutboxSmsGateway:
    def __init__(self, outbox: Path, clock: Clock | None = None) -> None:
        self.outbox = outbox
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._fail_next = 0
        outbox.parent.mkdir(parents=True, exist_ok=True)

    def fail_next(self, count: int) -> None:
        with self._lock:
            self._fail_next = count

    def send(self, phone_number: str, text: str) -> None:
        with self._lock:
            if self._fail_next:
                self._fail_next -= 1
                raise SmsGatewayDown("the SMS gateway is not answering; try again later")
            record = {"at": self._clock.now(), "to": phone_number, "text": text}
            with self.outbox.open("a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")
