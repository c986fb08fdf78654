"""The technician's station: the logic `otphsm enrol` (and the demo) runs between the citizen's
card in a reader and the service's EnrolmentService (mTLS, role `enroller`).

Card authorisation, in order: wait for a card; read it (card id, personal data, certificate);
verify the PIN the citizen types, asking again with the tries left after a wrong one; only
then ask the service for a fresh challenge, have the card sign it, and send certificate and
signature (`otphsm.smartcard.dialogue`). The card connection is closed (with a card reset, so
the verified PIN does not outlive it) before the service is told anything, and an error
anywhere in the card dialogue (a card pulled out, a timeout) stops before AuthoriseWithCard:
nothing is created.

The readers are a `LocalReaders` (PC/SC by default; tests plug in simulated ones). What the
user sees is up to the caller, through `CardEvents`; nothing here prints, and no PIN, code or
secret is kept beyond the call that needs it.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Protocol

from otphsm.client import wire
from otphsm.client.channel import Client
from otphsm.client.results import (
    Authorised,
    IssuedToken,
    TokenView,
    issued_token,
    token_view,
    verify_outcome,
)
from otphsm.core.records import ActivationMethod
from otphsm.core.tokens import OtpMode
from otphsm.core.verification import VerifyOutcome
from otphsm.smartcard.cns import CardContents
from otphsm.smartcard.dialogue import PinEntryCancelled, sign_challenge_with_card
from otphsm.smartcard.errors import NoCard, NoReader
from otphsm.smartcard.readers import LocalReaders, PcscReaders, ReaderStatus
from otphsm.v1 import common_pb2, device_pb2, device_pb2_grpc, enrolment_pb2, enrolment_pb2_grpc

__all__ = [
    "Authorised",
    "CardEvents",
    "PinEntryCancelled",
    "ReaderStatus",
    "Station",
    "reader_statuses",
    "wait_for_card",
]

_WAIT_SLICE = 0.5


class CardEvents(Protocol):
    """How the station talks to the person at the counter."""

    def waiting_for_card(self, reader: str | None, seconds_left: float) -> None: ...

    def card_read(self, reader: str, contents: CardContents) -> None: ...

    def ask_pin(self, tries_left: int | None) -> str:
        """The PIN the citizen types; "" cancels. `tries_left` is set after a wrong PIN."""
        ...

    def signing(self) -> None: ...


def reader_statuses(readers: LocalReaders | None = None) -> list[ReaderStatus]:
    return (readers or PcscReaders()).statuses()


def wait_for_card(
    reader: str | None, timeout: float, events: CardEvents, readers: LocalReaders | None = None
) -> str:
    """The name of the reader (matching `reader`, any if None) that holds a card. Raises
    `NoCard` or `NoReader` after `timeout` seconds."""
    readers = readers or PcscReaders()
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            return readers.wait_for_card(reader or "", max(0.0, min(_WAIT_SLICE, left)))
        except NoCard:
            if time.monotonic() >= deadline:
                names = ", ".join(status.name for status in readers.statuses())
                raise NoCard(f"no card was inserted in {names} within {timeout:g} s") from None
        except NoReader:
            if time.monotonic() >= deadline:
                which = f"matching {reader!r} " if reader else ""
                raise NoReader(f"no reader {which}appeared within {timeout:g} s") from None
        events.waiting_for_card(reader, max(0.0, deadline - time.monotonic()))


class Station:
    """EnrolmentService as a technician uses it."""

    def __init__(self, client: Client, readers: LocalReaders | None = None) -> None:
        self.client = client
        self.readers = readers or PcscReaders()
        self._stub = enrolment_pb2_grpc.EnrolmentServiceStub(client.channel)

    # --- authorisation ------------------------------------------------------------------

    def authorise_with_card(self, reader: str, events: CardEvents) -> Authorised:
        with self.readers.connect(reader) as transport:
            signed = sign_challenge_with_card(
                transport,
                events.ask_pin,
                lambda: self.client.call(
                    self._stub.GetChallenge, enrolment_pb2.GetChallengeRequest()
                ),
                card_read=partial(events.card_read, reader),
                signing=events.signing,
            )
        evidence = signed.evidence
        request = enrolment_pb2.AuthoriseWithCardRequest(
            challenge_id=signed.challenge.challenge_id,
            certificate_der=evidence.certificate_der,
            card_id=evidence.card_id,
            codice_fiscale=evidence.codice_fiscale,
            signature=evidence.signature,
        )
        response = self.client.call(self._stub.AuthoriseWithCard, request)
        citizen = response.citizen
        return Authorised(
            authorisation_id=response.authorisation_id,
            expires_at=response.expires_at,
            codice_fiscale=citizen.codice_fiscale,
            holder=f"{citizen.given_name} {citizen.surname}".strip(),
            card_id=citizen.card_id,
        )

    def send_sms_code(self, codice_fiscale: str) -> int:
        """Sends a replacement code to the citizen's recorded phone; returns its expiry."""
        request = enrolment_pb2.SendReplacementCodeRequest(codice_fiscale=codice_fiscale)
        return self.client.call(self._stub.SendReplacementCode, request).expires_at

    def authorise_with_sms_code(self, codice_fiscale: str, code: str) -> Authorised:
        request = enrolment_pb2.AuthoriseWithSmsCodeRequest(
            codice_fiscale=codice_fiscale, code=code
        )
        response = self.client.call(self._stub.AuthoriseWithSmsCode, request)
        return Authorised(response.authorisation_id, response.expires_at, codice_fiscale, "")

    def set_phone_number(self, codice_fiscale: str, phone_number: str) -> None:
        request = enrolment_pb2.SetPhoneNumberRequest(
            codice_fiscale=codice_fiscale, phone_number=phone_number
        )
        self.client.call(self._stub.SetPhoneNumber, request)

    # --- what an authorisation buys -----------------------------------------------------

    def issue_token(
        self,
        authorisation_id: str,
        method: ActivationMethod,
        *,
        temporary_secret: str = "",
        period: int = 0,
        digits: int = 0,
        mode: OtpMode = OtpMode.TOTP,
    ) -> IssuedToken:
        params = common_pb2.OtpParameters(
            mode=wire.OTP_MODE_NUMBERS[mode], digits=digits, period_seconds=period
        )
        request = enrolment_pb2.IssueTokenRequest(
            authorisation_id=authorisation_id,
            method=wire.ACTIVATION_METHOD_NUMBERS[method],
            params=params,
            temporary_secret=temporary_secret,
        )
        return issued_token(self.client.call(self._stub.IssueToken, request))

    def assign_fob(
        self, authorisation_id: str, serial: str, first_code: str = ""
    ) -> tuple[TokenView, VerifyOutcome | None]:
        """The fob as it is now, and the first code's result when one was given."""
        request = enrolment_pb2.AssignFobRequest(
            authorisation_id=authorisation_id, serial=serial, first_code=first_code
        )
        response = self.client.call(self._stub.AssignFob, request)
        proof = verify_outcome(response.proof) if response.HasField("proof") else None
        return token_view(response.token), proof

    def confirm_first_code(self, serial: str, code: str) -> VerifyOutcome:
        """The first code an authenticator app shows for a compatibility-mode (otpauth) token,
        typed at the counter: `DeviceService.ProvePossession`, which the enroller role may call
        (an ordinary app cannot), so the token ends active as a fob given `--code` does."""
        request = device_pb2.ProvePossessionRequest(serial=serial, code=code)
        stub = device_pb2_grpc.DeviceServiceStub(self.client.channel)
        return verify_outcome(self.client.call(stub.ProvePossession, request))
