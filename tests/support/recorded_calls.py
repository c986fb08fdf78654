"""Stubs on a running service that keep every response and every RpcError the caller got, so a
test can grep what the service ever answered (for secrets) as well as its logs and audit."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import text_format
from google.protobuf.message import Message

from otphsm.core.app.context import Role
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.smartcard.transport import CardTransport
from otphsm.v1 import (
    admin_pb2_grpc,
    device_pb2_grpc,
    enrolment_pb2,
    enrolment_pb2_grpc,
    validation_pb2_grpc,
)
from support.service_fixtures import ServiceUnderTest, authorise_at


@dataclass(frozen=True)
class Recorded:
    method: str
    response: Message


@dataclass
class RecordedCalls(grpc.UnaryUnaryClientInterceptor):
    """The service's stubs (as `ServiceUnderTest` gives them), with each unary call's outcome
    kept: the response message, or the RpcError (its details and trailing metadata)."""

    service: ServiceUnderTest
    responses: list[Recorded] = field(default_factory=list)
    errors: list[grpc.RpcError] = field(default_factory=list)

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        outcome = continuation(client_call_details, request)
        try:
            response = outcome.result()
        except grpc.RpcError as error:
            self.errors.append(error)
        else:
            self.responses.append(Recorded(client_call_details.method, response))
        return outcome

    def channel(self, client: str) -> grpc.Channel:
        return grpc.intercept_channel(self.service.channel(client), self)

    def enrolment(self) -> enrolment_pb2_grpc.EnrolmentServiceStub:
        return enrolment_pb2_grpc.EnrolmentServiceStub(self.channel(Role.ENROLLER.value))

    def device(self) -> device_pb2_grpc.DeviceServiceStub:
        return device_pb2_grpc.DeviceServiceStub(self.channel(Role.DEVICE.value))

    def validation(self) -> validation_pb2_grpc.ValidationServiceStub:
        return validation_pb2_grpc.ValidationServiceStub(self.channel(Role.VERIFIER.value))

    def admin(self) -> admin_pb2_grpc.AdminServiceStub:
        return admin_pb2_grpc.AdminServiceStub(self.channel(Role.ADMIN.value))

    def authorise(
        self, card: CnsCard, transport: CardTransport | None = None
    ) -> enrolment_pb2.AuthorisationResponse:
        """`ServiceUnderTest.authorise`, recorded."""
        return authorise_at(self.enrolment(), card, transport)

    def kept(self, excluding: Iterable[Message] = ()) -> list[Recorded]:
        """The responses, less those given (by identity: the very messages the caller got)."""
        left_out = [id(message) for message in excluding]
        kept = [r for r in self.responses if id(r.response) not in left_out]
        assert len(self.responses) - len(kept) == len(left_out), "an excluded one was not seen"
        return kept

    def response_text(self, excluding: Iterable[Message] = ()) -> str:
        """Every response in protobuf text form, each under its method's name."""
        return "\n".join(
            f"{r.method}\n{text_format.MessageToString(r.response)}" for r in self.kept(excluding)
        )

    def response_bytes(self, excluding: Iterable[Message] = ()) -> list[bytes]:
        """Every response as it went over the wire."""
        return [r.response.SerializeToString() for r in self.kept(excluding)]


def assert_in_no_bytes(blobs: list[bytes], secrets: list[bytes]) -> None:
    leaks = [
        f"{secret!r} in blob {i}" for secret in secrets for i, b in enumerate(blobs) if secret in b
    ]
    assert not leaks, leaks
