"""Card authorisation checks: the happy path and each refusal reason with its own scenario."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from otphsm.core import codice_fiscale as cf
from otphsm.core.certificates import (
    CardCheckFailed,
    CardCheckFailure,
    TrustStore,
    VerifiedCardHolder,
    check_card_authorisation,
    check_cns_certificate,
)
from otphsm.core.cns_profile import (
    CNS_AUTHENTICATION_POLICY,
    LOMBARDY_CRS_POLICY,
    LOMBARDY_SISS_POLICY,
)
from otphsm.core.errors import AuthorisationRefused, ConfigurationError
from otphsm.simulators.card.pki import (
    CNS_KEY_USAGE,
    CertProfile,
    TestCa,
    issue_cns_certificate,
    make_test_ca,
)

CA_CREATED = datetime(2020, 1, 1, tzinfo=UTC)
ISSUED = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)
CRL_ISSUED = datetime(2025, 2, 28, 12, 0, tzinfo=UTC)
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CF = "RSSMRA80A01L378S"
CARD_ID = "7430010024925855"
CHALLENGE = bytes(range(32))
CIE_POLICY = ObjectIdentifier("1.3.76.47.4")
IMPOSSIBLE_DATE_CF = "RSSMRA80A32L378" + cf.check_character("RSSMRA80A32L378")
SERVER_ONLY_REASONS = {CardCheckFailure.CHALLENGE_REUSED, CardCheckFailure.CHALLENGE_EXPIRED}


def sign(key: rsa.RSAPrivateKey, message: bytes) -> bytes:
    return key.sign(message, padding.PKCS1v15(), hashes.SHA256())


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


@dataclass
class Keys:
    ca: rsa.RSAPrivateKey
    other_ca: rsa.RSAPrivateKey
    card: rsa.RSAPrivateKey
    other_card: rsa.RSAPrivateKey


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(
        ca=rsa.generate_private_key(65537, 2048),
        other_ca=rsa.generate_private_key(65537, 2048),
        card=rsa.generate_private_key(65537, 1024),
        other_card=rsa.generate_private_key(65537, 1024),
    )


@dataclass
class Scene:
    """One trusted CA with a current CRL, and a card holding a conformant certificate."""

    keys: Keys
    ca: TestCa

    def certificate(
        self,
        profile: CertProfile | None = None,
        *,
        codice_fiscale: str = CF,
        public_key: rsa.RSAPublicKey | None = None,
    ) -> x509.Certificate:
        return issue_cns_certificate(
            self.ca,
            public_key=public_key or self.keys.card.public_key(),
            codice_fiscale=codice_fiscale,
            card_id=CARD_ID,
            given_name="MARIO",
            surname="ROSSI",
            dati_personali=b"EF_DatiPersonali of Mario Rossi",
            now=ISSUED,
            profile=profile,
        )

    def trust(self, crls: tuple[x509.CertificateRevocationList, ...] | None = None) -> TrustStore:
        return TrustStore(
            authorities=(self.ca.certificate,),
            crls=(self.ca.crl(CRL_ISSUED),) if crls is None else crls,
        )

    def authorise(
        self,
        certificate: x509.Certificate | bytes | None = None,
        *,
        trust: TrustStore | None = None,
        card_id: str = CARD_ID,
        codice_fiscale: str = CF,
        signature: bytes | None = None,
        now: datetime = NOW,
    ) -> VerifiedCardHolder:
        presented = self.certificate() if certificate is None else certificate
        return check_card_authorisation(
            trust or self.trust(),
            certificate_der=presented if isinstance(presented, bytes) else der(presented),
            card_id=card_id,
            codice_fiscale=codice_fiscale,
            challenge=CHALLENGE,
            signature=sign(self.keys.card, CHALLENGE) if signature is None else signature,
            now=now,
        )


@pytest.fixture
def scene(keys: Keys) -> Scene:
    return Scene(keys=keys, ca=make_test_ca(now=CA_CREATED, key=keys.ca))


def test_a_conformant_card_is_authorised(scene: Scene) -> None:
    certificate = scene.certificate()
    holder = scene.authorise(certificate)

    assert holder == VerifiedCardHolder(
        codice_fiscale=CF,
        card_id=CARD_ID,
        given_name="MARIO",
        surname="ROSSI",
        certificate_serial=certificate.serial_number,
        issuer="CN=CA Cittadini (TEST),O=otphsm test,C=IT",
        certificate_not_after=certificate.not_valid_after_utc,
    )


def test_a_2048_bit_card_is_authorised(scene: Scene) -> None:
    card_key = rsa.generate_private_key(65537, 2048)
    certificate = scene.certificate(public_key=card_key.public_key())
    assert scene.authorise(certificate, signature=sign(card_key, CHALLENGE)).card_id == CARD_ID


def test_an_omocode_holder_is_authorised_under_the_omocode(scene: Scene) -> None:
    omocode = "RSSMRA80A01L37UP"
    holder = scene.authorise(scene.certificate(codice_fiscale=omocode), codice_fiscale=omocode)
    assert holder.codice_fiscale == omocode


def test_the_cf_from_the_card_is_compared_case_insensitively(scene: Scene) -> None:
    assert scene.authorise(codice_fiscale=" rssmra80a01l378s").codice_fiscale == CF


@pytest.mark.parametrize("policy", [LOMBARDY_CRS_POLICY, LOMBARDY_SISS_POLICY])
def test_lombardy_policies_count_as_cns(scene: Scene, policy: ObjectIdentifier) -> None:
    scene.authorise(scene.certificate(CertProfile(policies=(policy,))))


def test_the_accepted_policies_are_configurable(scene: Scene) -> None:
    cns_only = replace(scene.trust(), accepted_policies=frozenset({CNS_AUTHENTICATION_POLICY}))
    lombard = scene.certificate(CertProfile(policies=(LOMBARDY_CRS_POLICY,)))
    with pytest.raises(CardCheckFailed) as caught:
        scene.authorise(lombard, trust=cns_only)
    assert caught.value.reason is CardCheckFailure.MISSING_POLICY


def test_validity_bounds_are_inclusive(scene: Scene) -> None:
    certificate = scene.certificate()
    early_crl = scene.ca.crl(certificate.not_valid_before_utc)
    scene.authorise(
        certificate, trust=scene.trust((early_crl,)), now=certificate.not_valid_before_utc
    )
    late_crl = scene.ca.crl(certificate.not_valid_after_utc - timedelta(days=1))
    scene.authorise(
        certificate, trust=scene.trust((late_crl,)), now=certificate.not_valid_after_utc
    )


def test_the_newest_current_crl_decides(scene: Scene) -> None:
    certificate = scene.certificate()
    older = scene.ca.crl(CRL_ISSUED - timedelta(days=1))
    scene.ca.revoke(certificate.serial_number, CRL_ISSUED - timedelta(hours=1))
    newer = scene.ca.crl(CRL_ISSUED)
    with pytest.raises(CardCheckFailed) as caught:
        scene.authorise(certificate, trust=scene.trust((newer, older)))
    assert caught.value.reason is CardCheckFailure.REVOKED


def test_another_cas_revocation_of_the_same_serial_is_ignored(scene: Scene, keys: Keys) -> None:
    certificate = scene.certificate()
    stranger = make_test_ca("Altra CA (TEST)", now=CA_CREATED, key=keys.other_ca)
    stranger.revoke(certificate.serial_number, CRL_ISSUED)
    trust = scene.trust((scene.ca.crl(CRL_ISSUED), stranger.crl(CRL_ISSUED)))
    scene.authorise(certificate, trust=trust)


# Each scenario presents a card with exactly one defect.
Scenario = Callable[[Scene], object]


def impostor_ca(scene: Scene) -> TestCa:
    """A CA with the trusted CA's very name but another key."""
    return make_test_ca(now=CA_CREATED, key=scene.keys.other_ca)


