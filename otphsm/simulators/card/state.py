"""What a simulated card remembers: retry counters (persistent) and the session (volatile)."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, IntEnum

from cryptography.hazmat.primitives.asymmetric import rsa

from otphsm.simulators.card.filesystem import FileSystem, Node
from otphsm.smartcard.status_words import StatusWord, pin_tries_sw


class VerifyOutcome(Enum):
    OK = "ok"
    WRONG = "wrong"
    BLOCKED = "blocked"


@dataclass
class RetryCounter:
    """A PIN or PUK: the FF-padded value, a try limit and the tries left (0 = blocked)."""

    value: bytes
    max_tries: int
    tries_left: int

    @property
    def blocked(self) -> bool:
        return self.tries_left == 0

    def verify(self, candidate: bytes) -> VerifyOutcome:
        if self.blocked:
            return VerifyOutcome.BLOCKED
        if hmac.compare_digest(candidate, self.value):
            self.tries_left = self.max_tries
            return VerifyOutcome.OK
        self.tries_left -= 1
        return VerifyOutcome.BLOCKED if self.blocked else VerifyOutcome.WRONG

    def status_word(self, outcome: VerifyOutcome) -> int:
        if outcome is VerifyOutcome.OK:
            return StatusWord.OK
        if outcome is VerifyOutcome.BLOCKED:
            return StatusWord.AUTH_METHOD_BLOCKED
        return pin_tries_sw(self.tries_left)

    def replace(self, value: bytes) -> None:
        self.value = value
        self.tries_left = self.max_tries


class MseOperation(IntEnum):
    """MSE SET P2: the control reference template the key is set for."""

    SIGNATURE = 0xB6
    DECIPHER = 0xB8


@dataclass
class Session:
    """Security state and current files; cleared on power on, power off and reset."""

    current_df: Node
    current_ef: Node | None = None
    pin_verified: bool = False
    mse: dict[MseOperation, int] = field(default_factory=dict)
    chain_header: tuple[int, int, int] | None = None
    """INS, P1, P2 of a command chain in progress (CLA bit 0x10), and its data so far."""
    chain_data: bytes = b""


@dataclass
class CardContext:
    """The card as the command handlers see it."""

    fs: FileSystem
    pin: RetryCounter
    puk: RetryCounter
    pin_reference: int
    private_key: rsa.RSAPrivateKey
    session: Session
    random_bytes: Callable[[int], bytes]

    def reset_session(self) -> None:
        self.session = Session(current_df=self.fs.mf)
