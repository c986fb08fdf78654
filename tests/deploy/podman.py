"""The deployment test's view of podman and podman-compose: commands run with the clone's
deploy/containers.conf, their output kept for the failure message."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT = "otphsm"
"""compose.yaml's `name`: container, volume and network names start with it."""


@dataclass(frozen=True)
class Podman:
    clone: Path
    compose: Path
    """The podman-compose program (the venv's, 1.6: Debian's 1.0 ignores stop_grace_period)."""

    @property
    def env(self) -> dict[str, str]:
        conf = self.clone / "deploy" / "containers.conf"
        return {**os.environ, "CONTAINERS_CONF": str(conf), "COMPOSE": str(self.compose)}

    def run(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = 600, **env: str
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(a) for a in argv],
            cwd=self.clone,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(map(str, argv))} exited {done.returncode}:\n"
                f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
            )
        return done

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(["podman", *args], check=check)

    def compose_cmd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(
            [self.compose, "-f", self.clone / "deploy" / "compose.yaml", *args], check=check
        )

    def inspect(self, name: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(self.podman("inspect", name).stdout)
        return found[0]

    def logs(self, name: str) -> str:
        done = self.podman("logs", name)
        return done.stdout + done.stderr

    def volume_dir(self, volume: str) -> Path:
        path = self.podman("volume", "inspect", "--format", "{{.Mountpoint}}", volume)
        return Path(path.stdout.strip())

    def clean(self) -> None:
        """No container, pod or volume of an earlier run left (images stay: the cache)."""
        self.run(["bash", "deploy/kube/play.sh", "down"], check=False)
        self.compose_cmd("down", "--volumes", check=False)
        for volume in (f"{PROJECT}_state", f"{PROJECT}_pgdata"):
            self.podman("volume", "rm", "--force", volume, check=False)


def wait_for(what: str, ready: Any, timeout: float = 60.0, interval: float = 0.5) -> Any:
    """`ready()` until it returns something truthy; fails naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = ready()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(interval)
