"""The CRLs a server holds (`otphsm.service.crls.CrlHolder`) and the pure decisions under them
(`otphsm.core.crls`): a file rewritten is read again and its revocations apply; an older CRL, a
half-written file or a CRL no trusted CA signed leaves the last good one in place; a CRL past
its nextUpdate makes `check_current` fail with the refusal's words; distribution points are
learned only from certificates a trusted CA signed and fetched at once when its CRL is not
current; fetching gets a CRL over real HTTP on loopback. Files, clock and fetcher are this
test's own: nothing global is patched."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from otphsm.core.certificates import CardCheckFailed, CardCheckFailure, check_cns_certificate
from otphsm.core.clock import ManualClock
from otphsm.core.crls import crl_authority, is_current, is_newer
from otphsm.core.errors import ConfigurationError
from otphsm.service.config import CardSection
from otphsm.service.crl_fetch import CrlFetchFailed, display_url, fetch_crl
from otphsm.service.crls import CrlHolder, CrlNotCurrent
from otphsm.simulators.card.pki import CertProfile, TestCa, issue_cns_certificate, make_test_ca

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CDP = "http://crl.example.test/cns.crl"


@pytest.fixture(scope="module")
def card_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 1024)


@pytest.fixture
def ca() -> TestCa:
    return make_test_ca(now=NOW - timedelta(days=30))


def pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)


def certificate(ca: TestCa, key: rsa.RSAPrivateKey, cdp: str | None = None) -> x509.Certificate:
    return issue_cns_certificate(
        ca,
        public_key=key.public_key(),
        codice_fiscale="RSSMRA80A01L378S",
        card_id="7430010024925855",
        given_name="MARIO",
        surname="ROSSI",
        dati_personali=b"EF_DatiPersonali",
        now=NOW - timedelta(days=10),
        profile=CertProfile(crl_distribution_point=cdp),
    )


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


class Files:
    def __init__(self, directory: Path, ca: TestCa) -> None:
        self.ca_file = directory / "ca.pem"
        self.crl_file = directory / "ca.crl"
        self.ca_file.write_bytes(ca.certificate.public_bytes(serialization.Encoding.PEM))

    def section(self, **keys: object) -> CardSection:
        return CardSection(
            trusted_ca=(str(self.ca_file),),
            crls=(str(self.crl_file),),
            **keys,  # type: ignore[arg-type]
        )

    def write(self, data: bytes) -> None:
        """Replace the file as an operator's script would (write aside, rename)."""
        aside = self.crl_file.with_suffix(".new")
        aside.write_bytes(data)
        aside.replace(self.crl_file)


@pytest.fixture
def files(tmp_path: Path, ca: TestCa) -> Files:
    made = Files(tmp_path, ca)
    made.write(pem(ca.crl(NOW - timedelta(hours=1))))
    return made


def revoked_serials(holder: CrlHolder) -> set[int]:
    return {entry.serial_number for crl in holder.store.crls for entry in crl}


def test_a_crl_rewritten_on_disk_is_read_at_the_next_poll_and_revokes(
    ca: TestCa, files: Files, card_key: rsa.RSAPrivateKey
) -> None:
    clock = ManualClock(NOW.timestamp())
    holder = CrlHolder(files.section(), clock)
    card = certificate(ca, card_key)
    check_cns_certificate(holder.for_certificate(der(card)), card, now=NOW)
    assert holder.poll() is False  # nothing changed

    ca.revoke(card.serial_number, NOW - timedelta(minutes=5))
    files.write(pem(ca.crl(NOW - timedelta(minutes=1))))
    assert holder.poll() is True
    with pytest.raises(CardCheckFailed) as refused:
        check_cns_certificate(holder.for_certificate(der(card)), card, now=NOW)
    assert refused.value.reason is CardCheckFailure.REVOKED


