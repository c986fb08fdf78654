"""`otphsm sim hsm init DIR` from a clean shell, and a process that uses what it printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.requirements import require_softhsm

pytestmark = pytest.mark.softhsm

USE_SETTINGS = """
import functools, sys
from otphsm.core.otp import HashAlgorithm, hotp
from otphsm.hsm import HsmConfig, open_vault
import os
vault = open_vault(HsmConfig(token_label=os.environ["OTPHSM_HSM_TOKEN"],
                             user_pin=os.environ["OTPHSM_HSM_PIN"],
                             module=os.environ["OTPHSM_HSM_MODULE"]))
seed = vault.import_seed(bytearray(b"12345678901234567890"), HashAlgorithm.SHA1)
print(hotp(functools.partial(vault.hmac, seed, HashAlgorithm.SHA1), 1))
"""


def _otphsm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otphsm.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )


def _exports(stdout: str) -> dict[str, str]:
    pairs = [line.removeprefix("export ").split("=", 1) for line in stdout.splitlines()]
    return {p[0]: p[1] for p in pairs if len(p) == 2 and p[0].isupper()}


def test_init_prints_working_settings_and_is_idempotent(tmp_path: Path) -> None:
    require_softhsm()
    first = _otphsm("sim", "hsm", "init", str(tmp_path / "hsm"))
    assert first.returncode == 0, first.stderr
    assert "KEK (trusted, wrap/unwrap only): created" in first.stdout
    settings = _exports(first.stdout)
    assert set(settings) >= {
        "SOFTHSM2_CONF",
        "OTPHSM_HSM_TOKEN",
        "OTPHSM_HSM_PIN",
        "OTPHSM_HSM_MODULE",
    }
    assert oct((tmp_path / "hsm" / "otphsm-hsm.env").stat().st_mode & 0o777) == "0o600"

    second = _otphsm("sim", "hsm", "init", str(tmp_path / "hsm"))
    assert second.returncode == 0, second.stderr
    assert "KEK (trusted, wrap/unwrap only): kept" in second.stdout
    assert _exports(second.stdout) == settings

    used = subprocess.run(
        [sys.executable, "-c", USE_SETTINGS],
        env={**os.environ, **settings},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert used.returncode == 0, used.stderr
    assert used.stdout.strip() == "287082"  # RFC 4226 counter 1


def test_errors_reach_the_user_as_one_line(tmp_path: Path) -> None:
    require_softhsm()
    env = {**os.environ, "PATH": "/nonexistent"}
    done = _otphsm("sim", "hsm", "init", str(tmp_path / "x"), env=env)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("otphsm: error: softhsm2-util not found")
    assert "Traceback" not in done.stderr


def test_the_settings_file_can_be_sourced_and_the_pin_file_holds_the_pin(tmp_path: Path) -> None:
    require_softhsm()
    done = _otphsm("sim", "hsm", "init", str(tmp_path / "hsm"))
    assert done.returncode == 0, done.stderr
    env_file = tmp_path / "hsm" / "otphsm-hsm.env"
    shown = subprocess.run(
        ["bash", "-c", f'. "{env_file}" && env'],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ["PATH"]},
    ).stdout
    exported = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
    assert exported["SOFTHSM2_CONF"] == str(tmp_path / "hsm" / "softhsm2.conf")
    pin_file = tmp_path / "hsm" / "user-pin"
    assert pin_file.read_text().strip() == exported["OTPHSM_HSM_PIN"]
    assert oct(pin_file.stat().st_mode & 0o777) == "0o600"
