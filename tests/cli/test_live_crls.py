"""CRLs and the TLS certificate kept current in a running `otphsm serve` (a real process on
SoftHSM2), with the citizen's card in a reader of the run's private pcscd and the station's
`otphsm enrol new` in process: a CRL rewritten on disk is used without a restart (the card it
revokes is refused at its next enrolment); a CRL past its nextUpdate refuses with the documented
reason while the health service shows EnrolmentService alone NOT_SERVING; SIGHUP serves a new
TLS certificate to the next client; with fetching on, the CRL comes over HTTP from the
distribution point in the card's certificate, and a revocation published there is applied."""

from __future__ import annotations

import datetime as dt
import http.server
import os
import shutil
import signal
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.card_fixtures import CARD_ID_1024, CARD_PIN, CARD_PUK, MARIO_ROSSI
from support.cli_support import run_cli
from support.pcsc_fixtures import InsertCard

from otphsm.cli.ui import ExitCode
from otphsm.service.devpki import DevPki, client_files, issue_server_certificate
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.card.factory import issue_card
from otphsm.simulators.card.pki import CertProfile, TestCa
from otphsm.simulators.card.spec import CardSpec
from otphsm.simulators.deployment import (
    CardTrust,
    ServerProcess,
    card_ca,
    serve_config,
    start_serve,
    write_card_trust,
    write_config,
)
from otphsm.simulators.hsm.softhsm import SoftHsm
from otphsm.smartcard.cns_files import EF_C_CARTA
from otphsm.store.urls import sqlite_url

pytestmark = [pytest.mark.softhsm, pytest.mark.pcscd, pytest.mark.timeout(180)]

POLL_SECONDS = 0.2
WAIT = 20.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
ENROLMENT = "otphsm.v1.EnrolmentService"
VALIDATION = "otphsm.v1.ValidationService"


def wait_until(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return result


@dataclass
class Live:
    """One `otphsm serve` with its own card CA, the CRL file it reads, and a card of that CA."""

    server: ServerProcess
    ca: TestCa
    trust: CardTrust
    card: CardSpec
    pki: DevPki
    tls: tuple[Path, Path]

    def write_crl(self, crl: x509.CertificateRevocationList) -> None:
        aside = self.trust.crl.with_suffix(".new")
        aside.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        aside.replace(self.trust.crl)

    def crl_updates(self, crl: x509.CertificateRevocationList) -> list[dict[str, Any]]:
        """The server's records of taking `crl` up."""
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        return [
            r
            for r in self.server.records
            if r.get("msg") == "CRL updated" and r.get("crl_number") == number
        ]

    def enrol(self, capsys: Any, monkeypatch: Any) -> tuple[int, str]:
        """`otphsm enrol new` with the card in the reader: exit code and what it printed."""
        args = ["--pki", str(self.pki.directory), "--server", self.server.target]
        run = run_cli(
            capsys,
            monkeypatch,
            ["enrol", "new", "--pin-from-stdin", "--timeout", "5", *args],
            [CARD_PIN],
        )
        return run.code, " ".join((run.out + run.err).split())

    def channel(self) -> grpc.Channel:
        cert, key = client_files(self.pki.directory, "verifier")
        credentials = grpc.ssl_channel_credentials(
            self.pki.ca.read_bytes(), key.read_bytes(), cert.read_bytes()
        )
        return grpc.secure_channel(self.server.target, credentials)

    def health(self, service: str) -> int:
        with self.channel() as channel:
            request = health_pb2.HealthCheckRequest(service=service)
            status: int = health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status
            return status

    def certificate_seen(self, *, http: bool = False) -> x509.Certificate:
        """The certificate the server presents to a new client (with a client certificate), on
        the gRPC port or (`http`) the HTTP API's."""
        cert, key = client_files(self.pki.directory, "verifier")
        context = ssl.create_default_context(cafile=str(self.pki.ca))
        context.load_cert_chain(cert, key)
        context.set_alpn_protocols(["http/1.1" if http else "h2"])
        port = self.server.http_port if http else self.server.port
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der)