def test_an_older_crl_a_broken_file_or_a_stranger_s_crl_keep_the_last_good_one(
    ca: TestCa, files: Files, card_key: rsa.RSAPrivateKey
) -> None:
    card = certificate(ca, card_key)
    older = ca.crl(NOW - timedelta(hours=2))
    ca.revoke(card.serial_number, NOW - timedelta(minutes=5))
    newest = ca.crl(NOW - timedelta(minutes=1))
    files.write(pem(newest))
    holder = CrlHolder(files.section(), ManualClock(NOW.timestamp()))
    assert revoked_serials(holder) == {card.serial_number}

    files.write(pem(older))  # a stale copy must not un-revoke the card
    holder.poll()
    assert holder.store.crls == (newest,)

    files.write(b"-----BEGIN X509 CRL-----\nhalf wri")
    assert holder.poll() is False and holder.store.crls == (newest,)

    stranger = make_test_ca(now=NOW - timedelta(days=30))
    files.write(pem(stranger.crl(NOW)))
    holder.poll()
    assert holder.store.crls == (newest,)

    completed = ca.crl(NOW)  # the file written whole at last
    files.write(pem(completed))
    assert holder.poll() is True and holder.store.crls == (completed,)


def test_past_next_update_check_current_fails_with_the_refusal_s_words(
    ca: TestCa, files: Files, card_key: rsa.RSAPrivateKey
) -> None:
    clock = ManualClock(NOW.timestamp())
    holder = CrlHolder(files.section(), clock)
    holder.check_current()
    (held,) = holder.store.crls
    assert held.next_update_utc is not None
    clock.set(held.next_update_utc.timestamp() + 1)
    with pytest.raises(CrlNotCurrent, match=r"nextUpdate .* has passed"):
        holder.check_current()
    card = certificate(ca, card_key)
    with pytest.raises(CardCheckFailed) as refused:
        check_cns_certificate(holder.for_certificate(der(card)), card, now=clock_now(clock))
    assert refused.value.reason is CardCheckFailure.CRL_UNAVAILABLE_OR_STALE
    assert "has passed" in refused.value.detail


def clock_now(clock: ManualClock) -> datetime:
    return datetime.fromtimestamp(clock.now(), UTC)


def test_a_trust_file_that_cannot_be_read_at_start_is_a_configuration_error(
    tmp_path: Path, ca: TestCa
) -> None:
    files = Files(tmp_path, ca)
    with pytest.raises(ConfigurationError, match=r"card\.crls"):
        CrlHolder(files.section(), ManualClock(NOW.timestamp()))


def test_a_card_s_distribution_point_is_fetched_at_once_when_its_ca_has_no_current_crl(
    ca: TestCa, tmp_path: Path, card_key: rsa.RSAPrivateKey
) -> None:
    files = Files(tmp_path, ca)
    fetched: list[str] = []
    served: dict[str, x509.CertificateRevocationList | None] = {
        CDP: ca.crl(NOW - timedelta(minutes=1))
    }

    def fetch(url: str) -> x509.CertificateRevocationList:
        fetched.append(url)
        crl = served[url]
        if crl is None:
            raise CrlFetchFailed("unreachable")
        return crl

    section = CardSection(trusted_ca=(str(files.ca_file),), crl_fetch=True)
    holder = CrlHolder(section, ManualClock(NOW.timestamp()), fetch)
    with pytest.raises(CrlNotCurrent, match="no CRL is configured"):
        holder.check_current()

    stranger = make_test_ca(now=NOW - timedelta(days=30))
    forged = certificate(stranger, card_key, cdp="http://evil.test/x.crl")
    holder.for_certificate(der(forged))
    assert fetched == []  # learned only from certificates a trusted CA signed

    card = certificate(ca, card_key, cdp=CDP)
    trust = holder.for_certificate(der(card))
    assert fetched == [CDP]
    check_cns_certificate(trust, card, now=NOW)
    holder.check_current()

    holder.for_certificate(der(card))  # known now, and its CRL is current
    assert fetched == [CDP]
    held = holder.store.crls
    for failing in (None, make_test_ca(now=NOW).crl(NOW)):  # unreachable; another CA's CRL
        served[CDP] = failing
        holder.fetch_all()
        assert holder.store.crls == held  # the last good one is kept


