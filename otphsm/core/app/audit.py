"""Checking the audit chain: every entry's hash link and its HSM MAC, and optionally that a
head recorded earlier is still there."""

from __future__ import annotations

from otphsm.core.app.context import App
from otphsm.core.audit import AuditHead, AuditReport, verify_chain


def verify_audit(app: App, expected_head: AuditHead | None = None) -> AuditReport:
    return verify_chain(
        app.store.audit_entries(),
        app.hsm.keyed_digest,
        expected_head,
        mac_matches=app.hsm.keyed_digest_matches,
    )
