"""The container deployment of deploy/, for real (issue 16): the images built from a clean
clone of this repository, the compose deployment (PostgreSQL, the dev PKI and SoftHSM2 jobs,
two `otphsm serve` replicas), a token enrolled through a replica with the simulated card in
the host's private pcscd, codes verified on both replicas, one replica stopped by the
runtime's own stop, then otphsm.yaml's Pod spec with one replica under `podman kube play`.

Not run by `make test` (tests/conftest.py deselects it unless `-m` names it): `make
test-deploy`. It needs root, podman, debootstrap and runc (`make deploy-tools`); the local
base image (localhost/debian:bookworm) and podman's layer cache are kept between runs, the
otphsm images are built from the clone every run. The clone is of HEAD: commit first.
Podman 4.3 runs no probe on a schedule (no systemd here): the health check and the probes'
commands are run by hand (`podman healthcheck run`, `podman exec`); preStop is not
exercised (see deploy/README.md).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.card_fixtures import CARD_PIN, CARD_PUK, MARIO_ROSSI
from support.cli_support import APP_PIN, Run, run_cli
from support.pcsc_fixtures import InsertCard
from support.private_postgres import free_port

from otphsm.client import Client, ClientConfig
from otphsm.core.clock import ManualClock
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.card.factory import issue_card
from otphsm.simulators.card.pki import TestCa
from otphsm.simulators.token.grpc_gateway import GrpcDeviceGateway
from otphsm.simulators.token.mobile_app import AppStore, MobileApp

from .podman import PROJECT, Podman, wait_for

pytestmark = [pytest.mark.deploy, pytest.mark.pcscd, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
GRACE_PERIOD = 30.0
"""compose.yaml's stop_grace_period."""
GRACE_SECONDS = 10.0
"""deploy/config/server.toml's server.grace_seconds."""
STEP = 30
ACTIVATION = re.compile(r"Activation code: (\d{6}-\d{6}-\d{6})")
IMAGE = "localhost/otphsm:latest"
DEV_IMAGE = "localhost/otphsm-dev:latest"


