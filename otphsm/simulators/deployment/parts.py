"""The deployment's static parts: a provisioned SoftHSM2 token and the test card authority's
files (the development PKI is `otphsm.service.devpki.write_dev_pki`)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from otphsm.simulators.card.pki import TestCa, make_test_ca
from otphsm.simulators.deployment.config import CardTrust
from otphsm.simulators.hsm.softhsm import SoftHsm, create_softhsm, provision_softhsm

CA_FILE = "cns-ca.pem"
CRL_FILE = "cns-ca.crl.pem"


def provisioned_softhsm(directory: Path, token_labels: tuple[str, ...] = ("otphsm",)) -> SoftHsm:
    """A private SoftHSM2 with the named tokens, this process pointed at it (before its first
    PKCS#11 call), the first token provisioned like `otphsm sim hsm init` (KEK, pepper key)."""
    softhsm = create_softhsm(directory, token_labels)
    softhsm.activate()
    provision_softhsm(softhsm)
    return softhsm


def card_ca(now: dt.datetime) -> TestCa:
    """A test "CA Cittadini" valid from a day before `now`."""
    return make_test_ca(now=now - dt.timedelta(days=1))


def write_card_trust(ca: TestCa, directory: Path, now: dt.datetime) -> CardTrust:
    """`ca`'s certificate and a CRL issued at `now`, as the service's trusted card authority."""
    directory.mkdir(parents=True, exist_ok=True)
    trust = CardTrust(directory / CA_FILE, directory / CRL_FILE)
    trust.ca.write_bytes(ca.certificate.public_bytes(serialization.Encoding.PEM))
    trust.crl.write_bytes(ca.crl(now=now).public_bytes(serialization.Encoding.PEM))
    return trust
