"""A database made by the previous release (schema version 3, rows as that release wrote them:
citizens, tokens with seeds wrapped on a SoftHSM token, activations, a Security Card, audit
entries) is brought to the current schema by `migrate()` on each engine, and every token still
verifies, the activation is still found by its MAC and the audit chain is still intact.

The old release's tables and rows are written here with their own column lists, frozen, so a
later release's columns cannot leak into "what the old release wrote". Every migration after
`PREVIOUS_RELEASE` runs, so migrations added later are covered without touching this test."""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from otphsm.core.audit import seal, verify_chain
from otphsm.core.otp import HashAlgorithm, hotp, totp
from otphsm.core.records import AuditEntry
from otphsm.core.seeds import SeedRef
from otphsm.core.verification import VerificationPolicy, VerifyResult, verify
from otphsm.hsm import HsmSeedVault
from otphsm.store import LATEST_VERSION, SqlStore, open_store
from otphsm.store.schema import MIGRATIONS, SCHEMA_VERSION_TABLE, ddl
from otphsm.store.sql import Transaction

pytestmark = pytest.mark.softhsm

PREVIOUS_RELEASE = 3
"""The schema version of the release before this one."""
CF = "RSSMRA80A01H501U"
NOW = int(time.time())

RELEASE_3_COLUMNS = {
    "citizens": (
        "codice_fiscale, given_name, surname, birth_date, sex, birth_place, card_id, "
        "certificate_serial, certificate_issuer, enrolled_at, updated_at, phone_number, "
        "code_prefix_mac"
    ),
    "tokens": (
        "serial, codice_fiscale, kind, mode, algorithm, digits, period, seed_storage, seed_data, "
        "state, created_at, moving_factor, drift_steps, failures, lock_level, locked_until, "
        "activated_at, last_used_at, replaces_serial, version"
    ),
    "activations": (
        "activation_id, token_serial, codice_fiscale, method, secret_mac, created_at, "
        "expires_at, failures, locked_until, used_at, version"
    ),
    "grid_cards": (
        "serial, codice_fiscale, key_storage, key_data, cells, cell_digits, state, created_at, "
        "revoked_at, challenge_first, challenge_second, challenge_expires_at, last_first, "
        "last_second, failures, lock_level, locked_until, version"
    ),
    "audit_log": "seq, at, actor, action, subject, details, prev_hash, entry_hash, mac",
}


@dataclass(frozen=True)
class OldToken:
    serial: str
    kind: str
    mode: str
    algorithm: HashAlgorithm
    digits: int
    seed: bytes
    state: str = "active"


OLD_TOKENS = (
    OldToken("MOB-1", "mobile", "totp", HashAlgorithm.SHA1, 6, bytes(range(20))),
    OldToken("FOB-1", "physical", "hotp", HashAlgorithm.SHA1, 6, bytes(range(7, 27))),
    OldToken("FOB-2", "physical", "totp", HashAlgorithm.SHA256, 8, bytes(range(32))),
    OldToken("FOB-3", "physical", "totp", HashAlgorithm.SHA512, 8, bytes(range(64))),
    OldToken("FOB-4", "physical", "hotp", HashAlgorithm.SHA256, 6, bytes(range(100, 170))),
    OldToken("MOB-0", "mobile", "totp", HashAlgorithm.SHA1, 6, bytes(range(50, 70)), "pending"),
)


def _insert(tx: Transaction, table: str, values: tuple[object, ...]) -> None:
    columns = RELEASE_3_COLUMNS[table]
    marks = ", ".join("?" for _ in columns.split(","))
    tx.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", values)


