"""A whole development deployment in one directory: the SoftHSM2 token, the dev PKI, the test
card CA with its CRL, and the server processes started from it (each from its own config file
of the one shape in `config.serve_config`), stopped in reverse order by `stop()`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otphsm.service.devpki import DevPki, client_files, write_dev_pki
from otphsm.simulators.card.pki import TestCa
from otphsm.simulators.deployment.config import (
    CardTrust,
    ConfigMapping,
    serve_config,
    write_config,
)
from otphsm.simulators.deployment.parts import card_ca, provisioned_softhsm, write_card_trust
from otphsm.simulators.deployment.process import ServerProcess, start_serve, start_server
from otphsm.simulators.hsm.softhsm import SoftHsm
from otphsm.store.urls import sqlite_url


@dataclass
class Deployment:
    """The parts of a deployment (a context manager: its servers stop on exit)."""

    directory: Path
    softhsm: SoftHsm
    pki: DevPki
    card_ca: TestCa
    card_trust: CardTrust
    servers: list[ServerProcess] = field(default_factory=list)

    def sqlite_url(self, name: str = "otphsm") -> str:
        return sqlite_url(self.directory / f"{name}.db")

    def client_tls(self, role: str) -> tuple[Path, Path, Path]:
        """The CA, certificate and key files of the dev client `role`."""
        cert, key = client_files(self.pki.directory, role)
        return self.pki.ca, cert, key

    def config(
        self, name: str, store_url: str, *, sms_outbox: Path | None = None, **sections: Any
    ) -> ConfigMapping:
        """The config mapping of server `name` (its SMS outbox: sms-NAME.jsonl by default)."""
        outbox = sms_outbox or self.directory / f"sms-{name}.jsonl"
        return serve_config(self.softhsm, self.pki, self.card_trust, store_url, outbox, **sections)

    def write_config(self, name: str, store_url: str, **options: Any) -> Path:
        """NAME.toml in the deployment's directory, from `config()`."""
        return write_config(
            self.directory / f"{name}.toml", self.config(name, store_url, **options)
        )

    def serve(self, name: str, store_url: str, **options: Any) -> ServerProcess:
        """`otphsm serve` from NAME.toml (logging to NAME.log), started; `wait_serving()` for
        its port. `options` as for `config()`."""
        config = self.write_config(name, store_url, **options)
        return self._track(start_serve(config, self.softhsm, name=name))

    def launch(self, name: str, argv: Sequence[str]) -> ServerProcess:
        """Another server program (logging NAME.log, the same "serving" record)."""
        log = self.directory / f"{name}.log"
        return self._track(start_server(name, argv, self.softhsm, log))

    def _track(self, server: ServerProcess) -> ServerProcess:
        self.servers.append(server)
        return server

    def stop(self) -> None:
        while self.servers:
            self.servers.pop().stop()

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def create_deployment(directory: Path, *, now: dt.datetime | None = None) -> Deployment:
    """Make every static part under `directory`: hsm/ (token "otphsm", provisioned; this
    process is pointed at it), pki/, and the card CA's certificate and CRL issued at `now`."""
    now = now or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    softhsm = provisioned_softhsm(directory / "hsm")
    pki = write_dev_pki(directory / "pki")
    ca = card_ca(now)
    return Deployment(directory, softhsm, pki, ca, write_card_trust(ca, directory, now))
