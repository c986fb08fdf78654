"""AdminService: operators manage a token's lifecycle and check the audit chain."""

from __future__ import annotations

import grpc

from otphsm.core.app import lifecycle, listing
from otphsm.core.app.audit import verify_audit
from otphsm.core.app.context import App
from otphsm.pskc import import_pskc
from otphsm.service import convert
from otphsm.service.interceptor import current_actor
from otphsm.v1 import admin_pb2 as pb
from otphsm.v1 import admin_pb2_grpc


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, app: App) -> None:
        self._app = app

    def _change(self, request: pb.TokenRequest, operation: str) -> pb.TokenResponse:
        token = lifecycle.change_state(
            self._app, current_actor(), request.serial, operation, request.reason
        )
        return pb.TokenResponse(token=convert.token_message(token))

    def Suspend(self, request: pb.TokenRequest, context: grpc.ServicerContext) -> pb.TokenResponse:
        return self._change(request, "suspend")

    def Resume(self, request: pb.TokenRequest, context: grpc.ServicerContext) -> pb.TokenResponse:
        return self._change(request, "resume")

    def Revoke(self, request: pb.TokenRequest, context: grpc.ServicerContext) -> pb.TokenResponse:
        return self._change(request, "revoke")

    def Unlock(self, request: pb.TokenRequest, context: grpc.ServicerContext) -> pb.TokenResponse:
        return self._change(request, "unlock")

    def ListTokens(
        self, request: pb.ListTokensRequest, context: grpc.ServicerContext
    ) -> pb.ListTokensResponse:
        page = listing.list_tokens(
            self._app, convert.token_query(request), request.page_size, request.page_token
        )
        tokens = [convert.token_message(t) for t in page.items]
        return pb.ListTokensResponse(tokens=tokens, next_page_token=page.next_page_token)

    def ListFobs(
        self, request: pb.ListFobsRequest, context: grpc.ServicerContext
    ) -> pb.ListFobsResponse:
        page = listing.list_fobs(
            self._app,
            unassigned_only=request.unassigned_only,
            state=convert.token_state_filter(request.state),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        fobs = [convert.token_message(t) for t in page.items]
        return pb.ListFobsResponse(fobs=fobs, next_page_token=page.next_page_token)

    def ListAuditEntries(
        self, request: pb.ListAuditEntriesRequest, context: grpc.ServicerContext
    ) -> pb.ListAuditEntriesResponse:
        page = listing.audit_entries(
            self._app,
            from_seq=request.from_seq,
            since=request.since,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        entries = [convert.audit_entry_message(e) for e in page.items]
        return pb.ListAuditEntriesResponse(entries=entries, next_page_token=page.next_page_token)

    def GetToken(self, request: pb.TokenRequest, context: grpc.ServicerContext) -> pb.TokenResponse:
        token = lifecycle.get_token(self._app, request.serial)
        return pb.TokenResponse(token=convert.token_message(token))

    def VerifyAudit(
        self, request: pb.VerifyAuditRequest, context: grpc.ServicerContext
    ) -> pb.VerifyAuditResponse:
        expected = None
        if request.HasField("expected_head"):
            expected = convert.audit_head(request.expected_head)
        report = verify_audit(self._app, expected)
        findings = [pb.AuditFinding(seq=f.seq, problem=f.problem.value) for f in report.findings]
        head = report.head
        return pb.VerifyAuditResponse(
            entries=report.entries,
            intact=report.intact,
            findings=findings,
            head=pb.AuditHead(seq=head.seq, entry_hash=head.entry_hash) if head else None,
        )

    def ImportPskc(
        self, request: pb.ImportPskcRequest, context: grpc.ServicerContext
    ) -> pb.ImportPskcResponse:
        protection = request.WhichOneof("protection")
        tokens = import_pskc(
            self._app,
            current_actor(),
            request.pskc,
            psk=request.pre_shared_key if protection == "pre_shared_key" else None,
            password=request.password if protection == "password" else None,
        )
        return pb.ImportPskcResponse(tokens=[convert.token_message(t) for t in tokens])
