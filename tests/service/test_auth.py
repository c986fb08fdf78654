"""Who may call what: roles from client certificates (URI SAN `urn:otphsm:role:<role>`),
checked per RPC; insecure mode only by explicit flag, and loudly."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from support.server_models import each_server_model, on_each_server_model  # noqa: F401
from support.service_fixtures import (
    NO_ROLE,
    TWO_ROLES,
    ServiceUnderTest,
    start_service,
)

from otphsm.core.app.context import Role
from otphsm.service.rpcs import RPCS
from otphsm.store.urls import sqlite_url
from otphsm.v1 import admin_pb2, validation_pb2

pytestmark = pytest.mark.softhsm

# Status codes that show the call got past authorisation (an empty request is then refused
# as malformed, or finds nothing, or a stream runs out of time).
PAST_AUTH = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}


def call_empty(channel: grpc.Channel, method: str) -> grpc.StatusCode:
    """Call `method` with an empty request (raw bytes) and return the status code."""
    streaming = method.endswith("/WatchCards")
    try:
        if streaming:
            stream = channel.unary_stream(method)(b"", timeout=0.5)
            for _ in stream:
                pass
        else:
            channel.unary_unary(method)(b"", timeout=10)
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        return code
    return grpc.StatusCode.OK


def test_every_rpc_admits_its_roles_and_refuses_the_others(service: ServiceUnderTest) -> None:
    channels = {role: service.channel(role.value) for role in Role}
    problems: list[str] = []
    for method, spec in sorted(RPCS.items()):
        allowed = spec.roles
        for role, channel in channels.items():
            code = call_empty(channel, method)
            if role in allowed and code not in PAST_AUTH:
                problems.append(f"{method} as {role}: {code.name}, expected to pass")
            if role not in allowed and code is not grpc.StatusCode.PERMISSION_DENIED:
                problems.append(f"{method} as {role}: {code.name}, expected PERMISSION_DENIED")
    assert not problems, "\n".join(problems)


def test_a_certificate_without_a_role_is_unauthenticated(service: ServiceUnderTest) -> None:
    channel = service.channel(NO_ROLE)
    codes = {method: call_empty(channel, method) for method in RPCS}
    assert set(codes.values()) == {grpc.StatusCode.UNAUTHENTICATED}
    with pytest.raises(grpc.RpcError) as refused:
        validation_stub(channel).Verify(validation_pb2.VerifyRequest(serial="MOB-1234"))
    assert "names no otphsm role" in (refused.value.details() or "")


@pytest.mark.parametrize("role", [role.value for role in Role])
def test_without_a_certificate_or_with_a_foreign_one_no_connection_is_made(
    service: ServiceUnderTest, role: str
) -> None:
    """grpcio can only require client certificates or not ask for them: a caller without one
    (or with one from another CA) fails the TLS handshake, before any RPC."""
    for channel in (service.channel(""), service.channel(role, foreign=True)):
        method = next(m for m, spec in RPCS.items() if Role(role) in spec.roles)
        assert call_empty(channel, method) is grpc.StatusCode.UNAVAILABLE


def test_a_certificate_may_hold_several_roles(service: ServiceUnderTest) -> None:
    channel = service.channel(TWO_ROLES)
    assert call_empty(channel, "/otphsm.v1.ValidationService/Verify") in PAST_AUTH
    assert call_empty(channel, "/otphsm.v1.AdminService/VerifyAudit") is grpc.StatusCode.OK
    assert call_empty(channel, "/otphsm.v1.EnrolmentService/GetChallenge") is (
        grpc.StatusCode.PERMISSION_DENIED
    )


def test_health_is_open_to_any_admitted_peer_and_reflection_to_any_role(
    service: ServiceUnderTest,
) -> None:
    for client in (NO_ROLE, Role.VERIFIER.value):
        status = health_pb2_grpc.HealthStub(service.channel(client)).Check(
            health_pb2.HealthCheckRequest(service="otphsm.v1.ValidationService")
        )
        assert status.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(service.channel(Role.DEVICE.value))
    answers = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = {s.name for s in next(answers).list_services_response.service}
    assert {"otphsm.v1.EnrolmentService", "otphsm.v1.AdminService"} <= names


def test_the_certificate_subject_is_the_actor_in_the_audit_chain(
    service: ServiceUnderTest,
) -> None:
    service.enrolment().GetChallenge(admin_pb2.VerifyAuditRequest())  # no audit entry
    with pytest.raises(grpc.RpcError):
        service.admin().Suspend(admin_pb2.TokenRequest(serial="MOB-0000000000"))
    assert list(service.store.audit_entries()) == []
    entries = _suspend_a_token(service)
    assert entries[-1].actor == "CN=otphsm dev admin,O=otphsm development (NOT FOR PRODUCTION)"


def _suspend_a_token(service: ServiceUnderTest) -> list[Any]:
    from otphsm.core.tokens import OtpParameters, Token, TokenKind, TokenState

    service.store.insert_token(
        Token(
            "MOB-ABCDEF0123",
            "RSSMRA80A01L378S",
            TokenKind.MOBILE,
            OtpParameters(),
            None,
            TokenState.ACTIVE,
            0,
        )
    )
    service.admin().Suspend(admin_pb2.TokenRequest(serial="MOB-ABCDEF0123"))
    return list(service.store.audit_entries())


def validation_stub(channel: grpc.Channel) -> Any:
    from otphsm.v1 import validation_pb2_grpc

    return validation_pb2_grpc.ValidationServiceStub(channel)


@pytest.fixture
def insecure_service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServiceUnderTest]:
    db = tmp_path / "otphsm.db"
    running = start_service(request, tmp_path, sqlite_url(db), db, {"server": {"insecure": True}})
    yield running
    running.close()


def test_insecure_mode_takes_the_role_from_metadata_and_says_so_loudly(
    insecure_service: ServiceUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    channel = grpc.insecure_channel(f"127.0.0.1:{insecure_service.port}")
    try:
        stub = validation_stub(channel)
        with pytest.raises(grpc.RpcError) as anonymous:
            stub.Verify(validation_pb2.VerifyRequest(serial="MOB-1234", code="123456"))
        assert anonymous.value.code() is grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as as_verifier:
            stub.Verify(
                validation_pb2.VerifyRequest(serial="MOB-1234", code="123456"),
                metadata=(("x-otphsm-role", "verifier"),),
            )
        assert as_verifier.value.code() is grpc.StatusCode.NOT_FOUND  # past authorisation
        with pytest.raises(grpc.RpcError) as wrong_role:
            stub.Verify(
                validation_pb2.VerifyRequest(serial="MOB-1234", code="123456"),
                metadata=(("x-otphsm-role", "device"),),
            )
        assert wrong_role.value.code() is grpc.StatusCode.PERMISSION_DENIED
    finally:
        channel.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("INSECURE MODE" in w for w in warnings) >= 3
