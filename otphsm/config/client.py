"""The client's configuration file: one `[client]` table, how to reach the service.

    [client]
    server = "otp.example.org:443"
    ca = "pki/ca.pem"               # paths relative to the file
    cert = "pki/station.pem"
    key = "pki/station-key.pem"
    timeout_seconds = 15

A key left out is "" (not given): the command line may supply it. Other tables in the file are
not the client's and are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from otphsm.config.loader import FilePath, build_section, read_toml
from otphsm.core.bounds import above
from otphsm.core.errors import ConfigurationError

DEFAULT_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class ClientSection:
    server: str = ""
    """host:port of the service."""
    ca: FilePath = ""
    """The CA certificate (PEM) that signed the server's certificate."""
    cert: FilePath = ""
    key: FilePath = ""
    """The client's certificate and key (PEM): its role is in the certificate."""
    timeout_seconds: Annotated[float, above(0)] = DEFAULT_TIMEOUT_SECONDS
    """Per call."""


def load_client_section(path: Path, env: Mapping[str, str]) -> ClientSection:
    """The `[client]` table of `path`; `env` may override a key (`OTPHSM_CLIENT_SERVER`, ...):
    pass `{}` for none."""
    table = read_toml(path).get("client")
    if not isinstance(table, dict):
        raise ConfigurationError(f"{path} has no [client] table")
    return build_section("client", ClientSection, table, base=path.parent, env=env)
