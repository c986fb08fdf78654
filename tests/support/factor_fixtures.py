"""The second factors over gRPC: a running service with a push outbox (and policy overrides),
citizens enrolled with their card, a fake HTTP SMS carrier, and the secrecy checks (logs,
audit chain, metrics) shared by the out-of-band and Security Card tests."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest

from otphsm.gateways.push_outbox import PushOutbox
from otphsm.service.logs import JsonFormatter
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.store.urls import sqlite_url
from otphsm.v1 import device_pb2, enrolment_pb2, grid_pb2_grpc, oob_pb2_grpc
from support.service_devices import TokenApp
from support.service_fixtures import ServiceUnderTest, start_service

StartService = Callable[..., ServiceUnderTest]


@pytest.fixture
def start_factor_service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StartService]:
    """Starts a service on a SQLite file (or `store_url`), with its push outbox in tmp_path
    and the given [policy] overrides; stops them all at the end of the test."""
    started: list[ServiceUnderTest] = []

    def start(store_url: str = "", **policy: Any) -> ServiceUnderTest:
        directory = tmp_path / f"service-{len(started)}"
        directory.mkdir()
        db_path = directory / "otphsm.db"
        overrides: dict[str, dict[str, Any]] = {
            "sms": {"push_outbox": str(directory / "push")},
            "policy": policy,
        }
        service = start_service(
            request,
            directory,
            store_url or sqlite_url(db_path),
            None if store_url else db_path,
            overrides,
        )
        started.append(service)
        return service

    yield start
    for service in started:
        service.close()


def oob_stub(service: ServiceUnderTest, client: str = "verifier") -> oob_pb2_grpc.OobServiceStub:
    return oob_pb2_grpc.OobServiceStub(service.channel(client))


def grid_stub(
    service: ServiceUnderTest, client: str = "verifier"
) -> grid_pb2_grpc.GridCardServiceStub:
    return grid_pb2_grpc.GridCardServiceStub(service.channel(client))


def push_outbox(service: ServiceUnderTest) -> PushOutbox:
    push = service.running.assembly.app.push
    assert isinstance(push, PushOutbox)
    return push


def enrol(service: ServiceUnderTest, card: CnsCard, phone_number: str = "") -> str:
    """Authorise with the card (the station's work) and record a phone number; returns the
    codice fiscale. The authorisation itself is left unused."""
    authorised = service.authorise(card)
    cf: str = authorised.citizen.codice_fiscale
    if phone_number:
        service.enrolment().SetPhoneNumber(
            enrolment_pb2.SetPhoneNumberRequest(codice_fiscale=cf, phone_number=phone_number)
        )
    return cf


def activate_phone(service: ServiceUnderTest, card: CnsCard) -> TokenApp:
    """A card-authorised token, activated and proved: the citizen's active token app."""
    authorised = service.authorise(card)
    issued = service.enrolment().IssueToken(
        enrolment_pb2.IssueTokenRequest(
            authorisation_id=authorised.authorisation_id,
            method=enrolment_pb2.ACTIVATION_METHOD_CODE,
        )
    )
    phone = TokenApp()
    phone.complete(
        service.device().ActivateWithCode(
            device_pb2.ActivateWithCodeRequest(
                activation_code=issued.activation_code, device_public_key=phone.public_key
            )
        )
    )
    proved = service.device().ProvePossession(
        device_pb2.ProvePossessionRequest(serial=phone.serial, code=phone.code(service.clock.now()))
    )
    assert proved.result == 1  # VERIFY_RESULT_OK
    return phone


def code_in(text: str) -> str:
    found = re.findall(r"\b\d{6}\b", text)
    assert len(found) == 1, text
    return str(found[0])


def rpc_error(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


def trailing(error: grpc.RpcError) -> dict[str, str]:
    metadata = error.trailing_metadata() or ()  # type: ignore[attr-defined]
    return {item.key: item.value for item in metadata}


# --- what must never show a secret ---------------------------------------------------------


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Everything logged during the test, formatted as `otphsm serve` would (JSON lines)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield out
    root.removeHandler(handler)
    root.setLevel(previous)


def observable_text(
    service: ServiceUnderTest, logs: io.StringIO, errors: list[grpc.RpcError]
) -> dict[str, str]:
    """The server's logs, its audit chain, its metrics page and the errors callers saw."""
    audit = [
        json.dumps(
            {"actor": e.actor, "action": e.action, "subject": e.subject, "details": e.details}
        )
        for e in service.store.audit_entries()
    ]
    port = service.running.metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    described = [f"{e.code().name} {e.details()} {trailing(e)}" for e in errors]  # type: ignore[attr-defined]
    assert logs.getvalue() and audit and metrics, "nothing was captured"
    return {
        "logs": logs.getvalue(),
        "audit": "\n".join(audit),
        "metrics": metrics,
        "errors": "\n".join(described),
    }


def assert_nowhere(texts: dict[str, str], secrets: list[str]) -> None:
    """No secret appears as a number of its own (not inside a longer number or a decimal)."""
    leaks = [
        f"{secret!r} in {where}"
        for secret in secrets
        for where, text in texts.items()
        if re.search(rf"(?<![\w.]){re.escape(secret)}(?![\w.])", text, re.IGNORECASE)
    ]
    assert not leaks, leaks


# --- a fake SMS carrier on 127.0.0.1 ---------------------------------------------------------


@dataclass
class FakeCarrier:
    """Answers each POST with the next scripted behaviour: an HTTP status, or ("sleep", s)
    to stall s seconds before answering 200. Records what it received."""

    script: list[int | tuple[str, float]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/sms?key=s3cr3t-key"

    def next_behaviour(self) -> int | tuple[str, float]:
        with self.lock:
            return self.script.pop(0) if self.script else 200


@pytest.fixture
def fake_carrier() -> Iterator[FakeCarrier]:
    carrier = FakeCarrier()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            with carrier.lock:
                carrier.received.append(body)
                carrier.headers.append(dict(self.headers))
            behaviour = carrier.next_behaviour()
            status = 200
            if isinstance(behaviour, tuple):
                time.sleep(behaviour[1])
            else:
                status = behaviour
            payload = json.dumps({"echo": body}).encode()  # a careless carrier echoes the text
            try:
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    carrier.server = server
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield carrier
    server.shutdown()
    server.server_close()
    thread.join(5)
