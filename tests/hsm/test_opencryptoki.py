"""On opencryptoki 3.8.1 (Debian 12), a PKCS#11 module that cannot keep seeds confined (no
CKA_TRUSTED, CKA_WRAP_WITH_TRUSTED or CKA_UNWRAP_TEMPLATE; it makes every unwrapped secret
readable): `otphsm admin hsm-init` and `otphsm serve` refuse it in one line naming the missing
guarantee, and leave nothing on its token.

The set-up is automatic: the lock and run directories, its slot daemon (started here when it is
not running, and stopped again), and its soft token (slot 3) initialised with this test's PINs
when it is new. Its state lives in fixed system paths shared by the whole machine, so each test
empties the token before and after."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.requirements import require_tool
from support.service_fixtures import service_config

from otphsm.hsm.config import HsmConfig
from otphsm.service.devpki import DevPki
from otphsm.simulators.deployment.config import with_sections, write_config
from otphsm.store.urls import sqlite_url

pytestmark = [pytest.mark.opencryptoki, pytest.mark.softhsm]

MODULE = "/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so"
SOFT_TOKEN_SLOT = "3"
FACTORY_SO_PIN = "87654321"
SO_PIN = "otpSO123"  # opencryptoki wants 4-8 characters
USER_PIN = "otpUs123"
TOKEN_LABEL = "otphsm"
PID_FILES = (Path("/run/pkcsslotd.pid"), Path("/var/run/pkcsslotd.pid"))
STATE_DIRS = (
    Path("/run/opencryptoki"),
    Path("/var/lock/opencryptoki"),
    Path("/var/lock/opencryptoki/swtok"),
    Path("/var/lib/opencryptoki/swtok"),
)


def _slotd_pid() -> int | None:
    for path in PID_FILES:
        try:
            pid = int(path.read_text().strip())
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (OSError, ValueError):
            continue
        if "(pkcsslotd)" in stat and stat.split(") ")[1][:1] != "Z":
            return pid
    return None


def _pkcsconf(*args: str, stdin: str = "") -> str:
    done = subprocess.run(
        ["pkcsconf", *args], input=stdin, capture_output=True, text=True, timeout=30, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"pkcsconf {args[0]} failed: {done.stderr.strip() or done.stdout}")
    return done.stdout


def _initialise_soft_token() -> None:
    flags = _pkcsconf("-t", "-c", SOFT_TOKEN_SLOT)
    if "TOKEN_INITIALIZED" in flags:
        return
    _pkcsconf("-I", "-c", SOFT_TOKEN_SLOT, "-S", FACTORY_SO_PIN, stdin=TOKEN_LABEL + "\n")
    _pkcsconf("-P", "-c", SOFT_TOKEN_SLOT, "-S", FACTORY_SO_PIN, "-n", SO_PIN)
    _pkcsconf("-u", "-c", SOFT_TOKEN_SLOT, "-S", SO_PIN, "-n", USER_PIN)


@pytest.fixture(scope="module")
def opencryptoki() -> Iterator[HsmConfig]:
    slotd = require_tool("pkcsslotd", "opencryptoki")
    require_tool("pkcsconf", "opencryptoki")
    if not os.path.exists(MODULE):
        pytest.skip(f"{MODULE} is missing (Debian package opencryptoki)")
    if os.geteuid() != 0:
        pytest.skip("opencryptoki's daemon and token directories need root here")
    for directory in STATE_DIRS:
        directory.mkdir(parents=True, exist_ok=True)
    started = None
    if _slotd_pid() is None:
        subprocess.run([slotd], check=True, timeout=30)  # it forks and writes its pid file
        deadline = time.monotonic() + 10
        while (started := _slotd_pid()) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert started is not None, "pkcsslotd did not start"
    try:
        _initialise_soft_token()
        config = HsmConfig(
            token_label=TOKEN_LABEL,
            user_pin=USER_PIN,
            module=MODULE,
            wrap_mechanism="AES_CBC_PAD",
        )
        _empty(config)
        yield config
        _empty(config)
    finally:
        if started is not None:
            os.kill(started, signal.SIGTERM)


_TOKEN_ACTIONS = """
import sys
from pkcs11 import Attribute, KeyType
from otphsm.hsm.config import HsmConfig
from otphsm.hsm.session import HsmSessionOwner

