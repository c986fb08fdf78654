"""The audit chain: each entry's hash covers its body and its predecessor's hash, and the HSM
MACs each hash with the resident pepper key. Changing, removing or reordering an entry breaks
the chain; rebuilding it needs the HSM."""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from otphsm.core.records import AuditEntry

GENESIS = bytes(32)


def canonical_body(entry: AuditEntry) -> bytes:
    body = {
        "seq": entry.seq,
        "at": entry.at,
        "actor": entry.actor,
        "action": entry.action,
        "subject": entry.subject,
        "details": entry.details,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def chain_hash(prev_hash: bytes, entry: AuditEntry) -> bytes:
    return hashlib.sha256(prev_hash + canonical_body(entry)).digest()


def seal(
    entry: AuditEntry, previous: AuditEntry | None, keyed_digest: Callable[[bytes], bytes]
) -> AuditEntry:
    """Give `entry` its seq, link and MAC, following `previous` (None for the first)."""
    prev_hash = previous.entry_hash if previous is not None else GENESIS
    linked = replace(
        entry, seq=(previous.seq + 1) if previous is not None else 1, prev_hash=prev_hash
    )
    entry_hash = chain_hash(prev_hash, linked)
    return replace(linked, entry_hash=entry_hash, mac=keyed_digest(b"audit:" + entry_hash))


class AuditProblem(enum.StrEnum):
    GAP = "gap"
    """A sequence number is missing or out of order (an entry was removed or reordered)."""
    BROKEN_LINK = "broken_link"
    """prev_hash does not equal the previous entry's hash."""
    HASH_MISMATCH = "hash_mismatch"
    """The entry's content does not produce its hash (it was changed)."""
    BAD_MAC = "bad_mac"
    """The HSM's MAC over the hash does not match (the chain was rebuilt without the HSM)."""


@dataclass(frozen=True, slots=True)
class AuditFinding:
    seq: int
    problem: AuditProblem


@dataclass(frozen=True, slots=True)
class AuditReport:
    entries: int
    findings: tuple[AuditFinding, ...]

    @property
    def intact(self) -> bool:
        return not self.findings


def verify_chain(
    entries: Iterable[AuditEntry], keyed_digest: Callable[[bytes], bytes]
) -> AuditReport:
    findings: list[AuditFinding] = []
    expected_seq = 1
    prev_hash = GENESIS
    count = 0
    for entry in entries:
        count += 1
        if entry.seq != expected_seq:
            findings.append(AuditFinding(entry.seq, AuditProblem.GAP))
        if entry.prev_hash != prev_hash:
            findings.append(AuditFinding(entry.seq, AuditProblem.BROKEN_LINK))
        if chain_hash(entry.prev_hash, entry) != entry.entry_hash:
            findings.append(AuditFinding(entry.seq, AuditProblem.HASH_MISMATCH))
        if not hmac.compare_digest(keyed_digest(b"audit:" + entry.entry_hash), entry.mac):
            findings.append(AuditFinding(entry.seq, AuditProblem.BAD_MAC))
        expected_seq = entry.seq + 1
        prev_hash = entry.entry_hash
    return AuditReport(count, tuple(findings))
