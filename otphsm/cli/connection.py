"""The options every command that calls the service takes (mTLS client certificate for one
role), and the client they make. See `otphsm.client` for the config file."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from otphsm.client import Client

CONFIG_ENV = "OTPHSM_CLIENT_CONFIG"


def add_connection_arguments(parser: argparse.ArgumentParser, role: str) -> None:
    group = parser.add_argument_group(f"the service (mTLS, a client certificate with role {role})")
    group.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"client config, a TOML [client] table (default: ${CONFIG_ENV}); "
        "OTPHSM_CLIENT_<KEY> overrides its keys",
    )
    group.add_argument(
        "--pki",
        type=Path,
        metavar="DIR",
        help=f"a development PKI (otphsm admin dev-pki): ca.pem, {role}.pem, {role}-key.pem",
    )
    group.add_argument("--server", metavar="HOST:PORT")
    group.add_argument("--ca", type=Path, metavar="PEM", help="the CA of the server certificate")
    group.add_argument("--cert", type=Path, metavar="PEM", help="this client's certificate")
    group.add_argument("--key", type=Path, metavar="PEM", help="this client's private key")
    group.add_argument("--rpc-timeout", type=float, metavar="SECONDS", help="per call (default 15)")
    parser.set_defaults(client_role=role)


def connect(args: argparse.Namespace) -> Client:
    from otphsm.client import Client, client_config

    config_file = args.config
    if config_file is None and os.environ.get(CONFIG_ENV):
        config_file = Path(os.environ[CONFIG_ENV])
    config = client_config(
        args.client_role,
        config_file=config_file,
        pki=args.pki,
        server=args.server,
        ca=args.ca,
        cert=args.cert,
        key=args.key,
        timeout=args.rpc_timeout,
        env=os.environ,
    )
    return Client(config)
