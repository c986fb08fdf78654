"""The HTTP/JSON API of a real `otphsm serve` (started by the deployment harness, [http]
enabled), called with curl and the dev PKI's client certificates: verification OK, WRONG_CODE
and LOCKED, a login code sent and checked, an admin route refused to a verifier certificate,
malformed JSON refused naming the field, no certificate no answer, the OpenAPI document valid
(openapi-spec-validator) and every route in it answered; each call logged once, like gRPC."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from openapi_spec_validator import validate
from support.card_fixtures import MARIO_ROSSI
from support.factor_fixtures import code_in
from support.service_devices import TokenApp
from support.service_fixtures import service_config

from otphsm.core.app.context import Actor, Role
from otphsm.core.app.enrolment import grant_authorisation
from otphsm.core.records import Citizen
from otphsm.service.assembly import assemble
from otphsm.service.config import load_config
from otphsm.service.devpki import DevPki, client_files
from otphsm.simulators.deployment import ServerProcess, start_serve, write_config
from otphsm.simulators.sms.inbox import read_sms_messages
from otphsm.v1 import (
    common_pb2,
    device_pb2,
    device_pb2_grpc,
    enrolment_pb2,
    enrolment_pb2_grpc,
)

pytestmark = pytest.mark.softhsm

PHONE = "+393331234567"
CF = MARIO_ROSSI.codice_fiscale


@dataclass
class HttpDeployment:
    server: ServerProcess
    pki: DevPki
    outbox: Path
    phone: TokenApp

    def curl(
        self, role: str | None, verb: str, path: str, body: object = None
    ) -> tuple[int, dict[str, Any], str]:
        """(HTTP status, JSON answer, response headers) of curl's call as `role`."""
        args = ["curl", "-sS", "-D", "-", "--cacert", str(self.pki.ca), "-X", verb]
        if role is not None:
            cert, key = client_files(self.pki.directory, role)
            args += ["--cert", str(cert), "--key", str(key)]
        if body is not None:
            args += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
        url = f"https://localhost:{self.server.http_port}{path}"
        done = subprocess.run([*args, url], capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        head, _, text = done.stdout.partition("\n\n")
        assert text, done.stdout
        status = int(head.split()[1])
        return status, json.loads(text), head

    def verify(self, code: str) -> dict[str, Any]:
        status, answer, _ = self.curl(
            "verifier", "POST", "/v1/codes:verify", {"serial": self.phone.serial, "code": code}
        )
        assert status == 200, answer
        return answer


def citizen(now: int) -> Citizen:
    person = MARIO_ROSSI
    return Citizen(
        CF,
        person.given_name,
        person.surname,
        person.birth_date.isoformat(),
        person.sex,
        person.birth_municipality,
        "card",
        "1",
        "test CA",
        now,
        now,
        phone_number=PHONE,
    )


def _channel(pki: DevPki, port: int, role: str) -> grpc.Channel:
    cert, key = client_files(pki.directory, role)
    credentials = grpc.ssl_channel_credentials(
        pki.ca.read_bytes(), key.read_bytes(), cert.read_bytes()
    )
    return grpc.secure_channel(f"localhost:{port}", credentials)


@pytest.fixture
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HttpDeployment]:
    """`otphsm serve` with [http] on, and Mario Rossi's HOTP token app, activated and proved
    (counter 0 used), his phone number recorded."""
    softhsm = request.getfixturevalue("serve_softhsm")
    pki: DevPki = request.getfixturevalue("dev_pki")
    raw = service_config(
        tmp_path, softhsm, pki, request.getfixturevalue("card_ca_files"), f"sqlite://{tmp_path}/db"
    )
    raw["metrics"]["enabled"] = False
    raw["http"] = {"enabled": True, "port": 0}
    config = write_config(tmp_path / "serve.toml", raw)
    server = start_serve(config, softhsm)
    try:
        port = server.wait_serving()
        assembly = assemble(load_config(config, env={}))
        try:  # the citizen and an authorisation, as a card would record them
            assembly.store.upsert_citizen(citizen(assembly.app.now()))
            granted = grant_authorisation(assembly.app, Actor("test", Role.ENROLLER), CF, "test")
        finally:
            assembly.close()
        station = enrolment_pb2_grpc.EnrolmentServiceStub(_channel(pki, port, "enroller"))
        issued = station.IssueToken(
            enrolment_pb2.IssueTokenRequest(
                authorisation_id=granted.authorisation_id,
                params=common_pb2.OtpParameters(mode=common_pb2.OTP_MODE_HOTP),
            )
        )
        device = device_pb2_grpc.DeviceServiceStub(_channel(pki, port, "device"))
        phone = TokenApp()
        phone.complete(
            device.ActivateWithCode(
                device_pb2.ActivateWithCodeRequest(
                    activation_code=issued.activation_code, device_public_key=phone.public_key
                )
            )
        )
        device.ProvePossession(
            device_pb2.ProvePossessionRequest(serial=phone.serial, code=phone.counter_code(0))
        )
        yield HttpDeployment(server, pki, tmp_path / "sms-outbox.jsonl", phone)
    finally:
        server.stop()


