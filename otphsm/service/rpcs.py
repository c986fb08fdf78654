"""One declaration per RPC: the roles that may call it and whether it checks a code.

Everything per RPC is read from `RPCS`: the role check (`service/auth.py`), the failed-check
rate limit (`service/ratelimit.py`) and the list of our services (reflection and health in
`service/server.py`). `tests/unit/test_rpc_table.py` compares the table with the proto
descriptors, so an RPC added to a .proto and not declared here fails the build (and is
refused at run time: an RPC missing here is allowed to no role).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from otphsm.core.app.context import Role
from otphsm.v1 import common_pb2, enrolment_pb2

PACKAGE = "otphsm.v1"


class CodeCheck(enum.Enum):
    """Whether an RPC checks something a caller could guess (a code, a grid answer, an
    activation code or temporary secret), and how its answer says the guess was right."""

    NONE = "checks nothing a caller could guess"
    VERIFY_RESULT = "answers a VerifyResponse: a failed guess when WRONG_CODE, EXPIRED, ..."
    ANSWER = "a wrong code is an error: right when it answers at all"
    FIRST_CODE = "AssignFob: right unless the optional first code's proof failed"

    def accepted(self, response: object | None) -> bool:
        """Whether `response` (None: the call failed) is not a failed guess: the code was
        right, or right once (a replay counts nowhere), or not looked at (LOCKED: charging it
        would let one stranger hammering a locked token exhaust a relying party's budget)."""
        if response is None:
            return False
        if self is CodeCheck.VERIFY_RESULT:
            return _verified(response)
        if self is CodeCheck.FIRST_CODE:
            return (
                isinstance(response, enrolment_pb2.AssignFobResponse)
                and not response.HasField("proof")
            ) or _verified(getattr(response, "proof", None))
        return True


_NOT_A_FAILED_GUESS = frozenset(
    {
        common_pb2.VERIFY_RESULT_OK,
        common_pb2.VERIFY_RESULT_REPLAYED,  # right once: counts nowhere
        common_pb2.VERIFY_RESULT_LOCKED,  # the code was not looked at
    }
)


def _verified(response: object) -> bool:
    return (
        isinstance(response, common_pb2.VerifyResponse) and response.result in _NOT_A_FAILED_GUESS
    )


@dataclass(frozen=True, slots=True)
class RpcSpec:
    roles: frozenset[Role]
    checks: CodeCheck = CodeCheck.NONE

    @property
    def checks_code(self) -> bool:
        """Its failures count against the caller's failed-check limit."""
        return self.checks is not CodeCheck.NONE


_ENROLLER = frozenset({Role.ENROLLER})
_VERIFIER = frozenset({Role.VERIFIER})
_DEVICE = frozenset({Role.DEVICE})
_ADMIN = frozenset({Role.ADMIN})


def _service(name: str, **methods: RpcSpec) -> dict[str, RpcSpec]:
    return {f"/{PACKAGE}.{name}/{method}": spec for method, spec in methods.items()}


RPCS: Mapping[str, RpcSpec] = MappingProxyType(
    {
        **_service(
            "EnrolmentService",
            GetChallenge=RpcSpec(_ENROLLER),
            AuthoriseWithCard=RpcSpec(_ENROLLER),
            AuthoriseWithLocalCard=RpcSpec(_ENROLLER),  # the PIN: the card counts its tries
            WatchCards=RpcSpec(_ENROLLER),
            SetPhoneNumber=RpcSpec(_ENROLLER),
            IssueToken=RpcSpec(_ENROLLER),  # a temporary secret here is chosen, not checked
            SendReplacementCode=RpcSpec(_ENROLLER),
            AuthoriseWithSmsCode=RpcSpec(_ENROLLER, CodeCheck.ANSWER),
            AssignFob=RpcSpec(_ENROLLER, CodeCheck.FIRST_CODE),
        ),
        **_service(
            "DeviceService",
            ActivateWithCode=RpcSpec(_DEVICE, CodeCheck.ANSWER),
            ActivateWithTemporarySecret=RpcSpec(_DEVICE, CodeCheck.ANSWER),
            # the enroller too: the first code of an otpauth token, typed at the counter
            ProvePossession=RpcSpec(_DEVICE | _ENROLLER, CodeCheck.VERIFY_RESULT),
        ),
        **_service(
            "ValidationService",
            Verify=RpcSpec(_VERIFIER, CodeCheck.VERIFY_RESULT),
            TestDevice=RpcSpec(_VERIFIER | _DEVICE, CodeCheck.VERIFY_RESULT),
            Resync=RpcSpec(_VERIFIER, CodeCheck.VERIFY_RESULT),
        ),
        **_service(
            "AdminService",
            Suspend=RpcSpec(_ADMIN),
            Resume=RpcSpec(_ADMIN),
            Revoke=RpcSpec(_ADMIN),
            Unlock=RpcSpec(_ADMIN),
            ListTokens=RpcSpec(_ADMIN),
            ListFobs=RpcSpec(_ADMIN),
            ListAuditEntries=RpcSpec(_ADMIN),
            GetToken=RpcSpec(_ADMIN),
            VerifyAudit=RpcSpec(_ADMIN),
            ImportPskc=RpcSpec(_ADMIN),
        ),
        **_service(
            "OobService",
            RequestLoginCode=RpcSpec(_VERIFIER),
            VerifyLoginCode=RpcSpec(_VERIFIER, CodeCheck.VERIFY_RESULT),
            SetCodePrefix=RpcSpec(_ENROLLER),
        ),
        **_service(
            "GridCardService",
            IssueGridCard=RpcSpec(_ENROLLER),
            GridChallenge=RpcSpec(_VERIFIER),
            VerifyGridAnswer=RpcSpec(_VERIFIER, CodeCheck.VERIFY_RESULT),
            RevokeGridCard=RpcSpec(_ADMIN),
        ),
    }
)
"""Every RPC of ours by full method name (`/otphsm.v1.<Service>/<Method>`)."""

SERVICE_NAMES: tuple[str, ...] = tuple(dict.fromkeys(method.split("/")[1] for method in RPCS))
"""Our services' full names, in declaration order."""


def checks_code(method: str) -> bool:
    """`method` is one of ours that checks a code (an unknown name does not)."""
    spec = RPCS.get(method)
    return spec is not None and spec.checks_code


ENROLMENT_SERVICE = f"{PACKAGE}.EnrolmentService"
"""Reported NOT_SERVING alone by the health service while a trusted CA has no current CRL."""
VALIDATION_SERVICE = f"{PACKAGE}.ValidationService"
"""What the RADIUS front end serves: it is up while this is."""
