"""Standard gRPC health follows the HSM and the database (and, for the enrolment service alone, a
current CRL); Prometheus metrics count what happened."""

from __future__ import annotations

import sqlite3
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.server_models import each_server_model, on_each_server_model  # noqa: F401
from support.service_devices import TokenApp
from support.service_fixtures import ServiceUnderTest, start_service

from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.deployment import CardTrust
from otphsm.simulators.hsm.faults import CKR_DEVICE_REMOVED
from otphsm.store.errors import StoreUnavailable
from otphsm.v1 import device_pb2, enrolment_pb2, validation_pb2

pytestmark = pytest.mark.softhsm

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICES = ("", "otphsm.v1.ValidationService", "otphsm.v1.EnrolmentService")


def health_of(service: ServiceUnderTest, name: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(service.channel("verifier"))
    status: int = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
    return status


def wait_for(service: ServiceUnderTest, status: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while health_of(service) != status:
        assert time.monotonic() < deadline, f"health never became {status}"
        service.wait_health_checks(1)
    assert all(health_of(service, name) == status for name in SERVICES)


def test_serving_while_the_hsm_and_the_database_are_usable(service: ServiceUnderTest) -> None:
    assert all(health_of(service, name) == SERVING for name in SERVICES)
    with pytest.raises(grpc.RpcError) as unknown:
        health_of(service, "otphsm.v1.NoSuchService")
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND


def test_not_serving_while_the_hsm_is_gone_then_serving_again(service: ServiceUnderTest) -> None:
    service.faults.fail_every(1, CKR_DEVICE_REMOVED)  # every PKCS#11 call: device removed
    try:
        wait_for(service, NOT_SERVING)
        assert "hsm" in service.running.health.failing
        with pytest.raises(grpc.RpcError) as during:
            service.enrolment().GetChallenge(enrolment_pb2.GetChallengeRequest())
        assert during.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "HSM" in (during.value.details() or "")
    finally:
        service.faults.clear()
    wait_for(service, SERVING)
    service.enrolment().GetChallenge(enrolment_pb2.GetChallengeRequest())


def test_not_serving_while_the_sqlite_schema_is_gone_then_serving_again(
    service: ServiceUnderTest,
) -> None:
    """An open SQLite connection keeps working on a moved or overwritten file (its pages
    are cached), so the database is made unusable the way an operator's mistake would: the
    schema table disappears."""
    assert service.db_path is not None
    outside = sqlite3.connect(service.db_path, isolation_level=None)
    try:
        outside.execute("ALTER TABLE schema_version RENAME TO schema_version_gone")
        wait_for(service, NOT_SERVING)
        assert "store" in service.running.health.failing
        outside.execute("ALTER TABLE schema_version_gone RENAME TO schema_version")
    finally:
        outside.close()
    wait_for(service, SERVING)


@pytest.fixture
def postgres_service(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[ServiceUnderTest, dict[str, Any]]]:
    url: str = request.getfixturevalue("postgres_store_url")
    database: dict[str, Any] = request.getfixturevalue("postgres_database")
    running = start_service(request, tmp_path, url, None, {"store": {"timeout_seconds": 1.0}})
    application_name = url.split("application_name=", 1)[1].split("&", 1)[0]
    yield running, {**database, "application_name": application_name}
    running.close()


@pytest.mark.postgres
def test_not_serving_while_postgresql_refuses_connections_then_serving_again(
    postgres_service: tuple[ServiceUnderTest, dict[str, Any]],
) -> None:
    service, database = postgres_service
    name = database["dbname"]
    ours = database.pop("application_name")
    admin_settings = {**database, "dbname": "postgres"}
    with psycopg.connect(**admin_settings, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND application_name = %s",
                (name, ours),
            )
            wait_for(service, NOT_SERVING, timeout=20)
            assert "store" in service.running.health.failing
        finally:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    wait_for(service, SERVING, timeout=30)


def scrape(service: ServiceUnderTest) -> str:
    port = service.running.metrics_port
    assert port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text: str = answer.read().decode()
    return text


def test_metrics_count_verifications_errors_latency_and_hsm_failures(
    service: ServiceUnderTest, cns_card_1024: CnsCard
) -> None:
    authorised = service.authorise(cns_card_1024)
    issued = service.enrolment().IssueToken(
        enrolment_pb2.IssueTokenRequest(authorisation_id=authorised.authorisation_id)
    )
    phone = TokenApp()
    phone.complete(
        service.device().ActivateWithCode(
            device_pb2.ActivateWithCodeRequest(
                activation_code=issued.activation_code, device_public_key=phone.public_key
            )
        )
    )
    now = service.clock.now()
    service.device().ProvePossession(
        device_pb2.ProvePossessionRequest(serial=phone.serial, code=phone.code(now))
    )
    verifier = service.validation()
    service.clock.advance(30)
    code = phone.code(service.clock.now())
    for _ in range(2):
        verifier.Verify(validation_pb2.VerifyRequest(serial=phone.serial, code=code))
    with pytest.raises(grpc.RpcError):
        verifier.Verify(validation_pb2.VerifyRequest(serial="MOB-0000000000", code=code))
    service.faults.fail_every(1, CKR_DEVICE_REMOVED)
    try:
        wait_for(service, NOT_SERVING)
    finally:
        service.faults.clear()

    text = scrape(service)
    assert 'otphsm_verifications_total{result="ok",rpc="Verify"} 1.0' in text
    assert 'otphsm_verifications_total{result="replayed",rpc="Verify"} 1.0' in text
    assert 'otphsm_verifications_total{result="ok",rpc="ProvePossession"} 1.0' in text
    assert 'otphsm_rpc_errors_total{code="NOT_FOUND",rpc="Verify"} 1.0' in text
    assert 'otphsm_rpc_duration_seconds_count{rpc="Verify"} 3.0' in text
    assert 'otphsm_rpc_duration_seconds_bucket{le="0.5",rpc="IssueToken"} 1.0' in text
    assert 'otphsm_hsm_errors_total{error="HsmUnavailable"}' in text
    assert 'otphsm_component_up{component="store"} 1.0' in text
    # labels name RPCs and results, never a token, a citizen or a code
    for private in (phone.serial, authorised.citizen.codice_fiscale, code):
        assert private not in text


def test_graceful_stop_finishes_in_flight_calls_then_closes_the_hsm_and_the_store(
    service: ServiceUnderTest,
) -> None:
    station = service.enrolment()
    station.GetChallenge(enrolment_pb2.GetChallengeRequest())  # connected
    service.faults.latency_seconds = 0.3  # each PKCS#11 call now takes 0.3 s
    in_flight = station.GetChallenge.future(enrolment_pb2.GetChallengeRequest())
    time.sleep(0.1)
    started = time.monotonic()
    service.running.stop(5.0)
    assert time.monotonic() - started < 5.0
    assert in_flight.result(timeout=1).challenge_id.startswith("ch-")
    with pytest.raises(grpc.RpcError) as after:
        station.GetChallenge(enrolment_pb2.GetChallengeRequest(), timeout=2)
    assert after.value.code() is grpc.StatusCode.UNAVAILABLE
    with pytest.raises(StoreUnavailable, match="closed"):
        service.store.ping()


def test_past_the_crl_s_next_update_only_enrolment_is_not_serving_and_cards_get_the_reason(
    service: ServiceUnderTest, cns_card_1024: CnsCard, card_ca_files: CardTrust
) -> None:
    """On the service's own clock: the CRL it holds runs out; verification keeps serving."""
    crl = x509.load_pem_x509_crl(card_ca_files.crl.read_bytes())
    assert crl.next_update_utc is not None
    issuer = crl.issuer.rfc4514_string()
    assert f'otphsm_crl_next_update_timestamp_seconds{{issuer="{issuer}"}} ' in scrape(service)
    service.authorise(cns_card_1024)
    service.clock.set(crl.next_update_utc.timestamp())
    service.wait_health_checks(2)
    assert health_of(service, "otphsm.v1.EnrolmentService") == NOT_SERVING
    assert health_of(service) == SERVING
    assert health_of(service, "otphsm.v1.ValidationService") == SERVING
    assert service.running.health.failing.keys() == {"crl"}
    with pytest.raises(grpc.RpcError) as refused:
        service.authorise(cns_card_1024)
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert dict(refused.value.trailing_metadata() or ())["otphsm-reason"] == (
        "CRL_UNAVAILABLE_OR_STALE"
    )
    assert "nextUpdate" in (refused.value.details() or "")
    assert 'otphsm_component_up{component="crl"} 0.0' in scrape(service)