def rpc_records(server: ServerProcess, method: str) -> list[dict[str, Any]]:
    return [
        r for r in server.records if r.get("msg") == "rpc" and r.get("rpc", "").endswith(method)
    ]


def test_verify_answers_ok_then_wrong_code_then_locked(deployment: HttpDeployment) -> None:
    phone = deployment.phone
    assert deployment.verify(phone.counter_code(1)) == {
        "result": "VERIFY_RESULT_OK",
        "serial": phone.serial,
        "retryAfterSeconds": 0,
    }
    wrong = f"{(int(phone.counter_code(2)) + 1) % 1_000_000:06d}"
    results = [deployment.verify(wrong) for _ in range(3)]
    assert [r["result"] for r in results] == ["VERIFY_RESULT_WRONG_CODE"] * 3
    assert results[-1]["retryAfterSeconds"] == 60
    locked = deployment.verify(phone.counter_code(2))
    assert locked["result"] == "VERIFY_RESULT_LOCKED" and 0 < locked["retryAfterSeconds"] <= 60
    records = rpc_records(deployment.server, "/Verify")
    assert len(records) == 5  # one line per call
    assert {r["transport"] for r in records} == {"http"}
    assert [r["result"] for r in records] == ["ok", *["wrong_code"] * 3, "locked"]
    assert {r["role"] for r in records} == {"verifier"}
    log = deployment.server.log.read_text()
    assert wrong not in log and phone.counter_code(1) not in log


def test_a_login_code_is_sent_by_sms_and_accepted_once(deployment: HttpDeployment) -> None:
    status, sent, _ = deployment.curl(
        "verifier", "POST", "/v1/loginCodes:send", {"codiceFiscale": CF}
    )
    assert (
        status == 200 and sent["channel"] == "DELIVERY_CHANNEL_SMS" and int(sent["expiresAt"]) > 0
    )
    code = code_in(read_sms_messages(deployment.outbox, PHONE)[-1].text)
    check = {"codiceFiscale": CF, "code": code}
    assert deployment.curl("verifier", "POST", "/v1/loginCodes:verify", check)[1]["result"] == (
        "VERIFY_RESULT_OK"
    )
    assert deployment.curl("verifier", "POST", "/v1/loginCodes:verify", check)[1]["result"] == (
        "VERIFY_RESULT_REPLAYED"
    )


