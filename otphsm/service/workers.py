"""What the server processes of one `otphsm serve` (`server.processes` > 1) share: how many
there are by default (the CPUs this process may use), each one's place (`Worker`, passed in
its environment by the supervising parent) and the heartbeats through which the health answer
of any of them covers all of them.

Each process writes its heartbeat file (its pid and the time, `CLOCK_MONOTONIC`, the same for
every process of the host) at each health check once it serves; its health check then reads
every slot's file. A slot without a file (the parent removes it when the process exits) or with
an old one (a process stopped or stuck) makes the check fail: every process answers
NOT_SERVING until that slot's process is back.

The heartbeats and the metrics files live in a directory of the parent's (`shared_directory`),
named after its pid and removed when it stops; a parent killed with SIGKILL cannot remove its
own, so each new parent removes those of parents that are gone.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

WORKER_ENV = "OTPHSM_WORKER"
"""The environment variable that makes `otphsm serve` one process of a parent's set (JSON of
`Worker`); never set by hand."""
PR_SET_PDEATHSIG = 1
SHARED_PREFIX = "otphsm-serve-"
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
STALE_CHECKS = 3
"""A heartbeat older than this many health intervals (plus a second) is a process not
answering."""


def shared_directory(parent: int, base: Path | None = None) -> Path:
    """A new directory (under `base`, default the system's temporary directory) for the
    heartbeats and metrics of parent `parent`'s processes, after removing those of parents that
    are gone (`orphaned_directories`)."""
    base = Path(tempfile.gettempdir()) if base is None else base
    for orphan in orphaned_directories(base):
        shutil.rmtree(orphan, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{SHARED_PREFIX}{parent}-", dir=base))


def orphaned_directories(base: Path) -> list[Path]:
    """This user's parent directories under `base` whose parent process no longer exists."""
    found = []
    for path in base.glob(f"{SHARED_PREFIX}*"):
        pid, _, rest = path.name.removeprefix(SHARED_PREFIX).partition("-")
        if not (pid.isdigit() and rest) or path.is_symlink() or not path.is_dir():
            continue
        if path.stat().st_uid == os.getuid() and not _alive(int(pid)):
            found.append(path)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def available_cpus(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """The CPUs this process may use: its affinity mask, capped by the cgroup v2 CPU quota
    (`cpu.max`: "quota period", rounded up; "max": no quota)."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text(encoding="ascii").split()[:2]
        if quota != "max":
            cpus = min(cpus, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def process_count(processes: int, cpus: Callable[[], int] = available_cpus) -> int:
    """`server.processes` as a count: 0 is one per available CPU."""
    return processes if processes > 0 else cpus()


@dataclass(frozen=True)
class Worker:
    """One server process of a set: slot `index` of `count`, heartbeats in `directory`,
    supervised by process `parent`."""

    index: int
    count: int
    directory: Path
    parent: int

    def env_value(self) -> str:
        return json.dumps(
            {
                "index": self.index,
                "count": self.count,
                "directory": str(self.directory),
                "parent": self.parent,
            }
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Worker | None:
        raw = env.get(WORKER_ENV)
        if not raw:
            return None
        spec = json.loads(raw)
        return cls(int(spec["index"]), int(spec["count"]), Path(spec["directory"]), spec["parent"])


class ProcessNotAnswering(RuntimeError):
    """A process of the set is not running, or its heartbeat is old."""


class Heartbeats:
    """The heartbeat files of a set of `count` processes in `directory` (slot-N)."""

    def __init__(
        self,
        directory: Path,
        count: int,
        interval_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.count = count
        self.stale_after = STALE_CHECKS * interval_seconds + 1.0
        self._clock = clock

    def _slot(self, index: int) -> Path:
        return self.directory / f"slot-{index}"

    def beat(self, index: int, pid: int) -> None:
        """Slot `index` is served by `pid`, now (written whole: a reader never sees half)."""
        path = self._slot(index)
        temporary = path.with_name(f".{path.name}.{pid}")
        temporary.write_text(f"{pid} {self._clock()!r}", encoding="ascii")
        os.replace(temporary, path)

    def read(self, index: int) -> tuple[int, float] | None:
        """(pid, age in seconds) of slot `index`'s last heartbeat, None without one."""
        try:
            pid, stamp = self._slot(index).read_text(encoding="ascii").split()
        except (OSError, ValueError):
            return None
        return int(pid), self._clock() - float(stamp)

    def forget(self, index: int) -> None:
        self._slot(index).unlink(missing_ok=True)

    def check(self) -> None:
        """Returns when every slot's process beat recently; raises naming the first that did
        not (the probe of each process's health monitor)."""
        for index in range(self.count):
            beat = self.read(index)
            if beat is None:
                raise ProcessNotAnswering(f"server process {index + 1} of {self.count} is down")
            if beat[1] > self.stale_after:
                raise ProcessNotAnswering(
                    f"server process {index + 1} of {self.count} has not checked its health "
                    f"for {beat[1]:.0f} s"
                )


class WorkerHeartbeat:
    """A worker's side: the `processes` health probe, beating for its own slot once serving."""

    def __init__(self, worker: Worker, interval_seconds: float) -> None:
        self.worker = worker
        self.beats = Heartbeats(worker.directory, worker.count, interval_seconds)
        self._serving = False

    def serving(self) -> None:
        """The process listens: from now on, each check beats first."""
        self._serving = True
        self.beats.beat(self.worker.index, os.getpid())

    def probe(self) -> None:
        if self._serving:
            self.beats.beat(self.worker.index, os.getpid())
        self.beats.check()


def follow_parent(parent: int) -> None:
    """This process gets SIGTERM when its parent dies (Linux's parent-death signal), and
    stops now if the parent is gone already."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
    except (OSError, AttributeError):  # not Linux: the parent's stop is the only one
        pass
    if os.getppid() != parent:
        raise SystemExit("the supervising otphsm serve is gone")
