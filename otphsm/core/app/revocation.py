"""Revoking a token, the one way every use case does it: by an operator (`lifecycle`), a
pending token superseded by a new issuance, a phone retired when its replacement turns active
(`validation.prove_possession`, in the same write as the activation). One decision
(`revoked`), one audit entry (`audit_revoked`), one conditional write (`revoke_token`)."""

from __future__ import annotations

from dataclasses import replace

from otphsm.core.app.context import Actor, App
from otphsm.core.app.writes import LOST_RACE, LostRace, with_retries
from otphsm.core.errors import InvalidInput, NotFound
from otphsm.core.tokens import Token, TokenState

MAX_REASON_LENGTH = 200


def check_reason(reason: str) -> dict[str, str]:
    """An operator's reason for a state change, as audit details ({} when none is given)."""
    if len(reason) > MAX_REASON_LENGTH or not reason.isprintable():
        raise InvalidInput(
            f"reason: at most {MAX_REASON_LENGTH} printable characters", field="reason"
        )
    return {"reason": reason} if reason.strip() else {}


def revoked(token: Token) -> Token:
    """The token as revoked: it never verifies again (its seed reference is kept: the row
    tells which HSM object was its, for audits and clean-up)."""
    return replace(token, state=TokenState.REVOKED)


def audit_revoked(app: App, actor: Actor, serial: str, via: str, reason: str = "") -> None:
    app.audit(actor, "token_revoked", serial, via=via, **check_reason(reason))


def revoke_token(app: App, actor: Actor, serial: str, via: str, reason: str = "") -> bool:
    """Revoke as one conditional write (retried), audited as token_revoked `via` the reason.
    False, with nothing written, if it was already revoked."""

    def attempt() -> bool | LostRace:
        token = app.store.get_token(serial)
        if token is None:
            raise NotFound("serial: no token with that serial")
        if token.state is TokenState.REVOKED:
            return False
        return True if app.store.update_token(revoked(token)) else LOST_RACE

    if not with_retries(app, attempt):
        return False
    audit_revoked(app, actor, serial, via, reason)
    return True
