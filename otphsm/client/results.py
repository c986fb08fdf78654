"""What the client's calls return: frozen dataclasses over domain enums, made from the
service's messages here, so no protobuf type reaches the CLI or the demo."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from otphsm.client import wire
from otphsm.core.tokens import OtpParameters, TokenKind, TokenState
from otphsm.core.verification import VerifyOutcome
from otphsm.v1 import admin_pb2, common_pb2, enrolment_pb2, grid_pb2, oob_pb2


@dataclass(frozen=True, slots=True)
class Authorised:
    authorisation_id: str
    expires_at: int
    codice_fiscale: str
    holder: str
    """Given name and surname as the service recorded them ("" after an SMS code)."""
    card_id: str = ""


@dataclass(frozen=True, slots=True)
class TokenView:
    """A token as the service shows it (never its seed)."""

    serial: str
    codice_fiscale: str
    kind: TokenKind
    state: TokenState
    params: OtpParameters
    created_at: int = 0
    activated_at: int = 0
    last_used_at: int = 0
    locked_until: int = 0
    failures: int = 0
    replaces_serial: str = ""


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; `next_page_token` is empty on the last page."""

    items: tuple[T, ...]
    next_page_token: str = ""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One entry of the audit log as stored (its hashes and MAC let a reader check it)."""

    seq: int
    at: int
    actor: str
    action: str
    subject: str
    details: dict[str, Any] = field(default_factory=dict)
    prev_hash: bytes = b""
    entry_hash: bytes = b""
    mac: bytes = b""


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: TokenView
    activation_expires_at: int
    activation_code: str = ""
    otpauth_uri: str = ""
    qr_png: bytes = b""
    qr_text: str = ""


@dataclass(frozen=True, slots=True)
class AuditReport:
    entries: int
    intact: bool
    findings: tuple[tuple[int, str], ...] = ()
    """(seq, problem) of each entry that failed a check."""


def otp_parameters(message: common_pb2.OtpParameters) -> OtpParameters:
    return OtpParameters(
        wire.otp_mode(message.mode),
        wire.hash_algorithm(message.algorithm),
        message.digits or 6,
        message.period_seconds or 30,
    )


def token_view(message: common_pb2.Token) -> TokenView:
    return TokenView(
        serial=message.serial,
        codice_fiscale=message.codice_fiscale,
        kind=wire.token_kind(message.kind),
        state=wire.token_state(message.state),
        params=otp_parameters(message.params),
        created_at=message.created_at,
        activated_at=message.activated_at,
        last_used_at=message.last_used_at,
        locked_until=message.locked_until,
        failures=message.failures,
        replaces_serial=message.replaces_serial,
    )


def verify_outcome(message: common_pb2.VerifyResponse) -> VerifyOutcome:
    return VerifyOutcome(
        wire.verify_result(message.result), message.serial, message.retry_after_seconds
    )


def issued_token(message: enrolment_pb2.IssueTokenResponse) -> IssuedToken:
    return IssuedToken(
        token=token_view(message.token),
        activation_expires_at=message.activation_expires_at,
        activation_code=message.activation_code,
        otpauth_uri=message.otpauth_uri,
        qr_png=bytes(message.qr_png),
        qr_text=message.qr_text,
    )


def audit_report(message: admin_pb2.VerifyAuditResponse) -> AuditReport:
    findings = tuple((finding.seq, finding.problem) for finding in message.findings)
    return AuditReport(message.entries, message.intact, findings)


def audit_record(message: admin_pb2.AuditEntry) -> AuditRecord:
    try:
        details = json.loads(message.details_json) if message.details_json else {}
    except ValueError:
        details = {"unreadable": True}
    return AuditRecord(
        seq=message.seq,
        at=message.at,
        actor=message.actor,
        action=message.action,
        subject=message.subject,
        details=details if isinstance(details, dict) else {"unreadable": True},
        prev_hash=bytes(message.prev_hash),
        entry_hash=bytes(message.entry_hash),
        mac=bytes(message.mac),
    )


@dataclass(frozen=True, slots=True)
class GridCardView:
    """A Security Card as the service shows it (never its key or its values)."""

    serial: str
    codice_fiscale: str
    state: str
    """active or revoked"""
    cells: int
    created_at: int
    revoked_at: int


def grid_card_view(message: grid_pb2.GridCard) -> GridCardView:
    state = {grid_pb2.GRID_CARD_STATE_ACTIVE: "active", grid_pb2.GRID_CARD_STATE_REVOKED: "revoked"}
    return GridCardView(
        serial=message.serial,
        codice_fiscale=message.codice_fiscale,
        state=state.get(message.state, "unknown"),
        cells=message.cells,
        created_at=message.created_at,
        revoked_at=message.revoked_at,
    )


@dataclass(frozen=True, slots=True)
class LoginCodeSent:
    expires_at: int
    prefix_required: bool
    device_serial: str
    """PUSH: the token the code was pushed to ("" for an SMS)."""


def login_code_sent(message: oob_pb2.RequestLoginCodeResponse) -> LoginCodeSent:
    return LoginCodeSent(message.expires_at, message.prefix_required, message.device_serial)


@dataclass(frozen=True, slots=True)
class GridChallenge:
    serial: str
    first_cell: int
    second_cell: int
    expires_at: int
