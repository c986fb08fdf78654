"""An SMS gateway that writes each message to an outbox (JSON lines): the demo and the tests
read codes from it. Knobs make it fail like a carrier does."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from otphsm.core.clock import Clock, SystemClock
from otphsm.core.errors import DeviceUnavailable


class SmsGatewayDown(DeviceUnavailable):
    pass


@dataclass(frozen=True, slots=True)
class SentSms:
    at: float
    to: str
    text: str


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

    def messages(self, to: str | None = None) -> list[SentSms]:
        if not self.outbox.exists():
            return []
        lines = self.outbox.read_text(encoding="utf-8").splitlines()
        sent = [SentSms(**json.loads(line)) for line in lines if line.strip()]
        return [m for m in sent if to is None or m.to == to]
