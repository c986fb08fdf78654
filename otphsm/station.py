"""The technician's station: the logic `otphsm enrol` (and the demo) runs between the citizen's
card in a PC/SC reader and the service's EnrolmentService (mTLS, role `enroller`).

Card authorisation, in order: wait for a card; read it (card id, personal data, certificate);
verify the PIN the citizen types, asking again with the tries left after a wrong one; only
then ask the service for a fresh challenge, have the card sign it, and send certificate and
signature. The card connection is closed (with a card reset, so the verified PIN does not
outlive it) before the service is told anything, and an error anywhere in the card dialogue
(a card pulled out, a timeout) stops before AuthoriseWithCard: nothing is created.

What the user sees is up to the caller, through `CardEvents`; nothing here prints, and no
PIN, code or secret is kept beyond the call that needs it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from otphsm.client import Client
from otphsm.core.records import ActivationMethod
from otphsm.core.tokens import OtpMode
from otphsm.smartcard.cns import CardContents, CnsClient
from otphsm.smartcard.errors import NoCard, NoReader, SmartcardError, WrongPin
from otphsm.smartcard.pcsc import PcscConnection, PcscContext
from otphsm.v1 import common_pb2, enrolment_pb2, enrolment_pb2_grpc

CARD_TIMEOUT = 10.0
"""Seconds one APDU may take before the card counts as gone."""
_WAIT_SLICE = 0.5


class PinEntryCancelled(SmartcardError):
    """No PIN was given: the card was not used."""


class CardEvents(Protocol):
    """How the station talks to the person at the counter."""

    def waiting_for_card(self, reader: str | None, seconds_left: float) -> None: ...

    def card_read(self, reader: str, contents: CardContents) -> None: ...

    def ask_pin(self, tries_left: int | None) -> str:
        """The PIN the citizen types; "" cancels. `tries_left` is set after a wrong PIN."""
        ...

    def signing(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ReaderStatus:
    name: str
    card_present: bool


@dataclass(frozen=True, slots=True)
class Authorised:
    authorisation_id: str
    expires_at: int
    codice_fiscale: str
    holder: str
    """Given name and surname as the service recorded them ("" after an SMS code)."""
    card_id: str = ""


def reader_statuses() -> list[ReaderStatus]:

    with PcscContext() as context:
        return [ReaderStatus(name, context.card_present(name)) for name in context.readers()]


def wait_for_card(reader: str | None, timeout: float, events: CardEvents) -> str:
    """The name of the reader (matching `reader`, any if None) that holds a card. Raises
    `NoCard` or `NoReader` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    with PcscContext() as context:
        while True:
            left = deadline - time.monotonic()
            try:
                return context.wait_for_card(reader, max(0.0, min(_WAIT_SLICE, left)))
            except NoCard:
                if time.monotonic() >= deadline:
                    names = ", ".join(context.readers())
                    raise NoCard(f"no card was inserted in {names} within {timeout:g} s") from None
            except NoReader:
                if time.monotonic() >= deadline:
                    which = f"matching {reader!r} " if reader else ""
                    raise NoReader(f"no reader {which}appeared within {timeout:g} s") from None
            events.waiting_for_card(reader, max(0.0, deadline - time.monotonic()))


class Station:
    """EnrolmentService as a technician uses it."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._stub = enrolment_pb2_grpc.EnrolmentServiceStub(client.channel)

    # --- authorisation ------------------------------------------------------------------

    def authorise_with_card(self, reader: str, events: CardEvents) -> Authorised:
        with PcscConnection(reader, timeout=CARD_TIMEOUT) as connection:
            card = CnsClient(connection)
            contents = card.read_card()
            events.card_read(reader, contents)
            _verify_pin(card, events)
            challenge = self.client.call(
                self._stub.GetChallenge, enrolment_pb2.GetChallengeRequest()
            )
            events.signing()
            signature = card.sign_challenge(challenge.nonce)
        request = enrolment_pb2.AuthoriseWithCardRequest(
            challenge_id=challenge.challenge_id,
            certificate_der=contents.certificate,
            card_id=contents.card_id,
            codice_fiscale=contents.personal_data.codice_fiscale,
            signature=signature,
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
    ) -> enrolment_pb2.IssueTokenResponse:
        methods = {
            ActivationMethod.CODE: enrolment_pb2.ACTIVATION_METHOD_CODE,
            ActivationMethod.TEMPORARY_SECRET: enrolment_pb2.ACTIVATION_METHOD_TEMPORARY_SECRET,
            ActivationMethod.OTPAUTH: enrolment_pb2.ACTIVATION_METHOD_OTPAUTH,
        }
        params = common_pb2.OtpParameters(
            mode=common_pb2.OTP_MODE_HOTP if mode is OtpMode.HOTP else common_pb2.OTP_MODE_TOTP,
            digits=digits,
            period_seconds=period,
        )
        request = enrolment_pb2.IssueTokenRequest(
            authorisation_id=authorisation_id,
            method=methods[method],
            params=params,
            temporary_secret=temporary_secret,
        )
        return self.client.call(self._stub.IssueToken, request)

    def assign_fob(
        self, authorisation_id: str, serial: str, first_code: str = ""
    ) -> tuple[common_pb2.Token, common_pb2.VerifyResponse | None]:
        """The fob as it is now, and the first code's result when one was given."""
        request = enrolment_pb2.AssignFobRequest(
            authorisation_id=authorisation_id, serial=serial, first_code=first_code
        )
        response = self.client.call(self._stub.AssignFob, request)
        return response.token, response.proof if response.HasField("proof") else None


def _verify_pin(card: CnsClient, events: CardEvents) -> None:
    """Ask and verify until the PIN is right; a wrong one is told with the tries left."""
    tries_left: int | None = None
    while True:
        pin = events.ask_pin(tries_left)
        if not pin:
            raise PinEntryCancelled("no PIN was given: the card was not used")
        try:
            card.verify_pin(pin)
            return
        except WrongPin as exc:  # PinBlocked (no try left) goes up to the caller
            tries_left = exc.tries_left
