"""`otphsm sim ca DIR`: the test card CA and a current CRL, the files named for the server's
card.trusted_ca and card.crls; run again, the same CA and a newer CRL."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from cryptography import x509

from otphsm.cli.main import main


def run_ca(directory: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    assert main(["sim", "ca", str(directory)]) == 0
    out = capsys.readouterr().out
    ca = re.search(r"\(card\.trusted_ca\): +(\S+)", out)
    crl = re.search(r"\(card\.crls\): +(\S+)", out)
    assert ca and crl, out
    return Path(ca.group(1)), Path(crl.group(1))


def test_sim_ca_writes_the_ca_and_a_current_crl_and_renews_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca_file, crl_file = run_ca(tmp_path / "card-ca", capsys)
    certificate = x509.load_pem_x509_certificate(ca_file.read_bytes())
    crl = x509.load_pem_x509_crl(crl_file.read_bytes())
    now = dt.datetime.now(dt.UTC)
    assert crl.issuer == certificate.subject
    assert crl.is_signature_valid(certificate.public_key())  # type: ignore[arg-type]
    assert crl.last_update_utc <= now < crl.next_update_utc  # type: ignore[operator]

    again_ca, again_crl = run_ca(tmp_path / "card-ca", capsys)
    assert again_ca.read_bytes() == ca_file.read_bytes()  # the same CA
    renewed = x509.load_pem_x509_crl(again_crl.read_bytes())
    assert crl_number(renewed) == crl_number(crl) + 1  # a new CRL


def crl_number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_a_card_issued_by_it_names_the_ca_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_ca(tmp_path / "card-ca", capsys)
    argv = ["sim", "card", "issue", "--out", str(tmp_path / "m.card")]
    argv += ["--ca-dir", str(tmp_path / "card-ca"), "--given-name", "Mario"]
    argv += ["--surname", "Rossi", "--birth-date", "1980-01-01", "--sex", "M"]
    assert main([*argv, "--pin", "12345", "--puk", "12345678", "--key-size", "1024"]) == 0
    out = capsys.readouterr().out
    assert f"CA certificate {tmp_path / 'card-ca' / 'ca-cert.pem'}" in out
    assert (tmp_path / "card-ca" / "ca-cert.pem").exists()
