"""The demo's machine room: every part the story needs, started in a private directory and
stopped again whatever happens (a failed step, Ctrl-C, SIGTERM).

- a private SoftHSM2 token, provisioned like `otphsm sim hsm init` (KEK and pepper key);
- the development PKI of `otphsm admin dev-pki` (server certificate, one client per role);
- a test "CA Cittadini" and a simulated CPS card issued by it, with the CA and its CRL as the
  service's trusted card authority;
- a private pcscd with a vpcd reader, the card inserted into it over vpcd;
- `otphsm serve` as a subprocess on a free loopback port (the port is read from its "serving"
  log record), with mTLS, SQLite and the SMS outbox, its JSON logs kept for the end checks.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography.hazmat.primitives import serialization

from otphsm.client import Client, ClientConfig
from otphsm.core import codice_fiscale
from otphsm.core.errors import ConfigurationError
from otphsm.service.devpki import DevPki, write_dev_pki
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.card.factory import Person, issue_card
from otphsm.simulators.card.pcscd import SOCKET_ENV, PrivatePcscd
from otphsm.simulators.card.pki import make_test_ca
from otphsm.simulators.card.vpcd import VpcdLink
from otphsm.simulators.hsm.softhsm import SoftHsm, create_softhsm, provision_softhsm
from otphsm.simulators.sms.inbox import read_sms_messages
from otphsm.smartcard.pcsc import PcscContext

CARD_PIN = "12345678"
CARD_PUK = "87654321"
CITIZEN = ("Mario", "Rossi", dt.date(1980, 1, 1), "M", "L378")
ISSUER = "otphsm demo"
SERVE_START_TIMEOUT = 60.0
_LOG_KEEP = 2000


@dataclass(frozen=True, slots=True)
class Citizen:
    given_name: str
    surname: str
    codice_fiscale: str
    card_id: str


class ServeProcess:
    """`otphsm serve --config FILE` as a child process; its JSON log records are collected."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "otphsm.cli.main", "serve", "--config", str(config)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.records: list[dict[str, Any]] = []
        self._serving = threading.Event()
        self._reader = threading.Thread(target=self._read, name="serve-logs", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = {"raw": line.rstrip()}
            if len(self.records) < _LOG_KEEP:
                self.records.append(record)
            if record.get("msg") == "serving":
                self._serving.set()

    def wait_serving(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while not self._serving.wait(0.05):
            if self.process.poll() is not None:
                raise ConfigurationError(f"otphsm serve exited: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise ConfigurationError(f"otphsm serve did not start: {self.log_tail()}")
        return int(next(r["port"] for r in self.records if r.get("msg") == "serving"))

    def log_tail(self, count: int = 5) -> str:
        return " | ".join(json.dumps(r) for r in self.records[-count:]) or "(no log)"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._reader.join(5)


class DemoWorld:
    """A context manager: `__enter__` starts everything, `__exit__` stops it in reverse."""

    def __init__(self, directory: Path, say: Callable[[str], None]) -> None:
        self.directory = directory
        self.say = say
        self._stack = contextlib.ExitStack()
        self.softhsm: SoftHsm | None = None
        self.pki: DevPki | None = None
        self.card: CnsCard | None = None
        self.citizen: Citizen | None = None
        self.reader = ""
        self.serve: ServeProcess | None = None
        self.port = 0
        self.outbox = directory / "sms-outbox.jsonl"

    def __enter__(self) -> DemoWorld:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()

    # --- the parts ----------------------------------------------------------------------

    def _start(self) -> None:
        self.softhsm = create_softhsm(self.directory / "hsm", ("otphsm",))
        self.softhsm.activate()
        provision_softhsm(self.softhsm)
        self.say(
            f"SoftHSM2 token 'otphsm' provisioned in {self.softhsm.directory} "
            "(trusted KEK made by the Security Officer, pepper key)"
        )
        self.pki = write_dev_pki(self.directory / "pki")
        self.say(
            "development PKI: a CA, the server's certificate, one client per role "
            "(verifier, enroller, device, admin)"
        )
        trust, crl = self._issue_card()
        self._start_pcscd()
        self._start_serve(trust, crl)

    def _issue_card(self) -> tuple[Path, Path]:
        now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        ca = make_test_ca(now=now - dt.timedelta(days=1))
        given, surname, born, sex, town = CITIZEN
        cf = codice_fiscale.compute(surname, given, born, codice_fiscale.Sex(sex), town)
        person = Person(given, surname, born, sex, cf, town, residence_municipality=town)
        spec = issue_card(ca, person, CARD_PIN, CARD_PUK, key_size=2048, now=now)
        self.card = CnsCard(spec)
        self.card.power_on()
        card_id = str(spec.extra["card_id"])
        self.citizen = Citizen(given, surname, cf, card_id)
        trust = self.directory / "cns-ca.pem"
        crl = self.directory / "cns-ca.crl.pem"
        trust.write_bytes(ca.certificate.public_bytes(serialization.Encoding.PEM))
        crl.write_bytes(ca.crl(now=now).public_bytes(serialization.Encoding.PEM))
        self.say(
            f"CPS card {card_id} issued for {given} {surname} ({cf}) by the test "
            "'CA Cittadini'; the service trusts that CA and its CRL"
        )
        return trust, crl

    def _start_pcscd(self) -> None:
        assert self.card is not None
        pcscd = PrivatePcscd(self.directory / "pcscd")
        # libpcsclite reads the socket path once, at this process's first PC/SC call.
        os.environ[SOCKET_ENV] = str(pcscd.socket_path)
        pcscd.start()
        self._stack.callback(pcscd.stop)
        link = VpcdLink(self.card, pcscd.ports[0])
        link.insert(wait=5.0)
        self._stack.callback(link.remove)
        self.reader = pcscd.reader_names[0]
        with PcscContext() as context:
            context.wait_for_card(self.reader, 5.0)
        self.say(
            f"private pcscd (pid {pcscd.pid}) with a vpcd reader; the card is in '{self.reader}'"
        )

    def _start_serve(self, trust: Path, crl: Path) -> None:
        assert self.softhsm is not None and self.pki is not None
        config = self.directory / "otphsm.toml"
        sections: dict[str, dict[str, Any]] = {
            "server": {
                "address": "127.0.0.1",
                "port": 0,
                "tls_cert": str(self.pki.server_cert),
                "tls_key": str(self.pki.server_key),
                "tls_client_ca": str(self.pki.ca),
                "grace_seconds": 2.0,
                "log_format": "json",
            },
            "hsm": {
                "module": self.softhsm.module,
                "token_label": self.softhsm.token_label,
                "user_pin": self.softhsm.user_pin,
            },
            "store": {"url": f"sqlite:///{self.directory / 'otphsm.db'}"},
            "card": {"trusted_ca": [str(trust)], "crls": [str(crl)]},
            "sms": {"outbox": str(self.outbox)},
            "policy": {"issuer": ISSUER},
            "metrics": {"enabled": False},
        }
        lines = []
        for name, values in sections.items():
            lines.append(f"[{name}]")
            lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items())
        config.write_text("\n".join(lines) + "\n")
        config.chmod(0o600)  # it holds the HSM user PIN
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTPHSM_")}
        env["SOFTHSM2_CONF"] = str(self.softhsm.conf_path)
        self.serve = ServeProcess(config, env)
        self._stack.callback(self.serve.stop)
        self.port = self.serve.wait_serving(SERVE_START_TIMEOUT)
        self.say(
            f"otphsm serve (pid {self.serve.process.pid}) on 127.0.0.1:{self.port}: "
            "mTLS, SQLite, SMS outbox"
        )

    def client(self, role: str) -> Client:
        """An mTLS client with the dev certificate of `role`; closed with the world."""
        assert self.pki is not None
        config = ClientConfig(
            server=f"localhost:{self.port}",
            ca=self.pki.ca,
            cert=self.pki.directory / f"{role}.pem",
            key=self.pki.directory / f"{role}-key.pem",
        )
        client = Client(config)
        self._stack.callback(client.close)
        return client

    def sms_texts(self, phone: str) -> list[str]:
        return [message.text for message in read_sms_messages(self.outbox, phone)]

    def server_log(self) -> str:
        return "\n".join(json.dumps(r) for r in self.serve.records) if self.serve else ""