@pytest.fixture
def start_live(
    tmp_path: Path,
    serve_softhsm: SoftHsm,
    dev_pki: DevPki,
    card_spec_1024: CardSpec,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., Live]]:
    """`start_live(cdp=None, **card_keys)`: a card CA of today, its CRL file, a card it
    issued (with `cdp` as its CRL distribution point), `otphsm serve` looking at the files
    every POLL_SECONDS with `card_keys` added to its [card] section."""
    monkeypatch.chdir(tmp_path)  # the station writes its QR image into the working directory
    started: list[ServerProcess] = []
    now = dt.datetime.now(dt.UTC)

    def start(cdp: str | None = None, **card_keys: Any) -> Live:
        ca = card_ca(now)
        trust = write_card_trust(ca, tmp_path / "cns", now - dt.timedelta(minutes=5))
        card = issue_card(
            ca,
            MARIO_ROSSI,
            CARD_PIN,
            CARD_PUK,
            key_size=1024,
            card_id=CARD_ID_1024,
            now=now - dt.timedelta(hours=1),
            private_key=card_spec_1024.private_key,
            profile=CertProfile(crl_distribution_point=cdp),
        )
        tls = (tmp_path / "server.pem", tmp_path / "server-key.pem")
        shutil.copyfile(dev_pki.server_cert, tls[0])
        shutil.copyfile(dev_pki.server_key, tls[1])
        raw = serve_config(
            serve_softhsm,
            dev_pki,
            trust,
            sqlite_url(tmp_path / "otphsm.db"),
            tmp_path / "sms.jsonl",
            server={
                "tls_cert": str(tls[0]),
                "tls_key": str(tls[1]),
                "health_interval_seconds": POLL_SECONDS,
            },
            card={"crl_check_seconds": POLL_SECONDS, **card_keys},
            metrics={"enabled": True, "port": 0},
            http={"enabled": True, "port": 0},
        )
        server = start_serve(write_config(tmp_path / "otphsm.toml", raw), serve_softhsm)
        started.append(server)
        server.wait_serving()
        return Live(server, ca, trust, card, dev_pki, tls)

    yield start
    for server in started:
        server.stop()


def card_serial(live: Live) -> int:
    return x509.load_der_x509_certificate(live.card.files[EF_C_CARTA]).serial_number


def metric(live: Live, name: str) -> dict[str, float]:
    """`name`'s samples from the server's /metrics: labels text → value."""
    port = next(r for r in live.server.records if r.get("msg") == "serving")["metrics_port"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) :].rsplit(" ", 1)
            samples[labels] = float(value)
    return samples


