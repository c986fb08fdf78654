"""The server's CRLs kept current: one holder owns the trusted CAs and, for each, the newest CRL
it has seen; card checks read one `TrustStore` that the holder replaces whole (one reference
swapped under its lock), so a check never sees half a reload.

Where CRLs come from:
- the files of `card.crls` (and the CAs of `card.trusted_ca`), read at start, again when one of
  them changed (size, mtime or inode, looked at every `card.crl_check_seconds`) and on SIGHUP;
- with `card.crl_fetch`, HTTP: `card.crl_urls`, the http:// distribution points of the trusted
  CAs, and those of card certificates a trusted CA signed (learned as they are presented),
  every `card.crl_fetch_seconds`; a point learned from a card whose CA has no current CRL is
  fetched at once, before the card is checked.

A CRL is used only when a trusted CA signed it (`otphsm.core.crls.crl_authority`) and replaces the
one held only when newer (`is_newer`): a failed fetch, a half-written file or an older copy
leaves the last good CRL in place, used until its nextUpdate; past it, card checks refuse
(CRL_UNAVAILABLE_OR_STALE) and `check_current` fails, which the health service reports as the
enrolment service NOT_SERVING.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from otphsm.core.certificates import (
    TrustStore,
    load_crl,
    missing_current_crls,
    signing_authority,
)
from otphsm.core.clock import Clock
from otphsm.core.crls import crl_authority, crl_number, is_newer
from otphsm.core.errors import ConfigurationError
from otphsm.service.config import CardSection, read_file
from otphsm.service.crl_fetch import (
    CrlFetchFailed,
    all_distribution_points,
    display_url,
    distribution_points,
    fetch_crl,
)

log = logging.getLogger("otphsm.crls")

MAX_URLS = 64
"""Distribution points learned from card certificates stop being added past this many."""

FileStamp = tuple[int, int, int]
"""inode, size, mtime in ns: a file replaced (rename) or rewritten in place changes one."""

Crl = x509.CertificateRevocationList
Authorities = tuple[x509.Certificate, ...]
Fetch = Callable[[str], Crl]


class CrlNotCurrent(Exception):
    """A trusted CA has no current CRL: its cards are refused until one arrives."""


class CrlHolder:
    def __init__(self, section: CardSection, clock: Clock, fetch: Fetch | None = None) -> None:
        """Read the files (ConfigurationError when one cannot be read or parsed). `fetch` is
        the HTTP getter (default: `fetch_crl` with the section's timeout)."""
        self._section = section
        self._clock = clock
        self._fetch = fetch or (
            lambda url: fetch_crl(url, timeout_seconds=section.crl_fetch_timeout_seconds)
        )
        self._lock = threading.Lock()
        self._listeners: list[Callable[[TrustStore], None]] = []
        self._held: dict[bytes, x509.CertificateRevocationList] = {}
        """Issuer name (DER) → the newest authentic CRL seen from any source."""
        self._stamps = self._stamps_now()
        authorities, crls = self._read_files()
        self._store = TrustStore(authorities)
        self._urls: dict[str, None] = dict.fromkeys(section.crl_urls)
        self._install(authorities, crls, source="card.crls")

    # --- what card checks and the health service read -----------------------------------

    @property
    def store(self) -> TrustStore:
        return self._store

    def for_certificate(self, certificate_der: bytes) -> TrustStore:
        """`TrustSource`: the current trust store, after fetching the certificate's new
        distribution points when fetching is on and its CA has no current CRL."""
        if self._section.crl_fetch:
            for url in self._learn(certificate_der):
                self._fetch_one(url)
        return self._store

    def check_current(self) -> None:
        """Raise `CrlNotCurrent` naming each trusted CA without a current CRL."""
        missing = missing_current_crls(self._store, self._now())
        if missing:
            raise CrlNotCurrent("; ".join(missing))

    def on_change(self, listener: Callable[[TrustStore], None]) -> None:
        """Call `listener` with the trust store now and after every change."""
        self._listeners.append(listener)
        listener(self._store)

    # --- keeping it current ----------------------------------------------------------------

    def poll(self) -> bool:
        """Read the files again if one changed since they were last read; whether it did."""
        if all(_stamp(Path(path)) == stamp for path, stamp in self._stamps.items()):
            return False
        return self.reload("file changed")

    def reload(self, why: str = "SIGHUP") -> bool:
        """Read the CA and CRL files again; on a failure keep everything held (the next
        change to a file tries again, so a file half written is read once complete). Whether
        the files were read."""
        self._stamps = self._stamps_now()
        try:
            authorities, crls = self._read_files()
        except ConfigurationError as exc:
            log.error("card trust files not reloaded", extra={"fields": {"why": str(exc)}})
            return False
        log.info("card trust files read", extra={"fields": {"reason": why, "crls": len(crls)}})
        self._install(authorities, crls, source="card.crls")
        return True

    def fetch_all(self) -> None:
        """Fetch every known distribution point once (failures logged, the held CRL kept)."""
        for url in list(self._urls):
            self._fetch_one(url)

    # --- inside ------------------------------------------------------------------------------

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.now(), UTC)

    def _stamps_now(self) -> dict[str, FileStamp | None]:
        section = self._section
        return {path: _stamp(Path(path)) for path in (*section.trusted_ca, *section.crls)}

    def _read_files(self) -> tuple[Authorities, list[Crl]]:
        section = self._section
        pem = b"".join(read_file(path, "card.trusted_ca") for path in section.trusted_ca)
        try:
            authorities = tuple(x509.load_pem_x509_certificates(pem))
            TrustStore(authorities)  # refuses a CA that cannot sign CRLs
            crls = [load_crl(read_file(path, "card.crls")) for path in section.crls]
        except ValueError as exc:
            raise ConfigurationError(f"card.trusted_ca / card.crls do not parse: {exc}") from None
        return authorities, crls

    def _install(
        self,
        authorities: tuple[x509.Certificate, ...],
        crls: Sequence[x509.CertificateRevocationList],
        source: str,
    ) -> None:
        with self._lock:
            self._held = {
                issuer: crl
                for issuer, crl in self._held.items()
                if crl_authority(crl, authorities) is not None
            }
            self._store = TrustStore(authorities, tuple(self._held.values()))
            for crl in crls:
                self._admit(crl, source)
            if self._section.crl_fetch:
                for url in all_distribution_points(authorities):
                    self._urls.setdefault(url)
            self._publish()

    def _admit(self, crl: x509.CertificateRevocationList, source: str) -> bool:
        """Hold `crl` if a trusted CA signed it and it is newer than the one held (under the
        lock); whether it replaced something."""
        issuer = crl.issuer.rfc4514_string()
        if crl_authority(crl, self._store.authorities) is None:
            log.warning(
                "CRL ignored: no trusted CA signed it",
                extra={"fields": {"issuer": issuer, "source": source}},
            )
            return False
        key = crl.issuer.public_bytes()
        held = self._held.get(key)
        if held is not None and not is_newer(crl, held):
            if _fingerprint(held) != _fingerprint(crl):
                log.warning(
                    "CRL ignored: not newer than the one held",
                    extra={"fields": {"issuer": issuer, "source": source, **_facts(crl)}},
                )
            return False
        self._held[key] = crl
        fields = {"issuer": issuer, "source": source, **_facts(crl)}
        log.info("CRL updated", extra={"fields": fields})
        return True

    def _publish(self) -> None:
        self._store = TrustStore(
            self._store.authorities, tuple(self._held.values()), self._store.accepted_policies
        )
        for listener in self._listeners:
            listener(self._store)

    def _learn(self, certificate_der: bytes) -> list[str]:
        """The certificate's distribution points not known before, when a trusted CA signed
        it; the ones to fetch now: those of a CA that has no current CRL."""
        try:
            certificate = x509.load_der_x509_certificate(certificate_der)
        except ValueError:
            return []  # the card check says why
        issuer = signing_authority(certificate, self._store.authorities)
        if issuer is None:
            return []
        with self._lock:
            fresh = [url for url in distribution_points(certificate) if url not in self._urls]
            fresh = fresh[: max(0, MAX_URLS - len(self._urls))]
            self._urls.update(dict.fromkeys(fresh))
        own = TrustStore((issuer,), self._store.crls)
        return fresh if missing_current_crls(own, self._now()) else []

    def _fetch_one(self, url: str) -> None:
        try:
            crl = self._fetch(url)
        except CrlFetchFailed as exc:
            log.warning("CRL fetch failed", extra={"fields": {"why": str(exc)}})
            return
        with self._lock:
            if self._admit(crl, display_url(url)):
                self._publish()


