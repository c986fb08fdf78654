"""The demo's machine room: every part the story needs, started in a private directory and
stopped again whatever happens (a failed step, Ctrl-C, SIGTERM).

- a private SoftHSM2 token, provisioned like `otphsm sim hsm init` (KEK and pepper key);
- the development PKI of `otphsm admin dev-pki` (server certificate, one client per role);
- a test "CA Cittadini" and a simulated CPS card issued by it, with the CA and its CRL as the
  service's trusted card authority;
- a private pcscd with a vpcd reader, the card inserted into it over vpcd;
- `otphsm serve` as a subprocess on a free loopback port (the port is read from its "serving"
  log record), with mTLS, SQLite and the SMS outbox, its JSON logs kept for the end checks.

The parts come from the deployment harness, `otphsm.simulators.deployment`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from otphsm.client import Client, ClientConfig
from otphsm.core import codice_fiscale
from otphsm.service.devpki import DevPki, write_dev_pki
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.card.factory import Person, issue_card
from otphsm.simulators.deployment import (
    Deployment,
    ServerProcess,
    card_ca,
    insert_card,
    provisioned_softhsm,
    start_pcscd,
    write_card_trust,
)
from otphsm.simulators.hsm.softhsm import SoftHsm
from otphsm.simulators.sms.inbox import read_sms_messages

CARD_PIN = "12345678"
CARD_PUK = "87654321"
CITIZEN = ("Mario", "Rossi", dt.date(1980, 1, 1), "M", "L378")
ISSUER = "otphsm demo"
SERVE_START_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Citizen:
    given_name: str
    surname: str
    codice_fiscale: str
    card_id: str


class DemoWorld:
    """A context manager: `__enter__` starts everything, `__exit__` stops it in reverse."""

    def __init__(self, directory: Path, say: Callable[[str], None]) -> None:
        self.directory = directory
        self.say = say
        self._stack = contextlib.ExitStack()
        self.deployment: Deployment | None = None
        self.card: CnsCard | None = None
        self.citizen: Citizen | None = None
        self.reader = ""
        self.serve: ServerProcess | None = None
        self.port = 0
        self.outbox = directory / "sms-outbox.jsonl"

    def __enter__(self) -> DemoWorld:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    # --- the parts ----------------------------------------------------------------------

    def _start(self) -> None:
        softhsm = provisioned_softhsm(self.directory / "hsm")
        self.say(
            f"SoftHSM2 token 'otphsm' provisioned in {softhsm.directory} "
            "(trusted KEK made by the Security Officer, pepper key)"
        )
        pki = write_dev_pki(self.directory / "pki")
        self.say(
            "development PKI: a CA, the server's certificate, one client per role "
            "(verifier, enroller, device, admin)"
        )
        self.deployment = self._issue_card(softhsm, pki)
        self._start_pcscd()
        self._start_serve()

    def _issue_card(self, softhsm: SoftHsm, pki: DevPki) -> Deployment:
        now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        ca = card_ca(now)
        given, surname, born, sex, town = CITIZEN
        cf = codice_fiscale.compute(surname, given, born, codice_fiscale.Sex(sex), town)
        person = Person(given, surname, born, sex, cf, town, residence_municipality=town)
        spec = issue_card(ca, person, CARD_PIN, CARD_PUK, key_size=2048, now=now)
        self.card = CnsCard(spec)
        self.card.power_on()
        card_id = str(spec.extra["card_id"])
        self.citizen = Citizen(given, surname, cf, card_id)
        trust = write_card_trust(ca, self.directory, now)
        self.say(
            f"CPS card {card_id} issued for {given} {surname} ({cf}) by the test "
            "'CA Cittadini'; the service trusts that CA and its CRL"
        )
        return Deployment(self.directory, softhsm, pki, ca, trust)

    def _start_pcscd(self) -> None:
        assert self.card is not None
        pcscd = start_pcscd(self.directory / "pcscd")
        self._stack.callback(pcscd.stop)
        inserted = insert_card(pcscd, self.card)
        self._stack.callback(inserted.link.remove)
        self.reader = inserted.reader
        self.say(
            f"private pcscd (pid {pcscd.pid}) with a vpcd reader; the card is in '{self.reader}'"
        )

    def _start_serve(self) -> None:
        assert self.deployment is not None
        self._stack.callback(self.deployment.stop)
        self.serve = self.deployment.serve(
            "otphsm",
            self.deployment.sqlite_url(),
            sms_outbox=self.outbox,
            policy={"issuer": ISSUER},
        )
        self.port = self.serve.wait_serving(SERVE_START_TIMEOUT)
        self.say(
            f"otphsm serve (pid {self.serve.pid}) on 127.0.0.1:{self.port}: "
            "mTLS, SQLite, SMS outbox"
        )

    def client(self, role: str) -> Client:
        """An mTLS client with the dev certificate of `role`; closed with the world."""
        assert self.deployment is not None
        ca, cert, key = self.deployment.client_tls(role)
        config = ClientConfig(server=f"localhost:{self.port}", ca=ca, cert=cert, key=key)
        client = Client(config)
        self._stack.callback(client.close)
        return client

    def sms_texts(self, phone: str) -> list[str]:
        return [message.text for message in read_sms_messages(self.outbox, phone)]

    def server_log(self) -> str:
        return "\n".join(json.dumps(r) for r in self.serve.records) if self.serve else ""
