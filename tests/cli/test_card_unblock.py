"""`otphsm card unblock` against the simulated card in a real pcscd: a PIN blocked by wrong
tries is unblocked with the PUK (RESET RETRY COUNTER), after which the new PIN works and the
old one does not; a wrong PUK is the card's error (exit 3) with the PUK's tries left."""

from __future__ import annotations

import pytest
from support.card_fixtures import CARD_PIN, CARD_PUK
from support.cli_support import run_cli
from support.pcsc_fixtures import InsertCard

from otphsm.cli.ui import ExitCode
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.card.spec import CardSpec

pytestmark = [pytest.mark.pcscd, pytest.mark.timeout(60)]
NEW_PIN = "24680"


def card_info(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, pin: str
) -> tuple[int, str]:
    run = run_cli(capsys, monkeypatch, ["card", "info", "--timeout", "5", "--pin", pin])
    return run.code, run.out.splitlines()[-1]


def test_a_blocked_pin_is_unblocked_with_the_puk(
    insert_card: InsertCard,
    card_spec_1024: CardSpec,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    insert_card(CnsCard(card_spec_1024))
    for _ in range(3):
        card_info(capsys, monkeypatch, "11111")
    assert card_info(capsys, monkeypatch, CARD_PIN) == (
        1,
        "PIN: BLOCKED; unblock it with the PUK: otphsm card unblock",
    )

    unblock = ["card", "unblock", "--timeout", "5", "--pin-from-stdin"]
    wrong = run_cli(capsys, monkeypatch, unblock, stdin=["11223344", NEW_PIN])
    assert wrong.code == ExitCode.CARD
    assert wrong.err.strip().startswith("otphsm: error: wrong PUK: ")
    assert "tries left" in wrong.err

    done = run_cli(capsys, monkeypatch, unblock, stdin=[CARD_PUK, NEW_PIN])
    assert done.code == ExitCode.OK, done.err
    assert "PIN unblocked and changed" in done.out
    assert CARD_PUK not in done.out + done.err and NEW_PIN not in done.out + done.err

    assert card_info(capsys, monkeypatch, NEW_PIN) == (
        0,
        "PIN: correct (the retry counter is back to its maximum)",
    )
    code, said = card_info(capsys, monkeypatch, CARD_PIN)
    assert code == 1 and said.startswith("PIN: WRONG")


def test_a_new_pin_the_card_cannot_take_is_refused_before_the_card(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    unblock = ["card", "unblock", "--timeout", "0", "--pin-from-stdin"]
    run = run_cli(capsys, monkeypatch, unblock, stdin=[CARD_PUK, "12", "1a345", "123456789"])
    assert run.code == ExitCode.CARD  # a PIN the card could not take is the card's (the table)
    assert run.out.count("choose again") == 2  # three tries, then the reason
    assert run.err.strip() == "otphsm: error: a CNS PIN has 5 to 8 digits"


def test_no_card_is_the_card_exit_code_as_for_card_info_and_enrol(
    pcscd: object, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same "no card" exit (3) from every station command (README's table)."""
    unblock = ["card", "unblock", "--reader", "00 01", "--timeout", "0.3", "--pin-from-stdin"]
    run = run_cli(capsys, monkeypatch, unblock, stdin=[CARD_PUK, NEW_PIN])
    assert run.code == ExitCode.CARD
    assert "no card was inserted in Virtual PCD 00 01 within 0.3s" in run.err
    info = run_cli(capsys, monkeypatch, ["card", "info", "--reader", "00 01", "--timeout", "0.3"])
    assert info.code == ExitCode.CARD
