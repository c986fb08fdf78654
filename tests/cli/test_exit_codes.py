"""One exit-code path for every command: whatever group a typed error comes from, `main` prints
it as one line on stderr and exits with the code of the one table (`exit_code_for`, README
"The command line"); Ctrl-C exits 130."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from support.cli_support import CF, Run, run_cli
from support.service_fixtures import service_config

from otphsm.cli.ui import ExitCode, exit_code_for
from otphsm.core.errors import FailedPrecondition, OtpHsmError, RateLimited
from otphsm.hsm.errors import HsmOperationRefused, HsmPinIncorrect, HsmUnavailable
from otphsm.service.devpki import DevPki
from otphsm.simulators.card.pcscd import PcscdError, PrivatePcscd
from otphsm.simulators.deployment import write_config
from otphsm.smartcard.errors import NoReader
from otphsm.store.errors import StoreUnavailable

FOB_PSK = "00" * 32


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (NoReader("no reader"), ExitCode.CARD),
        (HsmPinIncorrect("the user PIN"), ExitCode.INVALID),
        (PcscdError("pcscd exited at start-up"), ExitCode.INVALID),
        (HsmUnavailable("the HSM"), ExitCode.UNREACHABLE),
        (StoreUnavailable("the database"), ExitCode.UNREACHABLE),
        (HsmOperationRefused("not allowed"), ExitCode.REFUSED),
        (FailedPrecondition("wait"), ExitCode.REFUSED),
        (RateLimited("later", retry_after=5), ExitCode.REFUSED),
    ],
)
def test_the_table_covers_the_local_devices_too(error: OtpHsmError, code: ExitCode) -> None:
    """The codes the service's errors get (test_enrol_client) hold for the station's own
    devices and the operator's commands: the card 3, a configuration 2, an HSM or database
    that does not answer 5, a refusal 4."""
    assert exit_code_for(error) is code


def closed_port() -> int:
    """A local port nothing listens on: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def unreachable(pki: DevPki) -> list[str]:
    return ["--pki", str(pki.directory), "--server", f"localhost:{closed_port()}"]


def assert_failed(run: Run, code: ExitCode, says: str) -> None:
    assert run.code == code, run.err
    lines = run.err.strip().splitlines()
    assert lines[-1].startswith("otphsm: error: ") and says in lines[-1], run.err
    assert "Traceback" not in run.err


def test_sim_fob_names_a_fob_that_does_not_exist_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = run_cli(capsys, monkeypatch, ["sim", "fob", "press", tmp_path / "none.json", "FOB-1"])
    assert_failed(run, ExitCode.REFUSED, "no key fob state file")


def test_sim_push_without_an_outbox_is_invalid(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTPHSM_PUSH_OUTBOX", raising=False)
    run = run_cli(capsys, monkeypatch, ["sim", "push", "show", "--serial", "MOB-1"])
    assert_failed(run, ExitCode.INVALID, "--outbox DIR")


def test_sim_card_issue_over_an_existing_file_is_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    existing = tmp_path / "card.json"
    existing.write_text("{}")
    argv = ["sim", "card", "issue", "--out", existing, "--ca-dir", tmp_path / "ca"]
    person = ["--given-name", "MARIO", "--surname", "ROSSI", "--birth-date", "1980-01-01"]
    run = run_cli(
        capsys, monkeypatch, [*argv, *person, "--sex", "M", "--pin", "12345", "--puk", "12345"]
    )
    assert_failed(run, ExitCode.INVALID, "pass --force")


def test_card_info_without_a_card_is_the_card(
    pcscd: PrivatePcscd, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was 2 before the exit codes were one table; now 3, as `otphsm enrol new` without a card."""
    argv = ["card", "info", "--reader", "00 01", "--timeout", "0.3"]
    run = run_cli(capsys, monkeypatch, argv)
    assert_failed(run, ExitCode.CARD, "no card was inserted")


def test_card_info_with_a_negative_timeout_is_invalid(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = run_cli(capsys, monkeypatch, ["card", "info", "--timeout", "-1"])
    assert_failed(run, ExitCode.INVALID, "--timeout")


def test_enrol_without_a_way_to_the_service_is_invalid(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTPHSM_CLIENT_CONFIG", raising=False)
    argv = ["enrol", "replace", "--sms", "--codice-fiscale", CF, "--pin-from-stdin"]
    run = run_cli(capsys, monkeypatch, argv)
    assert run.code == ExitCode.INVALID, run.err
    assert run.err.startswith("otphsm: error: ") and "Traceback" not in run.err


def test_enrol_with_the_service_unreachable(
    dev_pki: DevPki, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["enrol", "replace", "--sms", "--codice-fiscale", CF, "--pin-from-stdin"]
    run = run_cli(capsys, monkeypatch, [*argv, *unreachable(dev_pki)])
    assert_failed(run, ExitCode.UNREACHABLE, "")


def test_token_remove_of_an_account_the_app_lacks_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["token", "remove", "MOB-1", "--state", tmp_path / "phone.json"]
    run = run_cli(capsys, monkeypatch, argv)
    assert_failed(run, ExitCode.REFUSED, "no account")


def test_admin_import_pskc_with_the_service_unreachable(
    tmp_path: Path,
    dev_pki: DevPki,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pskc = tmp_path / "fobs.pskc"
    pskc.write_text("<KeyContainer/>")
    argv = ["admin", "import-pskc", pskc, "--psk", FOB_PSK, *unreachable(dev_pki)]
    run = run_cli(capsys, monkeypatch, argv)
    assert_failed(run, ExitCode.UNREACHABLE, "")


@pytest.mark.parametrize("command", [["serve"], ["audit", "verify"], ["admin", "hsm-init"]])
def test_a_configuration_error_is_invalid(
    command: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = tmp_path / "otphsm.toml"
    config.write_text("[server]\nno_such_key = 1\n")
    run = run_cli(capsys, monkeypatch, [*command, "--config", config])
    assert_failed(run, ExitCode.INVALID, "no_such_key")


@pytest.mark.softhsm
def test_audit_verify_with_the_database_unreachable(
    tmp_path: Path,
    dev_pki: DevPki,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """A sound configuration (a real SoftHSM token) whose PostgreSQL server does not answer:
    a device the command needs cannot be reached (5), as the service itself would say."""
    raw = service_config(
        tmp_path,
        request.getfixturevalue("softhsm"),
        dev_pki,
        request.getfixturevalue("card_ca_files"),
        f"postgresql://otphsm@127.0.0.1:{closed_port()}/otphsm",
    )
    raw["store"]["timeout_seconds"] = 1
    config = write_config(tmp_path / "otphsm.toml", raw)
    run = run_cli(capsys, monkeypatch, ["audit", "verify", "--config", config])
    assert_failed(run, ExitCode.UNREACHABLE, "")


def test_ctrl_c_in_any_command_exits_130(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(path: Path) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("otphsm.cli.fobs.load_fobs", interrupted)
    run = run_cli(capsys, monkeypatch, ["sim", "fob", "list", tmp_path / "fobs.json"])
    assert run.code == ExitCode.INTERRUPTED and "interrupted" in run.err
