"""The one RPC table (`otphsm.service.rpcs.RPCS`) against the proto descriptors: every RPC the
protos declare is in it, with roles, and every RPC that checks something a caller could guess
is marked so, with a test for "the guess was right" that fits its response."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator

import pytest
from google.protobuf.descriptor import Descriptor, MethodDescriptor

import otphsm.v1
from otphsm.service.rpcs import PACKAGE, RPCS, SERVICE_NAMES, CodeCheck
from otphsm.v1 import common_pb2, enrolment_pb2

GUESSABLE_FIELDS = frozenset(
    {
        "code",
        "first_code",
        "second_code",
        "first_value",
        "second_value",
        "activation_code",
        "temporary_secret",
        "pin",
    }
)
"""Request fields that carry a secret the server compares with what it holds."""

NOT_CHECKED_HERE = {
    "/otphsm.v1.EnrolmentService/IssueToken": "its temporary_secret is chosen, not checked",
    "/otphsm.v1.EnrolmentService/AuthoriseWithLocalCard": "the card checks the PIN and "
    "counts its own tries",
}


def proto_methods() -> Iterator[MethodDescriptor]:
    for module_info in pkgutil.iter_modules(otphsm.v1.__path__):
        if not module_info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"otphsm.v1.{module_info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            yield from service.methods


def path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


METHODS = {path(method): method for method in proto_methods()}


def test_the_table_declares_exactly_the_rpcs_of_the_protos() -> None:
    assert len(METHODS) > 20
    assert sorted(METHODS) == sorted(RPCS)
    services = {method.containing_service.full_name for method in METHODS.values()}
    assert sorted(SERVICE_NAMES) == sorted(services)
    assert all(name.startswith(PACKAGE + ".") for name in SERVICE_NAMES)


def test_every_rpc_allows_some_role() -> None:
    assert not [name for name, spec in RPCS.items() if not spec.roles]


def guessable(message: Descriptor) -> set[str]:
    return {field.name for field in message.fields} & GUESSABLE_FIELDS


@pytest.mark.parametrize("name", sorted(METHODS))
def test_an_rpc_checks_a_code_exactly_when_its_request_carries_one(name: str) -> None:
    method, spec = METHODS[name], RPCS[name]
    fields = guessable(method.input_type)
    if name in NOT_CHECKED_HERE:
        assert fields and not spec.checks_code, NOT_CHECKED_HERE[name]
        return
    assert spec.checks_code == bool(fields), (name, fields, spec.checks)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_the_acceptance_test_fits_the_response(name: str) -> None:
    method, spec = METHODS[name], RPCS[name]
    verify = common_pb2.VerifyResponse.DESCRIPTOR
    answers_verify = method.output_type is verify
    carries_verify = any(field.message_type is verify for field in method.output_type.fields)
    assert (spec.checks is CodeCheck.VERIFY_RESULT) == answers_verify, name
    if spec.checks_code and carries_verify:
        assert spec.checks is CodeCheck.FIRST_CODE, name


def test_only_a_failed_guess_drains_the_callers_budget() -> None:
    """A replay of an accepted code (a relying party retrying, a race) is not the caller's
    failed guess, nor is LOCKED (no code was looked at): neither drains the caller's budget."""
    check = CodeCheck.VERIFY_RESULT
    right = (
        common_pb2.VERIFY_RESULT_OK,
        common_pb2.VERIFY_RESULT_REPLAYED,
        common_pb2.VERIFY_RESULT_LOCKED,
    )
    for result in right:
        assert check.accepted(common_pb2.VerifyResponse(result=result))
    for result in common_pb2.VerifyResult.values():
        if result not in right:
            assert not check.accepted(common_pb2.VerifyResponse(result=result))
    assert not check.accepted(None)


def test_an_answer_is_accepted_and_a_failed_call_is_not() -> None:
    assert CodeCheck.ANSWER.accepted(enrolment_pb2.AuthorisationResponse())
    assert not CodeCheck.ANSWER.accepted(None)


def test_a_fob_assignment_is_accepted_unless_its_first_code_failed() -> None:
    check = CodeCheck.FIRST_CODE
    assert check.accepted(enrolment_pb2.AssignFobResponse())  # no first code given
    ok = common_pb2.VerifyResponse(result=common_pb2.VERIFY_RESULT_OK)
    wrong = common_pb2.VerifyResponse(result=common_pb2.VERIFY_RESULT_WRONG_CODE)
    assert check.accepted(enrolment_pb2.AssignFobResponse(proof=ok))
    assert not check.accepted(enrolment_pb2.AssignFobResponse(proof=wrong))
    assert not check.accepted(None)
