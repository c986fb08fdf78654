"""The emulated token app on its own: codes (RFC vectors), the phone's clock, the app PIN
(remembered 0/5/10 minutes, accounts wiped after 5 wrong PINs), accounts, the state file, and
`otphsm token` without a service (compatibility mode)."""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path

import pyotp
import pytest
from support.cli_support import APP_PIN, run_cli

from otphsm.core.clock import ManualClock
from otphsm.core.errors import InvalidInput, NotFound
from otphsm.simulators.token.mobile_app import (
    MAX_PIN_FAILURES,
    AccountsWiped,
    AppStore,
    MobileApp,
    PinRequired,
    WrongAppPin,
)
from otphsm.simulators.token.otpauth import parse_otpauth

RFC_SEED = b"12345678901234567890"
RFC_B32 = base64.b32encode(RFC_SEED).decode().rstrip("=")
TOTP_URI = f"otpauth://totp/ACME%20Co:alice@example.org?secret={RFC_B32}&issuer=ACME%20Co&digits=8"
HOTP_URI = f"otpauth://hotp/Bank:bob?secret={RFC_B32}&issuer=Bank&counter=0"
WRONG_PIN = "00000"


def make_app(tmp_path: Path, clock: ManualClock) -> MobileApp:
    return MobileApp(clock, AppStore(tmp_path / "phone.json"))


def reopen(tmp_path: Path, clock: ManualClock) -> MobileApp:
    """The app started again: only what the state file kept."""
    return make_app(tmp_path, clock)


def test_codes_follow_rfc_6238_and_the_phones_clock(tmp_path: Path) -> None:
    clock = ManualClock(59)
    app = make_app(tmp_path, clock)
    app.add_uri(TOTP_URI, new_pin=APP_PIN)
    shown = app.code()
    assert (shown.code, shown.seconds_left) == ("94287082", 1)
    assert shown.account.name == "ACME Co:alice@example.org"
    clock.set(1111111109)
    assert app.code().code == "07081804"
    # a phone 30 s fast shows the next step's code
    app.configure(skew=30)
    clock.set(1111111109 - 30)
    assert app.code().code == "07081804"
    assert app.device_time() == 1111111109


def test_hotp_accounts_move_their_counter_at_each_code(tmp_path: Path) -> None:
    clock = ManualClock(1_000)
    app = make_app(tmp_path, clock)
    app.add_uri(HOTP_URI, new_pin=APP_PIN)
    assert [app.code().code[-6:] for _ in range(2)] == ["755224", "287082"]
    assert reopen(tmp_path, clock).code().code == "359152"  # the counter was kept


def test_the_first_account_sets_the_pin_and_later_ones_need_it(tmp_path: Path) -> None:
    clock = ManualClock(1_000)
    app = make_app(tmp_path, clock)
    with pytest.raises(PinRequired):
        app.add_uri(TOTP_URI)
    with pytest.raises(InvalidInput, match="5 digits"):
        app.add_uri(TOTP_URI, new_pin="1234")
    assert not app.accounts and not app.has_pin
    app.add_uri(TOTP_URI, new_pin=APP_PIN)
    app.configure(remember=0)
    later = reopen(tmp_path, clock)
    with pytest.raises(PinRequired):
        later.add_uri(HOTP_URI)
    later.unlock(APP_PIN)
    later.add_uri(HOTP_URI, new_pin="99999")  # a second PIN is ignored: the app has one
    assert later.state.pin_matches(APP_PIN) and not later.state.pin_matches("99999")
    assert [a.name for a in later.accounts] == ["ACME Co:alice@example.org", "Bank:bob"]


@pytest.mark.parametrize("minutes", [5, 10])
def test_the_pin_is_remembered_for_the_chosen_time(tmp_path: Path, minutes: int) -> None:
    clock = ManualClock(1_000)
    app = make_app(tmp_path, clock)
    app.add_uri(TOTP_URI, new_pin=APP_PIN)
    app.configure(remember=minutes * 60)
    app.lock()
    first = reopen(tmp_path, clock)
    assert first.pin_needed()
    with pytest.raises(PinRequired):
        first.code()
    first.unlock(APP_PIN)
    clock.advance(minutes * 60 - 1)
    assert not reopen(tmp_path, clock).pin_needed()
    reopen(tmp_path, clock).code()
    clock.advance(1)
    assert reopen(tmp_path, clock).pin_needed()


def test_remember_zero_asks_at_every_code(tmp_path: Path) -> None:
    clock = ManualClock(1_000)
    app = make_app(tmp_path, clock)
    app.add_uri(TOTP_URI, new_pin=APP_PIN)
    app.configure(remember=0)
    again = reopen(tmp_path, clock)
    assert again.pin_needed()
    again.unlock(APP_PIN)
    again.code()  # unlocked for this opening of the app only
    assert reopen(tmp_path, clock).pin_needed()
    with pytest.raises(InvalidInput):
        again.configure(remember=120)


def test_wrong_pins_count_across_restarts_and_the_fifth_wipes_the_accounts(
    tmp_path: Path,
) -> None:
    clock = ManualClock(1_000)
    app = make_app(tmp_path, clock)
    app.add_uri(TOTP_URI, new_pin=APP_PIN)
    app.lock()
    left = []
    for _ in range(MAX_PIN_FAILURES - 1):
        with pytest.raises(WrongAppPin) as wrong:
            reopen(tmp_path, clock).unlock(WRONG_PIN)
        left.append(wrong.value.tries_left)
    assert left == [4, 3, 2, 1]
    with pytest.raises(AccountsWiped, match="wiped"):
        reopen(tmp_path, clock).unlock(WRONG_PIN)
    wiped = reopen(tmp_path, clock)
    assert wiped.accounts == [] and not wiped.has_pin
    saved = (tmp_path / "phone.json").read_text()
    assert RFC_SEED.hex() not in saved and json.loads(saved)["accounts"] == []
    with pytest.raises(NotFound):
        wiped.code()


