"""Checks of what a CNS card proves: its authentication certificate against the trusted CNS
CAs, the binding of that certificate to the card that was read, and the card's signature over
a server challenge.

The chain is one level deep, as on every CNS (the "CA Cittadini" roots have pathlen:0): the
issuer must be one of the configured authorities. Revocation is checked against the
configured CRLs and fails closed: with no CRL for the issuer, or none that is correctly signed
and current at `now` (thisUpdate ≤ now < nextUpdate), the check refuses with
CRL_UNAVAILABLE_OR_STALE rather than trusting a certificate it cannot clear (the words say
which: none configured, none signed by the CA, or the newest one's nextUpdate passed). CRLs
that carry a critical extension (delta or partitioned CRLs) are not understood and so never
used (`otphsm.core.crls`).
The authorities' own validity periods are not checked (RFC 5280 treats trust anchors as
configuration); the operator removes an expired CA from the trust store.

Each refusal raises `CardCheckFailed` with its own `CardCheckFailure`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID, ObjectIdentifier

from otphsm.core import codice_fiscale as cf
from otphsm.core.cns_identity import MalformedCommonName, parse_common_name
from otphsm.core.cns_profile import ACCEPTED_AUTHENTICATION_POLICIES, CLIENT_AUTH
from otphsm.core.crls import crl_authority, is_current, stale_problem
from otphsm.core.errors import AuthorisationRefused, ConfigurationError


class CardCheckFailure(enum.StrEnum):
    MALFORMED_CERTIFICATE = "malformed certificate"
    UNTRUSTED_ISSUER = "untrusted issuer"
    EXPIRED = "certificate expired"
    NOT_YET_VALID = "certificate not yet valid"
    REVOKED = "certificate revoked"
    CRL_UNAVAILABLE_OR_STALE = "no current CRL for the issuer"
    WRONG_KEY_USAGE = "wrong key usage"
    MISSING_CLIENT_AUTH = "extended key usage lacks clientAuth"
    MISSING_POLICY = "CNS authentication policy missing"
    CN_MALFORMED = "common name malformed"
    BAD_CODICE_FISCALE = "invalid codice fiscale in the common name"
    CARD_ID_MISMATCH = "card id differs from EF_IDCarta"
    CF_MISMATCH = "codice fiscale differs from EF_DatiPersonali"
    UNSUPPORTED_KEY = "certificate key is not RSA"
    BAD_SIGNATURE = "challenge signature does not verify"
    CHALLENGE_REUSED = "challenge already used"
    """Decided by the server's challenge store, not here."""
    CHALLENGE_EXPIRED = "challenge expired"
    """Decided by the server's challenge store, not here."""


