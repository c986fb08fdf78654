"""The server's TLS certificate, key and client CA: read at start and again on SIGHUP. gRPC asks
for them at each new handshake (`grpc.dynamic_ssl_server_credentials`), so the next client gets
what was read last and connections already open keep theirs. Files that cannot be read, do not
parse or hold a key that is not the certificate's are refused and the previous ones kept."""

from __future__ import annotations

import logging
import threading

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from otphsm.core.errors import ConfigurationError
from otphsm.service.config import ServerSection, read_file

log = logging.getLogger("otphsm.tls")


class ServerTls:
    def __init__(self, section: ServerSection) -> None:
        """Read the files (ConfigurationError when they are not a usable TLS identity)."""
        self._section = section
        self._lock = threading.Lock()
        self._current = self._read()
        self._pending: grpc.ServerCertificateConfiguration | None = None

    @property
    def section(self) -> ServerSection:
        """Where the files are (the HTTP API reads the same ones)."""
        return self._section

    def credentials(self) -> grpc.ServerCredentials:
        """Credentials that ask for a client certificate from the client CA, always."""
        return grpc.dynamic_ssl_server_credentials(
            self._current,
            self._next_configuration,  # type: ignore[arg-type]  # None: no change (grpc's docs)
            require_client_authentication=True,
        )

    def reload(self) -> bool:
        """Read the files again for the next handshakes; whether they were usable."""
        try:
            configuration = self._read()
        except ConfigurationError as exc:
            log.error("TLS files not reloaded", extra={"fields": {"why": str(exc)}})
            return False
        with self._lock:
            self._pending = configuration
        return True

    def _next_configuration(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's fetcher, called at each handshake: a new configuration once, else None."""
        with self._lock:
            pending, self._pending = self._pending, None
        return pending

    def _read(self) -> grpc.ServerCertificateConfiguration:
        section = self._section
        chain = read_file(section.tls_cert, "server.tls_cert")
        key = read_file(section.tls_key, "server.tls_key")
        client_ca = read_file(section.tls_client_ca, "server.tls_client_ca")
        try:
            certificate = x509.load_pem_x509_certificates(chain)[0]
            private_key = serialization.load_pem_private_key(key, password=None)
            x509.load_pem_x509_certificates(client_ca)
        except (ValueError, TypeError):
            raise ConfigurationError(
                "server.tls_cert, server.tls_key or server.tls_client_ca is not PEM of its kind"
            ) from None
        if _public_der(certificate.public_key()) != _public_der(private_key.public_key()):
            raise ConfigurationError("server.tls_key is not the key of server.tls_cert")
        log.info(
            "TLS certificate read",
            extra={
                "fields": {
                    "subject": certificate.subject.rfc4514_string(),
                    "serial": format(certificate.serial_number, "x"),
                    "not_after": certificate.not_valid_after_utc.isoformat(),
                }
            },
        )
        return grpc.ssl_server_certificate_configuration(
            [(key, chain)], root_certificates=client_ca
        )


def _public_der(public_key: object) -> bytes:
    encode = getattr(public_key, "public_bytes", None)
    if encode is None:
        return b""
    der: bytes = encode(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return der
