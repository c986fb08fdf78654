"""The emulated phone's inbox on its own: the notifications the simulated push service wrote to
the per-device outbox of each of the app's tokens, newest first, behind the app PIN, and
`otphsm token inbox` (the outbox from `--push-outbox` or $OTPHSM_PUSH_OUTBOX). The same inbox
against the real service: tests/service/test_token_app.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli_support import APP_PIN, run_cli

from otphsm.core.clock import ManualClock
from otphsm.core.tokens import OtpParameters
from otphsm.gateways.push_outbox import PushOutbox
from otphsm.simulators.token.app_state import Account, AppState, Origin, save_state
from otphsm.simulators.token.mobile_app import AppStore, MobileApp, PinRequired

PHONE_TOKEN = "MOB-AAAA000001"
FOB_LIKE_TOKEN = "MOB-BBBB000002"
STRANGER = "MOB-CCCC000003"
WRONG_PIN = "00000"


def service_account(serial: str, cf: str) -> Account:
    return Account("otphsm", cf, b"\x01" * 32, OtpParameters(), Origin.ACTIVATION_CODE, serial)


def phone_state(path: Path) -> Path:
    """A phone holding two of the service's accounts and one scanned from a URI (no serial)."""
    state = AppState(
        accounts=[
            service_account(PHONE_TOKEN, "RSSMRA80A01L378S"),
            service_account(FOB_LIKE_TOKEN, "BNCLRA90L55L378U"),
            Account("ACME", "alice", b"\x02" * 20, OtpParameters(), Origin.OTPAUTH),
        ]
    )
    state.set_pin(APP_PIN)
    save_state(path, state)
    return path


def push_history(directory: Path) -> None:
    """What the push service delivered, in this order (two at the same second)."""
    clock = ManualClock(1_000)
    push = PushOutbox(directory, clock)
    push.push(PHONE_TOKEN, "first for the phone")
    clock.advance(50)
    push.push(FOB_LIKE_TOKEN, "for the other account")
    push.push(STRANGER, "for someone else's phone")
    clock.advance(50)
    push.push(PHONE_TOKEN, "second for the phone")
    push.push(PHONE_TOKEN, "third for the phone, same second")


def test_the_inbox_holds_the_apps_notifications_newest_first_behind_the_pin(
    tmp_path: Path,
) -> None:
    outbox = tmp_path / "push"
    push_history(outbox)
    app = MobileApp(ManualClock(2_000), AppStore(phone_state(tmp_path / "phone.json")))
    with pytest.raises(PinRequired):
        app.inbox(outbox)
    app.unlock(APP_PIN)
    received = app.inbox(outbox)
    assert [(n.account.serial, n.at, n.text) for n in received] == [
        (PHONE_TOKEN, 1_100, "third for the phone, same second"),
        (PHONE_TOKEN, 1_100, "second for the phone"),
        (FOB_LIKE_TOKEN, 1_050, "for the other account"),
        (PHONE_TOKEN, 1_000, "first for the phone"),
    ]
    assert received[0].account.account == "RSSMRA80A01L378S"
    assert app.inbox(tmp_path / "no-push-service-yet") == []


def test_cli_inbox_finds_the_outbox_from_the_option_or_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = tmp_path / "push"
    push_history(outbox)
    state = ["--state", str(phone_state(tmp_path / "phone.json")), "--pin-from-stdin"]
    monkeypatch.delenv("OTPHSM_PUSH_OUTBOX", raising=False)
    nowhere = run_cli(capsys, monkeypatch, ["token", "inbox", *state], [APP_PIN])
    assert nowhere.code == 2 and "--push-outbox DIR or $OTPHSM_PUSH_OUTBOX" in nowhere.err

    inbox = ["token", "inbox", *state, "--push-outbox", str(outbox)]
    wrong = run_cli(capsys, monkeypatch, inbox, [WRONG_PIN])
    assert wrong.code == 4 and "wrong app PIN" in wrong.err
    assert "for the phone" not in wrong.out + wrong.err

    shown = run_cli(capsys, monkeypatch, inbox, [APP_PIN])
    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    assert lines == [
        f"1970-01-01 00:18:20 UTC  {PHONE_TOKEN}  third for the phone, same second",
        f"1970-01-01 00:18:20 UTC  {PHONE_TOKEN}  second for the phone",
        f"1970-01-01 00:17:30 UTC  {FOB_LIKE_TOKEN}  for the other account",
        f"1970-01-01 00:16:40 UTC  {PHONE_TOKEN}  first for the phone",
    ]

    monkeypatch.setenv("OTPHSM_PUSH_OUTBOX", str(outbox))
    from_env = run_cli(capsys, monkeypatch, ["token", "inbox", *state], [APP_PIN])
    assert (from_env.code, from_env.out) == (0, shown.out)
    monkeypatch.setenv("OTPHSM_PUSH_OUTBOX", str(tmp_path / "empty"))
    empty = run_cli(capsys, monkeypatch, ["token", "inbox", *state], [APP_PIN])
    assert empty.code == 0 and "No notifications" in empty.out
