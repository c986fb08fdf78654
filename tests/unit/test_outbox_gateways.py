"""The file outboxes (otphsm.gateways) and the phones' side that reads them
(otphsm.simulators.sms.inbox): the JSON-lines formats an external sender relies on, and a
gateway made to fail writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from otphsm.core.clock import ManualClock
from otphsm.core.errors import DeviceUnavailable, InvalidInput
from otphsm.core.ports import PushGateway, SmsGateway
from otphsm.gateways.push_outbox import PushOutbox, device_outbox
from otphsm.gateways.sms_outbox import OutboxSmsGateway
from otphsm.simulators.sms.inbox import (
    PushMessage,
    SentSms,
    read_push_messages,
    read_sms_messages,
)

SERIAL = "MOB-AAAA000001"


def test_the_sms_outbox_is_one_json_object_a_line(tmp_path: Path) -> None:
    outbox = tmp_path / "spool" / "sms-outbox.jsonl"
    gateway: SmsGateway = OutboxSmsGateway(outbox, ManualClock(1_000))
    gateway.send("+393331234567", "code 123456")
    gateway.send("+393339876543", "code 654321")
    assert outbox.read_text(encoding="utf-8") == (
        '{"at": 1000, "to": "+393331234567", "text": "code 123456"}\n'
        '{"at": 1000, "to": "+393339876543", "text": "code 654321"}\n'
    )
    assert read_sms_messages(outbox, "+393339876543") == [
        SentSms(1_000, "+393339876543", "code 654321")
    ]
    assert len(read_sms_messages(outbox)) == 2
    assert read_sms_messages(tmp_path / "none.jsonl") == []


def test_the_push_outbox_is_one_file_per_device(tmp_path: Path) -> None:
    clock = ManualClock(2_000)
    gateway: PushGateway = PushOutbox(tmp_path / "push", clock)
    gateway.push(SERIAL, "code 123456")
    clock.advance(5)
    gateway.push(SERIAL, "code 654321")
    assert device_outbox(tmp_path / "push", SERIAL).read_text(encoding="utf-8") == (
        '{"at": 2000, "serial": "MOB-AAAA000001", "text": "code 123456"}\n'
        '{"at": 2005, "serial": "MOB-AAAA000001", "text": "code 654321"}\n'
    )
    assert read_push_messages(tmp_path / "push", SERIAL)[-1] == PushMessage(
        2_005, SERIAL, "code 654321"
    )
    assert read_push_messages(tmp_path / "push", "MOB-BBBB000002") == []


def test_a_serial_cannot_name_another_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        device_outbox(tmp_path, "../../etc/passwd")
    with pytest.raises(InvalidInput):
        PushOutbox(tmp_path).push("../x", "text")
    assert list(tmp_path.iterdir()) == []


def test_a_failing_gateway_writes_nothing(tmp_path: Path) -> None:
    sms = OutboxSmsGateway(tmp_path / "sms.jsonl")
    push = PushOutbox(tmp_path / "push")
    sms.fail_next(1)
    push.fail_next(1)
    with pytest.raises(DeviceUnavailable):
        sms.send("+393331234567", "code 123456")
    with pytest.raises(DeviceUnavailable):
        push.push(SERIAL, "code 123456")
    assert read_sms_messages(tmp_path / "sms.jsonl") == []
    assert read_push_messages(tmp_path / "push", SERIAL) == []
    sms.send("+393331234567", "code 654321")
    assert [m.text for m in read_sms_messages(tmp_path / "sms.jsonl")] == ["code 654321"]
