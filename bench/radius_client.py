"""The benchmark's RADIUS NAS: one UDP socket per client thread, Access-Requests encoded with
pyrad (User-Name the token's serial, the code as PAP password, a Message-Authenticator), each
answer read back as the Verify result it stands for."""

from __future__ import annotations

import socket
from typing import Any

from pyrad import packet as radius

from otphsm.service.radius.packets import load_dictionary

TIMEOUT = 10.0
_MESSAGES = {
    b"Wrong code.": "VERIFY_RESULT_WRONG_CODE",
    b"This code was already used: wait for the next one.": "VERIFY_RESULT_REPLAYED",
}


class RadiusCaller:
    """`caller(serial, code)`: the outcome's name (as `VerifyResult` names it where it can)."""

    def __init__(self, target: str, secret: str) -> None:
        host, port = target.rsplit(":", 1)
        self.address = (host, int(port))
        self.secret = secret.encode()
        self.dictionary: Any = load_dictionary()
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.settimeout(TIMEOUT)
        self.identifier = 0

    def __call__(self, serial: str, code: str) -> str:
        self.identifier = (self.identifier + 1) % 256
        request = radius.AuthPacket(
            code=radius.AccessRequest, id=self.identifier, secret=self.secret, dict=self.dictionary
        )
        request.AddAttribute("User-Name", serial)
        request.AddAttribute("User-Password", request.PwCrypt(code))
        request.add_message_authenticator()
        self.socket.sendto(request.RequestPacket(), self.address)
        while True:
            try:
                answer = self.socket.recv(4096)
            except TimeoutError:
                return "radius:timeout"
            if len(answer) >= 20 and answer[1] == self.identifier:
                break
        if answer[0] == radius.AccessAccept:
            return "VERIFY_RESULT_OK"
        return _MESSAGES.get(_reply_message(answer), f"radius:code-{answer[0]}")

    def close(self) -> None:
        self.socket.close()


def _reply_message(answer: bytes) -> bytes:
    at = 20
    while at + 2 <= len(answer):
        code, length = answer[at], answer[at + 1]
        if length < 2:
            break
        if code == 18:
            return answer[at + 2 : at + length]
        at += length
    return b""