def test_an_admin_route_is_refused_to_a_verifier_certificate(deployment: HttpDeployment) -> None:
    status, refused, _ = deployment.curl("verifier", "GET", "/v1/tokens")
    assert status == 403
    error = refused["error"]
    assert (error["code"], error["status"], error["reason"]) == (
        403,
        "PERMISSION_DENIED",
        "PERMISSION_DENIED",
    )
    assert "verifier" in error["message"]
    assert error["details"][0]["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    status, listed, _ = deployment.curl("admin", "GET", f"/v1/tokens?codiceFiscale={CF}")
    assert status == 200
    assert [t["serial"] for t in listed["tokens"]] == [deployment.phone.serial]
    status, one, _ = deployment.curl("admin", "GET", f"/v1/tokens/{deployment.phone.serial}")
    assert status == 200 and one["token"]["state"] == "TOKEN_STATE_ACTIVE"
    status, _, _ = deployment.curl(
        "admin", "POST", f"/v1/tokens/{deployment.phone.serial}:suspend", {"reason": "lost"}
    )
    assert status == 200
    assert (
        deployment.verify(deployment.phone.counter_code(1))["result"] == "VERIFY_RESULT_NOT_ACTIVE"
    )


def test_malformed_input_and_a_used_up_wait_answer_json_errors(deployment: HttpDeployment) -> None:
    status, refused, _ = deployment.curl(
        "verifier", "POST", "/v1/codes:verify", {"serial": deployment.phone.serial, "code": 424242}
    )
    assert status == 400
    error = refused["error"]
    assert (error["status"], error["reason"]) == ("INVALID_ARGUMENT", "INVALID_INPUT")
    violations = [d for d in error["details"] if d["@type"].endswith("google.rpc.BadRequest")]
    assert violations[0]["fieldViolations"][0]["field"] == "code"
    assert "424242" not in json.dumps(refused)
    status, missing, _ = deployment.curl(
        "verifier", "POST", "/v1/codes:verify", {"serial": "NONE-0001", "code": "123456"}
    )
    assert (status, missing["error"]["reason"]) == (404, "NOT_FOUND")
    status, nowhere, _ = deployment.curl("verifier", "GET", "/v1/nowhere")
    assert (status, nowhere["error"]["reason"]) == (404, "NO_ROUTE")
    status, _, head = deployment.curl("verifier", "GET", "/v1/codes:verify")
    assert status == 405 and "Allow: POST" in head
    for _ in range(3):  # the SMS quota: 3 codes per citizen in 10 minutes
        deployment.curl("verifier", "POST", "/v1/loginCodes:send", {"codiceFiscale": CF})
    status, quota, head = deployment.curl(
        "verifier", "POST", "/v1/loginCodes:send", {"codiceFiscale": CF}
    )
    assert status == 429 and quota["error"]["status"] == "RESOURCE_EXHAUSTED"
    wait = quota["error"]["retryAfterSeconds"]
    assert wait > 0 and f"Retry-After: {wait}" in head
    retry = [d for d in quota["error"]["details"] if d["@type"].endswith("google.rpc.RetryInfo")]
    assert retry[0]["retryDelay"] == f"{wait}s"


def test_no_client_certificate_no_answer(deployment: HttpDeployment) -> None:
    url = f"https://localhost:{deployment.server.http_port}/openapi.json"
    done = subprocess.run(
        ["curl", "-sS", "--cacert", str(deployment.pki.ca), url],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode != 0  # the TLS handshake is refused, as on the gRPC port
    status, _, _ = deployment.curl("norole", "POST", "/v1/codes:verify", {})
    assert status == 401


def test_the_openapi_document_is_valid_and_every_route_in_it_answers(
    deployment: HttpDeployment,
) -> None:
    status, document, _ = deployment.curl("verifier", "GET", "/openapi.json")
    assert status == 200
    validate(document)
    answered = 0
    for template, operations in document["paths"].items():
        path = template.replace("{serial}", "NONE-0001")
        for verb, operation in operations.items():
            role = operation["x-otphsm-roles"][0]
            body = {} if "requestBody" in operation else None
            status, answer, _ = deployment.curl(role, verb.upper(), path, body)
            rpc = operation["summary"].split("gRPC ")[1].rstrip(")")
            assert status < 500, (template, answer)
            if status != 200:  # refused by the RPC itself (an empty request), not by routing
                assert answer["error"]["reason"] != "NO_ROUTE", template
            assert rpc_records(deployment.server, rpc), f"{template}: no RPC was called"
            answered += 1
    assert answered == 18