def test_a_fetched_older_crl_never_replaces_the_newer_one(ca: TestCa, files: Files) -> None:
    older = ca.crl(NOW - timedelta(hours=3))
    newer = ca.crl(NOW - timedelta(minutes=2))
    served = {CDP: newer}
    holder = CrlHolder(
        files.section(crl_fetch=True, crl_urls=(CDP,)),
        ManualClock(NOW.timestamp()),
        lambda url: served[url],
    )
    holder.fetch_all()
    assert newer in holder.store.crls
    served[CDP] = older
    holder.fetch_all()
    assert holder.store.crls == (newer,)


def test_the_pure_decisions() -> None:
    ca = make_test_ca(now=NOW - timedelta(days=30))
    first = ca.crl(NOW - timedelta(hours=1))
    second = ca.crl(NOW - timedelta(hours=2))  # numbered after, though issued "earlier"
    assert is_newer(second, first) and not is_newer(first, second) and not is_newer(first, first)
    assert is_current(first, NOW)
    assert first.next_update_utc is not None
    assert not is_current(first, first.next_update_utc)
    assert not is_current(first, first.last_update_utc - timedelta(seconds=1))
    assert crl_authority(first, (ca.certificate,)) == ca.certificate
    assert crl_authority(first, (make_test_ca(now=NOW).certificate,)) is None


class _CrlHandler(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        if self.path != "/cns.crl":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/pkix-crl")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def crl_server() -> Iterator[tuple[str, type[_CrlHandler]]]:
    handler = type("Handler", (_CrlHandler,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_fetch_crl_over_loopback_http(
    ca: TestCa, crl_server: tuple[str, type[_CrlHandler]]
) -> None:
    base, handler = crl_server
    crl = ca.crl(NOW)
    handler.body = crl.public_bytes(serialization.Encoding.DER)
    assert fetch_crl(f"{base}/cns.crl", timeout_seconds=5, proxies={}) == crl
    with pytest.raises(CrlFetchFailed, match="HTTP 404"):
        fetch_crl(f"{base}/missing.crl", timeout_seconds=5, proxies={})
    handler.body = b"not a CRL"
    with pytest.raises(CrlFetchFailed, match="not a CRL"):
        fetch_crl(f"{base}/cns.crl", timeout_seconds=5, proxies={})
    with pytest.raises(CrlFetchFailed, match="only http://"):
        fetch_crl("file:///etc/passwd", timeout_seconds=5, proxies={})
    assert display_url("http://user:pw@host:8080/a.crl?token=x") == "http://host:8080/a.crl"


def test_a_ca_file_rewritten_changes_the_trusted_cas_and_drops_the_old_ca_s_crl(
    ca: TestCa, files: Files, card_key: rsa.RSAPrivateKey
) -> None:
    holder = CrlHolder(files.section(), ManualClock(NOW.timestamp()))
    card = certificate(ca, card_key)
    successor = make_test_ca(now=NOW - timedelta(days=30))
    aside = files.ca_file.with_suffix(".new")
    aside.write_bytes(successor.certificate.public_bytes(serialization.Encoding.PEM))
    aside.replace(files.ca_file)
    assert holder.poll() is True
    assert holder.store.authorities == (successor.certificate,)
    assert holder.store.crls == ()  # the old CA's CRL went with it
    with pytest.raises(CardCheckFailed) as refused:
        check_cns_certificate(holder.for_certificate(der(card)), card, now=NOW)
    assert refused.value.reason is CardCheckFailure.UNTRUSTED_ISSUER