def revoked(scene: Scene) -> object:
    certificate = scene.certificate()
    scene.ca.revoke(certificate.serial_number, ISSUED + timedelta(days=30))
    return scene.authorise(certificate)


def key_usage(**changes: bool) -> CertProfile:
    bits = {
        "digital_signature": CNS_KEY_USAGE.digital_signature,
        "content_commitment": False,
        "key_encipherment": CNS_KEY_USAGE.key_encipherment,
        "data_encipherment": False,
        "key_agreement": False,
        "key_cert_sign": False,
        "crl_sign": False,
        "encipher_only": False,
        "decipher_only": False,
    }
    return CertProfile(key_usage=x509.KeyUsage(**(bits | changes)))


def elliptic_curve_card(scene: Scene) -> object:
    card_key = ec.generate_private_key(ec.SECP256R1())
    certificate = scene.certificate(public_key=card_key.public_key())  # type: ignore[arg-type]
    return scene.authorise(
        certificate, signature=card_key.sign(CHALLENGE, ec.ECDSA(hashes.SHA256()))
    )


REFUSALS: list[tuple[str, CardCheckFailure, Scenario]] = [
    (
        "garbage certificate",
        CardCheckFailure.MALFORMED_CERTIFICATE,
        lambda s: s.authorise(b"\x30\x03\x02\x01\x00"),
    ),
    (
        "issued by an unknown CA",
        CardCheckFailure.UNTRUSTED_ISSUER,
        lambda s: s.authorise(
            s.certificate(
                CertProfile(
                    signer=make_test_ca("Altra CA (TEST)", now=CA_CREATED, key=s.keys.other_ca)
                )
            )
        ),
    ),
    (
        "forged: trusted issuer name, other key",
        CardCheckFailure.UNTRUSTED_ISSUER,
        lambda s: s.authorise(s.certificate(CertProfile(signing_key=s.keys.other_ca))),
    ),
    (
        "issued by a namesake of the trusted CA",
        CardCheckFailure.UNTRUSTED_ISSUER,
        lambda s: s.authorise(s.certificate(CertProfile(signer=impostor_ca(s)))),
    ),
    (
        "expired",
        CardCheckFailure.EXPIRED,
        lambda s: s.authorise(s.certificate(CertProfile(not_after=NOW - timedelta(seconds=1)))),
    ),
    (
        "not yet valid",
        CardCheckFailure.NOT_YET_VALID,
        lambda s: s.authorise(s.certificate(CertProfile(not_before=NOW + timedelta(seconds=1)))),
    ),
    ("revoked", CardCheckFailure.REVOKED, revoked),
    (
        "no CRL configured",
        CardCheckFailure.CRL_UNAVAILABLE_OR_STALE,
        lambda s: s.authorise(trust=s.trust(())),
    ),
    (
        "CRL past its next update",
        CardCheckFailure.CRL_UNAVAILABLE_OR_STALE,
        lambda s: s.authorise(trust=s.trust((s.ca.crl(NOW - timedelta(days=8)),))),
    ),
    (
        "CRL expiring exactly now",
        CardCheckFailure.CRL_UNAVAILABLE_OR_STALE,
        lambda s: s.authorise(trust=s.trust((s.ca.crl(CRL_ISSUED, next_update=NOW),))),
    ),
    (
        "CRL issued after now",
        CardCheckFailure.CRL_UNAVAILABLE_OR_STALE,
        lambda s: s.authorise(trust=s.trust((s.ca.crl(NOW + timedelta(minutes=1)),))),
    ),
    (
        "CRL signed by a namesake",
        CardCheckFailure.CRL_UNAVAILABLE_OR_STALE,
        lambda s: s.authorise(trust=s.trust((impostor_ca(s).crl(CRL_ISSUED),))),
    ),
    (
        "no key usage",
        CardCheckFailure.WRONG_KEY_USAGE,
        lambda s: s.authorise(s.certificate(CertProfile(key_usage=None))),
    ),
    (
        "no digitalSignature",
        CardCheckFailure.WRONG_KEY_USAGE,
        lambda s: s.authorise(s.certificate(key_usage(digital_signature=False))),
    ),
    (
        "nonRepudiation: a signature certificate",
        CardCheckFailure.WRONG_KEY_USAGE,
        lambda s: s.authorise(s.certificate(key_usage(content_commitment=True))),
    ),
    (
        "no extended key usage",
        CardCheckFailure.MISSING_CLIENT_AUTH,
        lambda s: s.authorise(s.certificate(CertProfile(extended_key_usage=None))),
    ),
    (
        "emailProtection only",
        CardCheckFailure.MISSING_CLIENT_AUTH,
        lambda s: s.authorise(
            s.certificate(CertProfile(extended_key_usage=(ExtendedKeyUsageOID.EMAIL_PROTECTION,)))
        ),
    ),
    (
        "no certificate policies",
        CardCheckFailure.MISSING_POLICY,
        lambda s: s.authorise(s.certificate(CertProfile(policies=None))),
    ),
    (
        "CIE policy, not CNS",
        CardCheckFailure.MISSING_POLICY,
        lambda s: s.authorise(s.certificate(CertProfile(policies=(CIE_POLICY,)))),
    ),
    (
        "CN without card id",
        CardCheckFailure.CN_MALFORMED,
        lambda s: s.authorise(s.certificate(CertProfile(common_name=CF))),
    ),
    (
        "CN is a plain name",
        CardCheckFailure.CN_MALFORMED,
        lambda s: s.authorise(s.certificate(CertProfile(common_name="MARIO ROSSI"))),
    ),
    (
        "CN codice fiscale with a bad check character",
        CardCheckFailure.BAD_CODICE_FISCALE,
        lambda s: s.authorise(
            s.certificate(codice_fiscale="RSSMRA80A01L378T"), codice_fiscale="RSSMRA80A01L378T"
        ),
    ),
    (
        "CN codice fiscale with an impossible date",
        CardCheckFailure.BAD_CODICE_FISCALE,
        lambda s: s.authorise(s.certificate(codice_fiscale=IMPOSSIBLE_DATE_CF)),
    ),
    (
        "card id differs from EF_IDCarta",
        CardCheckFailure.CARD_ID_MISMATCH,
        lambda s: s.authorise(card_id="7430010024925856"),
    ),
    (
        "codice fiscale differs from EF_DatiPersonali",
        CardCheckFailure.CF_MISMATCH,
        lambda s: s.authorise(codice_fiscale="BNCLRA90L55L378U"),
    ),
    (
        "EF_DatiPersonali holds the omocode of the CN's code",
        CardCheckFailure.CF_MISMATCH,
        lambda s: s.authorise(codice_fiscale="RSSMRA80A01L37UP"),
    ),
    ("elliptic-curve card key", CardCheckFailure.UNSUPPORTED_KEY, elliptic_curve_card),
    (
        "signature over another challenge",
        CardCheckFailure.BAD_SIGNATURE,
        lambda s: s.authorise(signature=sign(s.keys.card, CHALLENGE + b"!")),
    ),
    (
        "signature by another card",
        CardCheckFailure.BAD_SIGNATURE,
        lambda s: s.authorise(signature=sign(s.keys.other_card, CHALLENGE)),
    ),
    (
        "truncated signature",
        CardCheckFailure.BAD_SIGNATURE,
        lambda s: s.authorise(signature=sign(s.keys.card, CHALLENGE)[:-1]),
    ),
    (
        "PSS instead of PKCS#1 v1.5",
        CardCheckFailure.BAD_SIGNATURE,
        lambda s: s.authorise(
            signature=s.keys.card.sign(
                CHALLENGE, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256()
            )
        ),
    ),
]


