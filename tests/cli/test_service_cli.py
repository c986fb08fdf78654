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
from support.service_fixtures import ServiceUnderTest, service_config

from otphsm.cli.main import main
from otphsm.service.devpki import DevPki
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.deployment import ServerProcess, start_serve, write_config
from otphsm.store.urls import sqlite_url
from otphsm.v1 import admin_pb2, validation_pb2, validation_pb2_grpc

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
        tmp_path,
        fresh,
        dev_pki,
        request.getfixturevalue("card_ca_files"),
        sqlite_url(tmp_path / "otphsm.db"),
    )
    config = write_config(tmp_path / "otphsm.toml", raw)
    env = {**os.environ, **fresh.settings()}
    env.pop("OTPHSM_HSM_SO_PIN", None)

    def hsm_init(so_pin: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "otphsm.cli.main",
                "admin",
                "hsm-init",
                "--config",
                str(config),
                "--so-pin-from-stdin",
            ],
            input=so_pin + "\n",
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

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


AUDIT_ENTRIES = 4


@pytest.fixture
def audited(
    service: ServiceUnderTest,
    cns_card_1024: CnsCard,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> tuple[ServiceUnderTest, Path, Path]:
    """A running service whose SQLite audit log holds AUDIT_ENTRIES entries (one per card
    authorisation), and a configuration for `otphsm audit verify` over the same file and HSM."""
    for _ in range(AUDIT_ENTRIES):
        service.authorise(cns_card_1024)
    assert service.db_path is not None
    raw = service_config(
        tmp_path,
        request.getfixturevalue("softhsm"),
        service.pki,
        request.getfixturevalue("card_ca_files"),
        sqlite_url(service.db_path),
    )
    return service, service.db_path, write_config(tmp_path / "otphsm.toml", raw)


def audit_verify(config: Path, *extra: str) -> int:
    return main(["audit", "verify", "--config", str(config), *extra])


def stored_hash(db_path: Path, seq: int) -> str:
    with sqlite3.connect(db_path) as db:
        row = db.execute("SELECT entry_hash FROM audit_log WHERE seq = ?", (seq,)).fetchone()
    return bytes(row[0]).hex()


@pytest.mark.softhsm
def test_audit_verify_passes_an_intact_chain_and_prints_its_head(
    audited: tuple[ServiceUnderTest, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, db_path, config = audited
    assert audit_verify(config) == 0
    out = capsys.readouterr().out
    head = f"head: seq {AUDIT_ENTRIES} sha256 {stored_hash(db_path, AUDIT_ENTRIES)}"
    assert out.startswith(f"OK: {AUDIT_ENTRIES} entries, chain intact") and head in out

    assert audit_verify(config, "--expect-head", f"2:{stored_hash(db_path, 2)}") == 0
    out = capsys.readouterr().out
    assert "recorded head seq 2 present, hash matches" in out and head in out


@pytest.mark.softhsm
def test_audit_verify_detects_a_changed_entry(
    audited: tuple[ServiceUnderTest, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, db_path, config = audited
    with sqlite3.connect(db_path) as db:
        db.execute("UPDATE audit_log SET subject = 'XXXXXX00X00X000X' WHERE seq = 1")
    assert audit_verify(config) == 1
    out = capsys.readouterr().out
    assert "entry 1: hash_mismatch" in out and "BROKEN" in out and "head:" not in out


@pytest.mark.softhsm
def test_audit_verify_detects_an_entry_removed_from_the_middle(
    audited: tuple[ServiceUnderTest, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, db_path, config = audited
    with sqlite3.connect(db_path) as db:
        db.execute("DELETE FROM audit_log WHERE seq = 2")
    assert audit_verify(config) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "entry 3: gap",
        "entry 3: broken_link",
        f"BROKEN: 2 finding(s) in {AUDIT_ENTRIES - 1} entries (last: seq {AUDIT_ENTRIES})",
    ]


@pytest.mark.softhsm
def test_audit_verify_detects_reordered_entries(
    audited: tuple[ServiceUnderTest, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Entries 2 and 3 trade places (their seq numbers swapped; the log is read in seq
    order): both bodies no longer hash to their hashes and three links break."""
    _, db_path, config = audited
    with sqlite3.connect(db_path) as db:
        db.execute("UPDATE audit_log SET seq = -3 WHERE seq = 3")
        db.execute("UPDATE audit_log SET seq = 3 WHERE seq = 2")
        db.execute("UPDATE audit_log SET seq = 2 WHERE seq = -3")
    assert audit_verify(config) == 1
    out = capsys.readouterr().out
    for finding in (
        "2: broken_link",
        "2: hash_mismatch",
        "3: broken_link",
        "3: hash_mismatch",
        "4: broken_link",
    ):
        assert f"entry {finding}\n" in out
    assert "entry 1:" not in out and "bad_mac" not in out and "BROKEN: 5 finding(s)" in out


@pytest.mark.softhsm
def test_audit_verify_detects_truncation_only_against_a_recorded_head(
    audited: tuple[ServiceUnderTest, Path, Path],
    cns_card_1024: CnsCard,
    capsys: pytest.CaptureFixture[str],
) -> None:
    service, db_path, config = audited
    assert audit_verify(config) == 0
    head_line = next(
        line for line in capsys.readouterr().out.splitlines() if line.startswith("head: ")
    )
    _, _, seq, _, hex_hash = head_line.split()
    recorded = f"{seq}:{hex_hash}"
    assert seq == str(AUDIT_ENTRIES)

    with sqlite3.connect(db_path) as db:  # the last two entries go
        db.execute("DELETE FROM audit_log WHERE seq > ?", (AUDIT_ENTRIES - 2,))
    assert audit_verify(config) == 0  # what is left is a valid chain
    capsys.readouterr()
    assert audit_verify(config, "--expect-head", recorded) == 1
    out = capsys.readouterr().out
    assert (
        f"entry {AUDIT_ENTRIES}: truncated: the recorded head is missing (the chain ends at "
        f"seq {AUDIT_ENTRIES - 2}): entries were removed from the end"
    ) in out
    assert "BROKEN: 1 finding(s)" in out

    # The service goes on sealing entries onto the shortened log: seq 3 and 4 exist again,
    # correctly linked and MACed, but they are not the entries recorded.
    service.authorise(cns_card_1024)
    service.authorise(cns_card_1024)
    assert audit_verify(config) == 0
    capsys.readouterr()
    assert audit_verify(config, "--expect-head", recorded) == 1
    out = capsys.readouterr().out
    assert (
        f"entry {AUDIT_ENTRIES}: head_mismatch: its hash does not match the recorded head: "
        "the chain was rewritten at or before it"
    ) in out


@pytest.mark.softhsm
def test_the_verify_audit_rpc_returns_the_head_and_checks_a_recorded_one(
    audited: tuple[ServiceUnderTest, Path, Path],
) -> None:
    service, db_path, _ = audited
    admin = service.admin()
    first = admin.VerifyAudit(admin_pb2.VerifyAuditRequest())
    assert (first.intact, first.entries, first.head.seq) == (True, AUDIT_ENTRIES, AUDIT_ENTRIES)
    assert first.head.entry_hash.hex() == stored_hash(db_path, AUDIT_ENTRIES)
    recorded = admin_pb2.VerifyAuditRequest(expected_head=first.head)
    assert admin.VerifyAudit(recorded).intact

    with sqlite3.connect(db_path) as db:
        db.execute("DELETE FROM audit_log WHERE seq = ?", (AUDIT_ENTRIES,))
    assert admin.VerifyAudit(admin_pb2.VerifyAuditRequest()).intact  # the chain alone: fine
    cut = admin.VerifyAudit(recorded)
    assert not cut.intact
    assert [(f.seq, f.problem) for f in cut.findings] == [(AUDIT_ENTRIES, "truncated")]
    assert cut.head.seq == AUDIT_ENTRIES - 1

    malformed = admin_pb2.VerifyAuditRequest(
        expected_head=admin_pb2.AuditHead(seq=1, entry_hash=b"short")
    )
    with pytest.raises(grpc.RpcError) as refused:
        admin.VerifyAudit(malformed)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "entry_hash" in (refused.value.details() or "")  # type: ignore[attr-defined]


def test_audit_verify_refuses_a_malformed_recorded_head(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        audit_verify(tmp_path / "absent.toml", "--expect-head", "4:abcd")
    assert exit_info.value.code == 2
    assert "SEQ:HEX" in capsys.readouterr().err


@pytest.fixture
def serve_process(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[ServerProcess, int, DevPki]]:
    softhsm = request.getfixturevalue("serve_softhsm")
    pki = request.getfixturevalue("dev_pki")
    raw = service_config(
        tmp_path,
        softhsm,
        pki,
        request.getfixturevalue("card_ca_files"),
        sqlite_url(tmp_path / "serve.db"),
    )
    raw["server"]["grace_seconds"] = 5.0
    raw["metrics"]["enabled"] = False
    server = start_serve(write_config(tmp_path / "otphsm.toml", raw), softhsm)
    try:
        yield server, server.wait_serving(), pki
    finally:
        server.stop()


@pytest.mark.softhsm
def test_serve_logs_json_serves_and_stops_gracefully_on_sigterm(
    serve_process: tuple[ServerProcess, int, DevPki],
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
    assert rpc["code"] == "NOT_FOUND" and rpc["request"] == {"serial": "MOB-0000000001"}
    assert rpc["detail"] == "serial: no token with that serial"  # the value only under request
    assert rpc["caller"].startswith("CN=otphsm dev verifier") and rpc["role"] == "verifier"
    pin = request.getfixturevalue("softhsm").user_pin
    assert not any(pin in json.dumps(r) for r in records)
