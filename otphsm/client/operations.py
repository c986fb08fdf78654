"""The service as an operator (AdminService and RevokeGridCard, role `admin`) and a relying
party (ValidationService, OobService and the grid challenge, role `verifier`) call it, with
typed results."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from otphsm.client import wire
from otphsm.client.channel import Client
from otphsm.client.results import (
    AuditRecord,
    AuditReport,
    GridCardView,
    GridChallenge,
    LoginCodeSent,
    Page,
    TokenView,
    audit_record,
    audit_report,
    grid_card_view,
    login_code_sent,
    token_view,
    verify_outcome,
)
from otphsm.core.tokens import TokenKind, TokenState
from otphsm.core.verification import VerifyOutcome
from otphsm.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    common_pb2,
    grid_pb2,
    grid_pb2_grpc,
    oob_pb2,
    oob_pb2_grpc,
    validation_pb2,
    validation_pb2_grpc,
)

T = TypeVar("T")


class Operator:
    """AdminService: tokens, the audit log and chain, the fob inventory; Security Cards."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._stub = admin_pb2_grpc.AdminServiceStub(client.channel)
        self._grid = grid_pb2_grpc.GridCardServiceStub(client.channel)

    def get_token(self, serial: str) -> TokenView:
        request = admin_pb2.TokenRequest(serial=serial)
        return token_view(self.client.call(self._stub.GetToken, request).token)

    def change_state(self, operation: str, serial: str, reason: str = "") -> TokenView:
        """`operation`: suspend, resume, revoke or unlock; `reason` goes into the audit log."""
        method = {
            "suspend": self._stub.Suspend,
            "resume": self._stub.Resume,
            "revoke": self._stub.Revoke,
            "unlock": self._stub.Unlock,
        }[operation]
        request = admin_pb2.TokenRequest(serial=serial, reason=reason)
        return token_view(self.client.call(method, request).token)

    def unlock(self, serial: str) -> TokenView:
        return self.change_state("unlock", serial)

    def list_tokens(
        self,
        *,
        codice_fiscale: str = "",
        state: TokenState | None = None,
        kind: TokenKind | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[TokenView]:
        request = admin_pb2.ListTokensRequest(
            codice_fiscale=codice_fiscale,
            state=wire.TOKEN_STATE_NUMBERS[state] if state else common_pb2.TOKEN_STATE_UNSPECIFIED,
            kind=wire.TOKEN_KIND_NUMBERS[kind] if kind else common_pb2.TOKEN_KIND_UNSPECIFIED,
            page_size=page_size,
            page_token=page_token,
        )
        response = self.client.call(self._stub.ListTokens, request)
        return Page(tuple(token_view(t) for t in response.tokens), response.next_page_token)

    def list_fobs(
        self,
        *,
        unassigned_only: bool = False,
        state: TokenState | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[TokenView]:
        request = admin_pb2.ListFobsRequest(
            unassigned_only=unassigned_only,
            state=wire.TOKEN_STATE_NUMBERS[state] if state else common_pb2.TOKEN_STATE_UNSPECIFIED,
            page_size=page_size,
            page_token=page_token,
        )
        response = self.client.call(self._stub.ListFobs, request)
        return Page(tuple(token_view(t) for t in response.fobs), response.next_page_token)

    def audit_entries(
        self, *, from_seq: int = 0, since: int = 0, page_size: int = 0, page_token: str = ""
    ) -> Page[AuditRecord]:
        request = admin_pb2.ListAuditEntriesRequest(
            from_seq=from_seq, since=since, page_size=page_size, page_token=page_token
        )
        response = self.client.call(self._stub.ListAuditEntries, request)
        return Page(tuple(audit_record(e) for e in response.entries), response.next_page_token)

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

    def revoke_grid_card(self, serial: str, reason: str = "") -> GridCardView:
        request = grid_pb2.RevokeGridCardRequest(serial=serial, reason=reason)
        return grid_card_view(self.client.call(self._grid.RevokeGridCard, request).card)


def every_page(fetch: Callable[..., Page[T]], **filters: Any) -> Iterator[T]:
    """Every item of a listing, page after page (`fetch` is e.g. `Operator.list_tokens`)."""
    token = ""
    while True:
        page = fetch(page_token=token, **filters)
        yield from page.items
        token = page.next_page_token
        if not token:
            return


class Verifier:
    """A relying party: ValidationService, OobService's login codes and the Security Card's
    challenge (role `verifier`)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._stub = validation_pb2_grpc.ValidationServiceStub(client.channel)
        self._oob = oob_pb2_grpc.OobServiceStub(client.channel)
        self._grid = grid_pb2_grpc.GridCardServiceStub(client.channel)

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

    def request_login_code(self, codice_fiscale: str, *, push: bool = False) -> LoginCodeSent:
        """A login code sent to the citizen by SMS (or pushed to their token app)."""
        channel = oob_pb2.DELIVERY_CHANNEL_PUSH if push else oob_pb2.DELIVERY_CHANNEL_SMS
        request = oob_pb2.RequestLoginCodeRequest(codice_fiscale=codice_fiscale, channel=channel)
        return login_code_sent(self.client.call(self._oob.RequestLoginCode, request))

    def verify_login_code(
        self, codice_fiscale: str, code: str, *, origin: str = ""
    ) -> VerifyOutcome:
        request = oob_pb2.VerifyLoginCodeRequest(
            codice_fiscale=codice_fiscale, code=code, origin=origin
        )
        return verify_outcome(self.client.call(self._oob.VerifyLoginCode, request))

    def grid_challenge(self, codice_fiscale: str, *, origin: str = "") -> GridChallenge:
        request = grid_pb2.GridChallengeRequest(codice_fiscale=codice_fiscale, origin=origin)
        response = self.client.call(self._grid.GridChallenge, request)
        return GridChallenge(
            response.serial, response.first_cell, response.second_cell, response.expires_at
        )

    def grid_answer(
        self, codice_fiscale: str, first: str, second: str, *, origin: str = ""
    ) -> VerifyOutcome:
        request = grid_pb2.VerifyGridAnswerRequest(
            codice_fiscale=codice_fiscale, first_value=first, second_value=second, origin=origin
        )
        return verify_outcome(self.client.call(self._grid.VerifyGridAnswer, request))
