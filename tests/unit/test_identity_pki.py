"""The test PKI: CA and certificate shapes per cns-card.md §4, CRLs, save/load."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from otphsm.core.cns_identity import parse_common_name, personal_data_digest
from otphsm.core.cns_profile import (
    CNS_AUTHENTICATION_POLICY,
    CNS_AUTHENTICATION_POLICY_NOTICE,
    LOMBARDY_CRS_POLICY,
)
from otphsm.simulators.card.pki import (
    CertProfile,
    TestCa,
    issue_cns_certificate,
    make_test_ca,
)

CA_CREATED = datetime(2024, 1, 1, tzinfo=UTC)
ISSUED = datetime(2025, 2, 1, 9, 30, tzinfo=UTC)
CF = "RSSMRA80A01L378S"
CARD_ID = "7430010024925855"
DATI_PERSONALI = b"00005F040001080101202408010120300" + b"\0" * 10


@pytest.fixture(scope="module")
def ca_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


@pytest.fixture(scope="module")
def card_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 1024)


@pytest.fixture
def ca(ca_key: rsa.RSAPrivateKey) -> TestCa:
    return make_test_ca(now=CA_CREATED, key=ca_key)


def issue(
    ca: TestCa, card_key: rsa.RSAPrivateKey, profile: CertProfile | None = None
) -> x509.Certificate:
    return issue_cns_certificate(
        ca,
        public_key=card_key.public_key(),
        codice_fiscale=CF,
        card_id=CARD_ID,
        given_name="MARIO",
        surname="ROSSI",
        dati_personali=DATI_PERSONALI,
        now=ISSUED,
        profile=profile,
    )


def test_ca_is_a_self_signed_test_root_with_pathlen_zero(ca: TestCa) -> None:
    certificate = ca.certificate
    assert certificate.subject == certificate.issuer
    assert certificate.subject.rfc4514_string() == "CN=CA Cittadini (TEST),O=otphsm test,C=IT"
    certificate.verify_directly_issued_by(certificate)
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert (constraints.value.ca, constraints.value.path_length) == (True, 0)
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    assert certificate.not_valid_before_utc == CA_CREATED


def test_end_entity_follows_the_cns_profile(ca: TestCa, card_key: rsa.RSAPrivateKey) -> None:
    certificate = issue(ca, card_key)

    certificate.verify_directly_issued_by(ca.certificate)
    subject = certificate.subject
    common_name = subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert common_name == f"{CF}/{CARD_ID}.{personal_data_digest(DATI_PERSONALI)}"
    assert parse_common_name(str(common_name)).card_id == CARD_ID
    assert subject.get_attributes_for_oid(NameOID.GIVEN_NAME)[0].value == "MARIO"
    assert subject.get_attributes_for_oid(NameOID.SURNAME)[0].value == "ROSSI"
    assert subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "IT"
    assert "TEST" in str(subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value)

    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature and usage.value.key_encipherment
    assert not usage.value.content_commitment
    purposes = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in purposes
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION not in purposes

    (policy,) = certificate.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert policy.policy_identifier == CNS_AUTHENTICATION_POLICY
    assert policy.policy_qualifiers is not None
    (notice,) = policy.policy_qualifiers
    assert isinstance(notice, x509.UserNotice)
    assert notice.explicit_text == CNS_AUTHENTICATION_POLICY_NOTICE

    assert certificate.not_valid_before_utc == ISSUED
    assert (
        timedelta(days=6 * 365) < certificate.not_valid_after_utc - ISSUED < timedelta(days=6 * 366)
    )


def test_profile_can_leave_out_extensions(ca: TestCa, card_key: rsa.RSAPrivateKey) -> None:
    certificate = issue(
        ca, card_key, CertProfile(key_usage=None, extended_key_usage=None, policies=None)
    )
    present = {type(extension.value) for extension in certificate.extensions}
    assert x509.KeyUsage not in present
    assert x509.ExtendedKeyUsage not in present
    assert x509.CertificatePolicies not in present


def test_profile_overrides_names_times_policies_and_signer(
    ca: TestCa, ca_key: rsa.RSAPrivateKey, card_key: rsa.RSAPrivateKey
) -> None:
    other_ca = make_test_ca("Altra CA (TEST)", now=CA_CREATED, key=ca_key)
    profile = CertProfile(
        common_name="not a CNS name",
        not_before=ISSUED - timedelta(days=1),
        not_after=ISSUED + timedelta(days=1),
        policies=(LOMBARDY_CRS_POLICY,),
        signer=other_ca,
        serial_number=4242,
        crl_distribution_point="http://crl.example.test/cittadini.crl",
    )
    certificate = issue(ca, card_key, profile)

    assert (
        certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "not a CNS name"
    )
    assert certificate.issuer == other_ca.name
    assert certificate.serial_number == 4242
    assert certificate.not_valid_after_utc == ISSUED + timedelta(days=1)
    (policy,) = certificate.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert policy.policy_identifier == LOMBARDY_CRS_POLICY
    (point,) = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert point.full_name == [
        x509.UniformResourceIdentifier("http://crl.example.test/cittadini.crl")
    ]


def test_crl_lists_revoked_serials_and_counts_up(ca: TestCa, card_key: rsa.RSAPrivateKey) -> None:
    certificate = issue(ca, card_key)
    first = ca.crl(ISSUED)
    ca.revoke(certificate.serial_number, ISSUED + timedelta(hours=1))
    second = ca.crl(ISSUED + timedelta(days=1), next_update=ISSUED + timedelta(days=2))

    assert first.is_signature_valid(ca.key.public_key())
    assert second.is_signature_valid(ca.key.public_key())
    assert first.get_revoked_certificate_by_serial_number(certificate.serial_number) is None
    entry = second.get_revoked_certificate_by_serial_number(certificate.serial_number)
    assert entry is not None
    assert entry.revocation_date_utc == ISSUED + timedelta(hours=1)
    assert first.next_update_utc == ISSUED + ca.crl_lifetime
    assert second.next_update_utc == ISSUED + timedelta(days=2)
    numbers = [
        crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        for crl in (first, second)
    ]
    assert numbers == [1, 2]


def test_save_and_load_round_trip(ca: TestCa, card_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    ca.revoke(77, ISSUED)
    ca.crl(ISSUED)
    ca.save(tmp_path / "ca")
    loaded = TestCa.load(tmp_path / "ca")

    assert (tmp_path / "ca" / "ca-key.pem").stat().st_mode & 0o077 == 0
    assert loaded.certificate == ca.certificate
    assert loaded.revoked == {77: ISSUED}
    assert loaded.next_crl_number == 2
    issue(loaded, card_key).verify_directly_issued_by(ca.certificate)


def test_naive_times_are_refused(ca_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make_test_ca(now=datetime(2025, 1, 1), key=ca_key)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_openssl_accepts_the_chain_for_client_auth(
    ca: TestCa, card_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    (tmp_path / "ca.pem").write_bytes(ca.certificate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "crl.pem").write_bytes(ca.crl(ISSUED).public_bytes(serialization.Encoding.PEM))
    (tmp_path / "card.pem").write_bytes(
        issue(ca, card_key).public_bytes(serialization.Encoding.PEM)
    )
    verify = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            tmp_path / "ca.pem",
            "-CRLfile",
            tmp_path / "crl.pem",
            "-crl_check",
            "-purpose",
            "sslclient",
            "-attime",
            str(int((ISSUED + timedelta(days=1)).timestamp())),
            tmp_path / "card.pem",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
