"""A development PKI for the gRPC service: a CA, a server certificate for localhost and one
client certificate per role, as PEM files.

The caller's role is carried by its client certificate as a URI subject alternative name,
`urn:otphsm:role:<role>` (see `otphsm.service.auth`). Keys are P-256 and written unencrypted
with mode 0600: this is development material, never for production.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from otphsm.core.app.context import Role
from otphsm.service.auth import role_uri

CA_FILE = "ca.pem"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server-key.pem"
DEV_ORGANISATION = "otphsm development (NOT FOR PRODUCTION)"
LIFETIME = timedelta(days=825)


@dataclass(frozen=True)
class DevPki:
    """Where `write_dev_pki` put each file."""

    directory: Path
    ca: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    clients: dict[Role, tuple[Path, Path]]
    """Role → (certificate, key)."""


def client_files(directory: Path, name: str) -> tuple[Path, Path]:
    return directory / f"{name}.pem", directory / f"{name}-key.pem"


def write_dev_pki(
    directory: Path,
    *,
    now: datetime | None = None,
    extra_clients: dict[str, tuple[Role, ...]] | None = None,
) -> DevPki:
    """Write the CA, the server pair and one client pair per role (plus `extra_clients`:
    file name → roles, e.g. a certificate with no role for tests) into `directory`."""
    moment = now or datetime.now(UTC)
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("otphsm development CA")
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), moment)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_cert(directory / CA_FILE, ca_cert)
    _write_key(directory / "ca-key.pem", ca_key)

    issue_server_certificate(
        directory / SERVER_CERT_FILE, directory / SERVER_KEY_FILE, ca_cert, ca_key, moment
    )

    wanted: dict[str, tuple[Role, ...]] = {role.value: (role,) for role in Role}
    wanted.update(extra_clients or {})
    clients: dict[Role, tuple[Path, Path]] = {}
    for name, roles in wanted.items():
        cert_path, key_path = client_files(directory, name)
        issue_client_certificate(cert_path, key_path, name, roles, ca_cert, ca_key, moment)
        if name in {role.value for role in Role}:
            clients[Role(name)] = (cert_path, key_path)
    return DevPki(
        directory,
        directory / CA_FILE,
        directory / "ca-key.pem",
        directory / SERVER_CERT_FILE,
        directory / SERVER_KEY_FILE,
        clients,
    )


def issue_server_certificate(
    cert_path: Path,
    key_path: Path,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    now: datetime,
) -> x509.Certificate:
    """A new key and a server certificate for localhost, 127.0.0.1 and ::1 (what
    `write_dev_pki` writes; again, to rotate the server's certificate)."""
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName(
        [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]
    )
    certificate = (
        _leaf(_name("localhost"), ca_cert, ca_key, key, now)
        .add_extension(san, critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_cert(cert_path, certificate)
    _write_key(key_path, key)
    return certificate


def issue_client_certificate(
    cert_path: Path,
    key_path: Path,
    common_name: str,
    roles: tuple[Role, ...],
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    now: datetime,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _leaf(_name(f"otphsm dev {common_name}"), ca_cert, ca_key, key, now).add_extension(
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
    )
    if roles:
        uris = [x509.UniformResourceIdentifier(role_uri(role)) for role in roles]
        builder = builder.add_extension(x509.SubjectAlternativeName(uris), critical=False)
    _write_cert(cert_path, builder.sign(ca_key, hashes.SHA256()))
    _write_key(key_path, key)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, DEV_ORGANISATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, now: datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + LIFETIME)
    )


def _leaf(
    subject: x509.Name,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    now: datetime,
) -> x509.CertificateBuilder:
    return (
        _builder(subject, ca_cert.subject, key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _write_cert(path: Path, certificate: x509.Certificate) -> None:
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
