"""Replicas: two `otphsm serve` processes sharing PostgreSQL and one SoftHSM token accept a code
at most once, whichever replica each of 50 concurrent callers reaches."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from support.card_fixtures import MARIO_ROSSI
from support.service_devices import TokenApp
from support.service_fixtures import service_config

from otphsm.core.app.context import Actor, Role
from otphsm.core.app.enrolment import grant_authorisation
from otphsm.service.assembly import assemble
from otphsm.service.config import load_config
from otphsm.service.devpki import DevPki
from otphsm.simulators.deployment import start_serve, write_config
from otphsm.v1 import (
    common_pb2,
    device_pb2,
    device_pb2_grpc,
    enrolment_pb2,
    enrolment_pb2_grpc,
    validation_pb2,
    validation_pb2_grpc,
)

pytestmark = [pytest.mark.softhsm, pytest.mark.postgres, pytest.mark.slow]

CALLERS = 50


def channel(pki: DevPki, port: int, role: str) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        pki.ca.read_bytes(),
        (pki.directory / f"{role}-key.pem").read_bytes(),
        (pki.directory / f"{role}.pem").read_bytes(),
    )
    return grpc.secure_channel(f"localhost:{port}", credentials)


def start_replicas(
    request: pytest.FixtureRequest, tmp_path: Path, ratelimit: dict[str, object] | None = None
) -> Iterator[tuple[Path, list[int], DevPki]]:
    softhsm = request.getfixturevalue("serve_softhsm")
    pki: DevPki = request.getfixturevalue("dev_pki")
    url: str = request.getfixturevalue("postgres_store_url")
    ca_files = request.getfixturevalue("card_ca_files")
    configs = []
    for name in ("a", "b"):
        raw = service_config(tmp_path, softhsm, pki, ca_files, url)
        raw["server"]["max_workers"] = CALLERS
        raw["metrics"]["enabled"] = False
        if ratelimit is not None:
            raw["ratelimit"] = ratelimit
        configs.append(write_config(tmp_path / f"replica-{name}.toml", raw))
    servers = [start_serve(config, softhsm) for config in configs]
    try:
        yield configs[0], [server.wait_serving() for server in servers], pki
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def replicas(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Path, list[int], DevPki]]:
    yield from start_replicas(request, tmp_path)


BURST = 6


@pytest.fixture
def limited_replicas(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Path, list[int], DevPki]]:
    """Replicas allowing each caller 6 failed checks, then one per 100 s."""
    yield from start_replicas(request, tmp_path, {"failures_per_second": 0.01, "burst": BURST})


def test_fifty_concurrent_verifications_over_two_replicas_accept_the_code_once(
    replicas: tuple[Path, list[int], DevPki],
) -> None:
    config, ports, pki = replicas
    # An authorisation as an SMS code would grant it (the card step is covered elsewhere).
    assembly = assemble(load_config(config, env={}))
    try:
        authorisation = grant_authorisation(
            assembly.app, Actor("test", Role.ENROLLER), MARIO_ROSSI.codice_fiscale, "test"
        )
    finally:
        assembly.close()

    station = enrolment_pb2_grpc.EnrolmentServiceStub(channel(pki, ports[0], "enroller"))
    issued = station.IssueToken(
        enrolment_pb2.IssueTokenRequest(
            authorisation_id=authorisation.authorisation_id,
            params=common_pb2.OtpParameters(mode=common_pb2.OTP_MODE_HOTP),
        )
    )
    phone = TokenApp()
    phone.complete(
        device_pb2_grpc.DeviceServiceStub(channel(pki, ports[0], "device")).ActivateWithCode(
            device_pb2.ActivateWithCodeRequest(
                activation_code=issued.activation_code, device_public_key=phone.public_key
            )
        )
    )
    proved = device_pb2_grpc.DeviceServiceStub(channel(pki, ports[1], "device")).ProvePossession(
        device_pb2.ProvePossessionRequest(serial=phone.serial, code=phone.counter_code(0))
    )
    assert proved.result == common_pb2.VERIFY_RESULT_OK  # the other replica unwrapped the seed

    verifiers = [
        validation_pb2_grpc.ValidationServiceStub(channel(pki, port, "verifier")) for port in ports
    ]
    code = phone.counter_code(1)
    start = threading.Barrier(CALLERS)

    def verify(i: int) -> int:
        start.wait(timeout=30)
        response = verifiers[i % 2].Verify(
            validation_pb2.VerifyRequest(serial=phone.serial, code=code), timeout=60
        )
        result: int = response.result
        return result

    with ThreadPoolExecutor(CALLERS) as pool:
        results = Counter(pool.map(verify, range(CALLERS)))
    assert results[common_pb2.VERIFY_RESULT_OK] == 1, results
    refused = {common_pb2.VERIFY_RESULT_REPLAYED, common_pb2.VERIFY_RESULT_LOCKED}
    assert set(results) - {common_pb2.VERIFY_RESULT_OK} <= refused, results


def test_a_callers_failed_checks_on_one_replica_count_on_the_other(
    limited_replicas: tuple[Path, list[int], DevPki],
) -> None:
    _, ports, pki = limited_replicas
    on_a, on_b = (
        validation_pb2_grpc.ValidationServiceStub(channel(pki, port, "verifier")) for port in ports
    )
    guess = validation_pb2.VerifyRequest(serial="NONE-0001", code="123456")

    def status(stub: validation_pb2_grpc.ValidationServiceStub) -> grpc.StatusCode:
        try:
            stub.Verify(guess, timeout=10)
        except grpc.RpcError as error:
            code: grpc.StatusCode = error.code()
            return code
        return grpc.StatusCode.OK

    # half the burst on each replica: each alone would still admit the caller
    assert [status(on_a) for _ in range(BURST // 2)] == [grpc.StatusCode.NOT_FOUND] * (BURST // 2)
    assert [status(on_b) for _ in range(BURST // 2)] == [grpc.StatusCode.NOT_FOUND] * (BURST // 2)
    assert status(on_a) is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status(on_b) is grpc.StatusCode.RESOURCE_EXHAUSTED
    other = validation_pb2_grpc.ValidationServiceStub(channel(pki, ports[1], "verifier-and-admin"))
    assert status(other) is grpc.StatusCode.NOT_FOUND  # another caller has its own bucket
