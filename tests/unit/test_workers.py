"""The pieces of `server.processes` that need no server: the default count (CPU affinity capped
by the cgroup quota), the heartbeats a process's health check reads (a missing or old one
fails it, naming the process), a worker's place through its environment, and the ports held
for the processes (SO_REUSEPORT for them, refused to another server); another process down
changes this one's health answer, not its own readiness (its RADIUS keeps answering)."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
from grpc_health.v1 import health, health_pb2

from otphsm.core.errors import ConfigurationError
from otphsm.service.health import HealthMonitor
from otphsm.service.metrics import Metrics
from otphsm.service.ports import reserve
from otphsm.service.workers import (
    WORKER_ENV,
    Heartbeats,
    ProcessNotAnswering,
    Worker,
    available_cpus,
    orphaned_directories,
    process_count,
    shared_directory,
)


def test_the_cgroup_quota_caps_the_cpus_and_zero_means_one_process_per_cpu(
    tmp_path: Path,
) -> None:
    affinity = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("max 100000\n")
    assert available_cpus(cpu_max) == affinity
    cpu_max.write_text("50000 100000\n")  # half a CPU: one process
    assert available_cpus(cpu_max) == 1
    cpu_max.write_text(f"{affinity * 300000} 100000\n")  # more than the affinity allows
    assert available_cpus(cpu_max) == affinity
    assert available_cpus(tmp_path / "absent") == affinity
    assert process_count(0, lambda: 3) == 3
    assert process_count(2, lambda: 3) == 2


def test_a_missing_or_old_heartbeat_fails_the_check(tmp_path: Path) -> None:
    now = [100.0]
    beats = Heartbeats(tmp_path, 2, 1.0, clock=lambda: now[0])
    beats.beat(0, 11)
    with pytest.raises(ProcessNotAnswering, match="server process 2 of 2 is down"):
        beats.check()
    beats.beat(1, 12)
    beats.check()
    assert beats.read(1) == (12, 0.0)
    now[0] += 3.5
    beats.beat(0, 11)
    beats.check()  # 3.5 s: within 3 intervals + 1 s
    now[0] += 1.0
    with pytest.raises(ProcessNotAnswering, match="server process 2 of 2 has not checked"):
        beats.check()
    beats.forget(1)
    assert beats.read(1) is None


def test_a_worker_reads_its_place_from_its_environment(tmp_path: Path) -> None:
    worker = Worker(1, 2, tmp_path, 4321)
    assert Worker.from_env({WORKER_ENV: worker.env_value()}) == worker
    assert Worker.from_env({}) is None


def test_a_held_port_is_shared_with_reuseport_and_refused_to_another_server() -> None:
    held = reserve("127.0.0.1", 0, "server.port")
    try:
        port = held.getsockname()[1]
        with socket.socket() as sibling:  # a server process of the set
            sibling.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sibling.bind(("127.0.0.1", port))
            sibling.listen()
            with pytest.raises(ConfigurationError, match=r"server\.port: the port is already"):
                reserve("127.0.0.1", port, "server.port")
        with pytest.raises(ConfigurationError, match=r"server\.port: the port is already"):
            reserve("127.0.0.1", port, "server.port")  # held, nobody listening yet
    finally:
        held.close()
    udp = reserve("127.0.0.1", 0, "radius.port", udp=True)
    try:
        with pytest.raises(ConfigurationError, match=r"radius\.port: the port is already"):
            reserve("127.0.0.1", udp.getsockname()[1], "radius.port", udp=True)
    finally:
        udp.close()


def test_another_process_down_changes_the_answer_but_not_this_process_serving() -> None:
    def sibling_down() -> None:
        raise ProcessNotAnswering("server process 2 of 2 is down")

    servicer = health.HealthServicer()
    monitor = HealthMonitor(
        servicer,
        {"store": lambda: None, "processes": sibling_down},
        services=("otphsm.v1.ValidationService",),
        interval_seconds=60,
        metrics=Metrics(),
        others=("processes",),
    )
    assert not monitor.check_now()
    answer = servicer.Check(health_pb2.HealthCheckRequest(service=""), None)
    assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert monitor.serving("otphsm.v1.ValidationService")  # RADIUS here keeps answering


def test_a_new_parent_removes_the_directories_of_parents_that_are_gone(tmp_path: Path) -> None:
    gone = _exited_pid()
    orphan = tmp_path / f"otphsm-serve-{gone}-x1y2z3"
    (orphan / "metrics").mkdir(parents=True)
    (orphan / "metrics" / "counter_1.db").write_bytes(b"\0" * 64)
    living = tmp_path / f"otphsm-serve-{os.getppid()}-a1b2c3"  # a parent still running
    living.mkdir()
    unnamed = tmp_path / "otphsm-serve-abc123"  # not a parent's directory by its name
    unnamed.mkdir()

    made = shared_directory(os.getpid(), tmp_path)

    assert not orphan.exists()
    assert living.is_dir() and unnamed.is_dir()
    assert made.is_dir() and made.name.startswith(f"otphsm-serve-{os.getpid()}-")
    # The new parent's own directory is not an orphan while it runs.
    assert orphaned_directories(tmp_path) == []


def _exited_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid
