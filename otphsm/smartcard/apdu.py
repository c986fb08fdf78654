"""ISO 7816-4 command and response APDUs: one codec for the station and the simulated card.

`CommandApdu.le` is Ne, the number of bytes expected: `None` when the Le field is absent,
otherwise 1..256 (short) or 1..65536 (extended); the wire value `00` means 256 (short) and
`00 00` means 65536 (extended).
"""

from __future__ import annotations

from dataclasses import dataclass

from otphsm.smartcard.status_words import StatusWord

SHORT_MAX_LC = 255
SHORT_MAX_LE = 256
EXTENDED_MAX_LC = 65535
EXTENDED_MAX_LE = 65536
_HEADER_LEN = 4


class MalformedApdu(ValueError):
    """Bytes that are not a well-formed APDU, or fields out of range."""


def _byte(name: str, value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise MalformedApdu(f"{name} must be a byte, got {value}")


@dataclass(frozen=True, slots=True)
class CommandApdu:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None
    extended: bool = False

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            _byte(name, getattr(self, name))
        if len(self.data) > EXTENDED_MAX_LC:
            raise MalformedApdu(f"command data too long: {len(self.data)} bytes")
        if self.le is not None and not 1 <= self.le <= EXTENDED_MAX_LE:
            raise MalformedApdu(f"Le must be 1..{EXTENDED_MAX_LE} or None, got {self.le}")

    @property
    def header(self) -> bytes:
        return bytes((self.cla, self.ins, self.p1, self.p2))

    @property
    def needs_extended(self) -> bool:
        return (
            self.extended
            or len(self.data) > SHORT_MAX_LC
            or (self.le is not None and self.le > SHORT_MAX_LE)
        )

    def encode(self) -> bytes:
        if self.needs_extended:
            return self._encode_extended()
        out = bytearray(self.header)
        if self.data:
            out.append(len(self.data))
            out += self.data
        if self.le is not None:
            out.append(self.le % SHORT_MAX_LE)
        return bytes(out)

    def _encode_extended(self) -> bytes:
        out = bytearray(self.header)
        if self.data:
            out += b"\x00" + len(self.data).to_bytes(2, "big") + self.data
        if self.le is not None:
            le = (self.le % EXTENDED_MAX_LE).to_bytes(2, "big")
            out += le if self.data else b"\x00" + le
        return bytes(out)

    @classmethod
    def parse(cls, raw: bytes) -> CommandApdu:
        """Decode cases 1, 2S, 3S, 4S, 2E, 3E and 4E; raise `MalformedApdu` on anything else."""
        if len(raw) < _HEADER_LEN:
            raise MalformedApdu(f"APDU shorter than its header: {len(raw)} bytes")
        cla, ins, p1, p2 = raw[:_HEADER_LEN]
        body = raw[_HEADER_LEN:]
        if not body:
            return cls(cla, ins, p1, p2)
        if len(body) == 1:
            return cls(cla, ins, p1, p2, le=body[0] or SHORT_MAX_LE)
        if body[0] != 0:
            return cls._parse_short(cla, ins, p1, p2, body)
        return cls._parse_extended(cla, ins, p1, p2, body)

    @classmethod
    def _parse_short(cls, cla: int, ins: int, p1: int, p2: int, body: bytes) -> CommandApdu:
        lc = body[0]
        data = body[1 : 1 + lc]
        rest = body[1 + lc :]
        if len(data) != lc or len(rest) > 1:
            raise MalformedApdu(f"short APDU body of {len(body)} bytes does not match Lc={lc}")
        le = (rest[0] or SHORT_MAX_LE) if rest else None
        return cls(cla, ins, p1, p2, data, le)

    @classmethod
    def _parse_extended(cls, cla: int, ins: int, p1: int, p2: int, body: bytes) -> CommandApdu:
        if len(body) < 3:
            raise MalformedApdu(f"extended APDU body too short: {len(body)} bytes")
        length = int.from_bytes(body[1:3], "big")
        if len(body) == 3:
            return cls(cla, ins, p1, p2, le=length or EXTENDED_MAX_LE, extended=True)
        if length == 0:
            raise MalformedApdu("extended APDU with Lc=0 and a body")
        data = body[3 : 3 + length]
        rest = body[3 + length :]
        if len(data) != length or len(rest) not in (0, 2):
            raise MalformedApdu(f"extended APDU body of {len(body)} bytes does not match Lc")
        le = (int.from_bytes(rest, "big") or EXTENDED_MAX_LE) if rest else None
        return cls(cla, ins, p1, p2, data, le, extended=True)


@dataclass(frozen=True, slots=True)
class ResponseApdu:
    data: bytes
    sw1: int
    sw2: int

    def __post_init__(self) -> None:
        _byte("sw1", self.sw1)
        _byte("sw2", self.sw2)

    @classmethod
    def of(cls, sw: int, data: bytes = b"") -> ResponseApdu:
        if not 0 <= sw <= 0xFFFF:
            raise MalformedApdu(f"status word out of range: {sw:#x}")
        return cls(data, sw >> 8, sw & 0xFF)

    @property
    def sw(self) -> int:
        return (self.sw1 << 8) | self.sw2

    @property
    def ok(self) -> bool:
        return self.sw == StatusWord.OK

    @classmethod
    def parse(cls, raw: bytes) -> ResponseApdu:
        if len(raw) < 2:
            raise MalformedApdu(f"response shorter than a status word: {len(raw)} bytes")
        return cls(bytes(raw[:-2]), raw[-2], raw[-1])

    def encode(self) -> bytes:
        return self.data + bytes((self.sw1, self.sw2))
