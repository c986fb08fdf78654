"""Login codes on the use-case tier (App over SQLite and SoftHSM2): every decision is one
conditional write, so racing verifiers accept a code once and count every wrong try."""

from __future__ import annotations

import hashlib
import re
from collections import Counter

import pytest
from support.app_fixtures import PORTAL
from support.store_fixtures import race

from otphsm.core.app import login
from otphsm.core.app.context import App
from otphsm.core.app.login import Channel
from otphsm.core.errors import FailedPrecondition, InvalidInput
from otphsm.core.records import Citizen, OobPurpose
from otphsm.core.verification import VerifyResult
from otphsm.simulators.sms.inbox import read_sms_messages

pytestmark = pytest.mark.softhsm

CF = "RSSMRA80A01L378S"
PHONE = "+393331234567"


@pytest.fixture
def citizen(app: App) -> Citizen:
    record = Citizen(
        CF,
        "Mario",
        "Rossi",
        "1980-01-01",
        "M",
        "L378",
        "7430010024925855",
        "0a1b2c",
        "CN=Test CNS CA",
        app.now(),
        app.now(),
        PHONE,
    )
    app.store.upsert_citizen(record)
    return record


def sent_code(app: App) -> str:
    messages = read_sms_messages(app.sms.outbox, PHONE)  # type: ignore[attr-defined]
    found = re.search(r"\b(\d{6})\b", messages[-1].text)
    assert found
    return found.group(1)


def test_racing_verifiers_accept_a_code_once(app: App, citizen: Citizen) -> None:
    login.request_login_code(app, PORTAL, CF, Channel.SMS)
    code = sent_code(app)
    results = race(8, lambda: login.verify_login_code(app, PORTAL, CF, code).result.value)
    assert Counter(results) == {"ok": 1, "replayed": 7}


def test_racing_wrong_tries_are_all_counted(app: App, citizen: Citizen) -> None:
    login.request_login_code(app, PORTAL, CF, Channel.SMS)
    code = sent_code(app)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    results = race(6, lambda: login.verify_login_code(app, PORTAL, CF, wrong).result.value)
    assert Counter(results) == {"wrong_code": 3, "locked": 3}
    assert login.verify_login_code(app, PORTAL, CF, code).result is VerifyResult.LOCKED
    stored = app.store.current_oob_code(CF, OobPurpose.LOGIN)
    assert stored is not None and stored.locked_until == app.now() + 60


def unkeyed_hashes(*texts: str) -> set[bytes]:
    """What a store of plain hashes would hold: anyone could recompute them from a guess."""
    return {
        hashlib.new(name, text.encode()).digest()
        for name in ("sha1", "sha256", "sha512")
        for text in texts
    }


def test_only_the_mac_of_the_code_and_of_the_part_is_stored(app: App, citizen: Citizen) -> None:
    login.set_code_prefix(app, PORTAL, CF, "ab12")
    sent = login.request_login_code(app, PORTAL, CF, Channel.SMS)
    code = sent_code(app)
    snapshot = app.store.snapshot()
    rows = str(snapshot)
    assert code not in rows and "AB12" not in rows.upper()
    assert sent.prefix_required and sent.expires_at == app.now() + 600

    # What is stored is the HSM's keyed digest (HMAC-SHA256 under the pepper key, which never
    # leaves the HSM) of a message binding purpose, citizen and value, not a plain hash.
    stored = app.store.current_oob_code(CF, OobPurpose.LOGIN)
    recorded = app.store.get_citizen(CF)
    assert stored is not None and recorded is not None and recorded.code_prefix_mac is not None
    code_message = f"oob:login:{CF}:{code}"
    prefix_message = f"oob-prefix:{CF}:AB12"
    assert stored.code_mac == app.hsm.keyed_digest(code_message.encode())
    assert recorded.code_prefix_mac == app.hsm.keyed_digest(prefix_message.encode())
    assert any(stored.code_mac in row for row in snapshot["oob_codes"])
    assert any(recorded.code_prefix_mac in row for row in snapshot["citizens"])
    plain = unkeyed_hashes(code, code_message, "AB12", "ab12", prefix_message)
    assert stored.code_mac not in plain and recorded.code_prefix_mac not in plain


def test_push_needs_a_push_gateway_and_bad_input_changes_nothing(
    app: App, citizen: Citizen
) -> None:
    assert app.push is None
    before = app.store.snapshot()
    with pytest.raises(FailedPrecondition, match="push"):
        login.request_login_code(app, PORTAL, CF, Channel.PUSH)
    for bad in ("abc", "12345", "AB 1", "ÀB12", "aßc"):
        with pytest.raises(InvalidInput):
            login.set_code_prefix(app, PORTAL, CF, bad)
    assert app.store.snapshot() == before
