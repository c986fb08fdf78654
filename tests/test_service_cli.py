"""`otphsm admin dev-pki`, `otphsm audit verify` and `otphsm serve` (a real process: JSON logs,
health, SIGTERM → graceful stop)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.service_fixtures import ServeProcess, ServiceUnderTest, service_config, write_config

from otphsm.cli.main import main
from otphsm.service.devpki import DevPki
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.v1 import validation_pb2, validation_pb2_grpc

ROLES = ("verifier", "enroller", "device", "admin")


def test_dev_pki_writes_a_ca_a_server_and_one_client_per_role(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["admin", "dev-pki", str(tmp_path / "pki")]) == 0
    directory = tmp_path / "pki"
    ca = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    server = x509.load_pem_x509_certificate((directory / "server.pem").read_bytes())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert server.issuer == ca.subject
    for role in ROLES:
        cert = x509.load_pem_x509_certificate((directory / f"{role}.pem").read_bytes())
        uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert uris.get_values_for_type(x509.UniformResourceIdentifier) == [
            f"urn:otphsm:role:{role}"
        ]
        assert (directory / f"{role}-key.pem").stat().st_mode & 0o777 == 0o600
    assert "NOT FOR PRODUCTION" in capsys.readouterr().out


@pytest.mark.softhsm
def test_hsm_init_provisions_the_configured_token_once(
    tmp_path: Path, dev_pki: DevPki, request: pytest.FixtureRequest
) -> None:
    """The operator's provisioning, from the service's own configuration, in a fresh process
    (an SO login cannot share a process with the test's user sessions)."""
    from otphsm.simulators.hsm.softhsm import create_softhsm

    fresh = create_softhsm(tmp_path / "hsm", ("production",))
    raw = service_config(
        tmp_path, fresh, dev_pki, request.getfixturevalue("card_ca_files"),
        f"sqlite://{tmp_path / 'otphsm.db'}",
    )  # fmt: skip
    config = write_config(tmp_path / "otphsm.toml", raw)
    env = {**os.environ, **fresh.settings()}
    env.pop("OTPHSM_HSM_SO_PIN", None)

    def hsm_init(so_pin: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "otphsm.cli.main", "admin", "hsm-init", "--config",
             str(config), "--so-pin-from-stdin"],
            input=so_pin + "\n", env=env, capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip

    wrong = hsm_init("not-the-so-pin")
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert "PIN" in wrong.stderr and "not-the-so-pin" not in wrong.stderr

    first = hsm_init(fresh.so_pin)
    assert first.returncode == 0, first.stderr
    assert "KEK 'otphsm-kek' created, pepper key 'otphsm-pepper' created" in first.stdout
    assert "unwraps only into a sign-only key" in first.stdout
    again = hsm_init(fresh.so_pin)
    assert again.returncode == 0, again.stderr
    assert "KEK 'otphsm-kek' kept, pepper key 'otphsm-pepper' kept" in again.stdout
    assert fresh.so_pin not in first.stdout + first.stderr + again.stdout + again.stderr


@pytest.mark.softhsm
def test_audit_verify_detects_a_changed_entry(
    service: ServiceUnderTest,
    cns_card_1024: CnsCard,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    service.authorise(cns_card_1024)
    service.authorise(cns_card_1024)
    assert service.db_path is not None
    raw = service_config(
        tmp_path,
        request.getfixturevalue("softhsm"),
        service.pki,
        request.getfixturevalue("card_ca_files"),
        f"sqlite://{service.db_path}",
    )
    config = write_config(tmp_path / "otphsm.toml", raw)

    assert main(["audit", "verify", "--config", str(config)]) == 0
    assert capsys.readouterr().out.startswith("OK: 2 entries")

    with sqlite3.connect(service.db_path) as db:
        db.execute("UPDATE audit_log SET subject = 'XXXXXX00X00X000X' WHERE seq = 1")
    assert main(["audit", "verify", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "entry 1: hash_mismatch" in out and "BROKEN" in out


@pytest.fixture
def serve_process(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[ServeProcess, int, DevPki]]:
    softhsm = request.getfixturevalue("serve_softhsm")
    pki = request.getfixturevalue("dev_pki")
    raw = service_config(
        tmp_path, softhsm, pki, request.getfixturevalue("card_ca_files"),
        f"sqlite://{tmp_path / 'serve.db'}",
    )  # fmt: skip
    raw["server"]["grace_seconds"] = 5.0
    raw["metrics"]["enabled"] = False
    server = ServeProcess(write_config(tmp_path / "otphsm.toml", raw), softhsm)
    try:
        yield server, server.wait_started(), pki
    finally:
        server.close()


@pytest.mark.softhsm
def test_serve_logs_json_serves_and_stops_gracefully_on_sigterm(
    serve_process: tuple[ServeProcess, int, DevPki],
    request: pytest.FixtureRequest,
) -> None:
    server, port, pki = serve_process
    process, records = server.process, server.records
    credentials = grpc.ssl_channel_credentials(
        pki.ca.read_bytes(),
        (pki.directory / "verifier-key.pem").read_bytes(),
        (pki.directory / "verifier.pem").read_bytes(),
    )
    with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as unknown:
            validation_pb2_grpc.ValidationServiceStub(channel).Verify(
                validation_pb2.VerifyRequest(serial="MOB-0000000001", code="123456")
            )
        assert unknown.value.code() is grpc.StatusCode.NOT_FOUND

    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0
    assert time.monotonic() - started < 10
    time.sleep(0.2)
    messages = [r.get("msg") for r in records]
    assert messages.index("serving") < messages.index("shutting down") < messages.index("stopped")
    rpc = next(r for r in records if r.get("msg") == "rpc" and "Verify" in r.get("rpc", ""))
    assert rpc["code"] == "NOT_FOUND" and rpc["serial"] == "MOB-0000000001"
    assert rpc["caller"].startswith("CN=otphsm dev verifier") and rpc["role"] == "verifier"
    pin = request.getfixturevalue("softhsm").user_pin
    assert not any(pin in json.dumps(r) for r in records)
