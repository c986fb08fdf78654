"""Getting a CRL over HTTP from a distribution point: one GET with a timeout and a size limit.

What comes back is only parsed here; whether it may be used (signed by a trusted CA, newer than
the CRL held) is the holder's decision (`otphsm.service.crls`). CRLs are signed, so plain
http:// is what CAs publish and what is fetched. Only the standard library is used (urllib).
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping

from cryptography import x509

from otphsm.core.certificates import load_crl

MAX_CRL_BYTES = 64 * 1024 * 1024
"""A national CA's CRL runs to megabytes; anything past this is refused unread."""


class CrlFetchFailed(Exception):
    """The URL gave no CRL: a connection failure, a timeout, an HTTP error, not a CRL."""


def fetch_crl(
    url: str, *, timeout_seconds: float, proxies: Mapping[str, str] | None = None
) -> x509.CertificateRevocationList:
    """GET `url` and parse its body as a CRL (DER, as RFC 5280 §4.2.1.13 says, or PEM).
    `proxies`: None follows the environment (http_proxy, no_proxy, …); {} goes direct."""
    if not url.lower().startswith("http://"):
        raise CrlFetchFailed(f"{display_url(url)}: only http:// distribution points are fetched")
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler(None if proxies is None else dict(proxies))
    )
    request = urllib.request.Request(url, headers={"Accept": "application/pkix-crl"})  # noqa: S310
    try:
        with opener.open(request, timeout=timeout_seconds) as response:
            body = response.read(MAX_CRL_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise CrlFetchFailed(f"{display_url(url)} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CrlFetchFailed(f"{display_url(url)} unreachable: {reason}") from None
    if len(body) > MAX_CRL_BYTES:
        raise CrlFetchFailed(f"{display_url(url)} sent more than {MAX_CRL_BYTES} bytes")
    try:
        return load_crl(body)
    except ValueError:
        raise CrlFetchFailed(f"{display_url(url)} sent something that is not a CRL") from None


def distribution_points(certificate: x509.Certificate) -> list[str]:
    """The http:// URLs of the certificate's CRL distribution points (others, such as ldap://,
    are left out: they are not fetched)."""
    try:
        points = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return []
    return list(
        dict.fromkeys(
            name.value
            for point in points
            for name in point.full_name or ()
            if isinstance(name, x509.UniformResourceIdentifier)
            and name.value.lower().startswith("http://")
        )
    )


def all_distribution_points(certificates: Iterable[x509.Certificate]) -> list[str]:
    return list(dict.fromkeys(url for each in certificates for url in distribution_points(each)))


def display_url(url: str) -> str:
    """scheme://host/path: never a query or credentials in a log line."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"
