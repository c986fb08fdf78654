"""The HTTP SMS gateway adapter against a fake carrier on 127.0.0.1: success, retries on 5xx,
429 and timeouts (bounded), no retry on a permanent refusal, no redirect followed, and no
message text, token or URL query in any error. Then through the gRPC service: a login code
sent over HTTP, and what the relying party sees when the carrier fails."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import grpc
import pytest
from support.factor_fixtures import (
    FakeCarrier,
    StartService,
    code_in,
    enrol,
    oob_stub,
    rpc_error,
    trailing,
)

from otphsm.core.errors import ConfigurationError, DeviceRefused, DeviceUnavailable
from otphsm.gateways.sms_http import HttpSmsGateway, SmsGatewayUnavailable, SmsRefused
from otphsm.gateways.sms_outbox import OutboxSmsGateway
from otphsm.service.assembly import sms_gateway
from otphsm.service.config import SmsKind, SmsSection
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.v1 import common_pb2, oob_pb2

PHONE = "+393331234567"
TEXT = "otphsm: to log in, type the code 246810."
TOKEN = "tok-5ecret"


def gateway(carrier: FakeCarrier, sleeps: list[float], **options: float) -> HttpSmsGateway:
    return HttpSmsGateway(
        carrier.url,
        timeout_seconds=options.get("timeout", 2.0),
        retries=int(options.get("retries", 2)),
        backoff_seconds=0.25,
        bearer_token=TOKEN,
        proxies={},
        sleep=sleeps.append,
    )


def assert_discreet(error: BaseException) -> None:
    message = str(error)
    for secret in ("246810", TOKEN, "s3cr3t-key", PHONE):
        assert secret not in message, message
    assert "http://127.0.0.1:" in message and "/v1/sms" in message


def test_a_message_is_posted_as_json_with_the_token(fake_carrier: FakeCarrier) -> None:
    sleeps: list[float] = []
    gateway(fake_carrier, sleeps).send(PHONE, TEXT)
    assert fake_carrier.received == [{"to": PHONE, "text": TEXT}]
    headers = fake_carrier.headers[0]
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Content-Type"] == "application/json"
    assert sleeps == []
    assert TOKEN not in repr(gateway(fake_carrier, sleeps))


def test_server_errors_and_429_are_retried_with_backoff(fake_carrier: FakeCarrier) -> None:
    sleeps: list[float] = []
    fake_carrier.script = [503, 429]
    gateway(fake_carrier, sleeps).send(PHONE, TEXT)
    assert len(fake_carrier.received) == 3
    assert sleeps == [0.25, 0.5]


def test_retries_are_bounded(fake_carrier: FakeCarrier) -> None:
    sleeps: list[float] = []
    fake_carrier.script = [500, 502, 503, 200]
    with pytest.raises(SmsGatewayUnavailable, match="3 attempt") as failed:
        gateway(fake_carrier, sleeps).send(PHONE, TEXT)
    assert isinstance(failed.value, DeviceUnavailable)
    assert len(fake_carrier.received) == 3 and "HTTP 503" in str(failed.value)
    assert_discreet(failed.value)


def test_a_silent_carrier_times_out_each_attempt(fake_carrier: FakeCarrier) -> None:
    sleeps: list[float] = []
    fake_carrier.script = [("sleep", 1.5), ("sleep", 1.5)]
    started = time.monotonic()
    with pytest.raises(SmsGatewayUnavailable, match=r"no answer within 0\.3 s") as failed:
        gateway(fake_carrier, sleeps, timeout=0.3, retries=1).send(PHONE, TEXT)
    assert time.monotonic() - started < 1.5
    assert len(fake_carrier.received) == 2
    assert_discreet(failed.value)


def test_a_timeout_then_success_delivers_the_same_text(fake_carrier: FakeCarrier) -> None:
    fake_carrier.script = [("sleep", 1.0)]
    gateway(fake_carrier, [], timeout=0.3).send(PHONE, TEXT)
    assert fake_carrier.received == [{"to": PHONE, "text": TEXT}] * 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422, 302])
def test_a_permanent_refusal_is_not_retried(fake_carrier: FakeCarrier, status: int) -> None:
    sleeps: list[float] = []
    fake_carrier.script = [status]
    with pytest.raises(SmsRefused, match=f"HTTP {status}") as refused:
        gateway(fake_carrier, sleeps).send(PHONE, TEXT)
    assert isinstance(refused.value, DeviceRefused)
    assert len(fake_carrier.received) == 1 and sleeps == []
    assert_discreet(refused.value)


def test_nobody_listening_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleeps: list[float] = []
    closed = HttpSmsGateway(
        f"http://127.0.0.1:{port}/v1/sms?key=s3cr3t-key", retries=1, proxies={}, sleep=sleeps.append
    )
    with pytest.raises(SmsGatewayUnavailable, match="connection failure") as failed:
        closed.send(PHONE, TEXT)
    assert sleeps == [0.5]
    assert_discreet(failed.value)


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("ftp://carrier.example/sms", {}),
        ("file:///etc/passwd", {}),
        ("http:///sms", {}),
        ("https://carrier.example/sms", {"timeout_seconds": 0}),
        ("https://carrier.example/sms", {"retries": 11}),
    ],
)
def test_bad_settings_are_configuration_errors(url: str, options: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        HttpSmsGateway(url, **options)  # type: ignore[arg-type]


def test_the_sms_section_picks_the_gateway(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    http = sms_gateway(
        SmsSection(
            kind=SmsKind.HTTP, url="https://carrier.example/sms", bearer_token_file=str(token_file)
        ),
        clock=None,  # type: ignore[arg-type]
    )
    assert isinstance(http, HttpSmsGateway) and http._token == TOKEN
    outbox = sms_gateway(SmsSection(outbox=str(tmp_path / "out.jsonl")), clock=None)  # type: ignore[arg-type]
    assert isinstance(outbox, OutboxSmsGateway)
    with pytest.raises(ConfigurationError, match=r"sms\.url"):
        SmsSection(kind=SmsKind.HTTP)


# --- through the service ---------------------------------------------------------------------


@pytest.mark.softhsm
def test_login_codes_go_through_the_http_gateway(
    start_factor_service: StartService, cns_card_1024: CnsCard, fake_carrier: FakeCarrier
) -> None:
    service = start_factor_service(login_codes_per_citizen=5)
    app = service.running.assembly.app
    app.sms = HttpSmsGateway(
        fake_carrier.url, timeout_seconds=0.3, retries=1, backoff_seconds=0.05, proxies={}
    )
    cf = enrol(service, cns_card_1024, PHONE)
    verifier = oob_stub(service)

    def request() -> oob_pb2.RequestLoginCodeResponse:
        response: oob_pb2.RequestLoginCodeResponse = verifier.RequestLoginCode(
            oob_pb2.RequestLoginCodeRequest(codice_fiscale=cf)
        )
        return response

    def verify(code: str) -> int:
        result: int = verifier.VerifyLoginCode(
            oob_pb2.VerifyLoginCodeRequest(codice_fiscale=cf, code=code)
        ).result
        return result

    fake_carrier.script = [500]  # one failure, then the retry goes through
    request()
    assert len(fake_carrier.received) == 2 and fake_carrier.received[0]["to"] == PHONE
    assert verify(code_in(fake_carrier.received[-1]["text"])) == common_pb2.VERIFY_RESULT_OK

    fake_carrier.script = [503, ("sleep", 1.0)]
    down = rpc_error(request)
    assert down.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert trailing(down)["otphsm-reason"] == "DEVICE_UNAVAILABLE"
    # a timed-out attempt may have reached the phone: the code is withdrawn all the same
    # (what remains current is the code used before: REPLAYED, ask for a new one)
    late = verify(code_in(fake_carrier.received[-1]["text"]))
    assert late == common_pb2.VERIFY_RESULT_REPLAYED

    fake_carrier.script = [400]
    refused = rpc_error(request)
    assert refused.code() is grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    assert trailing(refused)["otphsm-reason"] == "DEVICE_REFUSED"
    assert "HTTP 400" in (refused.details() or "")  # type: ignore[attr-defined]
    assert_discreet_details(refused, fake_carrier)


def assert_discreet_details(error: grpc.RpcError, carrier: FakeCarrier) -> None:
    details = error.details() or ""  # type: ignore[attr-defined]
    assert "s3cr3t-key" not in details
    assert code_in(carrier.received[-1]["text"]) not in details


def test_the_sms_and_policy_settings_load_from_the_config(tmp_path: Path) -> None:
    from otphsm.service.config import config_from_mapping

    raw = {
        "server": {"insecure": True},
        "hsm": {"token_label": "t", "user_pin": "1234"},
        "store": {"url": "sqlite::memory:"},
        "card": {"trusted_ca": ["ca.pem"]},
        "sms": {
            "kind": "http",
            "url": "https://carrier.example/sms",
            "bearer_token_file": "tok",
            "push_outbox": "push",
            "retries": 4,
        },
        "policy": {"login_codes_per_caller": 0, "grid_cells": 64},
    }
    env = {"OTPHSM_SMS_TIMEOUT_SECONDS": "1.5", "OTPHSM_POLICY_GRID_CELL_DIGITS": "4"}
    config = config_from_mapping(raw, base=tmp_path, env=env)
    assert config.sms.bearer_token_file == str(tmp_path / "tok")
    assert config.sms.push_outbox == str(tmp_path / "push")
    assert (config.sms.retries, config.sms.timeout_seconds) == (4, 1.5)
    assert (config.policy.login_codes_per_caller, config.policy.grid_cells) == (0, 64)
    assert config.policy.grid_cell_digits == 4
    for section, values, message in [
        ("policy", {"grid_cells": 5}, "grid_cells must be 10..100"),
        ("policy", {"grid_cell_digits": 9}, "grid_cell_digits must be 2..6"),
        ("sms", {"kind": "sms-over-pigeon"}, "sms.kind must be one of"),
        ("sms", {"retries": 11}, "sms.retries"),
    ]:
        broken = {**raw, section: {**raw[section], **values}}
        with pytest.raises(ConfigurationError, match=message):
            config_from_mapping(broken, base=tmp_path, env={})
