"""An isolated SoftHSM2: its own config file and token directory, tokens made from code.

SoftHSM reads SOFTHSM2_CONF when the module initialises, so `activate()` must run before the
first PKCS#11 call of the process (or be followed by a module reload).
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from otphsm.core.errors import ConfigurationError
from otphsm.hsm.config import DEFAULT_MODULE, HsmConfig
from otphsm.hsm.provision import ProvisionReport, provision
from otphsm.hsm.session import HsmSessionOwner

SOFTHSM_UTIL = "softhsm2-util"
SETTINGS_FILE = "otphsm-hsm.env"
USER_PIN_FILE = "user-pin"
CLONE_ATTEMPTS = 20
CLONE_RETRY_PAUSE = 0.05
SETTLE_READS = 50
SETTLE_PAUSE = 0.002


@dataclass(frozen=True)
class SoftHsm:
    directory: Path
    token_label: str
    user_pin: str
    so_pin: str
    module: str = DEFAULT_MODULE

    @property
    def conf_path(self) -> Path:
        return self.directory / "softhsm2.conf"

    @property
    def user_pin_path(self) -> Path:
        """The user PIN alone in a file (mode 0600), for `hsm.user_pin_file`."""
        return self.directory / USER_PIN_FILE

    def hsm_config(self, **overrides: Any) -> HsmConfig:
        base = HsmConfig(token_label=self.token_label, user_pin=self.user_pin, module=self.module)
        return replace(base, **overrides)

    def token(self, label: str) -> SoftHsm:
        """The same SoftHSM installation, another token label (same PINs)."""
        return replace(self, token_label=label)

    def settings(self) -> dict[str, str]:
        return {
            "SOFTHSM2_CONF": str(self.conf_path),
            "OTPHSM_HSM_MODULE": self.module,
            "OTPHSM_HSM_TOKEN": self.token_label,
            "OTPHSM_HSM_PIN": self.user_pin,
            "OTPHSM_HSM_SO_PIN": self.so_pin,
        }

    def activate(self) -> None:
        """Point this process's SoftHSM at this installation (before the module loads)."""
        os.environ["SOFTHSM2_CONF"] = str(self.conf_path)


def create_softhsm(
    directory: Path,
    token_labels: tuple[str, ...] = ("otphsm",),
    *,
    user_pin: str | None = None,
    so_pin: str | None = None,
) -> SoftHsm:
    """Write a private SoftHSM2 config under `directory` and initialise the named tokens.

    Tokens that already exist there are kept, so this is safe to run twice.
    """
    directory = directory.resolve()
    tokens = directory / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    softhsm = SoftHsm(
        directory=directory,
        token_label=token_labels[0],
        user_pin=user_pin or secrets.token_hex(8),
        so_pin=so_pin or secrets.token_hex(8),
    )
    _write_conf(softhsm)
    present = existing_token_labels(softhsm)
    for label in token_labels:
        if label not in present:
            _run_util(
                softhsm,
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                softhsm.so_pin,
                "--pin",
                softhsm.user_pin,
            )
    return softhsm


def clone_softhsm(softhsm: SoftHsm, directory: Path) -> SoftHsm:
    """A copy of `softhsm`'s tokens under `directory`, with its own config: the same keys, PINs
    and labels, as two members of an HSM cluster hold. A copy that caught a token mid-write (a
    C_Login elsewhere) is taken again.

    SoftHSM rewrites a token's token.object at every C_Login (truncate, then write), so a
    process killed at that moment leaves the token unreadable; work that kills processes can run
    on a clone and keep that damage to itself.
    """
    directory = directory.resolve()
    for _ in range(CLONE_ATTEMPTS):
        shutil.rmtree(directory / "tokens", ignore_errors=True)
        shutil.copytree(softhsm.directory / "tokens", directory / "tokens")
        if _same_tokens(softhsm.directory / "tokens", directory / "tokens"):
            break
        time.sleep(CLONE_RETRY_PAUSE)
    else:
        raise ConfigurationError(f"the tokens under {softhsm.directory} kept changing while copied")
    clone = replace(softhsm, directory=directory)
    _write_conf(clone)
    return clone


