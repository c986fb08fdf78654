"""The object identifiers of the CNS authentication-certificate profile (AgID, CNS v1.1)."""

from __future__ import annotations

from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

CNS_AUTHENTICATION_POLICY = ObjectIdentifier("1.3.76.16.2.1")
"""agid.authentication.cns: every CNS authentication certificate carries it."""

CNS_AUTHENTICATION_POLICY_NOTICE = (
    "Identifies X.509 authentication certificates issued for the italian National Service"
    " Card (CNS) project in according to the italian regulation"
)

LOMBARDY_CRS_POLICY = ObjectIdentifier("1.3.159.6.1.3.2.10")
LOMBARDY_SISS_POLICY = ObjectIdentifier("1.3.76.12.1.1.10.2.2.10")

ACCEPTED_AUTHENTICATION_POLICIES: frozenset[ObjectIdentifier] = frozenset(
    {CNS_AUTHENTICATION_POLICY, LOMBARDY_CRS_POLICY, LOMBARDY_SISS_POLICY}
)
"""The CNS policy and the Lombardy CRS/SISS policies AgID declares equivalent to it."""

CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH
MS_SMARTCARD_LOGON = ExtendedKeyUsageOID.SMARTCARD_LOGON
