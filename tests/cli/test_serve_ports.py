"""`otphsm serve` when a port it needs is taken: one line naming the key to change, exit 2, no
traceback, for the gRPC port (`server.port`) and the metrics port (`metrics.port`, the case of
a second server on one host with the default 9464); `metrics.port = 0` picks a free port and
the start-up line says which."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.service_fixtures import service_config

from otphsm.simulators.deployment import ServerProcess, start_serve, write_config
from otphsm.store.urls import sqlite_url

pytestmark = pytest.mark.softhsm


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another process listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def serve(request: pytest.FixtureRequest, tmp_path: Path, **ports: int) -> ServerProcess:
    softhsm = request.getfixturevalue("serve_softhsm")
    raw = service_config(
        tmp_path,
        softhsm,
        request.getfixturevalue("dev_pki"),
        request.getfixturevalue("card_ca_files"),
        sqlite_url(tmp_path / "serve.db"),
    )
    raw["server"]["address"] = "127.0.0.1"
    raw["server"]["port"] = ports.get("grpc", 0)
    raw["metrics"] = {"enabled": True, "address": "127.0.0.1", "port": ports.get("metrics", 0)}
    raw["http"] = {"enabled": "http" in ports, "address": "127.0.0.1", "port": ports.get("http", 0)}
    return start_serve(write_config(tmp_path / "otphsm.toml", raw), softhsm)


def assert_refused_naming(server: ServerProcess, key: str) -> None:
    assert server.process.wait(60) == 2
    output = server.log.read_text()
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("otphsm: error: ")]
    assert len(errors) == 1, output
    assert errors[0].startswith(f"otphsm: error: {key}: the port is already in use"), output
    assert f"[{key.split('.', maxsplit=1)[0]}] port" in errors[0]


def test_a_grpc_port_in_use_names_server_port(
    request: pytest.FixtureRequest, tmp_path: Path, taken_port: int
) -> None:
    assert_refused_naming(serve(request, tmp_path, grpc=taken_port), "server.port")


def test_a_metrics_port_in_use_names_metrics_port(
    request: pytest.FixtureRequest, tmp_path: Path, taken_port: int
) -> None:
    assert_refused_naming(serve(request, tmp_path, metrics=taken_port), "metrics.port")


def test_an_http_port_in_use_names_http_port(
    request: pytest.FixtureRequest, tmp_path: Path, taken_port: int
) -> None:
    assert_refused_naming(serve(request, tmp_path, http=taken_port), "http.port")


def test_metrics_port_zero_picks_a_free_port_shown_at_start_up(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server = serve(request, tmp_path, metrics=0)
    try:
        server.wait_serving()
        serving = next(r for r in server.records if r.get("msg") == "serving")
        port = int(serving["metrics_port"])
        assert port > 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            assert b"otphsm_component_up" in answer.read()
    finally:
        server.stop()
