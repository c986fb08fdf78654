"""RADIUS packets on pyrad: an Access-Request decoded and checked (or a reason to drop it
unanswered), and an answer encoded with its Message-Authenticator.

Dropped, never answered (RFC 2865 §3, and Blast-RADIUS, CVE-2024-3596): anything that does not
decode, a packet that is neither an Access-Request nor a Status-Server (RFC 5997: a NAS asking
whether this server is up), one without a Message-Authenticator or with a wrong one (the
shared secret is the only thing that proves who sent it)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from importlib import resources
from typing import Any

from pyrad import packet as radius
from pyrad.dictionary import Dictionary

MIN_LENGTH = 20
MAX_LENGTH = 4096
"""RFC 2865 §3: a packet is 20 to 4096 octets."""
MAX_ORIGIN = 128
"""The longest origin the lockout takes (`otphsm.core.lockout.check_origin`)."""
UNTYPEABLE = "\ufffd"
"""Stands for a password no keyboard types (control characters): checked, and wrong."""


class Drop(enum.StrEnum):
    """Why a datagram got no answer: the metric's label."""

    MALFORMED = "malformed"
    UNKNOWN_CLIENT = "unknown_client"
    NOT_ACCESS_REQUEST = "not_access_request"
    NO_MESSAGE_AUTHENTICATOR = "no_message_authenticator"
    BAD_MESSAGE_AUTHENTICATOR = "bad_message_authenticator"
    UNHEALTHY = "unhealthy"
    """A Status-Server while the HSM or the store fails its health check: no answer, so the
    NAS fails over."""
    IN_PROGRESS = "in_progress"
    """A retransmission of a request still being handled: the first copy will answer."""
    OVERLOADED = "overloaded"
    """Too many datagrams waiting for a worker."""
    ERROR = "error"
    """The request could not be handled (the store or the HSM failed): the NAS retries."""


class Dropped(Exception):
    def __init__(self, reason: Drop) -> None:
        super().__init__(reason.value)
        self.reason = reason


class AnswerKind(enum.IntEnum):
    ACCEPT = radius.AccessAccept
    REJECT = radius.AccessReject
    CHALLENGE = radius.AccessChallenge


@dataclass(frozen=True, slots=True)
class Answer:
    kind: AnswerKind
    message: str
    """Reply-Message, in plain words; never an input's value or a secret."""
    state: bytes = b""
    """Access-Challenge: the State the answer must come back with."""


@dataclass(frozen=True, slots=True)
class AccessRequest:
    packet: Any  # pyrad.packet.AuthPacket (untyped)
    user_name: str
    password: str
    """The PAP password ("" if the NAS sent none or an empty one)."""
    pap: bool
    """False for CHAP and the like: a one-time code needs the password itself."""
    state: bytes | None
    origin: str
    """The end user's device: Calling-Station-Id, else NAS-IP-Address:NAS-Port, else the
    NAS's own address."""
    status_server: bool = False
    """A Status-Server (RFC 5997), nothing else read: answered Access-Accept while healthy."""

    @property
    def identifier(self) -> int:
        return int(self.packet.id)

    @property
    def authenticator(self) -> bytes:
        return bytes(self.packet.authenticator)


def load_dictionary() -> Dictionary:
    """The attributes this front end uses (`dictionary`, shipped in the package)."""
    with resources.as_file(resources.files(__package__) / "dictionary") as path:
        return Dictionary(str(path))


def decode(data: bytes, secret: bytes, dictionary: Dictionary, source: str) -> AccessRequest:
    """The checked Access-Request in `data`; `Dropped` with the reason otherwise."""
    if not MIN_LENGTH <= len(data) <= MAX_LENGTH:
        raise Dropped(Drop.MALFORMED)
    try:
        packet = radius.AuthPacket(packet=data, secret=secret, dict=dictionary)
    except Exception:  # pyrad raises PacketError, struct.error, KeyError, ... on bad input
        raise Dropped(Drop.MALFORMED) from None
    if packet.code not in (radius.AccessRequest, radius.StatusServer):
        raise Dropped(Drop.NOT_ACCESS_REQUEST)
    authenticators = _raw(packet, 80)
    if not authenticators:
        raise Dropped(Drop.NO_MESSAGE_AUTHENTICATOR)
    if len(authenticators) != 1 or len(authenticators[0]) != 16:
        raise Dropped(Drop.MALFORMED)
    if not packet.verify_message_authenticator():
        raise Dropped(Drop.BAD_MESSAGE_AUTHENTICATOR)
    if packet.code == radius.StatusServer:
        return AccessRequest(packet, "", "", False, None, source, status_server=True)
    try:
        return _request(packet, source)
    except Exception:  # an attribute that does not decode, repeated or missing
        raise Dropped(Drop.MALFORMED) from None


def encode(request: AccessRequest, answer: Answer) -> bytes:
    """The answer to `request`, with its Response Authenticator and Message-Authenticator."""
    reply = request.packet.CreateReply()
    reply.code = int(answer.kind)
    reply.message_authenticator = True
    reply.AddAttribute("Reply-Message", answer.message)
    if answer.state:
        reply.AddAttribute("State", answer.state)
    raw: bytes = reply.ReplyPacket()
    return raw


def _request(packet: Any, source: str) -> AccessRequest:
    user_name = _text(_single(packet, 1))
    if not user_name:
        raise ValueError("User-Name")
    encrypted = _single(packet, 2, required=False)
    password = packet.PwDecrypt(encrypted) if encrypted is not None else ""
    if password and not (password.isascii() and password.isprintable()):
        password = UNTYPEABLE
    state = _single(packet, 24, required=False)
    return AccessRequest(
        packet=packet,
        user_name=user_name,
        password=password,
        pap=not _raw(packet, 3),
        state=bytes(state) if state is not None else None,
        origin=_origin(packet, source),
    )


def _origin(packet: Any, source: str) -> str:
    calling = _single(packet, 31, required=False)
    if calling is not None:
        origin = _text(calling)
    else:
        nas_ip = _single(packet, 4, required=False)
        nas_port = _single(packet, 5, required=False)
        if nas_ip is not None and len(nas_ip) == 4:
            origin = ".".join(str(octet) for octet in nas_ip)
            if nas_port is not None and len(nas_port) == 4:
                origin += f":{int.from_bytes(nas_port, 'big')}"
        else:
            origin = source
    if not origin or len(origin) > MAX_ORIGIN or not origin.isprintable():
        raise ValueError("origin")
    return origin


def _raw(packet: Any, code: int) -> list[bytes]:
    """The raw values of attribute `code` (pyrad keeps received values undecoded)."""
    values = dict.get(packet, code, [])
    return [bytes(value) for value in values]


def _single(packet: Any, code: int, *, required: bool = True) -> bytes | None:
    values = _raw(packet, code)
    if len(values) > 1 or (required and not values):
        raise ValueError(f"attribute {code}")
    return values[0] if values else None


def _text(value: bytes | None) -> str:
    text = (value or b"").decode("utf-8")
    if not (text.isascii() and text.isprintable()):
        raise ValueError("text")
    return text.strip()
