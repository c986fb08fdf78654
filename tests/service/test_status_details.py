"""Every refusal carries the standard `google.rpc.Status` details beside our metadata keys, as
a caller in any language reads them (here grpcio-status's `rpc_status.from_call` on a raw
stub): `ErrorInfo` with our reason, `RetryInfo` when a quota is used up, `BadRequest` naming the
malformed field and never its value; the typed client reads the same facts."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from support.factor_fixtures import StartService, enrol, oob_stub, rpc_error, trailing
from support.server_models import each_server_model, on_each_server_model  # noqa: F401
from support.service_fixtures import ServiceUnderTest

from otphsm.client.errors import ServiceRefused, service_error
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.v1 import admin_pb2, oob_pb2, validation_pb2

pytestmark = pytest.mark.softhsm

PHONE = "+393331234567"
BAD_CF = "RSSMRA80A01H501A"  # the check character is wrong


def details(error: grpc.RpcError) -> dict[str, object]:
    """The status's details by type name, each unpacked."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no grpc-status-details-bin trailer"
    assert status.code == error.code().value[0]  # type: ignore[attr-defined]
    assert status.message == error.details()  # type: ignore[attr-defined]
    found: dict[str, object] = {}
    for packed in status.details:
        for kind in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.RetryInfo,
            error_details_pb2.BadRequest,
        ):
            message = kind()
            if packed.Unpack(message):
                found[kind.__name__] = message
    return found


def test_malformed_input_names_the_field_and_not_its_value(service: ServiceUnderTest) -> None:
    refused = rpc_error(
        lambda: service.validation().Verify(
            validation_pb2.VerifyRequest(codice_fiscale=BAD_CF, code="123456")
        )
    )
    assert refused.code() is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    found = details(refused)
    info = found["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == ("INVALID_INPUT", "otphsm")
    bad = found["BadRequest"]
    assert isinstance(bad, error_details_pb2.BadRequest)
    assert [v.field for v in bad.field_violations] == ["codice_fiscale"]
    assert BAD_CF not in str(bad)
    assert "RetryInfo" not in found
    assert trailing(refused)["otphsm-reason"] == "INVALID_INPUT"  # the old keys stay
    typed = service_error(refused, "test")
    assert isinstance(typed, ServiceRefused)
    assert (typed.reason, typed.field) == ("INVALID_INPUT", "codice_fiscale")


def test_a_used_up_quota_says_when_to_retry(
    start_factor_service: StartService, cns_card_1024: CnsCard
) -> None:
    service = start_factor_service(login_codes_per_caller=1, login_code_caller_window_seconds=60)
    cf = enrol(service, cns_card_1024, PHONE)
    ask = oob_pb2.RequestLoginCodeRequest(codice_fiscale=cf)
    oob_stub(service).RequestLoginCode(ask)
    refused = rpc_error(lambda: oob_stub(service).RequestLoginCode(ask))
    assert refused.code() is grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    found = details(refused)
    info = found["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.reason == "RATE_LIMITED"
    wait = found["RetryInfo"]
    assert isinstance(wait, error_details_pb2.RetryInfo)
    assert wait.retry_delay.seconds == 60
    assert trailing(refused)["retry-after-seconds"] == "60"
    typed = service_error(refused, "test")
    assert (typed.reason, typed.retry_after) == ("RATE_LIMITED", 60)


def test_a_refused_role_and_a_missing_token_carry_their_reason(service: ServiceUnderTest) -> None:
    denied = rpc_error(lambda: service.admin("verifier").ListTokens(admin_pb2.ListTokensRequest()))
    assert denied.code() is grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    info = details(denied)["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.reason == "PERMISSION_DENIED"
    missing = rpc_error(
        lambda: service.admin().GetToken(admin_pb2.TokenRequest(serial="OTP-NOPE-0001"))
    )
    assert missing.code() is grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    info = details(missing)["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.reason == "NOT_FOUND"
