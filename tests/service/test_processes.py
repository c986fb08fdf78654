"""`server.processes` = 2, real `otphsm serve` processes on SQLite and PostgreSQL: both server
processes take Verify calls on the one port (and listen on the HTTP and RADIUS ports); /metrics
on the parent's port sums their counters; the health answer of either covers both (a stopped or
killed process makes the other answer NOT_SERVING); a process killed with SIGKILL is restarted
and the service goes on; SIGTERM stops them all within the grace period; and another `otphsm
serve` on the gRPC or HTTP port in use is refused with the one-line error naming the key. When
the processes cannot start at all, the parent stops with their one-line error and a non-zero
code, without a restart loop. The parent's directory (heartbeats, metrics) is removed when it
stops; killed with SIGKILL, its processes stop too, and the next parent removes the directory
it left behind."""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from support.fault_support import HotpToken, add_hotp_tokens, verifier_channel
from support.service_fixtures import service_config

from otphsm.service.assembly import assemble
from otphsm.service.config import load_config
from otphsm.service.devpki import DevPki
from otphsm.simulators.deployment import (
    ServerProcess,
    ServerStartError,
    radius_section,
    start_serve,
    with_sections,
    write_config,
)
from otphsm.v1 import common_pb2, validation_pb2, validation_pb2_grpc

pytestmark = [pytest.mark.softhsm, pytest.mark.slow]

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
WAIT = 30.0


class Rig:
    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path, url: str) -> None:
        self.tmp_path = tmp_path
        self.softhsm = request.getfixturevalue("serve_softhsm")
        self.pki: DevPki = request.getfixturevalue("dev_pki")
        self.base = service_config(
            tmp_path, self.softhsm, self.pki, request.getfixturevalue("card_ca_files"), url
        )

    def serve(self, name: str, **sections: dict[str, Any]) -> ServerProcess:
        config = write_config(self.tmp_path / f"{name}.toml", with_sections(self.base, sections))
        return start_serve(config, self.softhsm)

    def channel(self, port: int) -> grpc.Channel:
        return verifier_channel(self.pki, port)


def health(rig: Rig, port: int) -> int | None:
    """The answer of a new connection (so the kernel picks a process anew); None: no answer."""
    with rig.channel(port) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
        except grpc.RpcError:
            return None
        return int(answer.status)


