"""RADIUS packets in and out (`otphsm.service.radius.packets`), and how an answer to two cells
is read (`handler`): what a request means (user, PAP password, State, the end user's origin
with its fallbacks), every reason a datagram is dropped unanswered, and an answer a NAS
accepts (Response Authenticator and Message-Authenticator checked by pyrad's client side)."""

from __future__ import annotations

from typing import Any

import pytest
from pyrad import packet as radius

from otphsm.core.errors import InvalidInput
from otphsm.service.radius import handler, packets
from otphsm.service.radius.packets import Answer, AnswerKind, Drop, Dropped

SECRET = b"unit-test-shared-secret-0123456789"
DICTIONARY = packets.load_dictionary()


def request(*, signed: bool = True, code: int = radius.AccessRequest, **attributes: Any) -> Any:
    packet = radius.AuthPacket(code=code, id=42, secret=SECRET, dict=DICTIONARY)
    for key, value in attributes.items():
        name = key.replace("_", "-")
        packet.AddAttribute(name, packet.PwCrypt(value) if name == "User-Password" else value)
    if signed:
        packet.add_message_authenticator()
    return packet


def decode(packet: Any, secret: bytes = SECRET) -> packets.AccessRequest:
    return packets.decode(packet.RequestPacket(), secret, DICTIONARY, "203.0.113.9")


def dropped(data: bytes, secret: bytes = SECRET) -> Drop:
    with pytest.raises(Dropped) as refused:
        packets.decode(data, secret, DICTIONARY, "203.0.113.9")
    return refused.value.reason


def test_a_pap_request_reads_user_password_state_and_calling_station() -> None:
    decoded = decode(
        request(
            User_Name="RSSMRA80A01L378S",
            User_Password="K7Q2123456",
            State=b"\x00\x01state",
            Calling_Station_Id="02-00-5e-00-53-01",
        )
    )
    assert (decoded.user_name, decoded.password, decoded.pap) == (
        "RSSMRA80A01L378S",
        "K7Q2123456",
        True,
    )
    assert (decoded.state, decoded.origin, decoded.identifier) == (
        b"\x00\x01state",
        "02-00-5e-00-53-01",
        42,
    )


def test_the_origin_falls_back_to_the_nas_port_then_to_the_source() -> None:
    nas_port = request(User_Name="FOB-0001", NAS_IP_Address="192.0.2.5", NAS_Port=7)
    assert decode(nas_port).origin == "192.0.2.5:7"
    assert decode(request(User_Name="FOB-0001")).origin == "203.0.113.9"
    assert decode(request(User_Name="FOB-0001")).password == ""  # none sent


def test_a_signed_status_server_is_read_as_such() -> None:
    status = request(code=radius.StatusServer)
    assert decode(status).status_server
    assert dropped(request(code=radius.StatusServer, signed=False).RequestPacket()) is (
        Drop.NO_MESSAGE_AUTHENTICATOR
    )


def test_chap_is_read_as_not_pap() -> None:
    assert not decode(request(User_Name="FOB-0001", CHAP_Password=b"\x01" + b"x" * 16)).pap


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", Drop.MALFORMED),
        (b"\x01\x2a\x00\x14" + b"\x00" * 15, Drop.MALFORMED),  # 19 octets
        (b"\x01\x2a\xff\xff" + b"\x00" * 16, Drop.MALFORMED),  # longer than received
        (b"\x01\x2a\x00\x16" + b"\x00" * 16 + b"\x01\x00", Drop.MALFORMED),  # attribute length 0
        (b"\x01" * 5000, Drop.MALFORMED),  # over 4096 octets
    ],
)
def test_malformed_datagrams_are_dropped(data: bytes, reason: Drop) -> None:
    assert dropped(data) is reason


def test_unsigned_forged_and_non_access_requests_are_dropped() -> None:
    plain = request(User_Name="FOB-0001", User_Password="123456", signed=False)
    assert dropped(plain.RequestPacket()) is Drop.NO_MESSAGE_AUTHENTICATOR
    signed = request(User_Name="FOB-0001", User_Password="123456").RequestPacket()
    assert dropped(signed, secret=b"another-secret-of-the-same-size!!!") is (
        Drop.BAD_MESSAGE_AUTHENTICATOR
    )
    accounting = bytearray(signed)
    accounting[0] = radius.AccountingRequest
    assert dropped(bytes(accounting)) is Drop.NOT_ACCESS_REQUEST
    twice = request(User_Name="FOB-0001")
    twice.AddAttribute("User-Name", "FOB-0002")
    assert dropped(twice.RequestPacket()) is Drop.MALFORMED


def test_an_answer_is_signed_and_carries_the_message_and_state() -> None:
    sent = request(User_Name="RSSMRA80A01L378S", User_Password="")
    raw_request = sent.RequestPacket()
    decoded = packets.decode(raw_request, SECRET, DICTIONARY, "203.0.113.9")
    raw = packets.encode(decoded, Answer(AnswerKind.CHALLENGE, "Type cells 3 and 9.", b"s" * 16))
    reply = sent.CreateReply(packet=raw)
    assert sent.VerifyReply(reply, raw, enforce_ma=True)
    assert reply.code == radius.AccessChallenge
    assert (reply["Reply-Message"], reply["State"]) == (["Type cells 3 and 9."], [b"s" * 16])


@pytest.mark.parametrize(
    ("typed", "cells"),
    [("123 456", ("123", "456")), ("123456", ("123", "456")), ("12,34", ("12", "34"))],
)
def test_two_cells_typed_apart_or_together(typed: str, cells: tuple[str, str]) -> None:
    assert handler._cells(typed) == cells


@pytest.mark.parametrize("typed", ["12345", "1 2 3", ""])
def test_anything_else_is_not_two_cells(typed: str) -> None:
    with pytest.raises(InvalidInput):
        handler._cells(typed)
