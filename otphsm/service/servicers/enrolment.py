"""EnrolmentService: stations authorise citizens with their card and issue tokens."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc

from otphsm.core.app import enrolment, fobs, issuance, lifecycle
from otphsm.core.app.context import App
from otphsm.core.app.enrolment import CardEvidence
from otphsm.core.errors import InvalidInput
from otphsm.core.records import Authorisation, Citizen
from otphsm.service import convert, kiosk
from otphsm.service.interceptor import current_actor
from otphsm.service.qr import activation_payload, make_qr
from otphsm.smartcard.pcsc import CardEventKind
from otphsm.smartcard.readers import LocalReaders
from otphsm.v1 import enrolment_pb2 as pb
from otphsm.v1 import enrolment_pb2_grpc

MAX_WATCH_SECONDS = 3600
_EVENT_KINDS = {
    CardEventKind.INSERTED: pb.CardEvent.KIND_INSERTED,
    CardEventKind.REMOVED: pb.CardEvent.KIND_REMOVED,
}


class EnrolmentServicer(enrolment_pb2_grpc.EnrolmentServiceServicer):
    def __init__(self, app: App, readers: LocalReaders | None = None) -> None:
        self._app = app
        self._readers = readers
        self._watches: set[threading.Event] = set()
        self._lock = threading.Lock()

    def close(self) -> None:
        """End every WatchCards stream (the server is stopping)."""
        with self._lock:
            for stop in self._watches:
                stop.set()

    def GetChallenge(
        self, request: pb.GetChallengeRequest, context: grpc.ServicerContext
    ) -> pb.GetChallengeResponse:
        challenge = enrolment.new_challenge(self._app, current_actor())
        return pb.GetChallengeResponse(
            challenge_id=challenge.challenge_id,
            nonce=challenge.nonce,
            expires_at=challenge.expires_at,
        )

    def AuthoriseWithCard(
        self, request: pb.AuthoriseWithCardRequest, context: grpc.ServicerContext
    ) -> pb.AuthorisationResponse:
        evidence = CardEvidence(
            certificate_der=request.certificate_der,
            card_id=request.card_id,
            codice_fiscale=convert.codice_fiscale(request.codice_fiscale),
            signature=request.signature,
        )
        challenge_id = convert.record_id(request.challenge_id, "challenge_id")
        return _authorised(
            *enrolment.authorise_with_card(self._app, current_actor(), challenge_id, evidence)
        )

    def AuthoriseWithLocalCard(
        self, request: pb.AuthoriseWithLocalCardRequest, context: grpc.ServicerContext
    ) -> pb.AuthorisationResponse:
        return _authorised(
            *kiosk.authorise_with_local_card(
                self._app, current_actor(), self._readers, request.reader, request.pin
            )
        )

    def WatchCards(
        self, request: pb.WatchCardsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.CardEvent]:
        kiosk.check_reader_name(request.reader)
        if request.max_seconds > MAX_WATCH_SECONDS:
            raise InvalidInput(f"max_seconds is at most {MAX_WATCH_SECONDS}", field="max_seconds")
        if self._readers is None:
            raise kiosk.NoLocalReaders("this server has no card readers (card.readers = none)")
        stop = threading.Event()
        context.add_callback(stop.set)
        with self._lock:
            self._watches.add(stop)
        try:
            events = self._readers.events(
                request.reader,
                include_present=request.include_present,
                stop=stop,
                max_seconds=float(request.max_seconds),
            )
            for event in events:
                yield pb.CardEvent(
                    kind=_EVENT_KINDS[event.kind], reader=event.reader, atr=event.atr
                )
        finally:
            with self._lock:
                self._watches.discard(stop)

    def SetPhoneNumber(
        self, request: pb.SetPhoneNumberRequest, context: grpc.ServicerContext
    ) -> pb.SetPhoneNumberResponse:
        citizen = enrolment.set_phone_number(
            self._app,
            current_actor(),
            convert.codice_fiscale(request.codice_fiscale),
            request.phone_number,
        )
        return pb.SetPhoneNumberResponse(citizen=convert.citizen_message(citizen))

    def IssueToken(
        self, request: pb.IssueTokenRequest, context: grpc.ServicerContext
    ) -> pb.IssueTokenResponse:
        issued = issuance.issue_token(
            self._app,
            current_actor(),
            convert.record_id(request.authorisation_id, "authorisation_id"),
            method=convert.activation_method(request.method),
            params=convert.otp_parameters(request.params),
            temporary_secret=request.temporary_secret,
        )
        payload = issued.otpauth_uri or (
            activation_payload(self._app.policy.issuer, issued.activation_code)
            if issued.activation_code
            else ""
        )
        qr = make_qr(payload) if payload else None
        return pb.IssueTokenResponse(
            token=convert.token_message(issued.token),
            activation_expires_at=issued.activation.expires_at,
            activation_code=issued.activation_code,
            otpauth_uri=issued.otpauth_uri,
            qr_png=qr.png if qr else b"",
            qr_text=qr.text if qr else "",
        )

    def SendReplacementCode(
        self, request: pb.SendReplacementCodeRequest, context: grpc.ServicerContext
    ) -> pb.SendReplacementCodeResponse:
        code = lifecycle.send_replacement_code(
            self._app, current_actor(), convert.codice_fiscale(request.codice_fiscale)
        )
        return pb.SendReplacementCodeResponse(expires_at=code.expires_at)

    def AuthoriseWithSmsCode(
        self, request: pb.AuthoriseWithSmsCodeRequest, context: grpc.ServicerContext
    ) -> pb.AuthorisationResponse:
        authorisation = lifecycle.authorise_with_sms_code(
            self._app,
            current_actor(),
            convert.codice_fiscale(request.codice_fiscale),
            request.code,
        )
        return _authorised(authorisation, None)

    def AssignFob(
        self, request: pb.AssignFobRequest, context: grpc.ServicerContext
    ) -> pb.AssignFobResponse:
        assigned = fobs.hand_over_fob(
            self._app,
            current_actor(),
            convert.record_id(request.authorisation_id, "authorisation_id"),
            request.serial,
            request.first_code,
        )
        proof = convert.verify_response(assigned.proof) if assigned.proof else None
        return pb.AssignFobResponse(token=convert.token_message(assigned.token), proof=proof)


def _authorised(authorisation: Authorisation, citizen: Citizen | None) -> pb.AuthorisationResponse:
    return pb.AuthorisationResponse(
        authorisation_id=authorisation.authorisation_id,
        expires_at=authorisation.expires_at,
        citizen=convert.citizen_message(citizen) if citizen else None,
    )