class CardCheckFailed(AuthorisationRefused):
    def __init__(self, reason: CardCheckFailure, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class TrustStore:
    """The CNS CAs this deployment trusts, with their current CRLs."""

    authorities: tuple[x509.Certificate, ...]
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    accepted_policies: frozenset[ObjectIdentifier] = field(default=ACCEPTED_AUTHENTICATION_POLICIES)

    def __post_init__(self) -> None:
        if not self.authorities:
            raise ConfigurationError("the trust store names no CNS certification authority")
        for authority in self.authorities:
            problem = _not_a_crl_issuing_ca(authority)
            if problem:
                raise ConfigurationError(
                    f"{authority.subject.rfc4514_string()} cannot be a trusted CNS CA: {problem}"
                )

    @classmethod
    def from_pem(
        cls,
        authorities_pem: bytes,
        crls: Iterable[bytes] = (),
        *,
        accepted_policies: frozenset[ObjectIdentifier] = ACCEPTED_AUTHENTICATION_POLICIES,
    ) -> TrustStore:
        """From a PEM bundle of CA certificates and CRLs each in PEM or DER."""
        return cls(
            authorities=tuple(x509.load_pem_x509_certificates(authorities_pem)),
            crls=tuple(load_crl(data) for data in crls),
            accepted_policies=accepted_policies,
        )

    def with_crls(self, crls: Sequence[x509.CertificateRevocationList]) -> TrustStore:
        """The same authorities with freshly fetched CRLs."""
        return TrustStore(self.authorities, tuple(crls), self.accepted_policies)

    def for_certificate(self, certificate_der: bytes) -> TrustStore:
        """`TrustSource`: a fixed trust store checks every certificate against itself."""
        return self


def load_crl(data: bytes) -> x509.CertificateRevocationList:
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


@dataclass(frozen=True)
class VerifiedCardHolder:
    """Who the card belongs to, once every check passed."""

    codice_fiscale: str
    card_id: str
    given_name: str | None
    surname: str | None
    certificate_serial: int
    issuer: str
    """The issuing CA's name, RFC 4514."""
    certificate_not_after: datetime


def check_card_authorisation(
    trust_store: TrustStore,
    *,
    certificate_der: bytes,
    card_id: str,
    codice_fiscale: str,
    challenge: bytes,
    signature: bytes,
    now: datetime,
) -> VerifiedCardHolder:
    """Everything a station's card authorisation must prove.

    `card_id` is EF_IDCarta and `codice_fiscale` the CF field of EF_DatiPersonali, both as
    read from the card; `signature` is the card's PKCS#1 v1.5 SHA-256 signature of
    `challenge`.
    """
    try:
        certificate = x509.load_der_x509_certificate(certificate_der)
    except ValueError as error:
        raise CardCheckFailed(
            CardCheckFailure.MALFORMED_CERTIFICATE,
            "certificate_der does not parse as an X.509 certificate",
        ) from error
    holder = check_cns_certificate(trust_store, certificate, now=now)
    if holder.card_id != card_id:
        raise CardCheckFailed(
            CardCheckFailure.CARD_ID_MISMATCH,
            "the certificate names another card than card_id",
        )
    if holder.codice_fiscale != codice_fiscale.strip().upper():
        raise CardCheckFailed(
            CardCheckFailure.CF_MISMATCH,
            "the certificate names another codice fiscale than codice_fiscale",
        )
    _check_challenge_signature(certificate, challenge, signature)
    return holder


def check_cns_certificate(
    trust_store: TrustStore, certificate: x509.Certificate, *, now: datetime
) -> VerifiedCardHolder:
    """The certificate alone: chain, validity at `now`, revocation, CNS profile, common name."""
    if now.tzinfo is None:
        raise ValueError(f"a timezone-aware `now` is needed, got {now!r}")
    authority = _trusted_issuer(trust_store, certificate)
    _check_validity(certificate, now)
    _check_not_revoked(trust_store, authority, certificate, now)
    _check_key_usage(certificate)
    _check_client_auth(certificate)
    _check_policy(certificate, trust_store.accepted_policies)
    return _holder_from_subject(certificate, authority)


def _not_a_crl_issuing_ca(authority: x509.Certificate) -> str | None:
    try:
        constraints = authority.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return "no basicConstraints"
    if not constraints.ca:
        return "basicConstraints says it is not a CA"
    try:
        usage = authority.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    if not (usage.key_cert_sign and usage.crl_sign):
        return "its key usage lacks keyCertSign or cRLSign"
    return None


def signing_authority(
    certificate: x509.Certificate, authorities: Iterable[x509.Certificate]
) -> x509.Certificate | None:
    """The authority, among `authorities`, that has the certificate's issuer name and signed it."""
    for authority in authorities:
        if authority.subject != certificate.issuer:
            continue
        try:
            certificate.verify_directly_issued_by(authority)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return authority
    return None


def _trusted_issuer(trust_store: TrustStore, certificate: x509.Certificate) -> x509.Certificate:
    if not any(ca.subject == certificate.issuer for ca in trust_store.authorities):
        raise CardCheckFailed(
            CardCheckFailure.UNTRUSTED_ISSUER, "no trusted CA has the certificate's issuer name"
        )
    authority = signing_authority(certificate, trust_store.authorities)
    if authority is not None:
        return authority
    raise CardCheckFailed(
        CardCheckFailure.UNTRUSTED_ISSUER,
        "the trusted CA of the certificate's issuer name did not sign it",
    )


def _check_validity(certificate: x509.Certificate, now: datetime) -> None:
    if now < certificate.not_valid_before_utc:
        raise CardCheckFailed(
            CardCheckFailure.NOT_YET_VALID,
            f"valid from {certificate.not_valid_before_utc.isoformat()}, now is {now.isoformat()}",
        )
    if now > certificate.not_valid_after_utc:
        raise CardCheckFailed(
            CardCheckFailure.EXPIRED,
            f"expired {certificate.not_valid_after_utc.isoformat()}, now is {now.isoformat()}",
        )


def _check_not_revoked(
    trust_store: TrustStore,
    authority: x509.Certificate,
    certificate: x509.Certificate,
    now: datetime,
) -> None:
    crl = _current_crl(trust_store, authority, now)
    entry = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
    if entry is not None:
        raise CardCheckFailed(
            CardCheckFailure.REVOKED,
            f"serial {certificate.serial_number:x} revoked {entry.revocation_date_utc.isoformat()}",
        )


def _current_crl(
    trust_store: TrustStore, authority: x509.Certificate, now: datetime
) -> x509.CertificateRevocationList:
    """The newest CRL of `authority` that is signed by it and current at `now`."""
    issuer_name = authority.subject.rfc4514_string()
    own = [crl for crl in trust_store.crls if crl.issuer == authority.subject]
    authentic = [crl for crl in own if crl_authority(crl, (authority,)) is not None]
    current = [crl for crl in authentic if is_current(crl, now)]
    if current:
        return max(current, key=lambda crl: crl.last_update_utc)
    if not own:
        problem = "no CRL is configured"
    elif not authentic:
        problem = "no configured CRL is validly signed by it"
    else:
        problem = stale_problem(max(authentic, key=lambda crl: crl.last_update_utc), now)
    raise CardCheckFailed(CardCheckFailure.CRL_UNAVAILABLE_OR_STALE, f"{issuer_name}: {problem}")


def missing_current_crls(trust_store: TrustStore, now: datetime) -> list[str]:
    """Why each trusted authority without a current CRL at `now` has none (empty: every card
    can be checked); the words of the refusal a card of that authority would get."""
    missing = []
    for authority in trust_store.authorities:
        try:
            _current_crl(trust_store, authority, now)
        except CardCheckFailed as refusal:
            missing.append(refusal.detail)
    return missing


def _check_key_usage(certificate: x509.Certificate) -> None:
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise CardCheckFailed(CardCheckFailure.WRONG_KEY_USAGE, "no key usage extension") from None
    if not usage.digital_signature:
        raise CardCheckFailed(CardCheckFailure.WRONG_KEY_USAGE, "digitalSignature is not set")
    if usage.content_commitment:
        raise CardCheckFailed(
            CardCheckFailure.WRONG_KEY_USAGE,
            "nonRepudiation is set: a signature certificate, not the CNS authentication one",
        )


def _check_client_auth(certificate: x509.Certificate) -> None:
    try:
        purposes = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise CardCheckFailed(
            CardCheckFailure.MISSING_CLIENT_AUTH, "no extended key usage extension"
        ) from None
    if CLIENT_AUTH not in purposes:
        raise CardCheckFailed(
            CardCheckFailure.MISSING_CLIENT_AUTH,
            "extended key usage is " + ", ".join(oid.dotted_string for oid in purposes),
        )


def _check_policy(
    certificate: x509.Certificate, accepted_policies: frozenset[ObjectIdentifier]
) -> None:
    try:
        policies = certificate.extensions.get_extension_for_class(x509.CertificatePolicies).value
    except x509.ExtensionNotFound:
        raise CardCheckFailed(
            CardCheckFailure.MISSING_POLICY, "no certificate policies extension"
        ) from None
    present = {policy.policy_identifier for policy in policies}
    if not present & accepted_policies:
        raise CardCheckFailed(
            CardCheckFailure.MISSING_POLICY,
            "policies are " + ", ".join(sorted(oid.dotted_string for oid in present)),
        )


def _holder_from_subject(
    certificate: x509.Certificate, authority: x509.Certificate
) -> VerifiedCardHolder:
    common_names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(common_names) != 1 or not isinstance(common_names[0].value, str):
        raise CardCheckFailed(
            CardCheckFailure.CN_MALFORMED,
            f"exactly one text common name expected, found {len(common_names)}",
        )
    try:
        common_name = parse_common_name(common_names[0].value)
    except MalformedCommonName as error:
        raise CardCheckFailed(CardCheckFailure.CN_MALFORMED, str(error)) from error
    try:
        holder_code = cf.validate(common_name.codice_fiscale)
    except cf.InvalidCodiceFiscale as error:
        raise CardCheckFailed(CardCheckFailure.BAD_CODICE_FISCALE, str(error)) from error
    return VerifiedCardHolder(
        codice_fiscale=holder_code.code,
        card_id=common_name.card_id,
        given_name=_single_text(certificate.subject, NameOID.GIVEN_NAME),
        surname=_single_text(certificate.subject, NameOID.SURNAME),
        certificate_serial=certificate.serial_number,
        issuer=authority.subject.rfc4514_string(),
        certificate_not_after=certificate.not_valid_after_utc,
    )


def _single_text(name: x509.Name, oid: ObjectIdentifier) -> str | None:
    attributes = name.get_attributes_for_oid(oid)
    if len(attributes) != 1 or not isinstance(attributes[0].value, str):
        return None
    return attributes[0].value


def _check_challenge_signature(
    certificate: x509.Certificate, challenge: bytes, signature: bytes
) -> None:
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise CardCheckFailed(
            CardCheckFailure.UNSUPPORTED_KEY, f"the key is {type(public_key).__name__}"
        )
    try:
        public_key.verify(signature, challenge, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise CardCheckFailed(
            CardCheckFailure.BAD_SIGNATURE,
            "the signature is not PKCS#1 v1.5 SHA-256 over the challenge by the certificate key",
        ) from None
