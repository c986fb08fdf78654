"""The channel to the service, as the CLIs use it: an mTLS channel from a client config (a TOML
file, a development PKI directory, or flags); `Client.call` turns a failed call into the typed
errors of `otphsm.client.errors`.

A client config file:

    [client]
    server = "otphsm.example.org:50051"
    ca = "pki/ca.pem"              # the CA that signed the server's certificate
    cert = "pki/enroller.pem"      # this client's certificate (its role is in its URI SAN)
    key = "pki/enroller-key.pem"
    timeout_seconds = 15

Relative paths are relative to the file. `otphsm admin dev-pki DIR` writes a directory that
`--pki DIR` reads directly: `ca.pem`, `<role>.pem`, `<role>-key.pem`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc

from otphsm.client.errors import service_error
from otphsm.config.client import DEFAULT_TIMEOUT_SECONDS, load_client_section
from otphsm.core.errors import ConfigurationError

DEFAULT_TIMEOUT = DEFAULT_TIMEOUT_SECONDS

Resp = TypeVar("Resp")


@dataclass(frozen=True, slots=True)
class ClientConfig:
    server: str
    ca: Path
    cert: Path
    key: Path
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if ":" not in self.server:
            raise ConfigurationError(f"the server is HOST:PORT, got {self.server!r}")
        if self.timeout <= 0:
            raise ConfigurationError("the timeout must be positive")


def client_config(
    role: str,
    *,
    config_file: Path | None = None,
    pki: Path | None = None,
    server: str | None = None,
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
) -> ClientConfig:
    """The file first (its keys overridden by `env`'s OTPHSM_CLIENT_<KEY>, as the server's
    are), then a development PKI directory for `role`, then single flags."""
    values: dict[str, Any] = _read_file(config_file, env or {}) if config_file else {}
    if pki is not None:
        values.update(ca=pki / "ca.pem", cert=pki / f"{role}.pem", key=pki / f"{role}-key.pem")
    flags = {"server": server, "ca": ca, "cert": cert, "key": key, "timeout": timeout}
    values.update({name: value for name, value in flags.items() if value is not None})
    missing = [name for name in ("server", "ca", "cert", "key") if not values.get(name)]
    if missing:
        options = ", ".join(f"--{name}" for name in missing)
        raise ConfigurationError(
            f"how to reach the service is missing ({options}): give --config FILE, "
            f"--pki DIR with --server, or each option"
        )
    return ClientConfig(
        server=str(values["server"]),
        ca=Path(values["ca"]),
        cert=Path(values["cert"]),
        key=Path(values["key"]),
        timeout=float(values.get("timeout", DEFAULT_TIMEOUT)),
    )


def _read_file(path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """The keys the file gives (one loader with the server's: `otphsm.config`)."""
    section = load_client_section(path, env=env)
    values: dict[str, Any] = {"timeout": section.timeout_seconds}
    for name in ("server", "ca", "cert", "key"):
        if given := getattr(section, name):
            values[name] = given
    return values


def _read_pem(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the {what} {path}: {exc.strerror}") from None


def open_channel(config: ClientConfig) -> grpc.Channel:
    """An mTLS channel to the service (not yet connected: the first call connects)."""
    credentials = grpc.ssl_channel_credentials(
        _read_pem(config.ca, "CA certificate"),
        _read_pem(config.key, "client key"),
        _read_pem(config.cert, "client certificate"),
    )
    return grpc.secure_channel(config.server, credentials)


class Client:
    """A channel and the timeout its calls use; `call` turns gRPC failures into typed errors."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.channel = open_channel(config)

    def call(self, method: Callable[..., Resp], request: object) -> Resp:
        try:
            return method(request, timeout=self.config.timeout)
        except grpc.RpcError as exc:
            raise service_error(exc, self.config.server) from None

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
