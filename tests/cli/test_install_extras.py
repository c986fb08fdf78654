"""The dependency split, installed for real: two throwaway venvs get `pip install '.[station]'`
and `pip install '.[server]'` from this checkout (pip may reuse its wheel cache). A station
has no python-pkcs11 or psycopg and a server no pyscard, yet `otphsm --help`, `--version`, the
station's commands (station) and `otphsm serve --help` (server) run. About 25 s."""

from __future__ import annotations

import os
import socket
import subprocess
import venv
from pathlib import Path

import pytest

from otphsm import __version__

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def install(tmp_path: Path, extra: str) -> Path:
    """A venv with `otphsm[extra]` installed (not editable) from a copy of the sources, so
    the build leaves nothing in the checkout; its bin directory."""
    home = tmp_path / f"venv-{extra}"
    venv.create(home, with_pip=True)
    source = tmp_path / "src"
    if not source.exists():
        _copy_tree(source)
    subprocess.run(
        [str(home / "bin" / "python"), "-m", "pip", "install", "-q", f"{source}[{extra}]"],
        check=True,
        capture_output=True,
        timeout=240,
    )
    return home / "bin"


def _copy_tree(target: Path) -> None:
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        origin = ROOT / name.decode()
        if origin.is_file():
            destination = target / name.decode()
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(origin.read_bytes())


def run(
    bin_dir: Path, *argv: str, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "otphsm"), *argv],
        input=stdin,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=bin_dir.parent,
        env={**os.environ, **(env or {}), "PYTHONPATH": ""},
    )


def importable(bin_dir: Path, module: str) -> bool:
    probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([str(bin_dir / "python"), "-c", probe], check=False).returncode == 0


def test_station_and_server_extras_install_and_run_apart(tmp_path: Path) -> None:
    station = install(tmp_path, "station")
    assert importable(station, "smartcard")
    for absent in ("pkcs11", "psycopg", "psycopg_pool", "pyotp"):
        assert not importable(station, absent), absent
    assert run(station, "--help").returncode == 0
    assert run(station, "--version").stdout.strip() == f"otphsm {__version__}"
    listed = run(station, "token", "list", "--state", str(tmp_path / "app.json"))
    assert listed.returncode == 0, listed.stderr
    for argv in (("enrol", "new", "-h"), ("card", "info", "-h"), ("sim", "pcscd", "-h")):
        assert run(station, *argv).returncode == 0, argv
    no_pcscd = {"PCSCLITE_CSOCK_NAME": str(tmp_path / "no-pcscd.sock")}
    info = run(station, "card", "info", "--timeout", "0", env=no_pcscd)
    assert info.returncode == 3, info.stderr
    assert info.stderr.startswith("otphsm: error: ") and "Traceback" not in info.stderr

    pki = tmp_path / "pki"
    assert run(station, "admin", "dev-pki", str(pki)).returncode == 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"localhost:{probe.getsockname()[1]}"
    state = ["--state", str(tmp_path / "app.json"), "--pin-from-stdin"]
    activate = ["token", "activate", "--code", "1" * 18, "--pki", str(pki), "--server", closed]
    offline = run(station, *activate, *state, stdin="24680\n")
    assert offline.returncode == 5, offline.stderr  # got as far as calling the service
    enrol = ["enrol", "new", "--pki", str(pki), "--server", closed, "--timeout", "0"]
    assert run(station, *enrol, env=no_pcscd).returncode == 3  # as far as the reader

    server = install(tmp_path, "server")
    assert importable(server, "pkcs11") and importable(server, "psycopg")
    assert not importable(server, "smartcard")
    assert run(server, "--help").returncode == 0
    served = run(server, "serve", "--help")
    assert served.returncode == 0 and "--config" in served.stdout, served.stderr
