"""What travels on the wire besides the messages, defined once for both ends: the trailing
metadata keys the service sets on an error, and the protobuf enums as domain enums.

The service (`otphsm.service.errors`, `otphsm.service.convert`) and the client read the same
tables here, so an enum value or a metadata key cannot mean one thing on one side and another
on the other. Reading a number the table does not know is the caller's choice: the service
refuses it as invalid input, the client falls back where a fallback is documented.
"""

from __future__ import annotations

from collections.abc import Mapping

from otphsm.core.otp import HashAlgorithm
from otphsm.core.records import ActivationMethod
from otphsm.core.tokens import OtpMode, TokenKind, TokenState
from otphsm.core.verification import VerifyResult
from otphsm.v1 import common_pb2, enrolment_pb2

RETRY_AFTER_KEY = "retry-after-seconds"
"""Seconds until a wait ends (a locked token, a quota used up)."""
REASON_KEY = "otphsm-reason"
"""A machine-readable reason: the error category, or the card check that failed."""
STATUS_DETAILS_KEY = "grpc-status-details-bin"
"""The standard `google.rpc.Status` (binary), whose details repeat the reason and the wait."""
ERROR_DOMAIN = "otphsm"
"""`google.rpc.ErrorInfo.domain` of every refusal."""
AUTHORISATION_REFUSED = "AUTHORISATION_REFUSED"
"""The reason sent with a refused authorisation (a wrong SMS code, a refused card)."""

# --- wire number → domain enum (UNSPECIFIED means the server default) ---------------------

OTP_MODES: Mapping[int, OtpMode] = {
    common_pb2.OTP_MODE_UNSPECIFIED: OtpMode.TOTP,
    common_pb2.OTP_MODE_TOTP: OtpMode.TOTP,
    common_pb2.OTP_MODE_HOTP: OtpMode.HOTP,
}
HASH_ALGORITHMS: Mapping[int, HashAlgorithm] = {
    common_pb2.HASH_ALGORITHM_UNSPECIFIED: HashAlgorithm.SHA1,
    common_pb2.HASH_ALGORITHM_SHA1: HashAlgorithm.SHA1,
    common_pb2.HASH_ALGORITHM_SHA256: HashAlgorithm.SHA256,
    common_pb2.HASH_ALGORITHM_SHA512: HashAlgorithm.SHA512,
}
ACTIVATION_METHODS: Mapping[int, ActivationMethod] = {
    enrolment_pb2.ACTIVATION_METHOD_UNSPECIFIED: ActivationMethod.CODE,
    enrolment_pb2.ACTIVATION_METHOD_CODE: ActivationMethod.CODE,
    enrolment_pb2.ACTIVATION_METHOD_TEMPORARY_SECRET: ActivationMethod.TEMPORARY_SECRET,
    enrolment_pb2.ACTIVATION_METHOD_OTPAUTH: ActivationMethod.OTPAUTH,
}

# --- domain enum → wire number --------------------------------------------------------------

OTP_MODE_NUMBERS: Mapping[OtpMode, common_pb2.OtpMode] = {
    OtpMode.TOTP: common_pb2.OTP_MODE_TOTP,
    OtpMode.HOTP: common_pb2.OTP_MODE_HOTP,
}
HASH_ALGORITHM_NUMBERS: Mapping[HashAlgorithm, common_pb2.HashAlgorithm] = {
    HashAlgorithm.SHA1: common_pb2.HASH_ALGORITHM_SHA1,
    HashAlgorithm.SHA256: common_pb2.HASH_ALGORITHM_SHA256,
    HashAlgorithm.SHA512: common_pb2.HASH_ALGORITHM_SHA512,
}
ACTIVATION_METHOD_NUMBERS: Mapping[ActivationMethod, enrolment_pb2.ActivationMethod] = {
    ActivationMethod.CODE: enrolment_pb2.ACTIVATION_METHOD_CODE,
    ActivationMethod.TEMPORARY_SECRET: enrolment_pb2.ACTIVATION_METHOD_TEMPORARY_SECRET,
    ActivationMethod.OTPAUTH: enrolment_pb2.ACTIVATION_METHOD_OTPAUTH,
}
TOKEN_KIND_NUMBERS: Mapping[TokenKind, common_pb2.TokenKind] = {
    TokenKind.MOBILE: common_pb2.TOKEN_KIND_MOBILE,
    TokenKind.PHYSICAL: common_pb2.TOKEN_KIND_PHYSICAL,
}
TOKEN_STATE_NUMBERS: Mapping[TokenState, common_pb2.TokenState] = {
    TokenState.PENDING: common_pb2.TOKEN_STATE_PENDING,
    TokenState.ACTIVE: common_pb2.TOKEN_STATE_ACTIVE,
    TokenState.SUSPENDED: common_pb2.TOKEN_STATE_SUSPENDED,
    TokenState.REVOKED: common_pb2.TOKEN_STATE_REVOKED,
}
VERIFY_RESULT_NUMBERS: Mapping[VerifyResult, common_pb2.VerifyResult] = {
    VerifyResult.OK: common_pb2.VERIFY_RESULT_OK,
    VerifyResult.WRONG_CODE: common_pb2.VERIFY_RESULT_WRONG_CODE,
    VerifyResult.REPLAYED: common_pb2.VERIFY_RESULT_REPLAYED,
    VerifyResult.EXPIRED: common_pb2.VERIFY_RESULT_EXPIRED,
    VerifyResult.LOCKED: common_pb2.VERIFY_RESULT_LOCKED,
    VerifyResult.NOT_ACTIVE: common_pb2.VERIFY_RESULT_NOT_ACTIVE,
    VerifyResult.REVOKED: common_pb2.VERIFY_RESULT_REVOKED,
}

TOKEN_KINDS: Mapping[int, TokenKind] = {number: kind for kind, number in TOKEN_KIND_NUMBERS.items()}
TOKEN_STATES: Mapping[int, TokenState] = {
    number: state for state, number in TOKEN_STATE_NUMBERS.items()
}
_VERIFY_RESULTS: Mapping[int, VerifyResult] = {
    number: result for result, number in VERIFY_RESULT_NUMBERS.items()
}


def verify_result(number: int) -> VerifyResult:
    """The domain result of a VerifyResponse; an unknown result counts as a wrong code."""
    return _VERIFY_RESULTS.get(number, VerifyResult.WRONG_CODE)


def token_state(number: int) -> TokenState:
    """A token's state as the service reported it; an unknown one reads as suspended (not
    usable), the safe side."""
    return TOKEN_STATES.get(number, TokenState.SUSPENDED)


def token_kind(number: int) -> TokenKind:
    return TOKEN_KINDS.get(number, TokenKind.MOBILE)


def otp_mode(number: int) -> OtpMode:
    return OTP_MODES.get(number, OtpMode.TOTP)


def hash_algorithm(number: int) -> HashAlgorithm:
    return HASH_ALGORITHMS.get(number, HashAlgorithm.SHA1)
