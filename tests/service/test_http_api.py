"""The HTTP/JSON API of a real `otphsm serve` (started by the deployment harness, [http]
enabled), called with curl and the dev PKI's client certificates: verification OK, WRONG_CODE
and LOCKED, a login code sent and checked, an admin route refused to a verifier certificate,
malformed JSON refused naming the field, no certificate no answer, the OpenAPI document valid
(openapi-spec-validator) and every route in it answered; each call logged once, like gRPC."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from openapi_spec_validator import validate
from support.factor_fixtures import code_in
from support.http_fixtures import CF, PHONE, HttpDeployment

from otphsm.simulators.deployment import ServerProcess
from otphsm.simulators.sms.inbox import read_sms_messages

pytestmark = pytest.mark.softhsm


def rpc_records(server: ServerProcess, method: str) -> list[dict[str, Any]]:
    return [
        r for r in server.records if r.get("msg") == "rpc" and r.get("rpc", "").endswith(method)
    ]


def test_verify_answers_ok_then_wrong_code_then_locked(http_deployment: HttpDeployment) -> None:
    phone = http_deployment.phone
    assert http_deployment.verify(phone.counter_code(1)) == {
        "result": "VERIFY_RESULT_OK",
        "serial": phone.serial,
        "retryAfterSeconds": 0,
    }
    wrong = f"{(int(phone.counter_code(2)) + 1) % 1_000_000:06d}"
    results = [http_deployment.verify(wrong) for _ in range(3)]
    assert [r["result"] for r in results] == ["VERIFY_RESULT_WRONG_CODE"] * 3
    assert results[-1]["retryAfterSeconds"] == 60
    locked = http_deployment.verify(phone.counter_code(2))
    assert locked["result"] == "VERIFY_RESULT_LOCKED" and 0 < locked["retryAfterSeconds"] <= 60
    records = rpc_records(http_deployment.server, "/Verify")
    assert len(records) == 5  # one line per call
    assert {r["transport"] for r in records} == {"http"}
    assert [r["result"] for r in records] == ["ok", *["wrong_code"] * 3, "locked"]
    assert {r["role"] for r in records} == {"verifier"}
    log = http_deployment.server.log.read_text()
    assert wrong not in log and phone.counter_code(1) not in log


def test_a_login_code_is_sent_by_sms_and_accepted_once(http_deployment: HttpDeployment) -> None:
    status, sent, _ = http_deployment.curl(
        "verifier", "POST", "/v1/loginCodes:send", {"codiceFiscale": CF}
    )
    assert (
        status == 200 and sent["channel"] == "DELIVERY_CHANNEL_SMS" and int(sent["expiresAt"]) > 0
    )
    code = code_in(read_sms_messages(http_deployment.outbox, PHONE)[-1].text)
    check = {"codiceFiscale": CF, "code": code}
    assert http_deployment.curl("verifier", "POST", "/v1/loginCodes:verify", check)[1][
        "result"
    ] == ("VERIFY_RESULT_OK")
    assert http_deployment.curl("verifier", "POST", "/v1/loginCodes:verify", check)[1][
        "result"
    ] == ("VERIFY_RESULT_REPLAYED")


def test_an_admin_route_is_refused_to_a_verifier_certificate(
    http_deployment: HttpDeployment,
) -> None:
    status, refused, _ = http_deployment.curl("verifier", "GET", "/v1/tokens")
    assert status == 403
    error = refused["error"]
    assert (error["code"], error["status"], error["reason"]) == (
        403,
        "PERMISSION_DENIED",
        "PERMISSION_DENIED",
    )
    assert "verifier" in error["message"]
    assert error["details"][0]["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    status, listed, _ = http_deployment.curl("admin", "GET", f"/v1/tokens?codiceFiscale={CF}")
    assert status == 200
    assert [t["serial"] for t in listed["tokens"]] == [http_deployment.phone.serial]
    status, one, _ = http_deployment.curl(
        "admin", "GET", f"/v1/tokens/{http_deployment.phone.serial}"
    )
    assert status == 200 and one["token"]["state"] == "TOKEN_STATE_ACTIVE"
    status, _, _ = http_deployment.curl(
        "admin", "POST", f"/v1/tokens/{http_deployment.phone.serial}:suspend", {"reason": "lost"}
    )
    assert status == 200
    assert (
        http_deployment.verify(http_deployment.phone.counter_code(1))["result"]
        == "VERIFY_RESULT_NOT_ACTIVE"
    )


def test_malformed_input_and_a_used_up_wait_answer_json_errors(
    http_deployment: HttpDeployment,
) -> None:
    status, refused, _ = http_deployment.curl(
        "verifier",
        "POST",
        "/v1/codes:verify",
        {"serial": http_deployment.phone.serial, "code": 424242},
    )
    assert status == 400
    error = refused["error"]
    assert (error["status"], error["reason"]) == ("INVALID_ARGUMENT", "INVALID_INPUT")
    violations = [d for d in error["details"] if d["@type"].endswith("google.rpc.BadRequest")]
    assert violations[0]["fieldViolations"][0]["field"] == "code"
    assert "424242" not in json.dumps(refused)
    status, missing, _ = http_deployment.curl(
        "verifier", "POST", "/v1/codes:verify", {"serial": "NONE-0001", "code": "123456"}
    )
    assert (status, missing["error"]["reason"]) == (404, "NOT_FOUND")
    status, nowhere, _ = http_deployment.curl("verifier", "GET", "/v1/nowhere")
    assert (status, nowhere["error"]["reason"]) == (404, "NO_ROUTE")
    status, _, head = http_deployment.curl("verifier", "GET", "/v1/codes:verify")
    assert status == 405 and "Allow: POST" in head
    for _ in range(3):  # the SMS quota: 3 codes per citizen in 10 minutes
        http_deployment.curl("verifier", "POST", "/v1/loginCodes:send", {"codiceFiscale": CF})
    status, quota, head = http_deployment.curl(
        "verifier", "POST", "/v1/loginCodes:send", {"codiceFiscale": CF}
    )
    assert status == 429 and quota["error"]["status"] == "RESOURCE_EXHAUSTED"
    wait = quota["error"]["retryAfterSeconds"]
    assert wait > 0 and f"Retry-After: {wait}" in head
    retry = [d for d in quota["error"]["details"] if d["@type"].endswith("google.rpc.RetryInfo")]
    assert retry[0]["retryDelay"] == f"{wait}s"


def test_no_client_certificate_no_answer(http_deployment: HttpDeployment) -> None:
    url = f"https://localhost:{http_deployment.server.http_port}/openapi.json"
    done = subprocess.run(
        ["curl", "-sS", "--cacert", str(http_deployment.pki.ca), url],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode != 0  # the TLS handshake is refused, as on the gRPC port
    status, _, _ = http_deployment.curl("norole", "POST", "/v1/codes:verify", {})
    assert status == 401


def test_the_openapi_document_is_valid_and_every_route_in_it_answers(
    http_deployment: HttpDeployment,
) -> None:
    status, document, _ = http_deployment.curl("verifier", "GET", "/openapi.json")
    assert status == 200
    validate(document)
    answered = 0
    for template, operations in document["paths"].items():
        path = template.replace("{serial}", "NONE-0001")
        for verb, operation in operations.items():
            role = operation["x-otphsm-roles"][0]
            body = {} if "requestBody" in operation else None
            status, answer, _ = http_deployment.curl(role, verb.upper(), path, body)
            rpc = operation["summary"].split("gRPC ")[1].rstrip(")")
            assert status < 500, (template, answer)
            if status != 200:  # refused by the RPC itself (an empty request), not by routing
                assert answer["error"]["reason"] != "NO_ROUTE", template
            assert rpc_records(http_deployment.server, rpc), f"{template}: no RPC was called"
            answered += 1
    assert answered == 18
