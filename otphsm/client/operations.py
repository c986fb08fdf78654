"""The service as an operator (AdminService, role `admin`) and a relying party
(ValidationService, role `verifier`) call it, with typed results."""

from __future__ import annotations

from otphsm.client.channel import Client
from otphsm.client.results import (
    AuditReport,
    TokenView,
    audit_report,
    token_view,
    verify_outcome,
)
from otphsm.core.verification import VerifyOutcome
from otphsm.v1 import admin_pb2, admin_pb2_grpc, validation_pb2, validation_pb2_grpc


class Operator:
    """AdminService: tokens, the audit chain, the fob inventory."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._stub = admin_pb2_grpc.AdminServiceStub(client.channel)

    def get_token(self, serial: str) -> TokenView:
        request = admin_pb2.TokenRequest(serial=serial)
        return token_view(self.client.call(self._stub.GetToken, request).token)

    def unlock(self, serial: str) -> TokenView:
        request = admin_pb2.TokenRequest(serial=serial)
        return token_view(self.client.call(self._stub.Unlock, request).token)

    def verify_audit(self) -> AuditReport:
        request = admin_pb2.VerifyAuditRequest()
        return audit_report(self.client.call(self._stub.VerifyAudit, request))

    def import_pskc(
        self, pskc: bytes, *, pre_shared_key: bytes | None = None, password: str | None = None
    ) -> list[TokenView]:
        """The fobs now in inventory; the file's key is a pre-shared key or a password."""
        request = admin_pb2.ImportPskcRequest(pskc=pskc)
        if pre_shared_key is not None:
            request.pre_shared_key = pre_shared_key
        elif password is not None:
            request.password = password
        response = self.client.call(self._stub.ImportPskc, request)
        return [token_view(token) for token in response.tokens]


class Verifier:
    """ValidationService as a relying party calls it."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._stub = validation_pb2_grpc.ValidationServiceStub(client.channel)

    def verify(
        self, code: str, *, serial: str = "", codice_fiscale: str = "", origin: str = ""
    ) -> VerifyOutcome:
        """A login: against one token when `serial` is given, else by codice fiscale. `origin`:
        the end user's address or device id, so that failures lock that origin only."""
        if serial:
            request = validation_pb2.VerifyRequest(serial=serial, code=code, origin=origin)
        else:
            request = validation_pb2.VerifyRequest(
                codice_fiscale=codice_fiscale, code=code, origin=origin
            )
        return verify_outcome(self.client.call(self._stub.Verify, request))
