"""`otphsm health`: the container health check and the Kubernetes exec probes. Exit 0 on
SERVING, 1 on NOT_SERVING (0 with --live: the process answers), 5 when nothing answers; any
client certificate of the server's CA will do."""

from __future__ import annotations

import pytest
from support.cli_support import Run, connection_args, run_cli
from support.private_postgres import free_port
from support.service_fixtures import ServiceUnderTest

from otphsm.simulators.hsm.faults import CKR_DEVICE_REMOVED

pytestmark = pytest.mark.softhsm


def health(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> Run:
    return run_cli(capsys, monkeypatch, ["health", *args])


def test_serving_exits_0_with_any_role_certificate(
    service: ServiceUnderTest, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = health(capsys, monkeypatch, *connection_args(service))
    assert (run.code, run.out) == (0, "server: SERVING\n")
    pki = service.pki.directory
    admin = ["--cert", str(pki / "admin.pem"), "--key", str(pki / "admin-key.pem")]
    one = ["--service", "otphsm.v1.ValidationService"]
    run = health(capsys, monkeypatch, *connection_args(service), *admin, *one)
    assert (run.code, run.out) == (0, "otphsm.v1.ValidationService: SERVING\n")


def test_not_serving_exits_1_and_0_with_live(
    service: ServiceUnderTest, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    service.faults.fail_every(1, CKR_DEVICE_REMOVED)
    try:
        service.wait_health_checks(2)
        run = health(capsys, monkeypatch, *connection_args(service))
        assert (run.code, run.out) == (1, "server: NOT_SERVING\n")
        run = health(capsys, monkeypatch, *connection_args(service), "--live")
        assert (run.code, run.out) == (0, "server: NOT_SERVING\n")
    finally:
        service.faults.clear()


def test_nothing_listening_exits_5(
    service: ServiceUnderTest, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["--pki", str(service.pki.directory), "--server", f"localhost:{free_port()}"]
    run = health(capsys, monkeypatch, *args, "--live", "--rpc-timeout", "2")
    assert run.code == 5, run.err
    assert run.out == ""
