"""RADIUS beside the event-loop gRPC server (`server.model = "event-loop"`): the socket is read on
the loop, which answers the code checks itself, and only a request for a challenge (which may
wait on the SMS carrier) goes to the worker pool. So a carrier that stalls holds up no code
check, even with the pool's one worker taken by it; a request whose handling fails is dropped
and the socket is still read; a stop closes the socket while the loop runs on."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyrad import packet as radius
from support.factor_fixtures import FakeCarrier
from support.fault_support import CITIZEN
from support.radius_support import SECRET, Nas, Reply, StartRadius, radclient

from otphsm.core.app.context import App
from otphsm.service.config import RadiusClientSection, RadiusSection
from otphsm.service.metrics import Metrics
from otphsm.service.radius import RadiusServer
from otphsm.service.radius.packets import load_dictionary

pytestmark = [pytest.mark.softhsm, pytest.mark.timeout(180)]

CARRIER_STALL = 4.0
LOOP_THREAD = "test-event-loop"


def test_a_challenge_waiting_on_the_sms_carrier_holds_up_no_code_check(
    start_radius: StartRadius, fake_carrier: FakeCarrier
) -> None:
    fake_carrier.script = [("sleep", CARRIER_STALL)]
    deployment = start_radius(
        tokens=1,
        oob_challenge="sms",
        sections={
            "server": {"model": "event-loop"},
            "radius": {"workers": 1},
            "sms": {"kind": "http", "url": fake_carrier.url, "retries": 0, "timeout_seconds": 10},
        },
    )
    (fob,) = deployment.tokens
    challenged: list[Reply] = []
    asking = threading.Thread(
        target=lambda: challenged.append(
            radclient(deployment.port, {"User-Name": CITIZEN, "User-Password": ""}, timeout=10)
        )
    )
    asking.start()
    deadline = time.monotonic() + 5
    while not fake_carrier.received and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake_carrier.received, "the challenge never reached the carrier"
    started = time.monotonic()
    checked = radclient(deployment.port, {"User-Name": fob.serial, "User-Password": fob.code(0)})
    took = time.monotonic() - started
    assert checked.code == "Access-Accept", checked.output
    assert took < CARRIER_STALL / 2, f"the code check waited {took:.2f} s behind the carrier"
    assert asking.is_alive(), "the challenge was answered before the carrier did"
    asking.join(15)
    assert challenged and challenged[0].code == "Access-Challenge", challenged


@pytest.fixture
def running_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name=LOOP_THREAD, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def status_server(identifier: int) -> tuple[radius.AuthPacket, bytes]:
    status = radius.AuthPacket(
        code=radius.StatusServer, id=identifier, secret=SECRET.encode(), dict=load_dictionary()
    )
    status.add_message_authenticator()
    return status, status.RequestPacket()


def test_on_the_loop_a_failure_drops_its_request_and_a_stop_closes_the_socket(
    app: App, tmp_path: Path, running_loop: asyncio.AbstractEventLoop
) -> None:
    (tmp_path / "nas.secret").write_text(SECRET)
    nas_section = RadiusClientSection(
        name="nas", addresses=("127.0.0.1",), secret_file=str(tmp_path / "nas.secret")
    )
    section = RadiusSection(enabled=True, port=0, clients=(nas_section,))
    checks: list[str] = []

    def healthy() -> bool:
        checks.append(threading.current_thread().name)
        if len(checks) == 1:
            raise RuntimeError("the health monitor broke")
        return True

    metrics = Metrics()
    server = RadiusServer(section, app, metrics, healthy=healthy, loop=running_loop)
    server.start()
    nas = Nas()
    try:
        _, first = status_server(1)
        assert nas.ask(server.port, first, timeout=1.0) is None
        dropped = metrics.registry.get_sample_value(
            "otphsm_radius_dropped_total", {"reason": "error"}
        )
        assert dropped == 1
        status, second = status_server(2)
        answer = nas.ask(server.port, second, timeout=2.0)
        assert answer is not None, "the socket was not read after a failure"
        assert status.CreateReply(packet=answer).code == radius.AccessAccept
        assert checks == [LOOP_THREAD, LOOP_THREAD]  # answered on the loop, not in the pool
        server.stop(1.0)
        server.stop(1.0)  # idempotent
        _, third = status_server(3)
        assert nas.ask(server.port, third, timeout=1.0) is None
        assert running_loop.is_running()
    finally:
        nas.close()
        server.stop(1.0)
