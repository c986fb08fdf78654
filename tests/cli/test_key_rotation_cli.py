"""`otphsm admin hsm rotate-kek` killed (SIGKILL) between pages, run again to the end; then
`otphsm audit verify` passes and every stored seed still gives its codes, through the clone of
the run's SoftHSM the commands use (the test process's own token keeps its KEK)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support.service_fixtures import service_config

from otphsm.core.otp import HashAlgorithm
from otphsm.core.tokens import OtpMode, OtpParameters, Token, TokenKind, TokenState
from otphsm.hsm import HsmSeedVault
from otphsm.simulators.deployment import write_config
from otphsm.store import open_store, sqlite_url

pytestmark = [pytest.mark.softhsm, pytest.mark.slow]

TOKENS = 60
"""Pages of one token each: enough that the kill lands between two of them."""
NOW = 1_760_000_000

_CHECK_SEEDS = """
import hmac, json, sys
from pathlib import Path
from otphsm.core.otp import HashAlgorithm
from otphsm.service.assembly import hsm_config
from otphsm.service.config import load_config
from otphsm.hsm import open_vault
from otphsm.store import open_store

config = load_config(Path(sys.argv[1]))
seeds = json.load(sys.stdin)
store, vault = open_store(config.store.url), open_vault(hsm_config(config.hsm))
keks = set()
for serial, seed in seeds.items():
    token = store.get_token(serial)
    keks.add(token.seed.kek)
    mac = vault.hmac(token.seed, HashAlgorithm.SHA1, b"x")
    assert mac == hmac.new(bytes.fromhex(seed), b"x", "sha1").digest(), serial
print(sorted(keks))
"""


def _otphsm(config: Path, env: dict[str, str], *argv: str, stdin: str = "") -> Any:
    return subprocess.run(
        [sys.executable, "-m", "otphsm.cli.main", *argv, "--config", str(config)],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _progress_entries(database: Path) -> int:
    try:
        with sqlite3.connect(database) as connection:
            row = connection.execute(
                "SELECT COUNT(*) FROM audit_log WHERE action = 'kek_rotation_progress'"
            ).fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0])


def test_rotate_kek_killed_between_pages_then_rerun(
    tmp_path: Path,
    serve_softhsm: Any,
    vault: HsmSeedVault,
    dev_pki: Any,
    card_ca_files: Any,
) -> None:
    database = tmp_path / "otphsm.db"
    raw = service_config(tmp_path, serve_softhsm, dev_pki, card_ca_files, sqlite_url(database))
    config = write_config(tmp_path / "otphsm.toml", raw)
    store = open_store(sqlite_url(database))
    store.migrate()
    seeds = {f"TOK-{n:02d}": os.urandom(20) for n in range(TOKENS)}
    for n, (serial, seed) in enumerate(seeds.items()):
        store.insert_token(
            Token(
                serial,
                f"CF{n:014d}",
                TokenKind.PHYSICAL,
                OtpParameters(OtpMode.HOTP, HashAlgorithm.SHA1),
                vault.import_seed(seed, HashAlgorithm.SHA1),  # the clone holds the same KEK
                TokenState.ACTIVE,
                NOW,
            )
        )
    store.close()
    env = {**os.environ, **serve_softhsm.settings()}
    env.pop("OTPHSM_HSM_SO_PIN")
    argv = ["admin", "hsm", "rotate-kek", "--so-pin-from-stdin", "--batch-size", "1"]

    rotating = subprocess.Popen(
        [sys.executable, "-m", "otphsm.cli.main", *argv, "--config", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    assert rotating.stdin is not None
    rotating.stdin.write(serve_softhsm.so_pin + "\n")
    rotating.stdin.close()
    deadline = time.monotonic() + 60
    while _progress_entries(database) < 3 and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(rotating.pid, signal.SIGKILL)  # between two pages: all its logins are behind it
    rotating.wait(timeout=30)
    moved = _progress_entries(database)
    assert 3 <= moved < TOKENS, "the run was not killed half-way"

    middle = subprocess.run(
        [sys.executable, "-c", _CHECK_SEEDS, str(config)],
        input=json.dumps({serial: seed.hex() for serial, seed in seeds.items()}),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert middle.returncode == 0, middle.stderr
    assert middle.stdout.strip() == "['otphsm-kek', 'otphsm-kek-2']"  # both KEKs serve codes

    rerun = _otphsm(config, env, *argv, "--settle-seconds", "0", stdin=serve_softhsm.so_pin + "\n")
    assert rerun.returncode == 0, rerun.stderr
    assert "KEK 'otphsm-kek-2' (carried on)" in rerun.stdout
    assert "destroyed: otphsm-kek" in rerun.stdout
    assert serve_softhsm.so_pin not in rerun.stdout + rerun.stderr

    audited = _otphsm(config, env, "audit", "verify")
    assert audited.returncode == 0 and audited.stdout.startswith("OK:"), audited.stdout

    after = subprocess.run(
        [sys.executable, "-c", _CHECK_SEEDS, str(config)],
        input=json.dumps({serial: seed.hex() for serial, seed in seeds.items()}),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert after.returncode == 0, after.stderr
    assert after.stdout.strip() == "['otphsm-kek-2']"