@pytest.mark.parametrize(
    ("reason", "scenario"),
    [pytest.param(reason, scenario, id=name) for name, reason, scenario in REFUSALS],
)
def test_each_defect_is_refused_with_its_reason(
    scene: Scene, reason: CardCheckFailure, scenario: Scenario
) -> None:
    with pytest.raises(CardCheckFailed) as caught:
        scenario(scene)
    assert caught.value.reason is reason
    assert isinstance(caught.value, AuthorisationRefused)
    assert str(reason) in str(caught.value)


def test_every_reason_the_checks_decide_has_a_scenario() -> None:
    covered = {reason for _, reason, _ in REFUSALS}
    assert covered == set(CardCheckFailure) - SERVER_ONLY_REASONS


def test_the_certificate_alone_can_be_checked(scene: Scene) -> None:
    holder = check_cns_certificate(scene.trust(), scene.certificate(), now=NOW)
    assert (holder.codice_fiscale, holder.card_id) == (CF, CARD_ID)


def test_a_naive_now_is_a_programming_error(scene: Scene) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        check_cns_certificate(scene.trust(), scene.certificate(), now=NOW.replace(tzinfo=None))


def test_a_trust_store_needs_an_authority() -> None:
    with pytest.raises(ConfigurationError, match="no CNS certification authority"):
        TrustStore(authorities=())


def test_an_end_entity_cannot_be_a_trusted_authority(scene: Scene) -> None:
    with pytest.raises(ConfigurationError, match="not a CA"):
        TrustStore(authorities=(scene.certificate(),))


def test_trust_store_from_pem_takes_pem_and_der_crls(scene: Scene) -> None:
    certificate = scene.certificate()
    old_crl = scene.ca.crl(CRL_ISSUED - timedelta(days=2))
    scene.ca.revoke(certificate.serial_number, CRL_ISSUED)
    new_crl = scene.ca.crl(CRL_ISSUED)
    trust = TrustStore.from_pem(
        scene.ca.certificate.public_bytes(serialization.Encoding.PEM),
        [
            old_crl.public_bytes(serialization.Encoding.DER),
            new_crl.public_bytes(serialization.Encoding.PEM),
        ],
    )
    assert trust.authorities == (scene.ca.certificate,)
    with pytest.raises(CardCheckFailed) as caught:
        scene.authorise(certificate, trust=trust)
    assert caught.value.reason is CardCheckFailure.REVOKED
    scene.authorise(certificate, trust=trust.with_crls([old_crl]))