def wait_until(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, f"not {what} in {WAIT} s"
        time.sleep(0.1)


def children(server: ServerProcess) -> list[int]:
    path = Path(f"/proc/{server.pid}/task/{server.pid}/children")
    return [int(pid) for pid in path.read_text().split()]


def shared_directory(pid: int) -> Path:
    """The parent's directory for the server processes' heartbeats and metrics."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    found = next(e for e in environ if e.startswith(b"PROMETHEUS_MULTIPROC_DIR="))
    return Path(found.split(b"=", 1)[1].decode()).parent


def rpc_processes(server: ServerProcess) -> set[int]:
    """The processes that logged a Verify call."""
    return {r["process"] for r in server.records if r.get("msg") == "rpc" and "process" in r}


def hup_processes(server: ServerProcess) -> set[int]:
    """The server processes that logged a SIGHUP."""
    return {
        r["process"]
        for r in server.records
        if r.get("msg") == "signal received" and r.get("signal") == "SIGHUP" and "process" in r
    }


def verify(rig: Rig, port: int, token: HotpToken, counter: int) -> int:
    with rig.channel(port) as channel:
        answer = validation_pb2_grpc.ValidationServiceStub(channel).Verify(
            validation_pb2.VerifyRequest(serial=token.serial, code=token.code(counter)), timeout=10
        )
    return int(answer.result)


def verifications(metrics_port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
        if sample.name == "otphsm_verifications_total"
    )


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_two_processes_share_the_port_cover_each_other_restart_and_stop(
    request: pytest.FixtureRequest, tmp_path: Path, engine: str
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'otphsm.db'}"
        if engine == "sqlite"
        else request.getfixturevalue("postgres_store_url")
    )
    rig = Rig(request, tmp_path, url)
    assembly = assemble(load_config(write_config(tmp_path / "setup.toml", rig.base), env={}))
    try:
        tokens = add_hotp_tokens(assembly.app, 40)
    finally:
        assembly.close()
    secret = tmp_path / "radius.secret"
    secret.write_text("a RADIUS secret of the test\n")
    server = rig.serve(
        "multi",
        server={"processes": 2, "health_interval_seconds": 0.3},
        http={"enabled": True, "port": 0},
        radius=radius_section(secret),
    )
    try:
        port = server.wait_serving()
        serving = next(r for r in server.records if r.get("msg") == "serving")
        assert serving["processes"] == 2 and len(children(server)) == 2
        assert server.radius_port > 0 and serving["http_port"] > 0  # shared by both too

        # Each new connection goes to one of the two: both take calls, the parent counts all.
        answered = 0
        for token in tokens[:30]:
            assert verify(rig, port, token, 0) == common_pb2.VERIFY_RESULT_OK
            answered += 1
            if rpc_processes(server) == {1, 2}:
                break
        assert rpc_processes(server) == {1, 2}
        assert verifications(serving["metrics_port"]) == answered

        if engine == "sqlite":  # the refusals do not depend on the engine
            for key, sections in (
                ("server.port", {"server": {"port": port}}),
                ("http.port", {"http": {"enabled": True, "port": serving["http_port"]}}),
            ):
                other = rig.serve(f"other-{key}", store={"url": url + "-other"}, **sections)
                with pytest.raises(
                    ServerStartError, match=re.escape(f"{key}: the port is already in use")
                ):
                    other.wait_serving()

        # SIGHUP reaches every process (each reads its TLS and CRL files again).
        server.process.send_signal(signal.SIGHUP)
        wait_until("reloaded", lambda: hup_processes(server) == {1, 2})

        # A stopped process: the other answers NOT_SERVING, until it runs again.
        stopped, killed = children(server)
        os.kill(stopped, signal.SIGSTOP)
        try:
            wait_until("NOT_SERVING", lambda: health(rig, port) == NOT_SERVING)
        finally:
            os.kill(stopped, signal.SIGCONT)
        wait_until("SERVING", lambda: health(rig, port) == SERVING)

        # A killed process: NOT_SERVING from the other until the parent has restarted it.
        os.kill(killed, signal.SIGKILL)
        wait_until("NOT_SERVING", lambda: health(rig, port) == NOT_SERVING)
        again = "server process serving again"
        wait_until("restarted", lambda: any(r.get("msg") == again for r in server.records))
        assert killed not in children(server) and len(children(server)) == 2
        wait_until("SERVING", lambda: health(rig, port) == SERVING)
        assert all(verify(rig, port, token, 1) == common_pb2.VERIFY_RESULT_OK for token in tokens)

        # SIGTERM: every process stops within the grace period, then the parent, which
        # removes the directory of their heartbeats and metrics.
        pids = children(server)
        shared = shared_directory(pids[0])
        assert shared.is_dir()
        server.process.terminate()
        assert server.process.wait(timeout=15) == 0
        assert not shared.exists()
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        stopped_records = [r for r in server.records if r.get("msg") == "stopped"]
        assert {r.get("process") for r in stopped_records} == {1, 2, None}
    finally:
        server.stop()


def test_processes_that_cannot_start_stop_the_parent_with_their_error(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    rig = Rig(request, tmp_path, f"sqlite:///{tmp_path / 'otphsm.db'}")
    garbage = tmp_path / "garbage.pem"  # read by the server processes, not by the parent
    garbage.write_text("not a certificate\n")
    server = rig.serve("broken", server={"processes": 2, "tls_cert": str(garbage)})
    try:
        with pytest.raises(ServerStartError, match="exited with 2"):
            server.wait_serving()
        assert any("server.tls_cert" in r.get("raw", "") for r in server.records)
        assert not any(r.get("msg") == "server process exited: restarting" for r in server.records)
    finally:
        server.stop()


def test_the_processes_stop_when_their_parent_is_killed(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    rig = Rig(request, tmp_path, f"sqlite:///{tmp_path / 'otphsm.db'}")
    server = rig.serve("orphans", server={"processes": 2})
    try:
        server.wait_serving()
        pids = children(server)
        assert len(pids) == 2
        left_behind = shared_directory(pids[0])
        server.process.kill()  # no stop of its own: the kernel's parent-death signal
        server.process.wait(timeout=10)

        def gone(pid: int) -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"

        wait_until("stopped", lambda: all(gone(pid) for pid in pids))
        assert left_behind.is_dir()
    finally:
        server.stop()
    # The next parent removes the directory the killed one could not.
    again = rig.serve("orphans-again", server={"processes": 2})
    try:
        again.wait_serving()
        assert not left_behind.exists()
    finally:
        again.stop()
