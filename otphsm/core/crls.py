"""The pure decisions about CRLs: which authority a CRL belongs to (signed by it, nothing
critical we do not understand), whether it is current at a moment, and whether one CRL is
newer than another of the same authority.

The server holds one CRL per trusted authority (`otphsm.service.crls`) and replaces it only
with a newer one, from whatever source (a file rewritten, an HTTP fetch): an older CRL, such as a
stale copy served by a lagging mirror, would bring revoked certificates back.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def crl_authority(
    crl: x509.CertificateRevocationList, authorities: Iterable[x509.Certificate]
) -> x509.Certificate | None:
    """The trusted authority that issued `crl` (its name, its signature), or None when none
    did or when the CRL carries a critical extension (delta or partitioned CRLs are not
    understood, so never used)."""
    if any(extension.critical for extension in crl.extensions):
        return None
    for authority in authorities:
        if authority.subject == crl.issuer and is_signed_by(crl, authority):
            return authority
    return None


def is_signed_by(crl: x509.CertificateRevocationList, authority: x509.Certificate) -> bool:
    public_key = authority.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        return False
    return crl.is_signature_valid(public_key)


def is_current(crl: x509.CertificateRevocationList, now: datetime) -> bool:
    """thisUpdate ≤ now < nextUpdate (a CRL without nextUpdate is never current)."""
    next_update = crl.next_update_utc
    return crl.last_update_utc <= now and next_update is not None and now < next_update


def crl_number(crl: x509.CertificateRevocationList) -> int | None:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return None


def is_newer(
    candidate: x509.CertificateRevocationList, held: x509.CertificateRevocationList
) -> bool:
    """Whether `candidate` supersedes `held` (the same authority's): a higher CRL number when
    both carry one (RFC 5280 §5.2.3), else a later thisUpdate. The same CRL is not newer."""
    ours, theirs = crl_number(candidate), crl_number(held)
    if ours is not None and theirs is not None:
        return ours > theirs
    return candidate.last_update_utc > held.last_update_utc


def stale_problem(crl: x509.CertificateRevocationList, now: datetime) -> str:
    """Why a CRL of the right authority is not current at `now`, in words for the refusal."""
    if now < crl.last_update_utc:
        return f"its newest CRL is issued {crl.last_update_utc.isoformat()}, after now"
    if crl.next_update_utc is None:
        return "its CRL has no nextUpdate"
    return (
        f"its newest CRL's nextUpdate {crl.next_update_utc.isoformat()} has passed "
        f"(now {now.isoformat()}); a newer CRL is needed"
    )
