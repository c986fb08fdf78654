"""The audit chain detects a changed, removed, reordered or re-forged entry, and a recorded
head catches entries removed from the end (pure tier; the service tier runs the same over the
store and the HSM)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace

import pytest

from otphsm.core.audit import AuditHead, AuditProblem, chain_hash, seal, verify_chain
from otphsm.core.records import AuditEntry


def keyed(key: bytes):  # type: ignore[no-untyped-def]
    return lambda data: hmac.new(key, data, hashlib.sha256).digest()


HSM = keyed(b"pepper inside the HSM")


def build_chain(n: int = 5, start: list[AuditEntry] | None = None) -> list[AuditEntry]:
    """`n` entries sealed by the HSM, after `start` if given (the service appending)."""
    chain: list[AuditEntry] = list(start or [])
    for i in range(n):
        draft = AuditEntry(
            0, 1_800_000_000 + i, "station-1", "token_created", f"MOB-{i:04d}", {"n": i}
        )
        chain.append(seal(draft, chain[-1] if chain else None, HSM))
    return chain


def problems(
    chain: list[AuditEntry], expected_head: AuditHead | None = None
) -> set[tuple[int, AuditProblem]]:
    return {(f.seq, f.problem) for f in verify_chain(chain, HSM, expected_head).findings}


def test_an_untouched_chain_verifies() -> None:
    chain = build_chain()
    report = verify_chain(chain, HSM)
    assert report.intact and report.entries == 5
    assert [e.seq for e in chain] == [1, 2, 3, 4, 5]
    assert report.head == AuditHead(5, chain[-1].entry_hash)


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


# --- the recorded head: truncation --------------------------------------------------------


def test_an_empty_log_has_no_head() -> None:
    report = verify_chain([], HSM)
    assert report.intact and report.entries == 0 and report.head is None


def test_the_recorded_head_still_there_verifies_as_the_chain_grows() -> None:
    chain = build_chain()
    recorded = AuditHead.of(chain[2])
    assert verify_chain(chain, HSM, recorded).intact
    grown = build_chain(3, start=chain)
    report = verify_chain(grown, HSM, recorded)
    assert report.intact and report.head == AuditHead.of(grown[-1])


def test_removing_the_last_entries_is_found_only_with_the_recorded_head() -> None:
    chain = build_chain()
    recorded = AuditHead.of(chain[-1])
    truncated = chain[:3]
    assert verify_chain(truncated, HSM).intact  # the chain alone cannot tell
    assert problems(truncated, recorded) == {(5, AuditProblem.TRUNCATED)}
    assert problems([], recorded) == {(5, AuditProblem.TRUNCATED)}


def test_truncating_then_appending_is_found_with_the_recorded_head() -> None:
    """The service seals new entries onto a truncated log: seq 4 and 5 exist again, with
    valid links and MACs, but not the entries recorded."""
    chain = build_chain()
    recorded = AuditHead.of(chain[-1])
    rewritten = chain[:3]
    for i in range(2):
        draft = AuditEntry(0, 1_900_000_000 + i, "admin", "token_revoked", f"MOB-{i:04d}")
        rewritten.append(seal(draft, rewritten[-1], HSM))
    assert [e.seq for e in rewritten] == [1, 2, 3, 4, 5]
    assert verify_chain(rewritten, HSM).intact  # the chain alone cannot tell
    assert problems(rewritten, recorded) == {(5, AuditProblem.HEAD_MISMATCH)}


def test_a_recorded_head_is_written_and_parsed_as_seq_colon_hex() -> None:
    head = AuditHead.of(build_chain()[-1])
    assert str(head) == f"5:{head.entry_hash.hex()}"
    assert AuditHead.parse(str(head)) == head
    assert AuditHead.parse(f" 5:{head.entry_hash.hex().upper()}\n") == head


@pytest.mark.parametrize(
    "text",
    [
        "",
        "5",
        f"{'ab' * 32}",
        f"0:{'ab' * 32}",
        f"-1:{'ab' * 32}",
        f"x:{'ab' * 32}",
        "5:abcd",
        f"5:{'ab' * 33}",
        f"5:{'zz' * 32}",
        f"5:{'ab' * 16} {'ab' * 16}",
        f"\u0665:{'ab' * 32}",  # a non-ASCII digit
    ],
)
def test_a_malformed_recorded_head_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="SEQ:HEX"):
        AuditHead.parse(text)
