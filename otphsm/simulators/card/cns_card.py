"""A simulated CNS card as a pure APDU processor: bytes in, data‖SW out, never an exception."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from enum import IntEnum
from types import MappingProxyType

from otphsm.simulators.card import commands_files, commands_security
from otphsm.simulators.card.filesystem import FileSystem
from otphsm.simulators.card.spec import PIN_TRIES, PUK_TRIES, CardSpec
from otphsm.simulators.card.state import CardContext, RetryCounter, Session
from otphsm.smartcard.apdu import EXTENDED_MAX_LC, CommandApdu, MalformedApdu, ResponseApdu
from otphsm.smartcard.cns_files import pad_pin, pin_reference_for_atr
from otphsm.smartcard.status_words import StatusWord

logger = logging.getLogger(__name__)

Handler = Callable[[CardContext, CommandApdu], ResponseApdu]

ISO_CLA = 0x00
CHAINING_BIT = 0x10


class Ins(IntEnum):
    SELECT = 0xA4
    READ_BINARY = 0xB0
    VERIFY = 0x20
    CHANGE_REFERENCE_DATA = 0x24
    RESET_RETRY_COUNTER = 0x2C
    MANAGE_SECURITY_ENVIRONMENT = 0x22
    PERFORM_SECURITY_OPERATION = 0x2A
    GET_CHALLENGE = 0x84
    GET_DATA = 0xCA


CHAINABLE = frozenset((Ins.PERFORM_SECURITY_OPERATION,))


def _get_data(ctx: CardContext, apdu: CommandApdu) -> ResponseApdu:
    return ResponseApdu.of(StatusWord.REFERENCED_DATA_NOT_FOUND)


HANDLERS: Mapping[int, Handler] = MappingProxyType(
    {
        Ins.SELECT: commands_files.select,
        Ins.READ_BINARY: commands_files.read_binary,
        Ins.VERIFY: commands_security.verify,
        Ins.CHANGE_REFERENCE_DATA: commands_security.change_reference_data,
        Ins.RESET_RETRY_COUNTER: commands_security.reset_retry_counter,
        Ins.MANAGE_SECURITY_ENVIRONMENT: commands_security.manage_security_environment,
        Ins.PERFORM_SECURITY_OPERATION: commands_security.perform_security_operation,
        Ins.GET_CHALLENGE: commands_security.get_challenge,
        Ins.GET_DATA: _get_data,
    }
)


def _status(sw: int) -> bytes:
    return ResponseApdu.of(sw).encode()


class CnsCard:
    """The card behind any transport (in-process, vpcd). Thread-safe; one command at a time."""

    def __init__(
        self, spec: CardSpec, *, random_bytes: Callable[[int], bytes] = os.urandom
    ) -> None:
        self._spec = spec
        fs = FileSystem(spec.files)
        self._ctx = CardContext(
            fs=fs,
            pin=RetryCounter(pad_pin(spec.pin), PIN_TRIES, spec.pin_tries_left),
            puk=RetryCounter(pad_pin(spec.puk), PUK_TRIES, spec.puk_tries_left),
            pin_reference=pin_reference_for_atr(spec.atr),
            private_key=spec.private_key,
            session=Session(current_df=fs.mf),
            random_bytes=random_bytes,
        )
        self._lock = threading.Lock()
        self.powered = False

    @property
    def atr(self) -> bytes:
        return self._spec.atr

    @property
    def pin_reference(self) -> int:
        return self._ctx.pin_reference

    @property
    def pin_tries_left(self) -> int:
        return self._ctx.pin.tries_left

    @property
    def puk_tries_left(self) -> int:
        return self._ctx.puk.tries_left

    @property
    def pin_verified(self) -> bool:
        return self._ctx.session.pin_verified

    def power_on(self) -> bytes:
        """Cold start: security state cleared, MF current; returns the ATR."""
        with self._lock:
            self._ctx.reset_session()
            self.powered = True
        return self.atr

    def power_off(self) -> None:
        with self._lock:
            self._ctx.reset_session()
            self.powered = False

    def reset(self) -> bytes:
        """Warm reset: same effect on the card state as a power on."""
        return self.power_on()

    def process(self, apdu: bytes) -> bytes:
        """One C-APDU → R-APDU (data‖SW1‖SW2). Any input, including garbage, gets a valid SW."""
        with self._lock:
            try:
                return self._dispatch(apdu).encode()
            except Exception:
                logger.exception("simulated card failed on APDU %s", bytes(apdu[:16]).hex())
                return _status(StatusWord.NO_PRECISE_DIAGNOSIS)

    def _dispatch(self, raw: bytes) -> ResponseApdu:
        try:
            command = CommandApdu.parse(raw)
        except MalformedApdu:
            return ResponseApdu.of(StatusWord.WRONG_LENGTH)
        if command.cla & ~CHAINING_BIT != ISO_CLA:
            return ResponseApdu.of(StatusWord.CLA_NOT_SUPPORTED)
        handler = HANDLERS.get(command.ins)
        if handler is None:
            return ResponseApdu.of(StatusWord.INS_NOT_SUPPORTED)
        unchained = self._unchain(command)
        if isinstance(unchained, ResponseApdu):
            return unchained
        return handler(self._ctx, unchained)

    def _unchain(self, command: CommandApdu) -> CommandApdu | ResponseApdu:
        """ISO command chaining: buffer links sent with CLA bit 0x10 (OpenSC 0.23 splits a
        2048-bit PSO this way over vpcd), run the whole command on the last link."""
        session = self._ctx.session
        header = (command.ins, command.p1, command.p2)
        pending, data = session.chain_header, session.chain_data
        session.chain_header, session.chain_data = None, b""
        if pending is not None and pending != header:
            return ResponseApdu.of(StatusWord.LAST_COMMAND_OF_CHAIN_EXPECTED)
        data += command.data
        if len(data) > EXTENDED_MAX_LC:
            return ResponseApdu.of(StatusWord.WRONG_LENGTH)
        if command.cla & CHAINING_BIT:
            if command.ins not in CHAINABLE:
                return ResponseApdu.of(StatusWord.CHAINING_NOT_SUPPORTED)
            session.chain_header, session.chain_data = header, data
            return ResponseApdu.of(StatusWord.OK)
        if pending is None:
            return command
        return replace(command, cla=ISO_CLA, data=data, extended=True)

    def export_spec(self) -> CardSpec:
        """The card as it is now (current PIN, PUK and tries), to save back into its card file."""
        with self._lock:
            pin, puk = self._ctx.pin, self._ctx.puk
            return replace(
                self._spec,
                pin=pin.value.rstrip(b"\xff").decode("ascii"),
                pin_tries_left=pin.tries_left,
                puk_tries_left=puk.tries_left,
            )
