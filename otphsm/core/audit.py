"""The audit chain: each entry's hash covers its body and its predecessor's hash, and the HSM
MACs each hash with the resident pepper key. Changing, removing or reordering an entry breaks
the chain; rebuilding it needs the HSM.

Removing the *last* entries leaves a shorter chain that is still intact, and the service then
seals new entries onto it. A chain cannot see that; a head recorded earlier can: `AuditHead`
(seq and entry hash of an entry) passed to `verify_chain` must still be in the chain."""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from otphsm.core.records import AuditEntry

GENESIS = bytes(32)
_HEAD = re.compile(r"(?P<seq>[0-9]{1,19}):(?P<hex>[0-9a-fA-F]{64})", re.ASCII)


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
    TRUNCATED = "truncated"
    """The recorded head's entry is absent (entries were removed from the end)."""
    HEAD_MISMATCH = "head_mismatch"
    """The recorded head's entry has another hash (the chain was rewritten at or before it,
    e.g. truncated and then appended to)."""


@dataclass(frozen=True, slots=True)
class AuditHead:
    """An entry of the chain as an operator records it: its seq and its entry hash. Written
    and parsed as `SEQ:HEX`."""

    seq: int
    entry_hash: bytes

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditHead:
        return cls(entry.seq, entry.entry_hash)

    @classmethod
    def parse(cls, text: str) -> AuditHead:
        """`SEQ:HEX` (HEX: the 64 hex digits of the SHA-256 entry hash); ValueError if not."""
        match = _HEAD.fullmatch(text.strip())
        if match is None or int(match["seq"]) < 1:
            raise ValueError(
                "expected SEQ:HEX, a sequence number from 1 and the 64 hex digits of that "
                "entry's SHA-256 hash (as `otphsm audit verify` prints them)"
            )
        return cls(int(match["seq"]), bytes.fromhex(match["hex"]))

    def __str__(self) -> str:
        return f"{self.seq}:{self.entry_hash.hex()}"


@dataclass(frozen=True, slots=True)
class AuditFinding:
    seq: int
    problem: AuditProblem


@dataclass(frozen=True, slots=True)
class AuditReport:
    entries: int
    findings: tuple[AuditFinding, ...]
    head: AuditHead | None = None
    """The last entry read (None for an empty log); an anchor only if the report is intact."""

    @property
    def intact(self) -> bool:
        return not self.findings


def verify_chain(
    entries: Iterable[AuditEntry],
    keyed_digest: Callable[[bytes], bytes],
    expected_head: AuditHead | None = None,
    *,
    mac_matches: Callable[[bytes, bytes], bool] | None = None,
) -> AuditReport:
    """Check `entries` (in seq order) link by link; with `expected_head`, also that the entry
    recorded then is still there with the same hash (TRUNCATED if absent, HEAD_MISMATCH if
    its hash differs). Each MAC is checked by `mac_matches(data, mac)` when given (the HSM's
    check across pepper rotations: an entry keeps the pepper generation it was made with),
    else against `keyed_digest(data)`."""

    def matches(data: bytes, mac: bytes) -> bool:
        if mac_matches is not None:
            return mac_matches(data, mac)
        return hmac.compare_digest(keyed_digest(data), mac)

    findings: list[AuditFinding] = []
    expected_seq = 1
    prev_hash = GENESIS
    count = 0
    head: AuditHead | None = None
    head_found = False
    for entry in entries:
        count += 1
        head = AuditHead.of(entry)
        if entry.seq != expected_seq:
            findings.append(AuditFinding(entry.seq, AuditProblem.GAP))
        if entry.prev_hash != prev_hash:
            findings.append(AuditFinding(entry.seq, AuditProblem.BROKEN_LINK))
        if chain_hash(entry.prev_hash, entry) != entry.entry_hash:
            findings.append(AuditFinding(entry.seq, AuditProblem.HASH_MISMATCH))
        if not matches(b"audit:" + entry.entry_hash, entry.mac):
            findings.append(AuditFinding(entry.seq, AuditProblem.BAD_MAC))
        if expected_head is not None and entry.seq == expected_head.seq:
            head_found = True
            if not hmac.compare_digest(entry.entry_hash, expected_head.entry_hash):
                findings.append(AuditFinding(entry.seq, AuditProblem.HEAD_MISMATCH))
        expected_seq = entry.seq + 1
        prev_hash = entry.entry_hash
    if expected_head is not None and not head_found:
        findings.append(AuditFinding(expected_head.seq, AuditProblem.TRUNCATED))
    return AuditReport(count, tuple(findings), head)