action, module, label, pin = sys.argv[1:5]
config = HsmConfig(token_label=label, user_pin=pin, module=module, wrap_mechanism="AES_CBC_PAD")
locked = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.ENCRYPT: False,
    Attribute.DECRYPT: False,
}


def run(ctx):
    session = ctx.session
    if action == "empty":
        for obj in session.get_objects({}):
            obj.destroy()
    elif action == "make-keys-by-hand":
        session.generate_key(
            KeyType.AES, 256, label=config.kek_label, store=True,
            template={**locked, Attribute.WRAP: True, Attribute.UNWRAP: True},
        )
        session.generate_key(
            KeyType.GENERIC_SECRET, 256, label=config.pepper_label, store=True,
            template={**locked, Attribute.SIGN: True},
        )
    print("\\n".join(sorted(str(obj[Attribute.LABEL]) for obj in session.get_objects({}))))


with HsmSessionOwner(config) as owner:
    owner.run(action, run)
"""


def _on_token(config: HsmConfig, action: str) -> list[str]:
    """Run `action` on the token in a child process and return the labels left there: the
    slot daemon does not stop while a process that loaded the module lives, so this one never
    loads it."""
    done = subprocess.run(
        [sys.executable, "-c", _TOKEN_ACTIONS, action, MODULE, TOKEN_LABEL, USER_PIN],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line]


def _labels(config: HsmConfig) -> list[str]:
    return _on_token(config, "list")


def _empty(config: HsmConfig) -> None:
    assert _on_token(config, "empty") == []


@pytest.fixture
def config_file(
    opencryptoki: HsmConfig,
    tmp_path: Path,
    softhsm: Any,
    dev_pki: DevPki,
    card_ca_files: tuple[Path, Path],
) -> Iterator[Path]:
    raw = service_config(
        tmp_path, softhsm, dev_pki, card_ca_files, sqlite_url(tmp_path / "otphsm.db")
    )
    hsm = {
        "module": MODULE,
        "token_label": TOKEN_LABEL,
        "user_pin": USER_PIN,
        "wrap_mechanism": "AES_CBC_PAD",
    }
    yield write_config(tmp_path / "otphsm.toml", with_sections(raw, {"hsm": hsm}))
    _empty(opencryptoki)


def _otphsm(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTPHSM_HSM")}
    return subprocess.run(
        [sys.executable, "-m", "otphsm.cli.main", *argv],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0, done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("otphsm: error:")]
    assert len(errors) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert SO_PIN not in done.stderr + done.stdout and USER_PIN not in done.stderr + done.stdout
    return errors[0]


def test_hsm_init_refuses_and_creates_nothing(opencryptoki: HsmConfig, config_file: Path) -> None:
    done = _otphsm(
        "admin", "hsm-init", "--config", str(config_file), "--so-pin-from-stdin", stdin=SO_PIN
    )
    line = _one_error_line(done)
    assert "cannot make a trusted wrapping key (CKA_TRUSTED)" in line, line
    assert "nothing was created" in line
    assert _labels(opencryptoki) == []


def test_serve_refuses_a_kek_made_by_hand_and_creates_nothing(
    opencryptoki: HsmConfig, config_file: Path
) -> None:
    """hsm-init cannot make a KEK there, so an operator makes one by hand (and the pepper key),
    with every protection this HSM has: serve still refuses it."""
    _on_token(opencryptoki, "make-keys-by-hand")
    before = _labels(opencryptoki)
    done = _otphsm("serve", "--config", str(config_file))
    line = _one_error_line(done)
    assert "does not keep seeds confined" in line, line
    assert "CKA_WRAP_WITH_TRUSTED" in line, line
    assert (
        _labels(opencryptoki)
        == before
        == sorted([opencryptoki.kek_label, opencryptoki.pepper_label])
    )
