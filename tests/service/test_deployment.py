"""The deployment harness (`otphsm.simulators.deployment`): its config file is what the service's
own loader reads back, a PIN makes it private, a server process's port is the one it bound
(read from its "serving" record, for `otphsm serve` and the benchmark's do-nothing server
alike), and a server started again reads only its own log records."""

from __future__ import annotations

import json
import socket
import sys
import tomllib
from pathlib import Path

import grpc
import pytest
from support.service_fixtures import service_config

from otphsm.service.config import load_config
from otphsm.service.devpki import DevPki
from otphsm.simulators.deployment import (
    CardTrust,
    ServerStartError,
    serve_config,
    start_serve,
    start_server,
    write_config,
)
from otphsm.simulators.hsm.softhsm import SoftHsm
from otphsm.store.urls import sqlite_url
from otphsm.v1 import common_pb2, validation_pb2, validation_pb2_grpc

NOOP_SERVER = Path(__file__).resolve().parents[2] / "bench" / "noop_server.py"
UNPROVISIONED = SoftHsm(Path("/nonexistent/softhsm"), "otphsm", "1234-user-pin", "5678-so-pin")
"""A SoftHSM that is never opened: only its settings go into configs and environments."""


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_the_config_file_round_trips_through_the_service_loader(
    tmp_path: Path, dev_pki: DevPki, card_ca_files: CardTrust
) -> None:
    raw = serve_config(
        UNPROVISIONED,
        dev_pki,
        card_ca_files,
        sqlite_url(tmp_path / "otphsm.db"),
        tmp_path / "outbox.jsonl",
        server={"max_workers": 7},
        policy={"issuer": "Comune di prova \u00e8"},
        ratelimit={"enabled": False},
    )
    path = write_config(tmp_path / "otphsm.toml", raw)
    assert tomllib.loads(path.read_text(encoding="utf-8")) == raw

    config = load_config(path, env={})
    assert (config.server.address, config.server.port) == ("127.0.0.1", 0)
    assert config.server.max_workers == 7  # an override keeps the section's other keys
    assert config.server.tls_cert == str(dev_pki.server_cert)
    assert config.server.log_format == "json"
    assert config.hsm.user_pin == UNPROVISIONED.user_pin
    assert config.hsm.token_label == "otphsm"
    assert config.store.url == sqlite_url(tmp_path / "otphsm.db")
    assert config.card.trusted_ca == (str(card_ca_files.ca),)
    assert config.card.crls == (str(card_ca_files.crl),)
    assert config.sms.outbox == str(tmp_path / "outbox.jsonl")
    assert config.policy.issuer == "Comune di prova \u00e8"
    assert not config.metrics.enabled and not config.ratelimit.enabled


def test_a_config_holding_a_pin_is_private_from_the_start(
    tmp_path: Path, dev_pki: DevPki, card_ca_files: CardTrust
) -> None:
    raw = serve_config(UNPROVISIONED, dev_pki, card_ca_files, "sqlite::memory:", tmp_path / "o")
    path = tmp_path / "otphsm.toml"
    path.write_text("an old file, world-readable\n")
    path.chmod(0o644)
    assert write_config(path, raw).stat().st_mode & 0o777 == 0o600

    pin_file = tmp_path / "pin"
    pin_file.write_text(UNPROVISIONED.user_pin)
    del raw["hsm"]["user_pin"]
    raw["hsm"]["user_pin_file"] = str(pin_file)
    with_pin_file = write_config(tmp_path / "pin-file.toml", raw)
    assert load_config(with_pin_file, env={}).hsm.pin() == UNPROVISIONED.user_pin


def test_the_config_writer_refuses_what_toml_cannot_hold_flat(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"server\.port"):
        write_config(tmp_path / "x.toml", {"server": {"port": None}})
    with pytest.raises(TypeError, match=r"store\.url"):
        write_config(tmp_path / "x.toml", {"store": {"url": {"nested": "table"}}})