def test_a_crl_rewritten_on_disk_revokes_the_card_at_its_next_enrolment(
    start_live: Callable[..., Live],
    insert_card: InsertCard,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    live = start_live()
    insert_card(CnsCard(live.card))
    code, out = live.enrol(capsys, monkeypatch)
    assert code == 0, out
    assert "Activation code" in out

    serial = card_serial(live)
    live.ca.revoke(serial, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    crl = live.ca.crl(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30))
    live.write_crl(crl)
    wait_until(lambda: live.crl_updates(crl), "the rewritten CRL to be read")

    code, out = live.enrol(capsys, monkeypatch)
    assert code == ExitCode.REFUSED and "the service refused: certificate revoked" in out, out
    assert "Activation code" not in out
    issuer = live.ca.certificate.subject.rfc4514_string()
    assert crl.next_update_utc is not None
    assert metric(live, "otphsm_crl_next_update_timestamp_seconds") == {
        f'{{issuer="{issuer}"}}': crl.next_update_utc.timestamp()
    }


def test_a_crl_past_its_next_update_refuses_enrolment_and_only_enrolment_is_not_serving(
    start_live: Callable[..., Live],
    insert_card: InsertCard,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    live = start_live()
    insert_card(CnsCard(live.card))
    assert (live.health(ENROLMENT), live.health(VALIDATION)) == (SERVING, SERVING)
    now = dt.datetime.now(dt.UTC)
    stale = live.ca.crl(now - dt.timedelta(days=2), next_update=now - dt.timedelta(days=1))
    live.write_crl(stale)
    wait_until(lambda: live.crl_updates(stale), "the rewritten CRL to be read")
    wait_until(lambda: live.health(ENROLMENT) == NOT_SERVING, "enrolment NOT_SERVING")
    assert live.health(VALIDATION) == SERVING and live.health("") == SERVING

    code, out = live.enrol(capsys, monkeypatch)
    assert code == ExitCode.REFUSED, out
    assert "the service refused: no current CRL for the issuer" in out, out
    assert "CRL's nextUpdate" in out and "has passed" in out and "Activation code" not in out

    live.write_crl(live.ca.crl(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)))
    wait_until(lambda: live.health(ENROLMENT) == SERVING, "enrolment SERVING again")
    code, out = live.enrol(capsys, monkeypatch)
    assert code == 0, out


def test_sighup_serves_a_new_tls_certificate_to_the_next_client(
    start_live: Callable[..., Live], dev_pki: DevPki, tmp_path: Path
) -> None:
    live = start_live()
    first = live.certificate_seen()
    assert first == x509.load_pem_x509_certificate(dev_pki.server_cert.read_bytes())
    assert live.certificate_seen(http=True) == first

    ca_cert = x509.load_pem_x509_certificate(dev_pki.ca.read_bytes())
    ca_key = serialization.load_pem_private_key(dev_pki.ca_key.read_bytes(), None)
    aside = (tmp_path / "new.pem", tmp_path / "new-key.pem")
    new = issue_server_certificate(*aside, ca_cert, ca_key, dt.datetime.now(dt.UTC))  # type: ignore[arg-type]
    os.replace(aside[1], live.tls[1])
    os.replace(aside[0], live.tls[0])
    os.kill(live.server.pid, signal.SIGHUP)
    wait_until(lambda: live.certificate_seen() == new, "the new certificate to be served")
    assert live.health(VALIDATION) == SERVING  # a real gRPC client over the new certificate
    assert live.certificate_seen(http=True) == new  # the HTTP API's too

    live.tls[1].write_bytes(dev_pki.server_key.read_bytes())  # not the certificate's key
    os.kill(live.server.pid, signal.SIGHUP)
    wait_until(
        lambda: [r for r in live.server.records if r.get("msg") == "TLS files not reloaded"],
        "the mismatched key to be refused",
    )
    assert "server.tls_key is not the key of server.tls_cert" in live.server.log.read_text()
    assert live.certificate_seen() == new and live.certificate_seen(http=True) == new
    assert live.server.process.poll() is None


class CrlHandler(http.server.BaseHTTPRequestHandler):
    crl: bytes = b""
    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        if self.path != "/cns.crl" or not self.crl:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/pkix-crl")
        self.send_header("Content-Length", str(len(self.crl)))
        self.end_headers()
        self.wfile.write(self.crl)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def crl_http() -> Iterator[tuple[str, type[CrlHandler]]]:
    """A distribution point on loopback: (its URL, the handler class whose `crl` it serves)."""
    handler = type("Handler", (CrlHandler,), {"requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/cns.crl", handler
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_the_crl_is_fetched_from_the_card_certificate_s_distribution_point(
    start_live: Callable[..., Live],
    crl_http: tuple[str, type[CrlHandler]],
    insert_card: InsertCard,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, handler = crl_http
    live = start_live(cdp=url, crls=[], crl_fetch=True, crl_fetch_seconds=0.5)
    insert_card(CnsCard(live.card))
    wait_until(lambda: live.health(ENROLMENT) == NOT_SERVING, "enrolment NOT_SERVING")
    now = dt.datetime.now(dt.UTC)
    handler.crl = live.ca.crl(now - dt.timedelta(minutes=1)).public_bytes(
        serialization.Encoding.DER
    )

    code, out = live.enrol(capsys, monkeypatch)  # learns the URL, fetches at once
    assert code == 0, out
    assert handler.requests and set(handler.requests) == {"/cns.crl"}
    wait_until(lambda: live.health(ENROLMENT) == SERVING, "enrolment SERVING")

    serial = card_serial(live)
    live.ca.revoke(serial, now)
    revoking = live.ca.crl(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30))
    handler.crl = revoking.public_bytes(serialization.Encoding.DER)
    wait_until(lambda: live.crl_updates(revoking), "the revoking CRL to be fetched on the timer")
    code, out = live.enrol(capsys, monkeypatch)
    assert code == ExitCode.REFUSED and "the service refused: certificate revoked" in out, out