def test_a_right_pin_resets_the_count(tmp_path: Path) -> None:
    clock = ManualClock(1_000)
    app = make_app(tmp_path, clock)
    app.add_uri(TOTP_URI, new_pin=APP_PIN)
    app.lock()
    for _ in range(3):
        with pytest.raises(WrongAppPin):
            app.unlock(WRONG_PIN)
    app.unlock(APP_PIN)
    app.lock()
    for _ in range(MAX_PIN_FAILURES - 1):
        with pytest.raises(WrongAppPin):
            app.unlock(WRONG_PIN)
    assert len(reopen(tmp_path, clock).accounts) == 1


def test_the_same_account_again_replaces_it_and_lookups_are_by_name_or_part(
    tmp_path: Path,
) -> None:
    clock = ManualClock(1_000)
    app = make_app(tmp_path, clock)
    app.add_uri(TOTP_URI, new_pin=APP_PIN)
    other_seed = base64.b32encode(b"abcdefghijklmnopqrst").decode()
    app.add_uri(TOTP_URI.replace(RFC_B32, other_seed))
    assert len(app.accounts) == 1 and app.accounts[0].secret == b"abcdefghijklmnopqrst"
    app.add_uri(HOTP_URI)
    assert app.find("bob").name == "Bank:bob"
    with pytest.raises(InvalidInput, match="several accounts"):
        app.find()
    with pytest.raises(NotFound):
        app.find("nobody")
    assert app.remove("bob").name == "Bank:bob" and len(app.accounts) == 1


def test_the_state_file_is_owner_only_and_reprs_hold_no_seed(tmp_path: Path) -> None:
    app = make_app(tmp_path, ManualClock(1_000))
    account = app.add_uri(TOTP_URI, new_pin=APP_PIN)
    assert (tmp_path / "phone.json").stat().st_mode & 0o777 == 0o600
    assert RFC_SEED.hex() not in repr(account) and "secret" not in repr(account)
    assert APP_PIN not in repr(app.state) and app.state.pin_hash not in repr(app.state)
    assert APP_PIN not in (tmp_path / "phone.json").read_text()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (TOTP_URI.replace("otpauth://", "https://"), "not an otpauth"),
        (TOTP_URI.replace("digits=8", "digits=9"), "digits"),
        (TOTP_URI + "&algorithm=MD5", "algorithm"),
        (HOTP_URI.replace("&counter=0", ""), "counter"),
        (TOTP_URI.replace(RFC_B32, RFC_B32[:8]), "shorter"),
        (TOTP_URI.replace(RFC_B32, "!!" + RFC_B32), "base32"),
    ],
)
def test_a_bad_uri_is_refused_without_echoing_the_secret(uri: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as refused:
        parse_otpauth(uri)
    assert RFC_B32[:16] not in str(refused.value)


# --- the command line -----------------------------------------------------------------------


def test_cli_compatibility_account_code_list_and_pin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    state = ["--state", str(tmp_path / "phone.json")]
    added = run_cli(
        capsys, monkeypatch, ["token", "add-uri", TOTP_URI, *state, "--pin-from-stdin"], [APP_PIN]
    )
    assert added.code == 0 and "ACME Co:alice@example.org" in added.out

    before = time.time()
    shown = run_cli(capsys, monkeypatch, ["token", "code", *state])
    after = time.time()
    assert shown.code == 0
    found = re.search(r"alice@example.org\s+(\d{8})\s+\((\d+) s left\)", shown.out)
    assert found, shown.out
    totp = pyotp.TOTP(RFC_B32, digits=8)
    assert found.group(1) in {totp.at(before), totp.at(after)}

    listed = run_cli(capsys, monkeypatch, ["token", "list", *state])
    settings = run_cli(capsys, monkeypatch, ["token", "settings", "--skew", "-12", *state])
    assert "-12 s" in settings.out
    for output in (added, shown, listed, settings):
        text = output.out + output.err
        assert RFC_B32 not in text and RFC_SEED.hex() not in text and APP_PIN not in text

    assert run_cli(capsys, monkeypatch, ["token", "lock", *state]).code == 0
    wrong = run_cli(capsys, monkeypatch, ["token", "code", *state, "--pin-from-stdin"], [WRONG_PIN])
    assert wrong.code == 4 and "wrong app PIN: 4 tries left" in wrong.err
    assert wrong.err.count("\n") == 1
    silent = run_cli(capsys, monkeypatch, ["token", "code", *state, "--pin-from-stdin"])
    assert silent.code == 2 and "stdin ended before the app PIN" in silent.err
    right = run_cli(capsys, monkeypatch, ["token", "code", *state, "--pin-from-stdin"], [APP_PIN])
    assert right.code == 0 and re.search(r"\d{8}", right.out)


def test_cli_five_wrong_pins_wipe_the_app(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    state = ["--state", str(tmp_path / "phone.json"), "--pin-from-stdin"]
    run_cli(
        capsys, monkeypatch, ["token", "add-uri", TOTP_URI, *state, "--remember", "0"], [APP_PIN]
    )
    results = [
        run_cli(capsys, monkeypatch, ["token", "code", *state], [WRONG_PIN])
        for _ in range(MAX_PIN_FAILURES)
    ]
    assert [r.code for r in results] == [4] * MAX_PIN_FAILURES
    assert "every account was wiped" in results[-1].err
    listed = run_cli(capsys, monkeypatch, ["token", "list", *state])
    assert "no account" in listed.out
