"""The API-only distribution (api/: `otphsm-api`) builds from this repository, installs alone
in a fresh virtual environment with only grpcio, protobuf, googleapis-common-protos and
grpcio-status, and gives a caller the stubs and the typed client, without the station, the
server or any device library."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.api_package import run

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


def test_the_api_wheel_installs_alone_and_gives_the_client(
    api_python: Path, tmp_path: Path
) -> None:
    installed = run(
        api_python, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"
    )
    names = {line.split("==")[0].lower() for line in installed.split()}
    assert names >= ALLOWED
    # nothing else came along (typing_extensions: grpcio's own dependency)
    assert names - ALLOWED - {"pip", "setuptools", "wheel", "typing_extensions"} == set()
    assert run(api_python, "-c", CHECK, cwd=tmp_path).split() == ["no", "station", "123456"]
