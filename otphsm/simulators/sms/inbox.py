"""What the phones read: the messages the outbox gateways (`otphsm.gateways`) wrote, as the
simulated carrier and push service deliver them. The token app's inbox, `otphsm sim push
show`, the demo and the tests read codes through these."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from otphsm.gateways.push_outbox import device_outbox

PUSH_OUTBOX_ENV = "OTPHSM_PUSH_OUTBOX"
"""Where the commands that read the simulated push service's outbox look by default."""


@dataclass(frozen=True, slots=True)
class SentSms:
    at: float
    to: str
    text: str


@dataclass(frozen=True, slots=True)
class PushMessage:
    at: float
    serial: str
    text: str


def read_sms_messages(outbox: Path, to: str | None = None) -> list[SentSms]:
    """Every SMS in the outbox file (to one number, or all), oldest first."""
    if not outbox.exists():
        return []
    lines = outbox.read_text(encoding="utf-8").splitlines()
    sent = [SentSms(**json.loads(line)) for line in lines if line.strip()]
    return [m for m in sent if to is None or m.to == to]


def read_push_messages(directory: Path, serial: str) -> list[PushMessage]:
    """Every notification pushed to `serial`, oldest first."""
    path = device_outbox(directory, serial)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [PushMessage(**json.loads(line)) for line in lines if line.strip()]
