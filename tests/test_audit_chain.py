"""The audit chain detects a changed, removed, reordered or re-forged entry (pure tier; the
service tier runs the same over the store and the HSM)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace

from otphsm.core.audit import AuditProblem, chain_hash, seal, verify_chain
from otphsm.core.records import AuditEntry


def keyed(key: bytes):  # type: ignore[no-untyped-def]
    return lambda data: hmac.new(key, data, hashlib.sha256).digest()


HSM = keyed(b"pepper inside the HSM")


def build_chain(n: int = 5) -> list[AuditEntry]:
    chain: list[AuditEntry] = []
    for i in range(n):
        draft = AuditEntry(
            0, 1_800_000_000 + i, "station-1", "token_created", f"MOB-{i:04d}", {"n": i}
        )
        chain.append(seal(draft, chain[-1] if chain else None, HSM))
    return chain


def problems(chain: list[AuditEntry]) -> set[tuple[int, AuditProblem]]:
    return {(f.seq, f.problem) for f in verify_chain(chain, HSM).findings}


def test_an_untouched_chain_verifies() -> None:
    chain = build_chain()
    report = verify_chain(chain, HSM)
    assert report.intact and report.entries == 5
    assert [e.seq for e in chain] == [1, 2, 3, 4, 5]


def test_a_changed_entry_is_found() -> None:
    chain = build_chain()
    chain[2] = replace(chain[2], subject="MOB-9999")
    assert problems(chain) == {(3, AuditProblem.HASH_MISMATCH)}


def test_a_removed_entry_is_found() -> None:
    chain = build_chain()
    del chain[1]
    assert problems(chain) == {(3, AuditProblem.GAP), (3, AuditProblem.BROKEN_LINK)}


def test_reordered_entries_are_found() -> None:
    chain = build_chain()
    chain[1], chain[2] = chain[2], chain[1]
    found = problems(chain)
    assert (3, AuditProblem.GAP) in found and (3, AuditProblem.BROKEN_LINK) in found


def test_a_chain_rebuilt_without_the_hsm_key_is_found() -> None:
    chain = build_chain()
    forged = replace(chain[2], subject="MOB-9999")
    forged = replace(forged, entry_hash=chain_hash(forged.prev_hash, forged))
    rebuilt = [*chain[:2], forged]
    for entry in chain[3:]:
        relinked = replace(entry, prev_hash=rebuilt[-1].entry_hash)
        rebuilt.append(replace(relinked, entry_hash=chain_hash(relinked.prev_hash, relinked)))
    assert problems(rebuilt) == {(s, AuditProblem.BAD_MAC) for s in (3, 4, 5)}


def test_details_are_part_of_the_hash() -> None:
    chain = build_chain()
    chain[0] = replace(chain[0], details={"n": 1})
    assert (1, AuditProblem.HASH_MISMATCH) in problems(chain)
