"""A test PKI shaped like the CNS one: a self-signed "CA Cittadini (TEST)" root, its CRL, and
CNS authentication certificates for simulated cards.

The names say TEST everywhere so nothing minted here can be mistaken for a real CNS issuer.
Every time is injected; nothing here reads the clock. `CertProfile` bends the issued
certificate out of the CNS profile so tests can exercise each rejection reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID, ObjectIdentifier

from otphsm.core.cns_identity import format_common_name, personal_data_digest
from otphsm.core.cns_profile import (
    CLIENT_AUTH,
    CNS_AUTHENTICATION_POLICY,
    CNS_AUTHENTICATION_POLICY_NOTICE,
    MS_SMARTCARD_LOGON,
)

TEST_ORGANIZATION = "otphsm test"
DEFAULT_ADMINISTRATION = "Amministrazione di prova otphsm (TEST)"
CA_KEY_SIZE = 2048
CA_LIFETIME = timedelta(days=20 * 365)
CNS_CERTIFICATE_LIFETIME = timedelta(days=6 * 365 + 1)
DEFAULT_CRL_LIFETIME = timedelta(days=7)

CNS_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=True,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)
"""digitalSignature + keyEncipherment, critical; nonRepudiation must stay off on a CNS."""

CNS_EXTENDED_KEY_USAGE: tuple[ObjectIdentifier, ...] = (CLIENT_AUTH, MS_SMARTCARD_LOGON)
"""clientAuth, plus MS smartcard logon as many real cards; no emailProtection (it makes
OpenSC give the key a decrypt usage)."""

_CA_KEY_FILE = "ca-key.pem"
_CA_CERTIFICATE_FILE = "ca-cert.pem"
_STATE_FILE = "ca-state.json"


@dataclass
class TestCa:
    """A certification authority for tests: its key, its certificate and what it revoked."""

    __test__ = False  # not a pytest test class despite the name

    key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    revoked: dict[int, datetime] = field(default_factory=dict)
    """Certificate serial number → revocation time."""
    crl_lifetime: timedelta = DEFAULT_CRL_LIFETIME
    next_crl_number: int = 1

    @property
    def name(self) -> x509.Name:
        return self.certificate.subject

    def revoke(self, serial: int, when: datetime) -> None:
        self.revoked[serial] = _utc(when)

    def crl(
        self, now: datetime, *, next_update: datetime | None = None
    ) -> x509.CertificateRevocationList:
        """A CRL issued at `now`, valid until `next_update` (default `now + crl_lifetime`)."""
        issued_at = _utc(now)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.name)
            .last_update(issued_at)
            .next_update(_utc(next_update) if next_update else issued_at + self.crl_lifetime)
            .add_extension(x509.CRLNumber(self.next_crl_number), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        self.next_crl_number += 1
        for serial, revoked_at in sorted(self.revoked.items()):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(revoked_at)
                .build()
            )
        return builder.sign(self.key, hashes.SHA256())

    def save(self, directory: Path) -> None:
        """Write key, certificate and revocation state as PEM and JSON (the key unencrypted:
        this is test material)."""
        directory.mkdir(parents=True, exist_ok=True)
        key_pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        (directory / _CA_KEY_FILE).write_bytes(key_pem)
        (directory / _CA_KEY_FILE).chmod(0o600)
        (directory / _CA_CERTIFICATE_FILE).write_bytes(
            self.certificate.public_bytes(serialization.Encoding.PEM)
        )
        state = {
            "revoked": {str(serial): when.isoformat() for serial, when in self.revoked.items()},
            "crl_lifetime_seconds": self.crl_lifetime.total_seconds(),
            "next_crl_number": self.next_crl_number,
        }
        (directory / _STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    @staticmethod
    def certificate_file(directory: Path) -> Path:
        """Where `save` writes the certificate."""
        return directory / _CA_CERTIFICATE_FILE

    @classmethod
    def load(cls, directory: Path) -> TestCa:
        key = serialization.load_pem_private_key(
            (directory / _CA_KEY_FILE).read_bytes(), password=None
        )
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{directory / _CA_KEY_FILE} does not hold an RSA key")
        certificate = x509.load_pem_x509_certificate(
            (directory / _CA_CERTIFICATE_FILE).read_bytes()
        )
        state = json.loads((directory / _STATE_FILE).read_text())
        return cls(
            key=key,
            certificate=certificate,
            revoked={
                int(serial): datetime.fromisoformat(when)
                for serial, when in state["revoked"].items()
            },
            crl_lifetime=timedelta(seconds=state["crl_lifetime_seconds"]),
            next_crl_number=int(state["next_crl_number"]),
        )


def make_test_ca(
    common_name: str = "CA Cittadini (TEST)",
    *,
    now: datetime,
    key: rsa.RSAPrivateKey | None = None,
    lifetime: timedelta = CA_LIFETIME,
) -> TestCa:
    """A self-signed root like the real "CA Cittadini" ones: CA:TRUE pathlen:0, keyCertSign +
    cRLSign, both critical. Pass `key` to reuse a pre-generated one (tests save keygen time)."""
    ca_key = key if key is not None else rsa.generate_private_key(65537, CA_KEY_SIZE)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "IT"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, TEST_ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    not_before = _utc(now)
    public_key = ca_key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return TestCa(key=ca_key, certificate=certificate)


@dataclass(frozen=True)
class CertProfile:
    """How an issued certificate departs from the CNS profile. The defaults give a conformant
    certificate; `None` on an extension field leaves that extension out."""

    key_usage: x509.KeyUsage | None = CNS_KEY_USAGE
    key_usage_critical: bool = True
    extended_key_usage: tuple[ObjectIdentifier, ...] | None = CNS_EXTENDED_KEY_USAGE
    policies: tuple[ObjectIdentifier, ...] | None = (CNS_AUTHENTICATION_POLICY,)
    not_before: datetime | None = None
    """Default: the `now` given to `issue_cns_certificate`."""
    not_after: datetime | None = None
    """Default: six years after `not_before`."""
    common_name: str | None = None
    """Replaces the whole `CF/CARDID.digest` common name."""
    signer: TestCa | None = None
    """Another CA that signs and is named as issuer."""
    signing_key: rsa.RSAPrivateKey | None = None
    """Signs with this key while still naming the CA as issuer (a forged certificate)."""
    serial_number: int | None = None
    crl_distribution_point: str | None = None


DEFAULT_PROFILE = CertProfile()


def issue_cns_certificate(
    ca: TestCa,
    *,
    public_key: rsa.RSAPublicKey,
    codice_fiscale: str,
    card_id: str,
    given_name: str,
    surname: str,
    dati_personali: bytes,
    now: datetime,
    profile: CertProfile | None = None,
    administration: str = DEFAULT_ADMINISTRATION,
) -> x509.Certificate:
    """A CNS authentication certificate for the holder of `public_key` (cns-card.md §4)."""
    shape = profile if profile is not None else DEFAULT_PROFILE
    issuer = shape.signer if shape.signer is not None else ca
    signing_key = shape.signing_key if shape.signing_key is not None else issuer.key
    common_name = (
        shape.common_name
        if shape.common_name is not None
        else format_common_name(codice_fiscale, card_id, personal_data_digest(dati_personali))
    )
    not_before = _utc(shape.not_before if shape.not_before is not None else now)
    not_after = (
        _utc(shape.not_after)
        if shape.not_after is not None
        else not_before + CNS_CERTIFICATE_LIFETIME
    )
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "IT"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, administration),
            x509.NameAttribute(NameOID.SURNAME, surname),
            x509.NameAttribute(NameOID.GIVEN_NAME, given_name),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.name)
        .public_key(public_key)
        .serial_number(
            shape.serial_number if shape.serial_number is not None else x509.random_serial_number()
        )
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    if shape.key_usage is not None:
        builder = builder.add_extension(shape.key_usage, critical=shape.key_usage_critical)
    if shape.extended_key_usage is not None:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(list(shape.extended_key_usage)), critical=False
        )
    if shape.policies is not None:
        builder = builder.add_extension(
            x509.CertificatePolicies([_policy_information(oid) for oid in shape.policies]),
            critical=False,
        )
    if shape.crl_distribution_point is not None:
        builder = builder.add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        full_name=[x509.UniformResourceIdentifier(shape.crl_distribution_point)],
                        relative_name=None,
                        reasons=None,
                        crl_issuer=None,
                    )
                ]
            ),
            critical=False,
        )
    return builder.sign(signing_key, hashes.SHA256())


def _policy_information(oid: ObjectIdentifier) -> x509.PolicyInformation:
    if oid != CNS_AUTHENTICATION_POLICY:
        return x509.PolicyInformation(oid, None)
    notice = x509.UserNotice(notice_reference=None, explicit_text=CNS_AUTHENTICATION_POLICY_NOTICE)
    return x509.PolicyInformation(oid, [notice])


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"a timezone-aware datetime is needed, got {moment!r}")
    return moment.astimezone(UTC)