def fake_server(port: int, *, exit_code: int | None = None) -> list[str]:
    """A program that logs a "serving" record for `port` (or exits with `exit_code`)."""
    if exit_code is not None:
        body = f"print('cannot start', file=sys.stderr); sys.exit({exit_code})"
    else:
        record = json.dumps({"msg": "serving", "port": port})
        body = f"print({record!r}, file=sys.stderr, flush=True); time.sleep(60)"
    return [sys.executable, "-c", f"import sys, time; {body}"]


def test_a_server_started_again_reads_its_own_serving_record(tmp_path: Path) -> None:
    log = tmp_path / "fake.log"
    first = start_server("fake", fake_server(4242), UNPROVISIONED, log)
    try:
        assert first.wait_serving(10) == 4242
    finally:
        first.stop()
    second = start_server("fake", fake_server(4343), UNPROVISIONED, log)
    try:
        assert second.wait_serving(10) == 4343
        assert second.target == "localhost:4343"
        assert [r["port"] for r in second.records] == [4343]
    finally:
        second.stop()
    assert second.process.returncode == -15  # SIGTERM, not SIGKILL
    assert log.read_text().count("serving") == 2  # the log file keeps both runs


def test_a_server_that_exits_at_start_is_reported_with_its_log(tmp_path: Path) -> None:
    server = start_server("broken", fake_server(0, exit_code=3), UNPROVISIONED, tmp_path / "b.log")
    with pytest.raises(ServerStartError, match=r"broken exited with 3.*cannot start"):
        server.wait_serving(10)


def test_the_do_nothing_server_binds_port_0_and_reports_the_port_it_got(
    tmp_path: Path, dev_pki: DevPki, card_ca_files: CardTrust
) -> None:
    raw = serve_config(UNPROVISIONED, dev_pki, card_ca_files, "sqlite::memory:", tmp_path / "o")
    config = write_config(tmp_path / "noop.toml", raw)
    argv = [sys.executable, str(NOOP_SERVER), "--config", str(config)]
    server = start_server("noop", argv, UNPROVISIONED, tmp_path / "noop.log")
    try:
        port = server.wait_serving()
        assert port != 0 and listening(port)
        cert, key = dev_pki.directory / "verifier.pem", dev_pki.directory / "verifier-key.pem"
        credentials = grpc.ssl_channel_credentials(
            dev_pki.ca.read_bytes(), key.read_bytes(), cert.read_bytes()
        )
        with grpc.secure_channel(server.target, credentials) as channel:
            answer = validation_pb2_grpc.ValidationServiceStub(channel).Verify(
                validation_pb2.VerifyRequest(serial="S", code="123456"), timeout=10
            )
        assert answer.result == common_pb2.VERIFY_RESULT_OK
    finally:
        server.stop()


@pytest.mark.softhsm
def test_otphsm_serve_reports_the_port_it_bound_and_ignores_the_shells_overrides(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    softhsm = request.getfixturevalue("serve_softhsm")
    raw = service_config(
        tmp_path,
        softhsm,
        request.getfixturevalue("dev_pki"),
        request.getfixturevalue("card_ca_files"),
        sqlite_url(tmp_path / "otphsm.db"),
    )
    monkeypatch.setenv("OTPHSM_HSM_PIN", "not-the-pin")  # the config file alone decides
    server = start_serve(write_config(tmp_path / "otphsm.toml", raw), softhsm)
    try:
        port = server.wait_serving()
        assert port != 0 and listening(port)
        serving = next(r for r in server.records if r.get("msg") == "serving")
        assert serving["port"] == port
        assert serving["model"] == "event-loop"  # server.model auto, on SQLite
        assert server.log == tmp_path / "otphsm.log"
    finally:
        server.stop()
    assert server.process.returncode == 0  # SIGTERM: a graceful stop
    assert [r.get("msg") for r in server.records][-1] == "stopped"
