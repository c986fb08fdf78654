"""`otphsm admin import-pskc` and `otphsm enrol assign-fob` through the real server: a vendor's
file round-trips into fobs whose codes verify; a refused file imports nothing and says why."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.card_fixtures import CARD_PIN
from support.cli_support import CF, client, connection_args, run_cli
from support.pcsc_fixtures import InsertCard
from support.service_fixtures import ServiceUnderTest

from otphsm.client import Client, ServiceRefused
from otphsm.core.tokens import OtpMode, OtpParameters
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.token.keyfob import KeyFob
from otphsm.simulators.token.pskc_factory import BatchSpec, make_batch_file
from otphsm.v1 import admin_pb2, admin_pb2_grpc, common_pb2, validation_pb2, validation_pb2_grpc

pytestmark = [pytest.mark.softhsm, pytest.mark.timeout(120)]

PSK = bytes(range(16))
PASSWORD = "vendor-password"
HOTP = OtpParameters(mode=OtpMode.HOTP)


@pytest.fixture
def operator(service: ServiceUnderTest) -> Iterator[Client]:
    each = client(service, "admin")
    yield each
    each.close()


def batch(
    tmp_path: Path, *, psk: bytes | None = PSK, password: str | None = None
) -> tuple[Path, list[KeyFob]]:
    path = tmp_path / "fobs.pskc"
    fobs = make_batch_file(
        path, BatchSpec(3, 4321, HOTP), psk=psk, password=password, pbkdf2_iterations=2_000
    )
    return path, fobs


def imported(operator: Client, serial: str) -> bool:
    stub = admin_pb2_grpc.AdminServiceStub(operator.channel)
    try:
        operator.call(stub.GetToken, admin_pb2.TokenRequest(serial=serial))
    except ServiceRefused as refused:
        assert refused.code == "NOT_FOUND"
        return False
    return True


def import_args(service: ServiceUnderTest, path: Path, *key: str) -> list[str]:
    return ["admin", "import-pskc", str(path), *key, *connection_args(service)]


def flip_value_mac(document: bytes) -> bytes:
    match = list(re.finditer(rb"(<pskc:ValueMAC>\s*)([^<\s]+)", document))[1]
    raw = bytearray(base64.b64decode(match.group(2)))
    raw[3] ^= 0x01
    return document[: match.start(2)] + base64.b64encode(raw) + document[match.end(2) :]


Tamper = Callable[[bytes], bytes]


@pytest.mark.parametrize(
    ("tamper", "key", "reason"),
    [
        pytest.param(flip_value_mac, ["--psk", PSK.hex()], "(bad_mac)", id="bad-mac"),
        pytest.param(lambda d: d, ["--psk", "00" * 16], "(wrong_key)", id="wrong-key"),
        pytest.param(
            lambda d: d[: len(d) // 2], ["--psk", PSK.hex()], "(malformed)", id="malformed-xml"
        ),
    ],
)
def test_a_refused_pskc_file_imports_nothing_and_says_why(
    service: ServiceUnderTest,
    operator: Client,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tamper: Tamper,
    key: list[str],
    reason: str,
) -> None:
    path, fobs = batch(tmp_path)
    path.write_bytes(tamper(path.read_bytes()))
    run = run_cli(capsys, monkeypatch, import_args(service, path, *key))
    assert run.code == 2, run.err
    assert reason in run.err and len(run.err.strip().splitlines()) == 1, run.err
    assert not any(imported(operator, fob.serial) for fob in fobs)


def test_import_then_assign_by_card_then_the_fob_logs_in(
    service: ServiceUnderTest,
    operator: Client,
    cns_card_1024: CnsCard,
    insert_card: InsertCard,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, fobs = batch(tmp_path, psk=None, password=PASSWORD)
    run = run_cli(
        capsys,
        monkeypatch,
        [*import_args(service, path, "--password", "-"), "--pin-from-stdin"],
        [PASSWORD],
    )
    assert run.code == 0, run.err
    assert "Imported 3 key fob(s)" in run.out
    assert all(fob.serial in run.out for fob in fobs) and "HOTP SHA1" in run.out
    again = run_cli(capsys, monkeypatch, import_args(service, path, "--password", PASSWORD))
    assert again.code == 4 and "already imported" in again.err

    fob = fobs[1]
    insert_card(cns_card_1024)
    assigned = run_cli(
        capsys,
        monkeypatch,
        [
            "enrol",
            "assign-fob",
            fob.serial,
            "--code",
            fob.press(),
            "--pin-from-stdin",
            "--timeout",
            "5",
            *connection_args(service),
        ],
        [CARD_PIN],
    )
    assert assigned.code == 0, assigned.err
    out = " ".join(assigned.out.split())
    assert f"Key fob {fob.serial} assigned to {CF}" in out
    assert "First code accepted: the fob is active" in out
    verifier = client(service, "verifier")
    try:
        stub = validation_pb2_grpc.ValidationServiceStub(verifier.channel)
        request = validation_pb2.VerifyRequest(codice_fiscale=CF, code=fob.press())
        login = verifier.call(stub.Verify, request)
    finally:
        verifier.close()
    assert (login.result, login.serial) == (common_pb2.VERIFY_RESULT_OK, fob.serial)


def test_a_wrong_first_code_leaves_the_fob_assigned_but_pending(
    service: ServiceUnderTest,
    operator: Client,
    cns_card_1024: CnsCard,
    insert_card: InsertCard,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, fobs = batch(tmp_path)
    assert run_cli(capsys, monkeypatch, import_args(service, path, "--psk", PSK.hex())).code == 0
    fob = fobs[0]
    right = fob.press()
    wrong = "000000" if right != "000000" else "111111"
    insert_card(cns_card_1024)
    base = [
        "enrol",
        "assign-fob",
        fob.serial,
        "--pin-from-stdin",
        "--timeout",
        "5",
        *connection_args(service),
    ]
    malformed = run_cli(capsys, monkeypatch, [*base, "--code", "12ab56"], [CARD_PIN])
    assert malformed.code == 2 and "6 digits" in malformed.err
    assigned = run_cli(capsys, monkeypatch, [*base, "--code", wrong], [CARD_PIN])
    assert assigned.code == 1
    out = " ".join(assigned.out.split())
    assert "not accepted (wrong_code)" in out and "the fob is pending" in out
    stub = admin_pb2_grpc.AdminServiceStub(operator.channel)
    token = operator.call(stub.GetToken, admin_pb2.TokenRequest(serial=fob.serial)).token
    assert (token.codice_fiscale, token.state) == (CF, common_pb2.TOKEN_STATE_PENDING)