def _previous_release_database(
    store: SqlStore, vault: HsmSeedVault
) -> tuple[dict[str, SeedRef], bytes]:
    """Schema 1..3 and the rows that release wrote; the seeds wrapped and the activation MAC."""
    wrapped = {old.serial: vault.import_seed(old.seed, old.algorithm) for old in OLD_TOKENS}
    activation_mac = vault.keyed_digest(b"activation:" + b"123456789012345678")
    entries: list[AuditEntry] = []
    for n, action in enumerate(("enrol", "issue_token", "activate")):
        blank = AuditEntry(0, NOW - 100 + n, "station", action, CF, {"serial": "MOB-1"})
        entries.append(seal(blank, entries[-1] if entries else None, vault.keyed_digest))
    grid_key = vault.generate_seed(HashAlgorithm.SHA256)

    def write(tx: Transaction) -> None:
        tx.execute(ddl(SCHEMA_VERSION_TABLE, store.dialect))
        for migration in MIGRATIONS:
            if migration.version > PREVIOUS_RELEASE:
                break
            for statement in migration.statements:
                tx.execute(ddl(statement, store.dialect))
            tx.execute(
                "INSERT INTO schema_version (version, description) VALUES (?, ?)",
                (migration.version, migration.description),
            )
        _insert(
            tx,
            "citizens",
            (
                *(CF, "Mario", "Rossi", "1980-01-01", "M", "H501", "card-1", "01", "CA", NOW, NOW),
                *("+393331234567", None),
            ),
        )
        for old in OLD_TOKENS:
            seed = wrapped[old.serial]
            _insert(
                tx,
                "tokens",
                (
                    *(old.serial, CF, old.kind, old.mode, old.algorithm.value, old.digits, 30),
                    *(seed.storage.value, seed.data, old.state, NOW - 1000, 0, 0, 0, 0, 0),
                    *(NOW - 900 if old.state == "active" else None, None, None, 1),
                ),
            )
        _insert(
            tx,
            "activations",
            ("act-1", "MOB-0", CF, "code", activation_mac, NOW - 60, NOW + 1800, 0, 0, None, 1),
        )
        _insert(
            tx,
            "grid_cards",
            (
                *("GRID-1", CF, grid_key.storage.value, grid_key.data, 16, 3, "active", NOW - 500),
                *(None, None, None, 0, None, None, 0, 0, 0, 1),
            ),
        )
        for entry in entries:
            details = json.dumps(
                entry.details, sort_keys=True, separators=(",", ":"), ensure_ascii=False
            )
            _insert(
                tx,
                "audit_log",
                (
                    *(entry.seq, entry.at, entry.actor, entry.action, entry.subject, details),
                    *(entry.prev_hash, entry.entry_hash, entry.mac),
                ),
            )

    store._engine.run(write, write=True)  # as the old release's store would
    return wrapped, activation_mac


def _device_code(old: OldToken, now: int) -> str:
    def device_hmac(message: bytes) -> bytes:
        return hmac.new(old.seed, message, old.algorithm.hashlib_name).digest()

    if old.mode == "hotp":
        return hotp(device_hmac, 0, old.digits)
    return totp(device_hmac, now, 30, old.digits)


def test_a_previous_release_database_upgrades_and_every_token_verifies(
    shared_store_url: str, vault: HsmSeedVault
) -> None:
    old_store = open_store(shared_store_url)
    assert isinstance(old_store, SqlStore)
    try:
        wrapped, activation_mac = _previous_release_database(old_store, vault)
        assert [v for v, _ in old_store.applied_migrations()] == [1, 2, 3]
    finally:
        old_store.close()

    store = open_store(shared_store_url)
    assert isinstance(store, SqlStore)
    try:
        store.migrate()
        versions = [v for v, _ in store.applied_migrations()]
        assert versions == [m.version for m in MIGRATIONS] and versions[-1] == LATEST_VERSION
        store.ping()

        policy = VerificationPolicy()
        for old in OLD_TOKENS:
            token = store.get_token(old.serial)
            assert token is not None and token.seed is not None, old.serial
            assert token.seed.data == wrapped[old.serial].data and token.seed.kek is None
            seed: SeedRef = token.seed
            hmac_fn: Callable[[bytes], bytes] = lambda message, s=seed, a=old.algorithm: (  # noqa: E731
                vault.hmac(s, a, message)
            )
            verdict = verify(
                token, _device_code(old, NOW), NOW, hmac_fn, policy, allow_pending=True
            )
            assert verdict.result is VerifyResult.OK, old.serial
            if old.state == "active":  # a pending one would need its mobile's place
                assert store.update_token(verdict.token), old.serial

        activation = store.find_activation_by_mac(activation_mac)
        assert activation is not None and activation.token_serial == "MOB-0"
        citizen = store.get_citizen(CF)
        assert citizen is not None and citizen.phone_number == "+393331234567"
        card = store.get_grid_card("GRID-1")
        assert card is not None and vault.hmac(card.key, HashAlgorithm.SHA256, b"cell")
        report = verify_chain(store.audit_entries(), vault.keyed_digest)
        assert report.intact and report.entries == 3, report.findings
    finally:
        store.close()
