"""The private-pcscd launcher: socket activation, readiness without side effects, stop and
restart. Uses its own instance (own socket and ports) beside the session one."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from support.pcsc_fixtures import require_pcscd

from otphsm.simulators.card.pcscd import (
    PcscdError,
    PrivatePcscd,
    free_port_pair,
    listening_tcp_ports,
    pcscd_answers,
)

pytestmark = pytest.mark.timeout(30)


def test_listening_ports_come_from_proc_net_tcp() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert port in listening_tcp_ports()
        with socket.create_connection(("127.0.0.1", port)):
            pass
    assert port not in listening_tcp_ports()


def test_free_port_pair_gives_two_free_consecutive_ports() -> None:
    port = free_port_pair()
    for candidate in (port, port + 1):
        with socket.socket() as probe:
            probe.bind(("0.0.0.0", candidate))


def test_nothing_answers_on_a_dead_socket(tmp_path: Path) -> None:
    assert not pcscd_answers(tmp_path / "nothing.comm", timeout=0.2)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.bind(str(tmp_path / "silent.comm"))
        silent.listen(1)  # accepts the connection but never answers
        assert not pcscd_answers(tmp_path / "silent.comm", timeout=0.2)


def test_reader_configuration(tmp_path: Path) -> None:
    pcscd = PrivatePcscd(tmp_path, port=40000)
    assert pcscd.ports == (40000, 40001)
    assert pcscd.reader_names == ("Virtual PCD 00 00", "Virtual PCD 00 01")
    assert pcscd.env == {"PCSCLITE_CSOCK_NAME": str(tmp_path / "pcscd.comm")}


@pytest.mark.pcscd
def test_start_stop_restart(tmp_path: Path) -> None:
    require_pcscd()
    pcscd = PrivatePcscd(tmp_path / "p")
    with pcscd:
        assert pcscd.running
        assert set(pcscd.ports) <= listening_tcp_ports()
        assert pcscd_answers(pcscd.socket_path)
        conf = (pcscd.config_dir / "vpcd").read_text()
        assert f"/dev/null:{pcscd.port}" in conf and "libifdvpcd.so" in conf
        first_pid = pcscd.pid
        pcscd.restart()
        assert pcscd.pid != first_pid and pcscd_answers(pcscd.socket_path)
        assert set(pcscd.ports) <= listening_tcp_ports()
    assert not pcscd.running
    assert not set(pcscd.ports) & listening_tcp_ports()
    assert not pcscd.socket_path.exists()
    assert not pcscd_answers(pcscd.socket_path)
    pcscd.stop()  # idempotent


@pytest.mark.pcscd
def test_a_busy_port_is_refused(tmp_path: Path) -> None:
    require_pcscd()
    with socket.create_server(("0.0.0.0", 0)) as busy:
        port = busy.getsockname()[1]
        with pytest.raises(PcscdError, match="already in use"):
            PrivatePcscd(tmp_path, port=port).start()


@pytest.mark.pcscd
def test_readers_that_never_appear_are_reported(tmp_path: Path) -> None:
    require_pcscd()
    broken = PrivatePcscd(tmp_path, driver=os.devnull)  # pcscd runs, the driver never loads
    with pytest.raises(PcscdError, match="not listening"):
        broken.start(timeout=0.5)
    assert not broken.running


def test_a_daemon_that_exits_at_start_is_reported(tmp_path: Path) -> None:
    broken = PrivatePcscd(tmp_path, pcscd="/bin/false", driver=os.devnull)
    with pytest.raises(PcscdError, match="exited at start-up"):
        broken.start(timeout=2)
