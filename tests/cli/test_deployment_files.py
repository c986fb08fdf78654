"""The deployment files under examples/: the sample configs are what `otphsm admin init-config`
writes, name every key the loader knows, and load (their commented defaults too); the systemd
units pass `systemd-analyze verify` and stop `otphsm serve` with SIGTERM only, for longer than
its grace period.

Our machines do not run systemd as PID 1, so the units are verified offline: `--root` a
directory holding the units, the distribution's unit files (sysinit.target, pcscd.socket, …)
and a stand-in for the ExecStart binary (verify checks that it is executable); `--man=no`.
systemd-analyze reports unknown keys and bad values as warnings with exit 0, so any output
fails the test.
"""

from __future__ import annotations

import configparser
import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from support.requirements import require_tool

from otphsm.cli.main import main
from otphsm.config.client import ClientSection, load_client_section
from otphsm.config.loader import section_keys
from otphsm.service.config import SECTIONS, ServerSection, load_config
from otphsm.service.samples import samples

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
UNITS = sorted((EXAMPLES / "systemd").glob("*.service"))
SYSTEM_UNITS = Path("/usr/lib/systemd/system")


def test_the_examples_are_what_init_config_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["admin", "init-config", str(tmp_path)]) == 0
    written = sorted(path.name for path in tmp_path.iterdir())
    assert written == sorted(sample.name for sample in samples())
    for name in written:
        assert (EXAMPLES / name).read_text() == (tmp_path / name).read_text(), (
            f"examples/{name} differs: run `otphsm admin init-config examples --force`"
        )
    assert main(["admin", "init-config", str(tmp_path)]) == 2  # no silent overwrite
    assert "--force" in capsys.readouterr().err


def keys_by_section(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        if header := re.fullmatch(r"\[(\w+)\]", line):
            section = header.group(1)
            found[section] = []
        elif key := re.fullmatch(r"(?:# )?(\w+) = .*", line):
            found[section].append(key.group(1))
    return found


def test_the_server_sample_names_every_key_the_loader_knows() -> None:
    listed = keys_by_section((EXAMPLES / "server.toml").read_text())
    assert listed == {name: list(section_keys(cls)) for name, cls in SECTIONS.items()}
    for name in ("station.toml", "phone.toml", "verifier.toml"):
        client = keys_by_section((EXAMPLES / name).read_text())
        assert client == {"client": list(section_keys(ClientSection))}


def uncommented(text: str) -> str:
    """Every commented-out `# key = default` made a setting."""
    return re.sub(r"^# (\w+ = .*)$", r"\1", text, flags=re.M)


def test_the_samples_load_and_their_commented_defaults_are_the_defaults(tmp_path: Path) -> None:
    server = load_config(EXAMPLES / "server.toml", env={})
    assert server.hsm.softhsm_conf == str(EXAMPLES / "hsm/softhsm2.conf")
    assert server.store.url == f"sqlite:///{EXAMPLES / 'otphsm.db'}"
    every_key = tmp_path / "server.toml"
    every_key.write_text(uncommented((EXAMPLES / "server.toml").read_text()))
    loaded = load_config(every_key, env={})
    assert loaded.policy == server.policy
    assert loaded.metrics == server.metrics and loaded.ratelimit == server.ratelimit
    moved = dataclasses.replace(
        loaded.sms, outbox=server.sms.outbox, push_outbox=server.sms.push_outbox
    )
    assert moved == server.sms
    station = load_client_section(EXAMPLES / "station.toml", env={})
    assert station.cert == str(EXAMPLES / "pki/enroller.pem")


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    parser.read(path)
    return parser


def test_the_units_stop_serve_with_sigterm_only_for_longer_than_its_grace_period() -> None:
    assert [path.name for path in UNITS] == ["otphsm-kiosk.service", "otphsm.service"]
    sample = load_config(EXAMPLES / "server.toml", env={}).server.grace_seconds
    longest_grace = max(sample, ServerSection.grace_seconds)
    for path in UNITS:
        service = unit(path)["Service"]
        assert service["ExecStart"].split()[1:3] == ["serve", "--config"], path.name
        assert service["KillSignal"] == "SIGTERM", path.name
        assert service["SendSIGKILL"] == "no", path.name  # never escalated to SIGKILL
        assert float(service["TimeoutStopSec"]) > longest_grace, path.name
    kiosk = unit(EXAMPLES / "systemd" / "otphsm-kiosk.service")["Unit"]
    assert "pcscd.socket" in kiosk["Requires"] and "pcscd.socket" in kiosk["After"]


def test_systemd_analyze_verifies_the_units_offline(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze", "systemd")
    root = tmp_path / "root"
    shutil.copytree(SYSTEM_UNITS, root / SYSTEM_UNITS.relative_to("/"), symlinks=True)
    installed = root / "etc/systemd/system"
    installed.mkdir(parents=True)
    for path in UNITS:
        shutil.copy(path, installed / path.name)
        binary = root / unit(path)["Service"]["ExecStart"].split()[0].lstrip("/")
        binary.parent.mkdir(parents=True, exist_ok=True)
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
    done = subprocess.run(
        [
            analyze,
            "verify",
            "--man=no",
            f"--root={root}",
            *(f"/etc/systemd/system/{path.name}" for path in UNITS),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == "", done.stdout + done.stderr
