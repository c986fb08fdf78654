"""KEK rotation on SoftHSM2 and each engine: a run that crashes between pages leaves every
token verifying (seeds under the old and the new KEK side by side), a rerun finishes, the old
KEK is gone, and the audit chain (start, pages, resume, end) verifies."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from support.hsm_fixtures import BARE_TOKEN

from otphsm.core.app.context import App
from otphsm.core.app.key_rotation import rotate_kek
from otphsm.core.audit import verify_chain
from otphsm.core.certificates import TrustStore
from otphsm.core.clock import ManualClock
from otphsm.core.otp import HashAlgorithm
from otphsm.core.records import GridCard, GridCardState
from otphsm.core.tokens import OtpMode, OtpParameters, Token, TokenKind, TokenState
from otphsm.gateways.sms_outbox import OutboxSmsGateway
from otphsm.hsm import HsmSeedVault, open_vault
from otphsm.hsm.keks import HsmKeyRing
from otphsm.hsm.provision import provision
from otphsm.hsm.session import HsmSessionOwner
from otphsm.store import SqlStore, open_store

pytestmark = pytest.mark.softhsm

NOW = 1_760_000_000
SEEDS = {
    f"TOK-{n}": (bytes([n]) * (20 + 6 * n), algorithm)
    for n, algorithm in enumerate(
        [HashAlgorithm.SHA1, HashAlgorithm.SHA256, HashAlgorithm.SHA512] * 3, start=1
    )
}
"""Nine tokens of 26..74-byte seeds, all three hashes."""


class Crash(Exception):
    """Ends a rotation between two pages, as a kill would."""


@dataclass
class Rotating:
    app: App
    vault: HsmSeedVault
    ring: HsmKeyRing
    first: str
    store: SqlStore


@pytest.fixture
def rotating(
    softhsm: Any, shared_store_url: str, trust: TrustStore, tmp_path: Path
) -> Iterator[Rotating]:
    """A vault on a KEK generation of its own (the session's tokens keep theirs) and a store
    holding tokens and a Security Card, one token stored before rotation existed (no KEK
    label)."""
    tag = secrets.token_hex(4)
    config = softhsm.token(BARE_TOKEN).hsm_config(
        kek_label=f"kek-x{tag}", pepper_label=f"pep-{tag}"
    )
    with HsmSessionOwner(config) as owner:
        provision(owner, softhsm.so_pin)
    vault = open_vault(config)
    store = open_store(shared_store_url)
    assert isinstance(store, SqlStore)
    store.migrate()
    clock = ManualClock(NOW)
    app = App(store, vault, clock, trust, OutboxSmsGateway(tmp_path / "sms.jsonl", clock))
    for n, (serial, (seed, algorithm)) in enumerate(SEEDS.items()):
        ref = vault.import_seed(seed, algorithm)
        if n == 0:
            ref = replace(ref, kek=None)  # as a release without rotation stored it
        store.insert_token(
            Token(
                serial,
                f"CF{n:014d}",
                TokenKind.PHYSICAL,
                OtpParameters(OtpMode.HOTP, algorithm),
                ref,
                TokenState.ACTIVE,
                NOW,
            )
        )
    store.insert_grid_card(
        GridCard(
            "GRID-1",
            "CF00000000000000",
            vault.import_seed(b"grid card key 20 byt", HashAlgorithm.SHA256),
            50,
            3,
            GridCardState.ACTIVE,
            NOW,
        )
    )
    app.audit("test", "tokens_loaded", "all")
    ring = HsmKeyRing(vault, softhsm.so_pin)
    yield Rotating(app, vault, ring, config.kek_label, store)
    store.close()
    vault.close()


def _assert_every_seed_works(rotating: Rotating) -> dict[str | None, int]:
    """Each token's HMAC through the vault (the KEK its row names) equals the device's;
    how many seeds each KEK wraps."""
    under: dict[str | None, int] = {}
    for serial, (seed, algorithm) in SEEDS.items():
        token = rotating.store.get_token(serial)
        assert token is not None and token.seed is not None
        expected = hmac.new(seed, b"\0" * 8, algorithm.hashlib_name).digest()
        assert rotating.vault.hmac(token.seed, algorithm, b"\0" * 8) == expected, serial
        under[token.seed.kek] = under.get(token.seed.kek, 0) + 1
    card = rotating.store.get_grid_card("GRID-1")
    assert card is not None
    expected = hmac.new(b"grid card key 20 byt", b"cell", "sha256").digest()
    assert rotating.vault.hmac(card.key, HashAlgorithm.SHA256, b"cell") == expected
    return under


def _crash_at(batch: int) -> Any:
    def after_batch(done: int) -> None:
        if done == batch:
            raise Crash

    return after_batch


def test_a_rotation_crashed_between_pages_is_finished_by_a_rerun(rotating: Rotating) -> None:
    first, second = rotating.first, f"{rotating.first}-2"
    with pytest.raises(Crash):
        rotate_kek(
            rotating.app, rotating.ring, batch_size=3, settle_seconds=0, after_batch=_crash_at(2)
        )
    assert rotating.ring.labels() == [first, second]
    half = _assert_every_seed_works(rotating)
    assert half[second] == 6 and sum(half.values()) == 9  # two pages of three
    assert rotating.vault.generate_seed(HashAlgorithm.SHA1).kek == second  # new seeds: new KEK

    report = rotate_kek(rotating.app, rotating.ring, batch_size=3, settle_seconds=0)
    assert (report.kek, report.started, report.rewrapped, report.stuck) == (second, False, 4, 0)
    assert report.destroyed == (first,) and report.kept == ()
    assert rotating.ring.labels() == [second]
    assert _assert_every_seed_works(rotating) == {second: 9}

    again = rotate_kek(rotating.app, rotating.ring, batch_size=100, settle_seconds=0)
    third = f"{rotating.first}-3"
    assert (again.kek, again.started, again.rewrapped, again.destroyed) == (
        third,
        True,
        10,
        (second,),
    )
    assert rotating.ring.labels() == [third]
    assert _assert_every_seed_works(rotating) == {third: 9}

    entries = list(rotating.store.audit_entries())
    assert verify_chain(entries, rotating.vault.keyed_digest).intact
    actions = [entry.action for entry in entries if entry.action.startswith("kek_rotation")]
    assert actions == [
        "kek_rotation_started",
        "kek_rotation_progress",
        "kek_rotation_progress",
        "kek_rotation_resumed",
        "kek_rotation_progress",
        "kek_rotation_progress",
        "kek_rotation_finished",
        "kek_rotation_started",
        "kek_rotation_progress",
        "kek_rotation_progress",
        "kek_rotation_finished",
    ]


def test_a_replica_cannot_put_an_old_blob_back(rotating: Rotating) -> None:
    """A replica that read a token before the rotation re-wrote it writes with a stale
    version: refused, so the old KEK's blob does not come back."""
    before = rotating.store.get_token("TOK-2")
    assert before is not None and before.seed is not None
    rotate_kek(rotating.app, rotating.ring, settle_seconds=0)
    assert not rotating.store.update_token(replace(before, failures=1))
    after = rotating.store.get_token("TOK-2")
    assert after is not None and after.seed is not None
    assert after.seed.kek == f"{rotating.first}-2"


def test_a_seed_stored_under_the_old_kek_during_the_run_keeps_it(rotating: Rotating) -> None:
    """An issuance in flight when the new KEK appeared stores a seed wrapped under the old one
    after the run has passed: the old KEK is kept, and the next run moves the seed."""
    late_seed = rotating.vault.import_seed(b"late seed, 20 bytes!", HashAlgorithm.SHA1)

    def issue_late(batch: int) -> None:
        if batch == 2:  # the tokens' pages are done; the Security Cards' page just ran
            late = Token(
                "ZZZ-late",
                "CF99999999999999",
                TokenKind.PHYSICAL,
                OtpParameters(OtpMode.HOTP, HashAlgorithm.SHA1),
                late_seed,
                TokenState.ACTIVE,
                NOW,
            )
            rotating.store.insert_token(late)

    first = rotate_kek(rotating.app, rotating.ring, settle_seconds=0, after_batch=issue_late)
    assert first.kept == (rotating.first,) and first.destroyed == ()
    assert rotating.ring.labels() == [rotating.first, f"{rotating.first}-2"]
    second = rotate_kek(rotating.app, rotating.ring, settle_seconds=0)
    assert (second.rewrapped, second.destroyed) == (1, (rotating.first,))
    late = rotating.store.get_token("ZZZ-late")
    assert late is not None and late.seed is not None
    expected = hmac.new(b"late seed, 20 bytes!", b"x", "sha1").digest()
    assert rotating.vault.hmac(late.seed, HashAlgorithm.SHA1, b"x") == expected


def test_provisioning_after_a_rotation_keeps_the_newest_kek(
    rotating: Rotating, softhsm: Any
) -> None:
    rotate_kek(rotating.app, rotating.ring, settle_seconds=0)
    report = provision(rotating.vault.owner, softhsm.so_pin)
    assert (report.kek_created, report.pepper_created) == (False, False)
    assert rotating.ring.labels() == [f"{rotating.first}-2"]