def require_podman() -> None:
    if os.geteuid() != 0:
        pytest.skip("rootful podman: the deployment test runs as root")
    for tool in ("podman", "debootstrap", "runc", "git"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed: make deploy-tools")
    if not (REPO / ".venv" / "bin" / "podman-compose").exists():
        pytest.skip("podman-compose is not in .venv: make deploy-tools")


@dataclass
class Built:
    podman: Podman
    seconds: float


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """The images, built by `make image` in a clean clone of this repository's HEAD."""
    require_podman()
    clone = tmp_path_factory.mktemp("clone") / "otphsm"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    podman = Podman(clone, REPO / ".venv" / "bin" / "podman-compose")
    podman.clean()
    started = time.monotonic()
    podman.run(["make", "--no-print-directory", "image"], timeout=900)
    yield Built(podman, time.monotonic() - started)
    podman.clean()


def test_the_image_has_the_server_and_nothing_more(built: Built) -> None:
    podman = built.podman
    image = podman.inspect(IMAGE)
    assert image["Config"]["User"] == "otphsm"
    assert image["Config"]["StopSignal"] in ("SIGTERM", "15")
    assert image["Healthcheck"]["Test"][:3] == ["CMD", "otphsm", "health"]  # --format docker
    absent = (
        "import importlib.util as u, shutil, sys; "
        "found = [m for m in ('smartcard', 'pytest', 'hypothesis', 'mypy', 'pkcs11', 'psycopg') "
        "if u.find_spec(m)] + [c for c in ('gcc', 'cc', 'softhsm2-util') if shutil.which(c)]; "
        "print(' '.join(found))"
    )
    found = podman.podman("run", "--rm", IMAGE, "python3", "-c", absent).stdout.split()
    assert found == ["pkcs11", "psycopg"]  # the server's drivers; no pyscard, compiler, tests
    dev = podman.podman("run", "--rm", DEV_IMAGE, "sh", "-c", "command -v softhsm2-util")
    assert dev.stdout.strip() == "/usr/bin/softhsm2-util"
    print(f"\nmake image (clean clone): {built.seconds:.0f} s")


@dataclass
class Replica:
    name: str
    port: int


class Deployment:
    def __init__(self, podman: Podman, replicas: list[Replica]) -> None:
        self.podman = podman
        self.replicas = replicas
        self.state = podman.volume_dir(f"{PROJECT}_state")
        self.pki = self.state / "pki"

    def client(self, port: int, role: str) -> Client:
        return Client(
            ClientConfig(
                server=f"localhost:{port}",
                ca=self.pki / "ca.pem",
                cert=self.pki / f"{role}.pem",
                key=self.pki / f"{role}-key.pem",
            )
        )

    def cli(self, port: int) -> list[str]:
        return ["--pki", str(self.pki), "--server", f"localhost:{port}"]

    def serving(self, port: int) -> bool:
        done = subprocess.run(
            [str(REPO / ".venv/bin/otphsm"), "health", *self.cli(port)],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.returncode == 0


@pytest.fixture(scope="module")
def deployment(built: Built) -> Deployment:
    podman = built.podman
    replicas = [Replica("otphsm-1", free_port()), Replica("otphsm-2", free_port())]
    podman.run(
        ["bash", "deploy/compose-up.sh"],
        OTPHSM_PORT_1=str(replicas[0].port),
        OTPHSM_PORT_2=str(replicas[1].port),
    )
    running = Deployment(podman, replicas)
    for replica in replicas:
        wait_for(f"{replica.name} SERVING", lambda r=replica: running.serving(r.port))
    return running


def verify(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    deployment: Deployment,
    port: int,
    serial: str,
    code: str,
) -> str:
    argv = ["verify", "--serial", serial, "--code", code, "--json", *deployment.cli(port)]
    run = run_cli(capsys, monkeypatch, argv)
    result: str = json.loads(run.out)["result"]
    return result


def code_at(app: MobileApp, clock: ManualClock, step: int) -> str:
    clock.set(step * STEP + 1)
    return app.code().code


def test_replicas_share_the_token_and_stop_gracefully_and_the_pod_spec_serves(
    deployment: Deployment,
    insert_card: InsertCard,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    podman = deployment.podman
    first, second = deployment.replicas
    monkeypatch.chdir(tmp_path)  # the station writes activation-SERIAL.png here

    # the image's HEALTHCHECK (otphsm health with a client certificate), run by hand
    for replica in deployment.replicas:
        assert podman.podman("healthcheck", "run", replica.name).returncode == 0

    # a card of the compose deployment's test CA, enrolled through replica 1
    now = dt.datetime.now(dt.UTC)
    ca = TestCa.load(deployment.state / "card-ca")
    spec = issue_card(ca, MARIO_ROSSI, CARD_PIN, CARD_PUK, key_size=1024, now=now)
    insert_card(CnsCard(spec))
    enrol = ["enrol", "new", "--pin-from-stdin", "--timeout", "5", *deployment.cli(first.port)]
    run: Run = run_cli(capsys, monkeypatch, enrol, [CARD_PIN])
    assert run.code == 0, run.err
    activation = ACTIVATION.search(" ".join(run.out.split()))
    assert activation, run.out
    # The activation proves possession with the previous step's code (inside the window), so
    # the codes below are this step's, the next one's and (after a wait) the one after.
    if STEP - time.time() % STEP < 5:
        time.sleep(STEP - time.time() % STEP)
    step = int(time.time()) // STEP
    clock = ManualClock((step - 1) * STEP + 1)
    app = MobileApp(clock, AppStore(tmp_path / "phone.json"))
    with deployment.client(first.port, "device") as device:
        assert app.activate_with_code(
            GrpcDeviceGateway(device), activation.group(1), new_pin=APP_PIN
        ).proof.ok
    serial = app.find().serial

    # a code accepted by one replica is a replay on the other: one database
    code = code_at(app, clock, step)
    assert verify(capsys, monkeypatch, deployment, first.port, serial, code) == "ok"
    assert verify(capsys, monkeypatch, deployment, second.port, serial, code) == "replayed"

    # the runtime's own stop of replica 2: SIGTERM, then stop_grace_period before a SIGKILL
    started = time.monotonic()
    podman.compose_cmd("stop", second.name)
    stopped_in = time.monotonic() - started
    state = podman.inspect(second.name)["State"]
    log = podman.logs(second.name)
    assert state["ExitCode"] == 0, (state, log[-2000:])  # 137: SIGKILLed
    assert stopped_in < GRACE_PERIOD, stopped_in
    assert '"signal": "SIGTERM"' in log and '"msg": "stopped"' in log, log[-2000:]
    assert f'"grace_seconds": {GRACE_SECONDS}' in log

    # replica 1 still answers and verifies (the next step's code: inside the window)
    assert deployment.serving(first.port)
    next_code = code_at(app, clock, step + 1)
    assert verify(capsys, monkeypatch, deployment, first.port, serial, next_code) == "ok"

    # otphsm.yaml's Pod spec, one replica: a new process opens the token replica 2 left
    pod_port = free_port()
    podman.run(["bash", "deploy/kube/play.sh", "up", str(pod_port)])
    pod = "otphsm-pod-0-otphsm"
    wait_for("the pod SERVING", lambda: deployment.serving(pod_port))
    # its probes' commands, run by hand: podman 4.3 schedules neither
    assert podman.podman("healthcheck", "run", pod).returncode == 0  # the liveness probe
    readiness = ["otphsm", "health", "--config", "/etc/otphsm/config/health.toml"]
    assert podman.podman("exec", pod, *readiness).stdout.strip() == "server: SERVING"
    wait_for("the next TOTP step", lambda: int(time.time()) // STEP > step, timeout=STEP + 5)
    pod_code = code_at(app, clock, step + 2)
    assert verify(capsys, monkeypatch, deployment, pod_port, serial, pod_code) == "ok"
    podman.run(["bash", "deploy/kube/play.sh", "down"])