def _same_tokens(source: Path, copy: Path) -> bool:
    """Whether `copy` holds every token file of `source`, none of them caught mid-write:
    SoftHSM truncates token.object and releases its lock before it writes the new contents, so
    a copy (even one holding the lock) can catch it empty. A login also changes a few of its
    bytes, so a token.object is checked whole (its size), every other file byte for byte."""
    for path in source.rglob("*"):
        if not path.is_file():
            continue
        copied = copy / path.relative_to(source)
        if not copied.is_file():
            return False
        if path.name == "token.object":
            size = copied.stat().st_size
            if size == 0 or size != len(_settled(path)):
                return False
        elif copied.read_bytes() != path.read_bytes():
            return False
    return True


def _settled(path: Path) -> bytes:
    """The file's contents, waiting out (for a moment) a token.object that a login in another
    process has just truncated."""
    contents = path.read_bytes()
    for _ in range(SETTLE_READS):
        if contents:
            break
        time.sleep(SETTLE_PAUSE)
        contents = path.read_bytes()
    return contents


def _write_conf(softhsm: SoftHsm) -> None:
    softhsm.conf_path.write_text(
        f"directories.tokendir = {softhsm.directory / 'tokens'}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
        "slots.removable = false\n"
    )


def existing_token_labels(softhsm: SoftHsm) -> set[str]:
    output = _run_util(softhsm, "--show-slots")
    return {
        line.split(":", 1)[1].strip()
        for line in output.splitlines()
        if line.strip().startswith("Label:") and line.split(":", 1)[1].strip()
    }


def provision_softhsm(softhsm: SoftHsm, **config_overrides: Any) -> ProvisionReport:
    """Create the KEK (as SO) and the pepper key on the token; idempotent."""
    with HsmSessionOwner(softhsm.hsm_config(**config_overrides)) as owner:
        return provision(owner, softhsm.so_pin)


def write_settings(softhsm: SoftHsm) -> Path:
    """`otphsm-hsm.env` (`export KEY=VALUE` lines a shell can source) and the user PIN alone in
    `user-pin`, both mode 0600; the settings file's path."""
    _write_private(softhsm.user_pin_path, softhsm.user_pin + "\n")
    path = softhsm.directory / SETTINGS_FILE
    lines = (f"export {key}={shlex.quote(value)}\n" for key, value in softhsm.settings().items())
    _write_private(path, "".join(lines))
    return path


def _write_private(path: Path, text: str) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)


def load_settings(directory: Path) -> SoftHsm:
    path = directory / SETTINGS_FILE
    if not path.exists():
        raise ConfigurationError(f"{path} not found: run `otphsm sim hsm init {directory}` first")
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, found, value = line.removeprefix("export ").partition("=")
        if found:
            values[key.strip()] = "".join(shlex.split(value))
    return SoftHsm(
        directory=directory.resolve(),
        token_label=values["OTPHSM_HSM_TOKEN"],
        user_pin=values["OTPHSM_HSM_PIN"],
        so_pin=values["OTPHSM_HSM_SO_PIN"],
        module=values["OTPHSM_HSM_MODULE"],
    )


def _run_util(softhsm: SoftHsm, *args: str) -> str:
    env = {**os.environ, "SOFTHSM2_CONF": str(softhsm.conf_path)}
    try:
        done = subprocess.run(
            [SOFTHSM_UTIL, *args], env=env, capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise ConfigurationError(
            f"{SOFTHSM_UTIL} not found: install SoftHSM2 (Debian: apt-get install softhsm2)"
        ) from None
    if done.returncode != 0:
        raise ConfigurationError(f"{SOFTHSM_UTIL} {args[0]} failed: {done.stderr.strip()}")
    return done.stdout
