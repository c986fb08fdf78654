"""Checking the audit chain: every entry's hash link and its HSM MAC."""

from __future__ import annotations

from otphsm.core.app.context import App
from otphsm.core.audit import AuditReport, verify_chain


def verify_audit(app: App) -> AuditReport:
    return verify_chain(app.store.audit_entries(), app.hsm.keyed_digest)
