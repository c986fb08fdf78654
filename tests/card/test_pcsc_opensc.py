"""Acceptance: OpenSC, an independent PC/SC client, takes the simulated card for a CNS card.

The tools run as subprocesses against the private pcscd (they inherit PCSCLITE_CSOCK_NAME),
with a private opensc.conf that turns the PKCS#15 file cache off and a private HOME, so a
card re-issued with the same EF_IDCarta is never served stale files (cns-card.md §3.2).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from support.card_fixtures import CARD_PIN
from support.pcsc_fixtures import InsertCard, WrappedCard
from support.requirements import require_tool

from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.card.spec import CardSpec
from otphsm.smartcard.cns_files import EF_C_CARTA

pytestmark = [pytest.mark.pcscd, pytest.mark.opensc, pytest.mark.timeout(60)]

OPENSC_PKCS11 = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"
OPENSC_CONF = """\
app default {
    debug = 0;
    framework pkcs15 {
        use_file_caching = no;
    }
}
"""


@pytest.fixture(scope="module")
def opensc_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    require_tool("opensc-tool", "opensc")
    require_tool("pkcs15-tool", "opensc")
    home = tmp_path_factory.mktemp("opensc-home")
    conf = home / "opensc.conf"
    conf.write_text(OPENSC_CONF)
    return {**os.environ, "OPENSC_CONF": str(conf), "HOME": str(home)}


def _run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, (
        f"{args[0]} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
    )
    return done.stdout


def test_opensc_tool_names_it_a_cns_card(
    insert_card: InsertCard, card_spec: CardSpec, opensc_env: dict[str, str]
) -> None:
    insert_card(CnsCard(card_spec))
    out = _run(opensc_env, "opensc-tool", "--reader", "0", "--name")
    assert out.strip().splitlines()[-1] == "CNS card"


def test_pkcs15_tool_lists_and_reads_the_certificate(
    insert_card: InsertCard, card_spec: CardSpec, opensc_env: dict[str, str]
) -> None:
    issued = x509.load_der_x509_certificate(card_spec.files[EF_C_CARTA])
    insert_card(CnsCard(card_spec))
    listing = _run(opensc_env, "pkcs15-tool", "--reader", "0", "--list-certificates")
    assert "X.509 Certificate [CNS0]" in listing
    assert "3f0011001101" in listing
    assert f"{issued.serial_number:X}" in listing.replace(" ", "").upper()
    pem = _run(opensc_env, "pkcs15-tool", "--reader", "0", "--read-certificate", "01")
    read_back = x509.load_pem_x509_certificate(pem.encode())
    assert read_back == issued
    assert read_back.public_bytes(Encoding.DER) == card_spec.files[EF_C_CARTA]


def test_pkcs11_tool_signature_verifies(
    insert_card: InsertCard, card_spec: CardSpec, opensc_env: dict[str, str], tmp_path: Path
) -> None:
    require_tool("pkcs11-tool", "opensc")
    if not os.path.exists(OPENSC_PKCS11):
        pytest.skip(f"{OPENSC_PKCS11} is missing (Debian package opensc-pkcs11)")
    card = WrappedCard(CnsCard(card_spec))
    insert_card(card)
    message = tmp_path / "message"
    message.write_bytes(b"enrolment challenge " + os.urandom(32))
    signature = tmp_path / "signature"
    _run(
        opensc_env,
        "pkcs11-tool",
        "--module",
        OPENSC_PKCS11,
        "--login",
        "--pin",
        CARD_PIN,
        "--sign",
        "--id",
        "01",
        "-m",
        "SHA256-RSA-PKCS",
        "--input-file",
        str(message),
        "--output-file",
        str(signature),
    )
    key = x509.load_der_x509_certificate(card_spec.files[EF_C_CARTA]).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(signature.read_bytes(), message.read_bytes(), padding.PKCS1v15(), hashes.SHA256())
    # OpenSC signs a CNS key with MSE B8 + PSO DECIPHER (cns-card.md §3.7); through vpcd it
    # sends the 2048-bit block as two chained APDUs (CLA 10, then CLA 00), not extended.
    pso = [apdu for apdu in card.apdus if apdu[1] == 0x2A]
    assert {apdu[2:4] for apdu in pso} == {b"\x80\x86"}
    assert [apdu[0] for apdu in pso] == [0x10] * (len(pso) - 1) + [0x00]
    assert any(apdu[:4] == bytes.fromhex("0022F1B8") for apdu in card.apdus)
