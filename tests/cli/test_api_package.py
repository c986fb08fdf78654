"""The API-only distribution (api/: `otphsm-api`) builds from this repository, installs alone
in a fresh virtual environment with only grpcio, protobuf, googleapis-common-protos and
grpcio-status, and gives a caller the stubs and the typed client, without the station, the
server or any device library."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ALLOWED = {"otphsm-api", "grpcio", "protobuf", "googleapis-common-protos", "grpcio-status"}

pytestmark = pytest.mark.slow

CHECK = """
import sys
from otphsm.client import Client, Verifier, Operator, ServiceRefused, client_config
from otphsm.v1 import validation_pb2, validation_pb2_grpc, admin_pb2_grpc, oob_pb2_grpc
from otphsm.client.errors import service_error
for module in ("pkcs11", "smartcard", "psycopg", "cryptography", "otphsm.service"):
    assert module not in sys.modules, module
try:
    import otphsm.client.station
except ModuleNotFoundError:
    print("no station")
print(validation_pb2.VerifyRequest(serial="OTP-1", code="123456").code)
"""


def run(*argv: str | Path, cwd: Path = REPO) -> str:
    done = subprocess.run(
        [str(arg) for arg in argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_api_wheel_installs_alone_and_gives_the_client(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        wheels,
        "api/",
    )
    (wheel,) = wheels.glob("otphsm_api-*.whl")
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel)
    installed = run(python, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check")
    names = {line.split("==")[0].lower() for line in installed.split()}
    assert names >= ALLOWED
    # nothing else came along (typing_extensions: grpcio's own dependency)
    assert names - ALLOWED - {"pip", "setuptools", "wheel", "typing_extensions"} == set()
    assert run(python, "-c", CHECK, cwd=tmp_path).split() == ["no", "station", "123456"]
