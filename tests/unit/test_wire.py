"""The wire tables shared by the service and the client: every domain value has a number and
comes back as itself, under the proto's own name."""

from __future__ import annotations

from otphsm.client import wire
from otphsm.core.otp import HashAlgorithm
from otphsm.core.records import ActivationMethod
from otphsm.core.tokens import OtpMode, TokenKind, TokenState
from otphsm.core.verification import VerifyResult
from otphsm.v1 import common_pb2


def test_every_domain_value_goes_to_the_wire_and_back() -> None:
    for result in VerifyResult:
        assert wire.verify_result(wire.VERIFY_RESULT_NUMBERS[result]) is result
    for state in TokenState:
        assert wire.token_state(wire.TOKEN_STATE_NUMBERS[state]) is state
    for kind in TokenKind:
        assert wire.token_kind(wire.TOKEN_KIND_NUMBERS[kind]) is kind
    for mode in OtpMode:
        assert wire.otp_mode(wire.OTP_MODE_NUMBERS[mode]) is mode
    for algorithm in HashAlgorithm:
        assert wire.hash_algorithm(wire.HASH_ALGORITHM_NUMBERS[algorithm]) is algorithm
    for method in ActivationMethod:
        assert wire.ACTIVATION_METHODS[wire.ACTIVATION_METHOD_NUMBERS[method]] is method


def test_the_names_match_the_proto_names() -> None:
    for result, number in wire.VERIFY_RESULT_NUMBERS.items():
        assert common_pb2.VerifyResult.Name(number) == f"VERIFY_RESULT_{result.name}"
    for state, number in wire.TOKEN_STATE_NUMBERS.items():
        assert common_pb2.TokenState.Name(number) == f"TOKEN_STATE_{state.name}"


def test_an_unknown_result_counts_as_a_wrong_code() -> None:
    assert wire.verify_result(common_pb2.VERIFY_RESULT_UNSPECIFIED) is VerifyResult.WRONG_CODE
    assert wire.verify_result(99) is VerifyResult.WRONG_CODE