class CrlRefresher:
    """The background thread that polls the files and, when fetching is on, fetches."""

    def __init__(self, holder: CrlHolder, section: CardSection) -> None:
        self._holder = holder
        self._section = section
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="otphsm-crls", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._section.crl_fetch_timeout_seconds + 5)

    def _run(self) -> None:
        fetch_every = self._section.crl_fetch_seconds
        since_fetch = fetch_every  # fetch at once when fetching is on
        while not self._stop.is_set():
            try:
                self._holder.poll()
                if self._section.crl_fetch and since_fetch >= fetch_every:
                    since_fetch = 0.0
                    self._holder.fetch_all()
            except Exception:
                log.exception("CRL refresh failed")
            self._stop.wait(self._section.crl_check_seconds)
            since_fetch += self._section.crl_check_seconds


def _facts(crl: x509.CertificateRevocationList) -> dict[str, object]:
    next_update = crl.next_update_utc
    return {
        "crl_number": crl_number(crl),
        "this_update": crl.last_update_utc.isoformat(),
        "next_update": next_update.isoformat() if next_update else None,
    }


def _fingerprint(crl: x509.CertificateRevocationList) -> bytes:
    return crl.fingerprint(hashes.SHA256())


def _stamp(path: Path) -> FileStamp | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_ino, status.st_size, status.st_mtime_ns
