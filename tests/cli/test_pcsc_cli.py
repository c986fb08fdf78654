"""`otphsm sim pcscd`, `otphsm sim card insert` and `otphsm card info`, end to end."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.card_fixtures import CARD_PIN
from support.pcsc_fixtures import InsertCard, require_pcscd, wait_card_state

from otphsm.cli.main import main
from otphsm.simulators.card.cardfile import read_card_spec, save_card
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.card.pcscd import (
    PrivatePcscd,
    free_port_pair,
    listening_tcp_ports,
    pcscd_answers,
)
from otphsm.simulators.card.spec import CardSpec

pytestmark = [pytest.mark.pcscd, pytest.mark.timeout(60)]


def _otphsm(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "otphsm.cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _interrupt(process: subprocess.Popen[str], signum: int = signal.SIGINT) -> str:
    process.send_signal(signum)
    out, _ = process.communicate(timeout=10)
    return out


def _wait_for_output(process: subprocess.Popen[str], text: str, timeout: float = 15.0) -> str:
    """Read the command's output until `text` appears (it may start slowly on a busy machine)."""
    assert process.stdout is not None
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.1)
        if ready:
            line = process.stdout.readline()
            if not line:
                break
            seen.append(line)
            if text in line:
                return "".join(seen)
    raise AssertionError(f"{text!r} not printed within {timeout}s; got {''.join(seen)!r}")


def test_card_info_shows_what_a_technician_needs(
    insert_card: InsertCard, card_spec_2048: CardSpec, capsys: pytest.CaptureFixture[str]
) -> None:
    insert_card(CnsCard(card_spec_2048))
    assert main(["card", "info", "--reader", "00 00", "--timeout", "5", "--pin", CARD_PIN]) == 0
    out = capsys.readouterr().out
    for expected in (
        "Readers: Virtual PCD 00 00, Virtual PCD 00 01",
        "Card in Virtual PCD 00 00",
        f"Card id:        {card_spec_2048.extra['card_id']}",
        "Name:           LAURA BIANCHI",
        "Codice fiscale: BNCLRA90L55L378U",
        "Born:           15/07/1990 in L378",
        "Issuer:         CN=CA Cittadini (TEST)",
        "Key:            RSA-2048",
        "PIN: correct",
    ):
        assert expected in out
    assert "WARNING" not in out


def test_card_info_reports_a_wrong_pin_with_tries_left(
    insert_card: InsertCard, card_spec_1024: CardSpec, capsys: pytest.CaptureFixture[str]
) -> None:
    insert_card(CnsCard(card_spec_1024))
    assert main(["card", "info", "--timeout", "5", "--pin", "11111"]) == 1
    assert "PIN: WRONG, 2 tries left" in capsys.readouterr().out


def test_card_info_on_an_empty_reader_waits_then_says_so(
    pcscd: PrivatePcscd, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["card", "info", "--reader", "00 01", "--timeout", "0.3"]) == 3  # the card: 3
    captured = capsys.readouterr()
    assert "Waiting for a card in Virtual PCD 00 01" in captured.out
    assert "no card was inserted in Virtual PCD 00 01 within 0.3s" in captured.err


def test_sim_card_insert_puts_a_card_file_into_the_reader(
    pcscd: PrivatePcscd,
    card_spec_1024: CardSpec,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    card_file = tmp_path / "card.json"
    save_card(card_file, card_spec_1024)
    process = _otphsm("sim", "card", "insert", str(card_file), "--port", str(pcscd.ports[1]))
    reader = pcscd.reader_names[1]
    try:
        _wait_for_output(process, "card in the reader")
        wait_card_state(reader, present=True)
        assert main(["card", "info", "--reader", "00 01", "--timeout", "5", "--pin", "99999"]) == 1
        assert "2 tries left" in capsys.readouterr().out
    finally:
        out = _interrupt(process)
    assert "removing the card" in out
    wait_card_state(reader, present=False)
    assert read_card_spec(card_file).pin_tries_left == 3  # not persisted without --persist


def test_sim_card_insert_persist_keeps_the_retry_counter(
    pcscd: PrivatePcscd, card_spec_1024: CardSpec, tmp_path: Path
) -> None:
    card_file = tmp_path / "card.json"
    save_card(card_file, card_spec_1024)
    process = _otphsm(
        "sim", "card", "insert", str(card_file), "--port", str(pcscd.ports[1]), "--persist"
    )
    reader = pcscd.reader_names[1]
    try:
        _wait_for_output(process, "card in the reader")
        wait_card_state(reader, present=True)
        assert main(["card", "info", "--reader", "00 01", "--timeout", "5", "--pin", "99999"]) == 1
    finally:
        out = _interrupt(process)
    assert "state saved" in out
    wait_card_state(reader, present=False)
    assert read_card_spec(card_file).pin_tries_left == 2
    assert read_card_spec(card_file).pin == CARD_PIN


def test_sim_pcscd_runs_a_private_daemon_in_the_foreground(tmp_path: Path) -> None:
    require_pcscd()
    port = free_port_pair()
    process = _otphsm("sim", "pcscd", "--dir", str(tmp_path), "--port", str(port))
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if "Ctrl-C" in line or not line:
            break
    out = "".join(lines)
    try:
        socket_path = tmp_path / "pcscd.comm"
        assert f"export PCSCLITE_CSOCK_NAME={socket_path}" in out
        assert f"--port {port}" in out and f"--port {port + 1}" in out
        assert pcscd_answers(socket_path)
        assert {port, port + 1} <= listening_tcp_ports()
    finally:
        _interrupt(process, signal.SIGTERM)  # stops its pcscd, like Ctrl-C
    assert not {port, port + 1} & listening_tcp_ports()
    assert not pcscd_answers(socket_path)
    assert os.environ["PCSCLITE_CSOCK_NAME"] != str(socket_path)
