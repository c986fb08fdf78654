"""The `Store` contract, run against SQLite (file and :memory:) and PostgreSQL.

Every engine must give the same answers, and the same guarantees under concurrency: a
conditional update or a consume succeeds for exactly one of many racing writers, whether they
are threads of one store, two stores on one database, or two processes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from support.store_fixtures import (
    append_audit_entries,
    chained_entry,
    migrate_concurrently,
    race,
    race_update_token,
    run_processes,
)
from support.store_records import (
    LAURA,
    MARIO,
    NOW,
    activation,
    authorisation,
    challenge,
    citizen,
    oob_code,
    token,
)

from otphsm.core.errors import ConfigurationError
from otphsm.core.otp import HashAlgorithm
from otphsm.core.ports import Conflict, Store
from otphsm.core.records import ActivationMethod, AuditEntry, OobPurpose
from otphsm.core.seeds import SeedRef, SeedStorage
from otphsm.core.tokens import OtpMode, OtpParameters, TokenKind, TokenState
from otphsm.store import LATEST_VERSION, SqlStore, StoreUnavailable, open_store, sqlite_path
from otphsm.store import sql_store as sql_store_module
from otphsm.store.schema import MIGRATIONS

OpenStore = Callable[[str], SqlStore]


# schema


def test_the_store_satisfies_the_port(store: SqlStore) -> None:
    port: Store = store
    port.ping()


def test_migrate_twice_is_a_no_op(store: SqlStore) -> None:
    store.upsert_citizen(citizen())
    before = store.snapshot()
    store.migrate()
    assert store.applied_migrations() == [
        (1, "citizens, tokens, single-use records, audit chain"),
        (2, "login code prefixes, rate limits, Security Cards"),
        (3, "one active mobile token per citizen"),
        (4, "lockout per origin: failure counters, known origins, unknown-origin budgets"),
        (5, "which KEK wraps each stored seed (KEK rotation)"),
        (6, "failed-check buckets per caller, shared by replicas"),
        (7, "lockout attempts in flight, apart from the failures counted"),
        (8, "RADIUS challenge states and recent answers, shared by replicas"),
        (9, "room on each tokens page for its rows' next versions (PostgreSQL)"),
    ]
    assert store.snapshot() == before


def test_ping_refuses_an_unmigrated_database(store_url: str) -> None:
    blank = open_store(store_url)
    try:
        with pytest.raises(StoreUnavailable, match="migrat"):
            blank.ping()
        blank.migrate()
        blank.ping()
    finally:
        blank.close()


def test_a_closed_store_is_unavailable(store_url: str) -> None:
    closed = open_store(store_url)
    closed.migrate()
    closed.close()
    with pytest.raises(StoreUnavailable):
        closed.ping()
    with pytest.raises(StoreUnavailable):
        closed.get_token("TOK-0001")


def test_a_newer_schema_is_refused(store: SqlStore) -> None:
    store._engine.run(
        lambda tx: tx.execute(
            "INSERT INTO schema_version (version, description) VALUES (?, ?)",
            (LATEST_VERSION + 1, "from the future"),
        ),
        write=True,
    )
    with pytest.raises(ConfigurationError, match="newer than this otphsm"):
        store.migrate()
    store.ping()


def test_concurrent_migrations_from_two_processes_apply_once(
    shared_store_url: str, open_test_store: OpenStore
) -> None:
    assert run_processes(migrate_concurrently, 3, shared_store_url) == ["migrated"] * 3
    migrated = open_test_store(shared_store_url)
    assert [version for version, _ in migrated.applied_migrations()] == [
        migration.version for migration in MIGRATIONS
    ]


# citizens


def test_citizen_round_trip_and_upsert_keeps_the_first_enrolment(store: SqlStore) -> None:
    assert store.get_citizen(MARIO) is None
    store.upsert_citizen(citizen(phone_number=None))
    assert store.get_citizen(MARIO) == citizen(phone_number=None)

    renewed = citizen(card_id="9999", enrolled_at=NOW + 500, updated_at=NOW + 500)
    store.upsert_citizen(renewed)
    assert store.get_citizen(MARIO) == replace(renewed, enrolled_at=NOW)
    assert store.get_citizen(LAURA) is None


# tokens


def test_token_round_trip_keeps_every_field(store: SqlStore) -> None:
    full = token(
        kind=TokenKind.PHYSICAL,
        params=OtpParameters(OtpMode.HOTP, HashAlgorithm.SHA512, 6, 30),
        seed=SeedRef(SeedStorage.RESIDENT, b"\x00cka-id"),
        state=TokenState.ACTIVE,
        moving_factor=2**62,
        drift_steps=-3,
        failures=2,
        lock_level=1,
        locked_until=NOW + 60,
        activated_at=NOW + 1,
        last_used_at=NOW + 2,
        replaces_serial="TOK-0000",
        version=7,
    )
    without_seed = token("TOK-0002", seed=None)
    store.insert_token(full)
    store.insert_token(without_seed)
    assert store.get_token(full.serial) == full
    assert store.get_token(without_seed.serial) == without_seed
    assert store.get_token("TOK-9999") is None


def test_duplicate_serial_is_a_conflict_and_changes_nothing(store: SqlStore) -> None:
    store.insert_token(token())
    before = store.snapshot()
    with pytest.raises(Conflict, match="TOK-0001"):
        store.insert_token(token(codice_fiscale=LAURA))
    assert store.snapshot() == before


def test_tokens_of_orders_by_creation_then_serial(store: SqlStore) -> None:
    for serial, created_at in [("TOK-A", NOW + 5), ("TOK-C", NOW), ("TOK-B", NOW)]:
        store.insert_token(token(serial, created_at=created_at))
    store.insert_token(token("TOK-LAURA", LAURA))
    assert [t.serial for t in store.tokens_of(MARIO)] == ["TOK-B", "TOK-C", "TOK-A"]
    assert [t.serial for t in store.tokens_of(LAURA)] == ["TOK-LAURA"]
    assert store.tokens_of("NOBODY") == []


def test_update_token_is_conditional_on_the_version(store: SqlStore) -> None:
    original = token()
    store.insert_token(original)
    accepted = replace(original, moving_factor=42, state=TokenState.ACTIVE, seed=None)
    assert store.update_token(accepted) is True
    assert store.get_token(original.serial) == replace(accepted, version=1)

    before = store.snapshot()
    assert store.update_token(replace(original, moving_factor=43)) is False
    assert store.update_token(token("TOK-MISSING")) is False
    assert store.snapshot() == before


def test_update_tokens_writes_all_or_nothing(store: SqlStore) -> None:
    first, second = token("TOK-A"), token("TOK-B", LAURA)
    store.insert_token(first)
    store.insert_token(second)
    store.update_token(replace(second, failures=1))
    before = store.snapshot()
    stale_pair = [replace(first, failures=5), replace(second, failures=5)]
    assert store.update_tokens(stale_pair) is False
    assert store.snapshot() == before

    current = store.get_token("TOK-B")
    assert current is not None
    assert store.update_tokens([replace(first, failures=5), replace(current, failures=5)])
    assert [t.failures for t in (store.get_token("TOK-A"), store.get_token("TOK-B")) if t] == [
        5,
        5,
    ]


def test_the_database_refuses_a_second_active_phone(store: SqlStore) -> None:
    active = TokenState.ACTIVE
    store.insert_token(token("TOK-PHONE-1", state=active))
    store.insert_token(token("TOK-FOB", state=active, kind=TokenKind.PHYSICAL))
    store.insert_token(token("TOK-PHONE-3", LAURA, state=active))
    second = token("TOK-PHONE-2")
    store.insert_token(second)
    before = store.snapshot()
    with pytest.raises(Conflict):
        store.update_token(replace(second, state=active))
    with pytest.raises(Conflict):
        store.insert_token(token("TOK-PHONE-4", state=active))
    assert store.snapshot() == before

    first = store.get_token("TOK-PHONE-1")
    assert first is not None
    # Revoking the old phone first, in the same transaction, lets the new one turn active.
    assert store.update_tokens(
        [replace(first, state=TokenState.REVOKED), replace(second, state=active)]
    )
    assert [t.state for t in store.tokens_of(MARIO) if t.kind is TokenKind.MOBILE] == [
        TokenState.REVOKED,
        TokenState.ACTIVE,
    ]


def test_racing_threads_with_one_version_have_one_winner(store: SqlStore) -> None:
    store.insert_token(token())
    for round_number in range(5):
        current = store.get_token("TOK-0001")
        assert current is not None and current.version == round_number
        next_state = replace(current, moving_factor=current.version + 1)
        outcomes = race(8, functools.partial(store.update_token, next_state))
        assert outcomes.count(True) == 1
    final = store.get_token("TOK-0001")
    assert final is not None and final.version == 5 and final.moving_factor == 5


def test_two_stores_on_one_database_act_as_replicas(
    shared_store_url: str, open_test_store: OpenStore
) -> None:
    first, second = open_test_store(shared_store_url), open_test_store(shared_store_url)
    first.insert_token(token())
    seen = second.get_token("TOK-0001")
    assert seen == token()
    assert second.update_token(replace(seen, failures=1)) is True
    assert first.update_token(replace(seen, failures=2)) is False
    assert first.get_token("TOK-0001") == replace(seen, failures=1, version=1)


def test_racing_processes_with_one_version_have_one_winner(
    shared_store_url: str, open_test_store: OpenStore
) -> None:
    store = open_test_store(shared_store_url)
    store.insert_token(token())
    outcomes = run_processes(race_update_token, 4, shared_store_url, "TOK-0001")
    assert sorted(outcomes) == [False, False, False, True]
    final = store.get_token("TOK-0001")
    assert final is not None and final.version == 1 and final.moving_factor != 0


# challenges and authorisations: single use, expiring


AnyCall = Callable[..., Any]


def single_use_methods(store: SqlStore, kind: str) -> tuple[AnyCall, AnyCall, AnyCall, AnyCall]:
    """(build, insert, consume, get) for challenges or authorisations."""
    if kind == "challenge":
        return challenge, store.insert_challenge, store.consume_challenge, store.get_challenge
    return (
        authorisation,
        store.insert_authorisation,
        store.consume_authorisation,
        store.get_authorisation,
    )


@pytest.mark.parametrize("kind", ["challenge", "authorisation"])
def test_consume_marks_used_once_and_only_before_expiry(store: SqlStore, kind: str) -> None:
    make, insert, consume, get = single_use_methods(store, kind)
    fresh, stale = make("id-fresh"), make("id-stale")
    insert(fresh)
    insert(stale)
    assert get("id-fresh") == fresh
    with pytest.raises(Conflict):
        insert(fresh)

    before = store.snapshot()
    assert consume("id-stale", fresh.expires_at) is None
    assert consume("id-unknown", NOW) is None
    assert store.snapshot() == before

    assert consume("id-fresh", NOW + 10) == replace(fresh, used_at=NOW + 10)
    assert consume("id-fresh", NOW + 11) is None
    assert get("id-fresh") == replace(fresh, used_at=NOW + 10)
    assert get("id-stale") == stale


def test_racing_consumers_get_a_challenge_once(store: SqlStore) -> None:
    store.insert_challenge(challenge())
    outcomes = race(8, lambda: store.consume_challenge("ch-1", NOW + 1) is not None)
    assert outcomes.count(True) == 1


# activations


def test_activation_round_trip_lookup_and_listing(store: SqlStore) -> None:
    older = activation("ac-old", created_at=NOW - 100)
    newer = activation("ac-new", method=ActivationMethod.TEMPORARY_SECRET)
    compat = activation("ac-compat", method=ActivationMethod.OTPAUTH, secret_mac=b"")
    other = activation("ac-laura", codice_fiscale=LAURA)
    for record in (newer, compat, older, other):
        store.insert_activation(record)
    with pytest.raises(Conflict):
        store.insert_activation(older)

    assert store.get_activation("ac-old") == older
    assert store.get_activation("ac-none") is None
    assert store.find_activation_by_mac(b"mac-ac-new") == newer
    assert store.find_activation_by_mac(b"mac-unknown") is None
    assert store.find_activation_by_mac(b"") is None
    assert [a.activation_id for a in store.activations_of(MARIO)] == [
        "ac-old",
        "ac-compat",
        "ac-new",
    ]


def test_update_activation_is_conditional_on_the_version(store: SqlStore) -> None:
    original = activation()
    store.insert_activation(original)
    failed_once = replace(original, failures=1, locked_until=NOW + 60)
    assert store.update_activation(failed_once) is True
    assert store.update_activation(replace(original, used_at=NOW)) is False
    assert store.get_activation("ac-1") == replace(failed_once, version=1)


# out-of-band codes


def test_a_new_oob_code_supersedes_the_unused_ones(store: SqlStore) -> None:
    first = oob_code("oob-1")
    store.insert_oob_code(first)
    login = oob_code("oob-login", purpose=OobPurpose.LOGIN)
    laura = oob_code("oob-laura", codice_fiscale=LAURA)
    store.insert_oob_code(login)
    store.insert_oob_code(laura)
    assert store.current_oob_code(MARIO, OobPurpose.DEVICE_REPLACEMENT) == first

    second = oob_code("oob-2", created_at=NOW + 30)
    store.insert_oob_code(second)
    assert store.current_oob_code(MARIO, OobPurpose.DEVICE_REPLACEMENT) == second
    superseded = store._engine.run(
        lambda tx: tx.fetch_all(
            "SELECT oob_id, superseded, version FROM oob_codes ORDER BY oob_id"
        ),
        write=False,
    )
    assert [(oob_id, bool(flag), version) for oob_id, flag, version in superseded] == [
        ("oob-1", True, 1),
        ("oob-2", False, 0),
        ("oob-laura", False, 0),
        ("oob-login", False, 0),
    ]
    assert store.current_oob_code(MARIO, OobPurpose.LOGIN) == login
    assert store.current_oob_code(LAURA, OobPurpose.DEVICE_REPLACEMENT) == laura
    assert store.current_oob_code(LAURA, OobPurpose.LOGIN) is None
    assert store.update_oob_code(replace(first, used_at=NOW + 40)) is False


def test_a_used_oob_code_stays_current_until_a_new_one(store: SqlStore) -> None:
    first = oob_code("oob-1")
    store.insert_oob_code(first)
    used = replace(first, used_at=NOW + 5)
    assert store.update_oob_code(used) is True
    assert store.update_oob_code(replace(first, failures=1)) is False
    assert store.current_oob_code(MARIO, OobPurpose.DEVICE_REPLACEMENT) == replace(used, version=1)

    same_second = oob_code("oob-0", created_at=NOW)
    store.insert_oob_code(same_second)
    assert store.current_oob_code(MARIO, OobPurpose.DEVICE_REPLACEMENT) == same_second
    with pytest.raises(Conflict):
        store.insert_oob_code(same_second)


# audit


def test_audit_chain_starts_at_one_and_links_entries(store: SqlStore) -> None:
    assert list(store.audit_entries()) == []
    seen: list[AuditEntry | None] = []

    def build(last: AuditEntry | None) -> AuditEntry:
        seen.append(last)
        entry = chained_entry(last)
        return replace(entry, details={"città": "Trento", "nested": {"n": [1, 2.5, None]}})

    first = store.append_audit(build)
    second = store.append_audit(build)
    assert seen == [None, first]
    assert (first.seq, second.seq) == (1, 2)
    assert second.prev_hash == first.entry_hash
    assert list(store.audit_entries()) == [first, second]


def test_a_failed_build_or_a_wrong_seq_appends_nothing(store: SqlStore) -> None:
    store.append_audit(chained_entry)
    before = store.snapshot()

    def refuse(last: AuditEntry | None) -> AuditEntry:
        raise RuntimeError("HSM gone")

    with pytest.raises(RuntimeError, match="HSM gone"):
        store.append_audit(refuse)
    with pytest.raises(ValueError, match="must have seq 2, not 5"):
        store.append_audit(lambda last: replace(chained_entry(last), seq=5))
    assert store.snapshot() == before


def test_audit_entries_are_read_in_pages_in_order(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql_store_module, "AUDIT_PAGE_SIZE", 3)
    for _ in range(7):
        store.append_audit(chained_entry)
    assert [entry.seq for entry in store.audit_entries()] == [1, 2, 3, 4, 5, 6, 7]


def test_audit_appends_from_eight_threads_form_one_chain(store: SqlStore) -> None:
    def append_five() -> bool:
        for _ in range(5):
            store.append_audit(chained_entry)
        return True

    assert race(8, append_five) == [True] * 8
    assert_one_chain(list(store.audit_entries()), 40)


def test_audit_appends_from_two_processes_form_one_chain(
    shared_store_url: str, open_test_store: OpenStore
) -> None:
    store = open_test_store(shared_store_url)
    assert run_processes(append_audit_entries, 2, shared_store_url, 15) == [15, 15]
    entries = list(store.audit_entries())
    assert_one_chain(entries, 30)
    assert len({entry.actor for entry in entries}) == 2


def assert_one_chain(entries: list[AuditEntry], length: int) -> None:
    assert [entry.seq for entry in entries] == list(range(1, length + 1))
    for previous, entry in zip([None, *entries], entries, strict=False):
        assert entry.details == {"built_after": previous.seq if previous else 0}
        assert entry == chained_entry(previous, actor=entry.actor)


# snapshot


def test_snapshot_lists_every_data_table_in_key_order(store: SqlStore) -> None:
    assert store.snapshot() == {
        "citizens": [],
        "tokens": [],
        "challenges": [],
        "authorisations": [],
        "activations": [],
        "oob_codes": [],
        "audit_log": [],
        "grid_cards": [],
        "rate_limits": [],
        "origin_attempts": [],
        "known_origins": [],
        "origin_budgets": [],
        "origin_reservations": [],
    }
    for serial in ("TOK-3", "TOK-1", "TOK-2"):
        store.insert_token(token(serial))
    store.upsert_citizen(citizen())
    store.insert_challenge(challenge())
    store.insert_authorisation(authorisation())
    store.insert_activation(activation())
    store.insert_oob_code(oob_code())
    store.append_audit(chained_entry)

    snapshot = store.snapshot()
    assert [row[0] for row in snapshot["tokens"]] == ["TOK-1", "TOK-2", "TOK-3"]
    assert {table: len(rows) for table, rows in snapshot.items()} == {
        "citizens": 1,
        "tokens": 3,
        "challenges": 1,
        "authorisations": 1,
        "activations": 1,
        "oob_codes": 1,
        "audit_log": 1,
        "grid_cards": 0,
        "rate_limits": 0,
        "origin_attempts": 0,
        "known_origins": 0,
        "origin_budgets": 0,
        "origin_reservations": 0,
    }
    assert store.snapshot() == snapshot
    assert store.update_token(token("TOK-1", failures=9)) is True
    assert store.snapshot() != snapshot


# composition


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///var/lib/otphsm/otphsm.db", "var/lib/otphsm/otphsm.db"),
        ("sqlite:////var/lib/otphsm.db", "/var/lib/otphsm.db"),
        ("sqlite:otphsm.db", "otphsm.db"),
        ("sqlite::memory:", ":memory:"),
    ],
)
def test_sqlite_urls_name_a_file(url: str, path: str) -> None:
    assert sqlite_path(url) == path


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root:s3cret@db/otphsm", "unsupported store URL scheme 'mysql'"),
        ("sqlite://host/otphsm.db", "names a file, not a host"),
        ("sqlite:", "names no file"),
        ("postgresql://u:s3cret@db/x?bogus=1", "malformed .invalid URI query parameter"),
        ("postgresql://u:s3cret@[::1/x", "malformed .end of string"),
    ],
)
def test_bad_store_urls_are_configuration_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as raised:
        open_store(url)
    assert "s3cret" not in str(raised.value)
    error = raised.value
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


def test_migrate_names_every_migration_on_a_new_database_and_none_after(store_url: str) -> None:
    """What `otphsm serve` warns by: the first migration applied means a new, empty database."""
    store = open_store(store_url)
    try:
        assert list(store.migrate()) == [migration.version for migration in MIGRATIONS]
        assert list(store.migrate()) == []
    finally:
        store.close()
